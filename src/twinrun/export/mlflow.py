"""Copy stored runs, checks and studies into an MLflow tracking store.

    with Store("twinrun-runs", create=False) as store:
        export_records(store, ["check-20261128-065937-54d3dc"])   # into sqlite:///mlflow.db

A run becomes one MLflow run; a check becomes a parent run carrying the verdict with its
replicas' runs nested under it (`mlflow.parentRunId`), and a study a parent carrying its
summary with the study's runs nested under it. `twinrun.export.fields` says what each holds.

Exporting is idempotent: every MLflow run carries `twinrun.record_id` and is looked up by it
before one is created, nested runs too, so a second export adds nothing. A run is complete
once it carries `twinrun.exported`, its last write; an export that died half way left runs
without it, and the next export replaces them. Two exports racing to create the same record
both keep the older MLflow run of the two and delete their own.

MLflow is an optional extra (`pip install 'twinrun[mlflow]'`) and is imported only here, only
when exporting.
"""

import contextlib
import logging
import os
from pathlib import Path

from twinrun.errors import StoreError, TwinrunError
from twinrun.export.fields import check_fields, run_fields, study_fields

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
EXPERIMENT_NAME = "twinrun"
RECORD_TAG = "twinrun.record_id"
COMPLETE_TAG = "twinrun.exported"
PARENT_TAG = "mlflow.parentRunId"
INSTALL_HINT = ("MLflow is not installed; install it with `pip install 'twinrun[mlflow]'` "
                "(mlflow-skinny with SQLAlchemy and Alembic) and export again.")

# MLflow's HTTP client retries a refused connection 7 times with a backoff factor of 2 (over
# four minutes) before it says anything; an export that cannot reach its server should say so
# sooner. A user's own settings of these variables win.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
# The tracking-store schemes MLflow's client knows (mlflow.tracking._tracking_service.utils).
_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file", "databricks",
            "databricks-uc", "uc")
# Batch limits of MLflow's log_batch (mlflow.utils.validation).
_MAX_METRICS = 1000
_MAX_PARAMS_TAGS = 100


def export_records(store, record_ids, tracking_uri=None, experiment=EXPERIMENT_NAME,
                   option="--tracking-uri"):
    """Export stored runs, checks and studies to MLflow; return one summary per record.

    Arguments:
        store: an open `twinrun.store.Store`.
        record_ids: run ids, check ids (`check-...`) or study ids, or prefixes that match only
            one; each is found before anything is exported.
        tracking_uri: the MLflow tracking store; default `sqlite:///mlflow.db` in the current
            folder. A SQLite store keeps its artifacts in `mlartifacts/` beside the database.
        experiment: the MLflow experiment (created if missing).
        option: the option that gave `tracking_uri`, named in the error sentences
            (`--mlflow` when a command exports what it just recorded).

    Returns one dict per record, in order: `record_id` (the full id), `kind` (run, check or
    study), `mlflow_run_id`, `created` (False when it was already exported), `children` (its
    nested runs) and `children_created` (how many of them this call created).

    Raises `TwinrunError` (one sentence) for an unknown id, a missing MLflow, or a tracking
    store that cannot be reached or used.

    Example:

        with Store(create=False) as store:
            [summary] = export_records(store, [run_id], "sqlite:////tmp/mlflow.db")
            summary["mlflow_run_id"]
    """
    records = []
    for record_id in record_ids:
        found = find_record(store, record_id)
        if found not in records:
            records.append(found)
    uri = tracking_uri or DEFAULT_TRACKING_URI
    with _mlflow_errors(uri, option):
        _import_mlflow()  # first: importing MLflow sets up its loggers, which _quiet then quiets
        with _quiet("mlflow", "alembic"):
            session = _Session(uri, experiment, option)
            return [_EXPORTERS[kind](session, store, key) for kind, key in records]


def find_record(store, record_id):
    """`(kind, full_id)` of a stored run, check or study; one sentence when none matches."""
    key = str(record_id).strip()
    if key.startswith("check-"):
        return "check", store.get_check(key)["check_id"]
    try:
        return "run", store.resolve_run_id(key)
    except StoreError as run_error:
        if "matches several" in str(run_error):
            raise
    try:
        return "study", store.get_study(key)["study_id"]
    except StoreError as study_error:
        if "matches several" in str(study_error):
            raise
    raise TwinrunError(f"No run, check or study {key or '(empty id)'} in store {store.path}; "
                       f"`twinrun runs`, `twinrun checks` and `twinrun studies` list them.")


def sqlite_path(tracking_uri):
    """The database file of a `sqlite:///` tracking URI, or None for other URIs.

    Example:
    >>> sqlite_path("sqlite:///mlflow.db").name
    'mlflow.db'
    >>> sqlite_path("http://127.0.0.1:5000") is None
    True
    """
    if not str(tracking_uri).startswith("sqlite:///"):
        return None
    return Path(str(tracking_uri)[len("sqlite:///"):]).expanduser().absolute()


# -- the three kinds of record ------------------------------------------------------------------

def _export_run(session, store, run_id, parent=None):
    run = store.get_run(run_id)
    fields = run_fields(run, run.get("history") or _trace_epochs(store, run))
    mlflow_id, created = session.ensure(run_id, fields, parent=parent)
    return {"record_id": run_id, "kind": "run", "mlflow_run_id": mlflow_id, "created": created,
            "children": 0, "children_created": 0}


def _export_check(session, store, check_id):
    import json

    check = store.get_check(check_id)
    try:
        verdict = json.loads(check["result"])
    except (TypeError, ValueError):
        verdict = {"unreadable": "the stored verdict is not JSON"}
    summary = {key: value for key, value in check.items() if key != "result"}
    runs = [row["run_id"] for row in reversed(store.list_runs(check_id=check_id))]
    return _export_parent(session, store, check_id, "check",
                          check_fields(summary, verdict), runs)


def _export_study(session, store, study_id):
    study = store.get_study(study_id)
    rows = store.study_runs(study_id)
    counts = {"finished": sum(r["status"] == "finished" for r in rows),
              "failed": sum(r["status"] in ("failed", "stopped") for r in rows)}
    fields = study_fields(study, _study_summary(store, study), counts)
    return _export_parent(session, store, study_id, "study", fields,
                          [row["run_id"] for row in rows])


def _export_parent(session, store, record_id, kind, fields, run_ids):
    mlflow_id, created = session.ensure(record_id, fields)
    made = sum(_export_run(session, store, run_id, parent=mlflow_id)["created"]
               for run_id in run_ids)
    return {"record_id": record_id, "kind": kind, "mlflow_run_id": mlflow_id,
            "created": created, "children": len(run_ids), "children_created": made}


_EXPORTERS = {"run": _export_run, "check": _export_check, "study": _export_study}


def _trace_epochs(store, run):
    """The per-epoch metrics in a check replica's trace: a checked script's run keeps only its
    last epoch's metrics in the store, and its trace has them all."""
    replica, check_id = run.get("replica"), run.get("check_id")
    if replica is None or not str(check_id or "").startswith("check-"):
        return []
    # The check's folder as the store lays it out: the run's `artifacts` may be a path
    # relative to wherever `twinrun check` ran.
    path = Path(store.path) / "checks" / check_id / f"replica-{replica}.trace"
    if not path.is_file():
        return []
    from twinrun.trace import read_trace

    try:
        epochs = read_trace(path).epochs
    except (OSError, ValueError, TwinrunError):
        return []  # a damaged trace loses the curves, not the export
    return [{**(record.get("metrics") or {}), "epoch": record.get("epoch")}
            for record in epochs if isinstance(record, dict)]


def _study_summary(store, study):
    from twinrun.studies.results import cv_results, variance_results

    results = variance_results if study["kind"] == "variance" else cv_results
    try:
        return results(store, study["study_id"])
    except TwinrunError as error:
        return {"unavailable": str(error)}


# -- MLflow ------------------------------------------------------------------------------------

def _import_mlflow():
    try:
        import mlflow  # noqa: F401
        import sqlalchemy  # noqa: F401  (the SQLite store's, which mlflow-skinny leaves out)
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TwinrunError(INSTALL_HINT) from None
    return MlflowClient


def _scheme(uri):
    return uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else "file"


def validate_tracking_uri(uri, option="--mlflow", timeout=5.0):
    """Refuse, in one sentence, a tracking store an export could not write to, before the
    command that exports at its end runs anything.

    MLflow must be installed; a `sqlite:///` database's folder must exist and take a new file,
    and the database, if there, must be SQLite; a server (`http://`, `postgresql://`, ...) must
    answer within `timeout` seconds. Nothing is created, and MLflow is not imported (a second
    or more).

    Arguments:
        uri: the tracking URI.
        option: the option that gave it, named in the sentence.
        timeout: seconds to wait for a server.

    Example:

        validate_tracking_uri("http://127.0.0.1:5000")   # TwinrunError unless a server answers
    """
    import importlib.util

    scheme = _scheme(uri)
    if scheme not in _SCHEMES:
        raise TwinrunError(f"MLflow has no tracking store of the kind {uri} names; pass {option} "
                           f"sqlite:///mlflow.db (a file here), the http:// address of an MLflow "
                           f"server, or a database URI (postgresql://, mysql://).")
    needed = ("mlflow", "sqlalchemy") if scheme == "sqlite" else ("mlflow",)
    if any(importlib.util.find_spec(name) is None for name in needed):
        raise TwinrunError(INSTALL_HINT.replace(" and export again", f", or leave out {option}"))
    database = sqlite_path(uri)
    if database is not None:
        _validate_database(database, option)
    elif scheme in ("http", "https"):
        _validate_server(uri, option, timeout)
    elif scheme in _DATABASE_PORTS:
        _validate_database_server(uri, scheme, option, timeout)


# Default ports of the database servers MLflow can track into.
_DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


def _validate_database(database, option):
    import tempfile

    folder = database.parent
    if not folder.is_dir():
        raise TwinrunError(_missing_folder_sentence(database, option))
    try:
        # A real file: os.access says yes to root on a read-only mount.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".twinrun-write-check-"):
            pass
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise TwinrunError(f"Cannot write the MLflow database {database} ({reason}); pass "
                           f"another {option} URI.") from None
    if database.exists():
        try:
            with open(database, "rb") as opened:
                head = opened.read(16)
        except OSError as error:
            reason = (error.strerror or str(error)).lower()
            raise TwinrunError(f"Cannot read the MLflow database {database} ({reason}); pass "
                               f"another {option} URI.") from None
        if head and head != b"SQLite format 3\x00":
            raise TwinrunError(f"{database} is not a SQLite database, so MLflow cannot track "
                               f"into it; pass another {option} URI.")


def _missing_folder_sentence(database, option):
    folder = database.parent
    what = "is a file" if folder.exists() else "does not exist"
    return (f"Cannot create the MLflow database {database}: its folder {folder} {what}; "
            f"create the folder, or pass another {option} URI.")


def _validate_server(uri, option, timeout):
    import urllib.error
    import urllib.request

    # MLflow's own REST call. It answers 200, or an error in MLflow's JSON (404
    # RESOURCE_DOES_NOT_EXIST before the experiment exists); a login in front of it 401 or
    # 403. Any other answer comes from something that is not MLflow (a proxy, another site).
    probe = (uri.rstrip("/") + "/api/2.0/mlflow/experiments/get-by-name?experiment_name="
             + EXPERIMENT_NAME)
    try:
        with urllib.request.urlopen(probe, timeout=timeout):
            return
    except urllib.error.HTTPError as error:
        if error.code in (401, 403) or _mlflow_error_body(error):
            return
        raise TwinrunError(f"{uri} answered HTTP {error.code} to MLflow's REST API, so it is "
                           f"not an MLflow tracking server; pass the address of one (`mlflow "
                           f"server` prints it) with {option}.") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise TwinrunError(f"Cannot reach the MLflow tracking server {uri} ({_reason(reason)}); "
                           f"start it, or pass another {option} URI.") from None


def _mlflow_error_body(response):
    import json

    try:
        body = json.loads(response.read(64 * 1024) or b"null")
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and "error_code" in body


def _validate_database_server(uri, scheme, option, timeout):
    import socket
    import urllib.parse

    parts = urllib.parse.urlsplit(uri)
    try:
        host, port = parts.hostname or "localhost", parts.port or _DATABASE_PORTS[scheme]
        socket.create_connection((host, port), timeout=timeout).close()
    except (OSError, ValueError) as error:
        raise TwinrunError(f"Cannot reach the database server of the MLflow tracking store "
                           f"{uri} ({_reason(error)}); start it, or pass another {option} "
                           f"URI.") from None


def _reason(error):
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


class _Session:
    """An MLflow client on one tracking store and experiment, finding runs by record id."""

    def __init__(self, uri, experiment, option="--tracking-uri"):
        scheme = _scheme(uri)
        if scheme not in _SCHEMES:
            raise TwinrunError(f"MLflow has no tracking store of the kind {uri} names; pass "
                               f"{option} sqlite:///mlflow.db (a file here), the "
                               f"http:// address of an MLflow server, or a database URI "
                               f"(postgresql://, mysql://).")
        database = sqlite_path(uri)
        if database is not None and not database.parent.is_dir():
            raise TwinrunError(_missing_folder_sentence(database, option))
        with _folder_lock(None if database is None else database.parent):
            self._open(uri, experiment, database)

    def _open(self, uri, experiment, database):
        client_class = _import_mlflow()
        self.client = client_class(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            location = None
            if database is not None:
                location = (database.parent / "mlartifacts").as_uri()
            try:
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=location)
            except Exception:  # noqa: BLE001  (another export created it meanwhile)
                found = self.client.get_experiment_by_name(experiment)
                if found is None:
                    raise
                self.experiment_id = found.experiment_id
        else:
            self.experiment_id = found.experiment_id

    def find(self, record_id):
        """The active MLflow runs tagged with `record_id`, oldest first."""
        from mlflow.entities import ViewType

        quoted = record_id.replace("\\", "\\\\").replace("'", "\\'")
        runs = self.client.search_runs([self.experiment_id],
                                       filter_string=f"tags.`{RECORD_TAG}` = '{quoted}'",
                                       run_view_type=ViewType.ACTIVE_ONLY, max_results=1000)
        return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))

    def ensure(self, record_id, fields, parent=None):
        """The MLflow run of `record_id`, created from `fields` if there is none:
        `(mlflow_run_id, created)`. An existing run is moved under `parent` if it is not."""
        existing = self.find(record_id)
        complete = [run for run in existing if run.data.tags.get(COMPLETE_TAG)]
        if complete:
            run = complete[0]
            if parent is not None and run.data.tags.get(PARENT_TAG) != parent:
                self.client.set_tag(run.info.run_id, PARENT_TAG, parent)
            return run.info.run_id, False
        for stale in existing:  # left half-written by an export that died
            self.client.delete_run(stale.info.run_id)
        run_id = self._create(record_id, fields, parent)
        winners = [run for run in self.find(record_id) if run.data.tags.get(COMPLETE_TAG)]
        if not winners:  # a concurrent export took ours for a stale one and deleted it
            raise TwinrunError(f"Another export of {record_id} to the same MLflow store ran at "
                               f"the same time; export it again (nothing is duplicated).")
        winner = winners[0]
        if winner.info.run_id != run_id:
            self.client.delete_run(run_id)  # a concurrent export finished the same record
            return winner.info.run_id, False
        return run_id, True

    def _create(self, record_id, fields, parent):
        from mlflow.entities import Metric, Param, RunTag

        tags = {RECORD_TAG: record_id, "mlflow.runName": fields.name}
        if parent is not None:
            tags[PARENT_TAG] = parent
        run = self.client.create_run(self.experiment_id, start_time=fields.start_ms,
                                     tags=tags, run_name=fields.name)
        run_id = run.info.run_id
        stamp = fields.start_ms or 0
        metrics = [Metric(key, value, stamp, step) for key, value, step in fields.metrics]
        params = [Param(key, value) for key, value in fields.params.items()]
        run_tags = [RunTag(key, value) for key, value in fields.tags.items()]
        for i in range(0, len(metrics), _MAX_METRICS):
            self.client.log_batch(run_id, metrics=metrics[i:i + _MAX_METRICS])
        for i in range(0, max(len(params), len(run_tags)), _MAX_PARAMS_TAGS):
            self.client.log_batch(run_id, params=params[i:i + _MAX_PARAMS_TAGS],
                                  tags=run_tags[i:i + _MAX_PARAMS_TAGS])
        for name, value in fields.artifacts.items():
            self.client.log_dict(run_id, _jsonable(value), name)
        self.client.set_terminated(run_id, status=fields.status, end_time=fields.end_ms)
        self.client.set_tag(run_id, COMPLETE_TAG, "true")
        return run_id


@contextlib.contextmanager
def _folder_lock(folder):
    """Hold an exclusive lock on `folder` (nothing when None).

    MLflow creates a new SQLite store's tables on first use, and two processes doing that at
    once fail with "duplicate column name"; exports to one SQLite file open it one at a time.
    """
    if folder is None:
        yield
        return
    import fcntl

    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _jsonable(value):
    """`value` with what JSON cannot hold (bytes, NaN) made text, for MLflow's log_dict."""
    import json
    import math

    def clean(item):
        if isinstance(item, float) and not math.isfinite(item):
            return str(item)
        if isinstance(item, (bytes, bytearray, memoryview)):
            return bytes(item).hex()
        if isinstance(item, dict):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(v) for v in item]
        return item

    return json.loads(json.dumps(clean(value), default=str))


@contextlib.contextmanager
def _mlflow_errors(uri, option="--tracking-uri"):
    """MLflow's HTTP settings for an export, and its failures as one sentence each."""
    saved = {name: os.environ.get(name) for name in _HTTP_DEFAULTS}
    for name, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # twinrun asks MLflow to write, not to report usage to its makers.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        yield
    except TwinrunError:
        raise
    except Exception as error:  # noqa: BLE001  (MLflow, SQLAlchemy and requests all raise)
        raise TwinrunError(_failure_sentence(uri, error, option)) from error
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


@contextlib.contextmanager
def _quiet(*names):
    """MLflow's INFO lines (creating its tables, ...) left out of twinrun's output."""
    loggers = {name: logging.getLogger(name).level for name in names}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in loggers.items():
            logging.getLogger(name).setLevel(level)


def _failure_sentence(uri, error, option="--tracking-uri"):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[0] if lines else type(error).__name__
    if len(detail) > 300:
        detail = detail[:299] + "…"
    return (f"Could not export to the MLflow tracking store {uri} ({type(error).__name__}: "
            f"{detail}); check {option} (e.g. sqlite:///mlflow.db, or the address of a "
            f"running MLflow server) and try again.")
