"""The run store on SQLite: safe with several processes writing at once.

Layout of a store folder:

    runs.sqlite             the `runs`, `epochs` and `checks` tables, and the studies'
                            `studies` and `predictions` (see `twinrun.store.studies`)
    checks/<check_id>/      the files of one `twinrun check`: each replica's trace, weight
                            snapshots and whole log (`replica-N.log`)

Why it is safe to share:
- WAL journal: readers never block the writer and a killed writer loses only its open
  transaction, never a committed one.
- Every write is one `BEGIN IMMEDIATE` transaction, so it takes the write lock up front and
  waits (`busy_timeout`) instead of failing half way; a write that still meets a busy database
  is retried as a whole.
- Per-epoch rows are upserts keyed by (run_id, epoch): a retried write replaces, never
  duplicates.
- Run ids are the UTC start second plus 24 random bits, and the primary key rejects the rare
  collision, which is then retried with fresh bits.

The summary fields that `list_runs` shows are real columns (not only JSON), so listing a store of
thousands of runs reads one index.

A store can be copied or moved: the folders it records inside itself (a run's `artifacts`, a
check's `folder`) are kept relative to it. Records from before, which hold absolute paths,
are read relative to the store's current folder: a path into the old folder's `checks/` (in the
columns, a verdict's notes, a run's config) is read as the same place in this one.

No row stays `running` after its process has ended: the launcher marks a run it stopped, timed
out or saw fail as `stopped` or `failed`, with the reason. When the launcher itself is killed
(`kill -9`), nobody is left to do that, so each row names the process answerable for it
(`owner`: host, pid and the pid's start time of the launcher, or of the run's own process when
nothing launched it) and the next process that opens the store on that host marks the rows of
owners that no longer exist as `failed`.
"""

import errno
import os
import random
import re
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from twinrun.errors import StoreError
from twinrun.store.encoding import from_json, test_accuracy, to_float, to_json, to_scalar
from twinrun.store.location import STORE_ENV_VAR, default_store_path
from twinrun.store.owners import LAUNCHER_ENV_VAR, new_run_id, owner_alive, this_process, utc_now
from twinrun.store.studies import STUDY_SCHEMA, StudyRecords

DB_NAME = "runs.sqlite"
CHECKS_DIR = "checks"
SCHEMA_VERSION = 5
BUSY_TIMEOUT_S = 30.0

_NEXT_STEP = f"Pass --store DIR or set {STORE_ENV_VAR} to a writable folder."

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id          TEXT PRIMARY KEY,
    created_at      TEXT NOT NULL,
    finished_at     TEXT,
    status          TEXT NOT NULL,
    workload        TEXT,
    backend         TEXT,
    seed            INTEGER,
    preset          TEXT,
    study_id        TEXT,
    check_id        TEXT,
    replica         INTEGER,
    epochs_trained  INTEGER,
    test_accuracy   REAL,
    fingerprint     TEXT,
    wall_time       REAL,
    error           TEXT,
    config          TEXT,
    seeds           TEXT,
    determinism     TEXT,
    environment     TEXT,
    metrics         TEXT,
    extra           TEXT,
    owner           TEXT,
    artifacts       TEXT
);
CREATE INDEX IF NOT EXISTS runs_created_at ON runs (created_at, run_id);
CREATE INDEX IF NOT EXISTS runs_study_id ON runs (study_id);
CREATE TABLE IF NOT EXISTS epochs (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    epoch       INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    metrics     TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
"""

# Version 2: who owns a running row, where a run's files are, and the checks' verdicts.
_SCHEMA_2 = """
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN artifacts TEXT;
"""
_SCHEMA_CHECKS = """
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS checks (
    check_id        TEXT PRIMARY KEY,
    created_at      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    label           TEXT NOT NULL,
    verdict         TEXT NOT NULL,
    replicas        INTEGER NOT NULL,
    steps_compared  INTEGER,
    folder          TEXT,
    result          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checks_created_at ON checks (created_at, check_id);
"""

# Version 4: a check's replicas name their check in `check_id` (they carried it as `study_id`),
# and a study that ended well is `finished`, as a run is (it was `complete`). Both move in place.
_SCHEMA_4 = """
ALTER TABLE runs ADD COLUMN check_id TEXT;
UPDATE runs SET check_id = study_id, study_id = NULL WHERE study_id LIKE 'check-%';
UPDATE studies SET status = 'finished' WHERE status = 'complete'
"""
_INDEX_4 = "CREATE INDEX IF NOT EXISTS runs_check_id ON runs (check_id)"


def _count_epochs_from_1(conn):
    """Version 5: a verdict's `first_divergence.epoch` counts from 1, as every other epoch in
    twinrun does; a check recorded before counted it from 0. Each stored verdict is rewritten
    as `twinrun check --json` prints it today, everything else in it kept as it was."""
    import json

    rows = conn.execute("SELECT check_id, result FROM checks").fetchall()
    for check_id, result in rows:
        try:
            verdict = json.loads(result)
        except ValueError:
            continue
        divergence = verdict.get("first_divergence") if isinstance(verdict, dict) else None
        epoch = divergence.get("epoch") if isinstance(divergence, dict) else None
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            divergence["epoch"] = epoch + 1
            conn.execute("UPDATE checks SET result = ? WHERE check_id = ?",
                         (json.dumps(verdict), check_id))

# The statuses a run goes through: running, then one of the others.
STATUSES = ("running", "finished", "failed", "stopped")

# What `list_runs` returns for each run, in this order.
SUMMARY_FIELDS = (
    "run_id",
    "created_at",
    "status",
    "workload",
    "backend",
    "seed",
    "preset",
    "study_id",
    "check_id",
    "replica",
    "epochs_trained",
    "test_accuracy",
    "fingerprint",
    "wall_time",
    "finished_at",
)
CHECK_FIELDS = ("check_id", "created_at", "kind", "label", "verdict", "replicas",
                "steps_compared", "folder")
_FILTERABLE = ("status", "workload", "backend", "seed", "preset", "study_id", "check_id",
               "replica", "fingerprint")
_JSON_COLUMNS = ("config", "seeds", "determinism", "environment", "metrics", "extra")


# An absolute path into a store's checks folder: `<root>/checks/check-...`; group 1 is the root.
_OLD_ROOT = re.compile(r"(/[^\"\s]*?)/" + CHECKS_DIR + r"/check-")


def _old_root(path):
    """The store folder an absolute path into its `checks/` lies under, or None.

    Example:
    >>> _old_root("/home/a/twinrun-runs/checks/check-20261202-003243-7bc40a")
    '/home/a/twinrun-runs'
    """
    match = _OLD_ROOT.match(path)
    return match.group(1) if match else None


def _varied_seeds(config):
    """The seeds a run's config sets apart from its run seed: a study's varied seeds."""
    if not isinstance(config, dict):
        return {}
    varied = dict(config.get("seed_overrides") or {})
    for name in ("split_seed", "perturb_seed"):
        if config.get(name) is not None:
            varied[name] = config[name]
    return varied


def _epoch_record(epoch, metrics):
    return {"epoch": epoch, **metrics} if isinstance(metrics, dict) else {"epoch": epoch, "value": metrics}


def store_exists(path=None):
    """True when `path` (default: `default_store_path()`) already holds a run store database."""
    path = Path(path).expanduser() if path is not None else default_store_path()
    return (path / DB_NAME).is_file()


class Store(StudyRecords):
    """A folder of runs, shared safely between processes.

    Arguments:
        path: the store folder; default `$TWINRUN_STORE`, else `./twinrun-runs`.
        create: when False, a missing store is an error instead of being created (for commands
            that only read).

    Raises `StoreError` (one sentence, with the next step) when the folder cannot be created or
    written, is a file, or holds a database that is corrupt or from a newer twinrun.

    Example:

        with Store("/tmp/runs") as store:
            for run in store.list_runs(limit=5):
                print(run["run_id"], run["status"])
    """

    def __init__(self, path=None, *, create=True):
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.db_path = self.path / DB_NAME
        self._lock = threading.Lock()
        self._conn = None
        self._pid = None
        if create:
            self._prepare_folder()
        elif self.path.is_file():
            raise StoreError(self._file_not_folder())
        elif not self.db_path.is_file():
            raise StoreError(
                f"There is no run store at {self.path}; `twinrun train` creates one there, "
                f"or pass --store DIR to read another."
            )
        self._connection()
        self._end_orphaned_runs()
        self._end_orphaned_studies()

    # -- opening -------------------------------------------------------------------------------

    def _cannot_write(self, error):
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        return StoreError(f"Cannot write the run store at {self.path}: {reason}. {_NEXT_STEP}")

    def _file_not_folder(self):
        if self.path.name == DB_NAME:
            return (f"{self.path} is the run store's database file; pass its folder instead: "
                    f"--store {self.path.parent}.")
        return (f"{self.path} is a file, not a run store folder; pass the folder that holds "
                f"{DB_NAME} (`twinrun train` creates one) with --store DIR.")

    def _prepare_folder(self):
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(
                f"Cannot use {self.path} as the run store: it is a file, not a folder. {_NEXT_STEP}"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            # Checked now, with a real file, because os.access says yes to root on a read-only
            # mount and a store that fails at the end of a long training loses the run.
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".write-check-"):
                pass
        except NotADirectoryError as error:
            raise StoreError(
                f"Cannot create the run store at {self.path}: a parent of it is a file, "
                f"not a folder. {_NEXT_STEP}"
            ) from error
        except OSError as error:
            raise self._cannot_write(error) from error
        if self.db_path.exists() and not os.access(self.db_path, os.R_OK | os.W_OK):
            raise self._cannot_write(OSError(errno.EACCES, "permission denied"))

    def _connection(self):
        """The open connection, reopened in a forked child (SQLite handles must not cross a fork)."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        conn = None
        try:
            conn = sqlite3.connect(
                self.db_path,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                check_same_thread=False,  # guarded by self._lock
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            # SQLite ignores REFERENCES ... ON DELETE CASCADE unless asked, per connection.
            conn.execute("PRAGMA foreign_keys = ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"The run store at {self.path} was written by a newer twinrun "
                    f"(schema {version}); upgrade twinrun or pass --store DIR."
                )
            if version < SCHEMA_VERSION:
                self._create_schema(conn)
            # NORMAL is durable against a killed process in WAL mode (only an OS crash can lose
            # the last commits) and avoids an fsync per epoch.
            conn.execute("PRAGMA synchronous = NORMAL")
        except (sqlite3.DatabaseError, StoreError) as error:
            if conn is not None:
                conn.close()
            if isinstance(error, StoreError):
                raise
            raise self._database_error(error) from error
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _create_schema(self, conn):
        def create():
            # Switching to WAL needs the database to itself; it is a no-op once done.
            self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version < SCHEMA_VERSION:
                    # A new store gets the whole schema; a version-1 store gets the columns and
                    # the table version 2 added, its runs kept as they are; a store older than
                    # version 3 gets its studies, study keys and predictions; and one older
                    # than version 4 moves its checks' ids out of `study_id` and its finished
                    # studies to `finished`; one older than version 5 counts its verdicts'
                    # epochs from 1 (`_count_epochs_from_1`). Under BEGIN IMMEDIATE, with the version read
                    # again inside: of two processes opening an old store at once, the second
                    # finds it migrated.
                    script = _SCHEMA if version == 0 else ""
                    script += _SCHEMA_2 if version == 1 else ""
                    if version < 3:
                        script += _SCHEMA_CHECKS + ";" + STUDY_SCHEMA
                    if 0 < version < 4:
                        script += ";" + _SCHEMA_4
                    script += ";" + _INDEX_4
                    # One statement at a time: executescript() would COMMIT our transaction.
                    for statement in script.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    if 0 < version < 5:
                        _count_epochs_from_1(conn)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self._retry_busy(create)

    def _database_error(self, error):
        message = str(error).lower()
        if isinstance(error, sqlite3.OperationalError):
            if "locked" in message or "busy" in message:
                return StoreError(
                    f"The run store at {self.path} stayed locked by another process for "
                    f"{BUSY_TIMEOUT_S:.0f} s; try again when it has finished."
                )
            if "readonly" in message or "unable to open" in message or "disk i/o" in message:
                return StoreError(f"Cannot write the run store at {self.path}: {error}. {_NEXT_STEP}")
        if "not a database" in message or "malformed" in message or "corrupt" in message:
            return StoreError(
                f"The run store database {self.db_path} is corrupt ({error}); move it aside and "
                f"start a new store, or pass --store DIR."
            )
        return StoreError(f"The run store at {self.path} could not be used: {error}. {_NEXT_STEP}")

    @staticmethod
    def _retry_busy(action):
        # busy_timeout covers most waits, but SQLite returns SQLITE_BUSY at once when waiting
        # could deadlock (e.g. two connections upgrading to WAL); retrying the whole step is safe.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.005
        while True:
            try:
                return action()
            except sqlite3.OperationalError as error:
                text = str(error).lower()
                if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (1 + random.random()))  # jitter: waiters do not collide again
                delay = min(delay * 2, 0.25)

    def _write(self, body):
        """Run `body(conn)` in one BEGIN IMMEDIATE transaction, retried as a whole when busy."""
        with self._lock:
            conn = self._connection()

            def transaction():
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = body(conn)
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

            try:
                return self._retry_busy(transaction)
            except sqlite3.DatabaseError as error:
                raise self._database_error(error) from error

    def _read(self, sql, params=()):
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
            except sqlite3.DatabaseError as error:
                raise self._database_error(error) from error

    def close(self):
        """Close the database connection; the store can be reopened with `Store(path)`."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"Store({str(self.path)!r})"

    # -- writing -------------------------------------------------------------------------------

    def start_run(self, *, workload, backend, seed, config, seeds, determinism, environment,
                  study_id=None, check_id=None, replica=None, artifacts=None, owner=None):
        """Record a new run with status "running" and return its id.

        Arguments:
            workload: the workload's name, e.g. `"fashion-cnn"`.
            backend: `"tensorflow"`, `"jax"`, `"torch"` (or another name the caller uses).
            seed: the run's main seed.
            config, seeds, determinism, environment: dicts stored as JSON; `config["preset"]`
                is also kept as a column for listing.
            study_id, replica: set when the run belongs to a study (`replica`: its position).
            check_id, replica: set when the run is one of a check's replicas.
            artifacts: the folder that holds the run's files (trace, snapshots, log), if any.
            owner: the process answerable for the row (`this_process()` of it); default
                `$TWINRUN_LAUNCHER` (the launcher that started this process, which marks the
                row if this process ends without finishing it), else this process. Once the
                owner has ended, the next `Store` opened on this host marks a row still
                `running` as failed.

        Example:

            run_id = store.start_run(workload="answer-demo", backend="torch", seed=1, config={},
                                     seeds={"python": 1}, determinism={}, environment={})
        """
        preset = config.get("preset") if isinstance(config, dict) else None
        values = {
            "status": "running",
            "workload": workload,
            "backend": backend,
            "seed": to_scalar(seed),
            "preset": None if preset is None else str(preset),
            "study_id": study_id,
            "check_id": check_id,
            "replica": to_scalar(replica),
            "epochs_trained": 0,
            "config": to_json(config),
            "seeds": to_json(seeds),
            "determinism": to_json(determinism),
            "environment": to_json(environment),
            "owner": owner or os.environ.get(LAUNCHER_ENV_VAR) or this_process(),
            "artifacts": self._inside(artifacts),
        }

        def insert(conn):
            for _ in range(20):
                now = utc_now()
                run_id = new_run_id(now)
                row = dict(values, run_id=run_id, created_at=now.isoformat())
                try:
                    conn.execute(
                        f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                        tuple(row.values()),
                    )
                    return run_id
                except sqlite3.IntegrityError:
                    continue  # same second, same 24 random bits: draw again
            raise StoreError(f"Could not find a free run id in the run store at {self.path}.")

        return self._write(insert)

    def _require_run(self, conn, run_id):
        if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise self._unknown_run(run_id)

    def record_epoch(self, run_id, epoch, metrics):
        """Store the metrics of one epoch; writing the same epoch again replaces it.

        Arguments:
            run_id: the id `start_run` returned.
            epoch: the epoch number (any integer numbering, kept as given).
            metrics: e.g. `{"loss": 0.41, "val_loss": 0.45, "accuracy": 0.86}`.
        """
        epoch = to_scalar(epoch)
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise TypeError(f"Expected `epoch` to be an integer. Received: epoch={epoch!r} "
                            f"(of type {type(epoch)})")
        metrics_json = to_json(metrics)

        def upsert(conn):
            self._require_run(conn, run_id)
            conn.execute(
                "INSERT INTO epochs (run_id, epoch, recorded_at, metrics) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run_id, epoch) DO UPDATE SET "
                "recorded_at = excluded.recorded_at, metrics = excluded.metrics",
                (run_id, epoch, utc_now().isoformat(), metrics_json),
            )
            # Keeps `twinrun runs` showing progress while the run is still going.
            conn.execute(
                "UPDATE runs SET epochs_trained = "
                "(SELECT COUNT(*) FROM epochs WHERE run_id = ?) "
                "WHERE run_id = ? AND status = 'running'",
                (run_id, run_id),
            )

        self._write(upsert)

    def finish_run(self, run_id, *, fingerprint, metrics, epochs_trained, wall_time, extra=None,
                   **learned):
        """Mark `run_id` finished with its weight fingerprint and final metrics.

        Arguments:
            fingerprint: the digest of the final weights.
            metrics: final metrics; `test_accuracy` (or `test_acc`, or `test.accuracy`) is also
                kept as a column for listing.
            epochs_trained: how many epochs actually ran (early stopping may end sooner).
            wall_time: seconds the training took.
            extra: anything else worth keeping, as a JSON-compatible dict.
            **learned: `backend` and `environment`, when they were learned only as the run
                went (a user's script reports them in its trace).
        """
        row = {
            "status": "finished",
            "finished_at": utc_now().isoformat(),
            "fingerprint": fingerprint,
            "metrics": to_json(metrics),
            "test_accuracy": test_accuracy(metrics),
            "epochs_trained": to_scalar(epochs_trained),
            "wall_time": to_float(wall_time),
            "extra": to_json(extra),
            "error": None,
            **self._learned(learned),
        }
        self._update(run_id, row)

    def fail_run(self, run_id, message):
        """Mark `run_id` failed, keeping `message` (one sentence saying what went wrong)."""
        self._update(run_id, {"status": "failed", "finished_at": utc_now().isoformat(),
                              "error": str(message)})

    def end_unfinished_run(self, run_id, status, reason, *, fingerprint=None, **learned):
        """Mark a run that is still `running` as `stopped` or `failed`, keeping `reason`.

        For launchers, after the run's process ended: a run the process finished (or failed)
        itself keeps what it recorded. Returns True when the row was changed.

        Arguments:
            status: `"stopped"` (ended on purpose) or `"failed"`.
            reason: why, e.g. `"twinrun was stopped by SIGTERM"`.
            fingerprint, **learned: what is known of the run so far (`backend`,
                `environment`, `epochs_trained`, `wall_time`).
        """
        if status not in ("stopped", "failed"):
            raise ValueError(f"Expected status 'stopped' or 'failed'. Received: {status!r}")
        row = {"status": status, "finished_at": utc_now().isoformat(), "error": str(reason),
               **self._learned(learned)}
        if fingerprint is not None:
            row["fingerprint"] = fingerprint

        def update(conn):
            self._require_run(conn, run_id)
            assignments = ", ".join(f"{column} = ?" for column in row)
            return conn.execute(
                f"UPDATE runs SET {assignments} WHERE run_id = ? AND status = 'running'",
                (*row.values(), run_id)).rowcount > 0

        return self._write(update)

    @staticmethod
    def _learned(values):
        known = {"backend": to_scalar, "environment": to_json, "epochs_trained": to_scalar,
                 "wall_time": to_float}
        unknown = set(values) - set(known)
        if unknown:
            raise TypeError(f"Unexpected fields {sorted(unknown)}; expected some of "
                            f"{sorted(known)}.")
        return {name: known[name](value) for name, value in values.items() if value is not None}

    def _end_orphaned_runs(self):
        """Mark `failed` the running rows whose owning process on this host has ended."""
        try:
            rows = self._read("SELECT run_id, owner FROM runs WHERE status = 'running'")
        except StoreError:
            return
        orphans = [(row["run_id"], row["owner"]) for row in rows
                   if row["owner"] and not owner_alive(row["owner"])]
        if not orphans:
            return
        reason = ("its process ended without finishing the run (killed, or its launcher was); "
                  "found by the next twinrun that opened the store")

        def update(conn):
            for run_id, owner in orphans:
                conn.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ? "
                             "WHERE run_id = ? AND status = 'running' AND owner = ?",
                             (reason, utc_now().isoformat(), run_id, owner))

        try:
            self._write(update)
        except StoreError:
            pass  # a read-only store is still readable; the rows stay for a writer to mark

    def _update(self, run_id, row):
        def update(conn):
            self._require_run(conn, run_id)
            assignments = ", ".join(f"{column} = ?" for column in row)
            conn.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?",
                         (*row.values(), run_id))

        self._write(update)

    # -- reading -------------------------------------------------------------------------------

    def list_runs(self, limit=None, **filters):
        """Summaries of the stored runs, newest first.

        Arguments:
            limit: at most this many runs (None: all).
            **filters: equality filters on summary columns (`status`, `workload`, `backend`,
                `seed`, `preset`, `study_id`, `check_id`, `replica`, `fingerprint`); a list or
                tuple means "any of these", None means "not set".

        Returns a list of dicts with the keys in `SUMMARY_FIELDS`, and `varied_seeds`: the
        seeds a study varied in this run (`{"init": 939939579}`, `{"split_seed": 17}`; empty
        for a run that varied none), named as in its config.

        Example:

            store.list_runs(limit=10, backend="jax", status="finished")
        """
        where, params = self._where(filters)
        sql = f"SELECT {', '.join(SUMMARY_FIELDS)}, config FROM runs{where}"
        sql += " ORDER BY created_at DESC, run_id DESC"
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"Expected `limit` to be a non-negative integer or None. "
                                 f"Received: limit={limit!r}")
            sql += " LIMIT ?"
            params.append(limit)
        summaries = []
        for row in self._read(sql, params):
            summary = dict(row)
            summary["varied_seeds"] = _varied_seeds(from_json(summary.pop("config")))
            summaries.append(summary)
        return summaries

    def count_runs(self, **filters):
        """How many runs match `filters` (the same filters as `list_runs`)."""
        where, params = self._where(filters)
        return self._read(f"SELECT COUNT(*) FROM runs{where}", params)[0][0]

    @staticmethod
    def _where(filters):
        clauses, params = [], []
        for name, value in filters.items():
            if name not in _FILTERABLE:
                raise ValueError(f"Expected a filter among {', '.join(_FILTERABLE)}. "
                                 f"Received: {name}={value!r}")
            if value is None:
                clauses.append(f"{name} IS NULL")
            elif isinstance(value, (list, tuple, set, frozenset)):
                values = [to_scalar(v) for v in value]
                clauses.append(f"{name} IN ({', '.join('?' * len(values))})" if values else "0")
                params.extend(values)
            else:
                clauses.append(f"{name} = ?")
                params.append(to_scalar(value))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def record_ids(self):
        """Every run, check and study id in the store: the ids a shortened id must stay
        unique among, for `show`, `report` and `diff` to take it."""
        ids = [row[0] for row in self._read("SELECT run_id FROM runs")]
        ids += [row[0] for row in self._read("SELECT check_id FROM checks")]
        ids += [row[0] for row in self._read("SELECT study_id FROM studies")]
        return ids

    def _unknown_run(self, run_id):
        return StoreError(f"No run {run_id} in store {self.path}; `twinrun runs` lists them.")

    def resolve_run_id(self, run_id_or_prefix):
        """The full id of the one run whose id is, or starts with, `run_id_or_prefix`."""
        key = str(run_id_or_prefix).strip()
        if not key:
            raise StoreError("Give a run id (or its first characters); `twinrun runs` lists them.")
        if self._read("SELECT 1 FROM runs WHERE run_id = ?", (key,)):
            return key
        escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._read(
            "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY run_id LIMIT 3",
            (escaped + "%",),
        )
        if not rows:
            raise self._unknown_run(key)
        if len(rows) > 1:
            shown = ", ".join(row["run_id"] for row in rows[:2])
            raise StoreError(
                f"Run id prefix {key} matches several runs in store {self.path} ({shown}, ...); "
                f"give more characters."
            )
        return rows[0]["run_id"]

    def get_run(self, run_id):
        """The full record of one run, with its per-epoch `history` ordered by epoch.

        Arguments:
            run_id: the run id, or a prefix of it that matches exactly one run.

        Raises `StoreError` when no run, or more than one, matches.

        Example:

            run = store.get_run("20240501-1200")
            losses = [epoch["loss"] for epoch in run["history"]]
        """
        full_id = self.resolve_run_id(run_id)
        rows = self._read("SELECT * FROM runs WHERE run_id = ?", (full_id,))
        if not rows:
            raise self._unknown_run(full_id)
        run = dict(rows[0])
        for column in _JSON_COLUMNS:
            run[column] = from_json(self._moved(run[column]))
        run["error"] = self._moved(run.get("error"))
        run["artifacts"] = self._located(run.get("artifacts"))
        history = self._read(
            "SELECT epoch, metrics FROM epochs WHERE run_id = ? ORDER BY epoch", (full_id,)
        )
        run["history"] = [_epoch_record(row["epoch"], from_json(row["metrics"])) for row in history]
        run.pop("owner", None)
        artifacts = run.get("artifacts")
        if artifacts and not (Path(artifacts).is_dir() and any(Path(artifacts).iterdir())):
            run["artifacts"] = None  # moved or deleted: never point at an empty folder
        return run

    # -- paths inside the store: kept relative, read from where the store is now ---------------

    def _inside(self, path):
        """`path` as the store keeps it: relative to the store folder when inside it."""
        if path is None:
            return None
        try:
            return str(Path(path).resolve().relative_to(self.path.resolve()))
        except ValueError:
            return str(path)

    def _located(self, stored):
        """A kept path as it is now: a relative one under this store; an absolute one into an
        old store folder's `checks/` at the same place in this store, when it is there (a
        copy) or the old one is gone (a move)."""
        if not stored:
            return stored
        path = Path(stored)
        if not path.is_absolute():
            return str(self.path / path)
        old_root = _old_root(str(path))
        if old_root is None:
            return str(path)
        here = self.path / path.relative_to(old_root)
        return str(here if here.exists() or not path.exists() else path)

    def _moved(self, text):
        """`text` (JSON or a sentence) with every path into another store folder's `checks/`
        (the folder this store was copied or moved from) pointing into this store instead."""
        if not text or CHECKS_DIR not in text:
            return text
        here = str(self.path)
        for old_root in sorted(set(_OLD_ROOT.findall(text)), key=len, reverse=True):
            if old_root != here and (self.path.joinpath(CHECKS_DIR).is_dir()
                                     or not Path(old_root, CHECKS_DIR).exists()):
                text = text.replace(old_root + "/" + CHECKS_DIR + "/",
                                    here + "/" + CHECKS_DIR + "/")
        return text

    # -- checks --------------------------------------------------------------------------------

    def check_dir(self, check_id):
        """The folder of one check's files (`<store>/checks/<check_id>/`), created if missing."""
        folder = self.path / CHECKS_DIR / check_id
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise self._cannot_write(error) from error
        return folder

    def record_check(self, check_id, *, kind, label, verdict, result, replicas,
                     steps_compared=None, folder=None):
        """Keep the verdict of one `twinrun check`.

        Arguments:
            check_id: the check's id (its replicas' runs carry it as `check_id`).
            kind: `"workload"`, `"command"` or `"function"`.
            label: what was checked, e.g. `"fashion-cnn"` or `"python train.py"`.
            verdict: `"identical"` or `"diverged"`.
            result: the verdict as JSON text, kept exactly as `twinrun check --json` printed it.
            replicas, steps_compared: for listing.
            folder: the check's folder of traces and logs.

        Example:

            store.record_check("check-20240501-120000-abcdef", kind="workload",
                               label="fashion-cnn", verdict="identical", result="{...}",
                               replicas=2, steps_compared=150)
        """
        row = {"check_id": check_id, "created_at": utc_now().isoformat(), "kind": kind,
               "label": str(label), "verdict": verdict, "replicas": to_scalar(replicas),
               "steps_compared": to_scalar(steps_compared),
               "folder": self._inside(folder), "result": result}

        def insert(conn):
            conn.execute(
                f"INSERT OR REPLACE INTO checks ({', '.join(row)}) "
                f"VALUES ({', '.join('?' * len(row))})", tuple(row.values()))

        self._write(insert)

    def list_checks(self, limit=None):
        """Summaries of the stored checks (the keys in `CHECK_FIELDS`), newest first."""
        sql = (f"SELECT {', '.join(CHECK_FIELDS)} FROM checks "
               f"ORDER BY created_at DESC, check_id DESC")
        params = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [dict(row) for row in self._read(sql, params)]

    def count_checks(self):
        return self._read("SELECT COUNT(*) FROM checks")[0][0]

    def get_check(self, check_id):
        """One stored check: its summary and `result`, the verdict JSON text as printed.

        Arguments:
            check_id: the check id, or a prefix of it that matches exactly one check.
        """
        key = str(check_id).strip()
        escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._read(
            "SELECT * FROM checks WHERE check_id = ? OR check_id LIKE ? ESCAPE '\\' "
            "ORDER BY check_id = ? DESC, check_id LIMIT 3", (key, escaped + "%", key))
        if not key or not rows:
            raise StoreError(f"No check {key} in store {self.path}; `twinrun checks` lists them.")
        if len(rows) > 1 and rows[0]["check_id"] != key:
            shown = ", ".join(row["check_id"] for row in rows[:2])
            raise StoreError(f"Check id prefix {key} matches several checks in store "
                             f"{self.path} ({shown}, ...); give more characters.")
        check = dict(rows[0])
        check["folder"] = self._located(check.get("folder"))
        check["result"] = self._moved(check.get("result"))
        return check
