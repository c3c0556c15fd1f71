"""What a report shows, gathered from the run store: one plain dict per record.

`load_report(store, record_id)` returns `{"kind": "run" | "check" | "study" | "compare", ...}`;
each format (`twinrun.report.html`, `twinrun.report.markdown`, JSON as it is) only lays that
dict out.

- a run: the stored record (`Store.get_run`) plus what the page marks: the last epoch trained
  (where early stopping ended it) and the epoch whose weights were restored (the best one), and
  the class names of its workload;
- a check: its summary, the verdict exactly as `twinrun check --json` printed it, and each
  replica's per-step batch loss read back from `<store>/checks/<id>/replica-N.trace`;
- a study: its record, its statistics exactly as `twinrun variance --json` or `twinrun cv
  --json` print them (`twinrun.studies.results`), and each finished run's value of the metric
  (for the per-source strip plots);
- a comparison of two studies (`load_report(store, A, against=B)`): what `twinrun compare A B
  --json` prints, and each arm's runs' values.
"""

import json
import re
from pathlib import Path

from twinrun.errors import StoreError, TwinrunError

_REPLICA_TRACE = re.compile(r"replica-(\d+)\.trace$")


def load_report(store, record_id, *, against=None, metric=None):
    """The data of one run's, check's or study's report, or of two studies compared.

    Arguments:
        store: an open `twinrun.store.Store`.
        record_id: a run id, a check id (`check-...`), a study id, or a prefix matching only
            one.
        against: a second study id: the report compares study `record_id` (A) with it (B).
        metric: a study's metric to report (default: the study's own).

    Raises `TwinrunError` (one sentence) when nothing matches.

    Example:

        with Store("twinrun-runs", create=False) as store:
            report = load_report(store, "check-20240501")
            report["verdict"]["first_divergence"]["step"]
    """
    key = str(record_id).strip()
    if against is not None:
        if not _is_study(store, key):
            raise TwinrunError(f"--against compares two studies, and {key} is not a study in "
                               f"store {store.path}; `twinrun studies` lists them.")
        return compare_report(store, key, str(against).strip(), metric=metric)
    if key.startswith("check-"):
        return check_report(store, key)
    try:
        return run_report(store, key)
    except StoreError:
        if _is_study(store, key):
            return study_report(store, key, metric=metric)
        if _looks_like_study_id(key):
            store.get_study(key)  # raises the sentence that points to `twinrun studies`
        raise


# A study id starts with its kind (`twinrun.studies.plan.study_id`): variance-..., cv-....
_STUDY_ID_PREFIXES = ("variance-", "cv-")


def _looks_like_study_id(key):
    return key.startswith(_STUDY_ID_PREFIXES)


def _is_study(store, key):
    get_study = getattr(store, "get_study", None)
    if get_study is None or not key:
        return False
    try:
        return bool(get_study(key))
    except (StoreError, TwinrunError):
        return False


def run_report(store, run_id):
    """The report data of one stored run (see the module docstring)."""
    run = store.get_run(run_id)
    metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    history = run.get("history") or []
    epochs = [e.get("epoch") for e in history if isinstance(e.get("epoch"), int)]
    return {
        "kind": "run",
        "run": run,
        "last_epoch": max(epochs) if epochs else run.get("epochs_trained"),
        "best_epoch": metrics.get("best_epoch"),
        "class_names": class_names(run),
    }


def class_names(run):
    """The names of the classes in a run's confusion matrix: the run's own when it stored
    them, Fashion-MNIST's for the built-in workload, else their indices."""
    metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    matrix = metrics.get("confusion_matrix") or []
    count = len(matrix)
    names = metrics.get("class_names")
    if isinstance(names, list) and len(names) == count:
        return [str(name) for name in names]
    if run.get("workload") == "fashion-cnn":
        from twinrun.workloads.fashion_mnist import CLASS_NAMES

        if len(CLASS_NAMES) == count:
            return list(CLASS_NAMES)
    return [str(i) for i in range(count)]


def check_report(store, check_id):
    """The report data of one stored check (see the module docstring)."""
    check = store.get_check(check_id)
    try:
        verdict = json.loads(check["result"])
    except (TypeError, ValueError) as error:
        raise TwinrunError(f"The stored verdict of {check['check_id']} is not JSON ({error}); "
                           f"run the check again.") from None
    folder = Path(check["folder"]) if check.get("folder") else None
    from twinrun.report.headline import with_reading

    return {
        "kind": "check",
        "check": {key: value for key, value in check.items() if key != "result"},
        "verdict": with_reading(verdict),
        "replica_losses": replica_losses(folder),
    }


def replica_losses(folder):
    """Each replica's per-step batch loss from the traces in a check's folder.

    Returns a list of `{"replica": n, "steps": [...], "loss": [...]}` in replica order (steps
    without a loss are left out); an empty list when the folder or its traces are gone.
    """
    if folder is None or not folder.is_dir():
        return []
    from twinrun.trace import read_trace

    found = []
    for path in folder.iterdir():
        match = _REPLICA_TRACE.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    curves = []
    for replica, path in sorted(found):
        trace = read_trace(path)
        losses, present = trace.steps.loss_column()
        steps = trace.steps.step_numbers()
        curves.append({"replica": replica,
                       "steps": [int(s) for s in steps[present]],
                       "loss": [float(v) for v in losses[present]]})
    return curves


def study_report(store, study_id, *, metric=None):
    """The report data of one stored study (see the module docstring)."""
    from twinrun.studies.results import cv_results, load_study, study_metric, variance_results

    loaded = load_study(store, study_id)
    metric = study_metric(loaded, metric)
    if loaded.plan.kind == "variance":
        results = variance_results(store, loaded.study_id, metric=metric)
        _name_unread_seeds(store, loaded.plan, results)
    else:
        results = cv_results(store, loaded.study_id, metric=metric)
    planned = {run.key: run for run in loaded.plan.runs}
    from twinrun.report.headline import study_reading

    return {
        "kind": "study",
        "study": loaded.study,
        "results": {"reading": study_reading(results), **results},
        "runs": [_run_value(run, planned[run["study_key"]], metric) for run in loaded.finished],
    }


def compare_report(store, study_a, study_b, *, metric=None):
    """The report data of study A compared with study B (see the module docstring)."""
    # compare_results picks each arm's runs; _arm_runs is the same choice, made again here so
    # the page can plot the very values the test compared.
    from twinrun.studies.results import _arm_runs, compare_results, load_study, study_metric
    from twinrun.studies.stats import metric_range, t_interval

    results = compare_results(store, study_a, study_b, metric=metric)
    arms = []
    for name, study in (("A", study_a), ("B", study_b)):
        loaded = load_study(store, study)
        runs, source = _arm_runs(loaded)
        arm_metric = study_metric(loaded, metric)
        planned = {run.key: run for run in loaded.plan.runs}
        values = [_run_value(run, planned[run["study_key"]], arm_metric) for run in runs]
        numbers = [v["value"] for v in values if v["value"] is not None]
        arms.append({"arm": name, "study": loaded.study, "source": source,
                     "metric": arm_metric, "runs": values,
                     "ci95": t_interval(numbers, bounds=metric_range(arm_metric)).to_list()
                     if len(numbers) > 1 else None})
    return {"kind": "compare", "compare": results, "arms": arms}


def _run_value(run, planned, metric):
    value = (run.get("metrics") or {}).get(metric)
    return {"key": run["study_key"], "source": planned.source, "run_id": run["run_id"],
            "value": float(value) if isinstance(value, (int, float))
            and not isinstance(value, bool) else None,
            "fingerprint": run.get("fingerprint"), "wall_time": run.get("wall_time")}


def _name_unread_seeds(store, plan, results):
    """A script study's sources whose seed the script never read, as `twinrun variance` says."""
    from twinrun.studies.scripts import name_unread_seeds

    name_unread_seeds(store, plan, results)


def load_diff(store_path, id_a, id_b):
    """Two stored runs, two stored checks or two reference files, compared
    (`twinrun.report.diff`): the dict `twinrun diff` prints.

    Arguments:
        store_path: the store folder of the runs and checks.
        id_a, id_b: run ids, check ids (`check-...`) or `.twinrun` paths; ids may be prefixes
            that match only one.
    """
    from twinrun.report import diff as record_diff
    from twinrun.store import Store

    kinds = {_kind(id_a), _kind(id_b)}
    if kinds == {"reference"}:
        return record_diff.diff_references(_reference_dict(id_a), _reference_dict(id_b),
                                           id_a, id_b)
    if "reference" in kinds:
        raise TwinrunError(f"Cannot compare a reference file with a stored record ({id_a}, "
                           f"{id_b}); give two `.twinrun` files, two run ids or two check ids.")
    with Store(store_path, create=False) as store:
        if len(kinds) > 1:
            # An unknown id is named first: a typo is likelier than a run meant as a check.
            for record_id in (id_a, id_b):
                _full_id(store, record_id)
            raise TwinrunError(f"Cannot compare a run with a check ({id_a}, {id_b}); give two "
                               "run ids or two check ids (`check-...`).")
        if kinds == {"check"}:
            check_a, check_b = store.get_check(id_a), store.get_check(id_b)
            return record_diff.diff_checks(
                check_a, check_b, _check_environment(store, check_a["check_id"]),
                _check_environment(store, check_b["check_id"]))
        return record_diff.diff_runs(store.get_run(id_a), store.get_run(id_b))


def _reference_dict(path):
    """A `.twinrun` file as `diff_references` reads it: what was recorded and how, the
    environment, and one digest per step (its batch, loss and every tensor's words)."""
    import hashlib

    from twinrun.checks.reference import read_reference

    reference = read_reference(path)
    header = {key: value for key, value in reference.header.items()
              if key not in ("environment", "epochs", "extras", "renamed", "data")}
    # Each step record as written (batch, loss, every tensor's words), digested.
    fingerprints = [hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode())
                    .hexdigest()[:16] for record in reference.trace.steps]
    return {"header": header, "environment": reference.environment,
            "fingerprints": fingerprints}


def _full_id(store, record_id):
    """The stored id `record_id` names; the store's one-sentence error when there is none."""
    if _kind(record_id) == "check":
        return store.get_check(record_id)["check_id"]
    return store.resolve_run_id(record_id)


def _kind(record_id):
    key = str(record_id).strip()
    if key.endswith(".twinrun"):
        return "reference"
    return "check" if key.startswith("check-") else "run"


def _check_environment(store, check_id):
    """The environment of a check's first replica that recorded one (its replicas are runs
    whose study id is the check's id), or None."""
    for summary in sorted(store.list_runs(check_id=check_id),
                          key=lambda run: (run["replica"] is None, run["replica"] or 0)):
        environment = store.get_run(summary["run_id"]).get("environment")
        if environment:
            return environment
    return None
