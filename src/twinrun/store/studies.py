"""Study records in the run store: the `studies` table, each planned run's one row, predictions.

A study (see `twinrun.studies.plan`) is kept as its canonical definition; each of its runs is
an ordinary row of `runs` whose `study_id` names the study and whose `study_key` names the
planned run (`"init/3"`, `"repeat=0,fold=2"`). A unique index on `(study_id, study_key)` makes
"each planned run exactly once" the database's rule, not the runner's hope:

- `begin_study_run` takes the key's row in one `BEGIN IMMEDIATE` transaction. A finished row,
  or a running one whose owner is alive, is refused (`StudyRunTaken`): a resumed study, or a
  second driver of the same study, skips that run. A failed or stopped row (a crashed run, a
  killed driver) is replaced by the new attempt, so a retry never adds a second row.
- `finish_study_run` writes the run's epochs, metrics, environment and test predictions in one
  transaction: a driver killed at any moment leaves the run either finished with everything,
  or not finished at all (and then resumed).

Test predictions are one byte per test image (the predicted class), kept as a BLOB in the
`predictions` table: 10 KB per Fashion-MNIST run.
"""

import base64
import binascii

from twinrun.errors import StoreError
from twinrun.store.encoding import from_json, test_accuracy, to_float, to_json, to_scalar
from twinrun.store.owners import new_run_id, owner_alive, this_process, utc_now

# Version 3: studies, study keys and predictions.
STUDY_SCHEMA = """
ALTER TABLE runs ADD COLUMN study_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS runs_study_key ON runs (study_id, study_key)
    WHERE study_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS studies (
    study_id    TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    planned     INTEGER NOT NULL,
    definition  TEXT NOT NULL,
    options     TEXT,
    owner       TEXT
);
CREATE INDEX IF NOT EXISTS studies_created_at ON studies (created_at, study_id);
CREATE TABLE IF NOT EXISTS predictions (
    run_id      TEXT PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    n_test      INTEGER NOT NULL,
    classes     BLOB NOT NULL
)
"""

# running: a driver is at it; finished: every planned run finished (as a run that ended well
# is; stores before schema 4 said `complete`, moved on opening); incomplete: a driver ended
# (or died) with runs missing or failed, which `twinrun resume` runs.
STUDY_STATUSES = ("running", "finished", "incomplete")
STUDY_FIELDS = ("study_id", "created_at", "updated_at", "kind", "status", "planned")
# What `study_runs` returns for each run.
STUDY_RUN_FIELDS = ("run_id", "study_key", "replica", "status", "created_at", "finished_at",
                    "backend", "seed", "fingerprint", "epochs_trained", "wall_time", "error",
                    "metrics", "environment", "seeds", "config")


class StudyRunTaken(StoreError):
    """A planned run that is already finished, or being run by a live process, in the store."""


def prediction_bytes(value):
    """Test predictions as bytes, one per test image, from what a worker's result holds.

    Arguments:
        value: bytes, a list of class indices (0..255), a NumPy uint8 array, or the bytes as
            hex or base64 text (JSON has no bytes).

    Example:
    >>> prediction_bytes([3, 0, 9]) == prediction_bytes("030009") == bytes([3, 0, 9])
    True
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if hasattr(value, "tobytes") and getattr(value, "dtype", None) is not None:
        if str(value.dtype) != "uint8":
            value = value.tolist()
        else:
            return value.tobytes()
    if isinstance(value, str):
        text = value.strip()
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise StoreError("A run's test predictions are text that is neither hex nor base64; "
                             "this is a bug in the workload that returned them.") from None
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 256
                   for v in value):
            raise StoreError("A run's test predictions must be class indices from 0 to 255; "
                             "this is a bug in the workload that returned them.")
        return bytes(value)
    raise StoreError(f"A run's test predictions came as {type(value).__name__}, not bytes or a "
                     f"list of class indices; this is a bug in the workload that returned them.")


class StudyRecords:
    """The study half of `Store` (mixed into it): needs its `_write` and `_read`."""

    # -- studies -------------------------------------------------------------------------------

    def record_study(self, study_id, *, kind, definition, planned, options=None):
        """Keep a study's definition (once) and return its record.

        Arguments:
            study_id: the plan's id (a hash of `definition`).
            kind: `"variance"` or `"cv"`.
            definition: the plan's canonical definition (what the id is derived from).
            planned: how many runs the plan has.
            options: what running it needs that is not part of its identity (e.g. the data
                folder, the metric to report); merged into what is kept.

        A second call with the same id keeps the first definition; a different definition
        under the same id (a hash collision, or a hand-edited store) is refused.

        Example:

            store.record_study("cv-0a1b2c3d4e", kind="cv", definition=plan.definition,
                               planned=len(plan.runs), options={"metric": "test_accuracy"})
        """
        text = to_json(definition)

        def upsert(conn):
            row = conn.execute("SELECT definition, options FROM studies WHERE study_id = ?",
                               (study_id,)).fetchone()
            now = utc_now().isoformat()
            if row is None:
                conn.execute(
                    "INSERT INTO studies (study_id, created_at, updated_at, kind, status, "
                    "planned, definition, options) VALUES (?, ?, ?, ?, 'incomplete', ?, ?, ?)",
                    (study_id, now, now, kind, int(planned), text, to_json(options or {})))
                return
            if from_json(row["definition"]) != from_json(text):
                raise StoreError(
                    f"The store at {self.path} already holds a different study named "
                    f"{study_id}; pass --store DIR to run this one in another store.")
            merged = {**(from_json(row["options"]) or {}), **(options or {})}
            conn.execute("UPDATE studies SET options = ?, updated_at = ? WHERE study_id = ?",
                         (to_json(merged), now, study_id))

        self._write(upsert)
        return self.get_study(study_id)

    def set_study_status(self, study_id, status):
        """Mark a study `running` (owned by this process), `finished` or `incomplete`."""
        if status not in STUDY_STATUSES:
            raise ValueError(f"Expected a study status among {STUDY_STATUSES}. "
                             f"Received: {status!r}")
        owner = this_process() if status == "running" else None
        self._write(lambda conn: conn.execute(
            "UPDATE studies SET status = ?, owner = ?, updated_at = ? WHERE study_id = ?",
            (status, owner, utc_now().isoformat(), study_id)))

    def get_study(self, study_id):
        """One study's record (`definition` and `options` decoded), by id or unique prefix.

        Raises `StoreError` naming `twinrun studies` when none, or several, match.
        """
        key = str(study_id).strip()
        escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._read(
            "SELECT * FROM studies WHERE study_id = ? OR study_id LIKE ? ESCAPE '\\' "
            "ORDER BY study_id = ? DESC, study_id LIMIT 3", (key, escaped + "%", key))
        if not key or not rows:
            raise StoreError(f"No study {key or '(empty id)'} in store {self.path}; "
                             f"`twinrun studies` lists the studies it holds.")
        if len(rows) > 1 and rows[0]["study_id"] != key:
            shown = ", ".join(row["study_id"] for row in rows[:2])
            raise StoreError(f"Study id prefix {key} matches several studies in store "
                             f"{self.path} ({shown}, ...); give more characters.")
        study = _with_status_word(dict(rows[0]))
        study["definition"] = from_json(study["definition"])
        study["options"] = from_json(study["options"]) or {}
        study.pop("owner", None)
        return study

    def list_studies(self, limit=None):
        """Summaries of the stored studies, newest first, each with its run counts.

        Returns dicts with the keys in `STUDY_FIELDS` plus `finished` and `failed`.
        """
        sql = (f"SELECT {', '.join('s.' + f for f in STUDY_FIELDS)}, "
               "(SELECT COUNT(*) FROM runs r WHERE r.study_id = s.study_id "
               " AND r.study_key IS NOT NULL AND r.status = 'finished') AS finished, "
               "(SELECT COUNT(*) FROM runs r WHERE r.study_id = s.study_id "
               " AND r.study_key IS NOT NULL AND r.status IN ('failed', 'stopped')) AS failed "
               "FROM studies s ORDER BY s.created_at DESC, s.study_id DESC")
        params = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [_with_status_word(dict(row)) for row in self._read(sql, params)]

    # -- a study's runs ------------------------------------------------------------------------

    def begin_study_run(self, study_id, study_key, *, replica, workload, backend, seed, config,
                        seeds):
        """Take planned run `study_key` of `study_id` for this process; return its new run id.

        Arguments:
            study_id, study_key: the study and the planned run's key.
            replica: the planned run's position (kept as the run's `replica`).
            workload, backend, seed, config, seeds: as for `start_run`.

        Raises `StudyRunTaken` when the key is already finished, or is running in a process
        that is still alive. A failed or stopped earlier attempt is replaced (deleted with its
        epochs and predictions), so the study holds one row per planned run.

        Example:

            run_id = store.begin_study_run("variance-0a1b2c3d4e", "init/0", replica=0,
                                           workload="fashion-cnn", backend="jax", seed=0,
                                           config=config.to_dict(), seeds=config.seeds)
        """
        preset = config.get("preset") if isinstance(config, dict) else None
        values = {"status": "running", "workload": workload, "backend": backend,
                  "seed": to_scalar(seed), "preset": None if preset is None else str(preset),
                  "study_id": study_id, "study_key": study_key, "replica": to_scalar(replica),
                  "epochs_trained": 0, "config": to_json(config), "seeds": to_json(seeds),
                  "owner": this_process()}

        def take(conn):
            old = conn.execute("SELECT run_id, status, owner FROM runs WHERE study_id = ? "
                               "AND study_key = ?", (study_id, study_key)).fetchone()
            if old is not None:
                if old["status"] == "finished":
                    raise StudyRunTaken(f"Run {study_key} of study {study_id} is already "
                                        f"finished ({old['run_id']}).")
                if old["status"] == "running" and owner_alive(old["owner"]):
                    raise StudyRunTaken(f"Run {study_key} of study {study_id} is being run by "
                                        f"another process ({old['owner']}).")
                conn.execute("DELETE FROM runs WHERE run_id = ?", (old["run_id"],))
            for _ in range(20):
                now = utc_now()
                row = dict(values, run_id=new_run_id(now), created_at=now.isoformat())
                exists = conn.execute("SELECT 1 FROM runs WHERE run_id = ?",
                                      (row["run_id"],)).fetchone()
                if exists is None:
                    conn.execute(f"INSERT INTO runs ({', '.join(row)}) "
                                 f"VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
                    return row["run_id"]
            raise StoreError(f"Could not find a free run id in the run store at {self.path}.")

        return self._write(take)

    def finish_study_run(self, run_id, *, fingerprint, metrics, epochs_trained, wall_time,
                         history=(), predictions=None, environment=None, determinism=None,
                         backend=None, extra=None):
        """Record everything a study run produced, in one transaction, and mark it finished.

        Arguments:
            run_id: the id `begin_study_run` returned.
            fingerprint: the final weights' digest.
            metrics: the final metrics (`test_accuracy` is also kept as a column).
            epochs_trained, wall_time: as for `finish_run`.
            history: one dict per epoch, each with its `epoch` number (from 1).
            predictions: the test predictions (see `prediction_bytes`), or None.
            environment, determinism: the run's environment fingerprint and determinism
                report, as the worker saw them.
            backend: the backend the run used, when it differs from the one begun with.
            extra: anything else worth keeping.
        """
        classes = None if predictions is None else prediction_bytes(predictions)
        row = {"status": "finished", "finished_at": utc_now().isoformat(),
               "fingerprint": fingerprint, "metrics": to_json(metrics),
               "test_accuracy": test_accuracy(metrics),
               "epochs_trained": to_scalar(epochs_trained), "wall_time": to_float(wall_time),
               "extra": to_json(extra), "error": None}
        for column, value in (("environment", environment), ("determinism", determinism)):
            if value is not None:
                row[column] = to_json(value)
        if backend is not None:
            row["backend"] = backend
        epochs = [(int(record.get("epoch", index + 1)),
                   to_json({k: v for k, v in record.items() if k != "epoch"}))
                  for index, record in enumerate(history or ())]

        def finish(conn):
            self._require_run(conn, run_id)
            now = utc_now().isoformat()
            for epoch, text in epochs:
                conn.execute(
                    "INSERT INTO epochs (run_id, epoch, recorded_at, metrics) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (run_id, epoch) DO UPDATE SET "
                    "recorded_at = excluded.recorded_at, metrics = excluded.metrics",
                    (run_id, epoch, now, text))
            if classes is not None:
                conn.execute("INSERT OR REPLACE INTO predictions (run_id, n_test, classes) "
                             "VALUES (?, ?, ?)", (run_id, len(classes), classes))
            assignments = ", ".join(f"{column} = ?" for column in row)
            conn.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?",
                         (*row.values(), run_id))

        self._write(finish)

    def study_runs(self, study_id, *, with_predictions=False):
        """Every run of a study that has a planned key, in plan order.

        Arguments:
            study_id: the study's full id.
            with_predictions: add `predictions` (bytes, or None where none were kept).

        Returns dicts with the keys in `STUDY_RUN_FIELDS` (JSON columns decoded).
        """
        columns = ", ".join(f"r.{name}" for name in STUDY_RUN_FIELDS)
        if with_predictions:
            sql = (f"SELECT {columns}, p.classes AS predictions FROM runs r "
                   "LEFT JOIN predictions p ON p.run_id = r.run_id")
        else:
            sql = f"SELECT {columns} FROM runs r"
        sql += " WHERE r.study_id = ? AND r.study_key IS NOT NULL ORDER BY r.replica, r.run_id"
        runs = []
        for row in self._read(sql, (study_id,)):
            run = dict(row)
            for column in ("metrics", "environment", "seeds", "config"):
                run[column] = from_json(run[column])
            if with_predictions and run["predictions"] is not None:
                run["predictions"] = bytes(run["predictions"])
            runs.append(run)
        return runs

    def finished_study_keys(self, study_id):
        """The keys of a study's finished runs: what a resume does not run again."""
        rows = self._read("SELECT study_key FROM runs WHERE study_id = ? AND study_key IS NOT "
                          "NULL AND status = 'finished'", (study_id,))
        return {row["study_key"] for row in rows}

    def get_predictions(self, run_id):
        """A run's test predictions as bytes (one class per test image), or None."""
        rows = self._read("SELECT classes FROM predictions WHERE run_id = ?", (run_id,))
        return bytes(rows[0]["classes"]) if rows else None

    def _end_orphaned_studies(self):
        """Mark `incomplete` the running studies whose driver on this host has ended."""
        try:
            rows = self._read("SELECT study_id, owner FROM studies WHERE status = 'running'")
        except StoreError:
            return
        orphans = [(row["study_id"], row["owner"]) for row in rows
                   if row["owner"] and not owner_alive(row["owner"])]
        if not orphans:
            return

        def update(conn):
            for study_id, owner in orphans:
                conn.execute("UPDATE studies SET status = 'incomplete', owner = NULL, "
                             "updated_at = ? WHERE study_id = ? AND status = 'running' "
                             "AND owner = ?", (utc_now().isoformat(), study_id, owner))

        try:
            self._write(update)
        except StoreError:
            pass  # a read-only store is still readable


def _with_status_word(study):
    """`study` with its status in today's word: `complete` (before schema 4) is `finished`."""
    if study.get("status") == "complete":
        study["status"] = "finished"
    return study
