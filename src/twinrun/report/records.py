"""What a report shows, gathered from the run store: one plain dict per record.

`load_report(store, record_id)` returns `{"kind": "run" | "check", ...}`; each format
(`twinrun.report.html`, `twinrun.report.markdown`, JSON as it is) only lays that dict out. A
study is one more kind here and one more page module there.

- a run: the stored record (`Store.get_run`) plus what the page marks: the last epoch trained
  (where early stopping ended it) and the epoch whose weights were restored (the best one), and
  the class names of its workload;
- a check: its summary, the verdict exactly as `twinrun check --json` printed it, and each
  replica's per-step batch loss read back from `<store>/checks/<id>/replica-N.trace`.
"""

import json
import re
from pathlib import Path

from twinrun.errors import StoreError, TwinrunError

_REPLICA_TRACE = re.compile(r"replica-(\d+)\.trace$")


def load_report(store, record_id):
    """The data of one run's or one check's report.

    Arguments:
        store: an open `twinrun.store.Store`.
        record_id: a run id, a check id (`check-...`), or a prefix matching only one.

    Raises `TwinrunError` (one sentence) when nothing, or a study, matches.

    Example:

        with Store("twinrun-runs", create=False) as store:
            report = load_report(store, "check-20240501")
            report["verdict"]["first_divergence"]["step"]
    """
    key = str(record_id).strip()
    if key.startswith("check-"):
        return check_report(store, key)
    try:
        return run_report(store, key)
    except StoreError:
        if _is_study(store, key):
            raise TwinrunError(
                f"{key} is a study; study reports are not built yet. `twinrun report RUN_ID` "
                f"makes the page of one of its runs (`twinrun runs` lists them).") from None
        raise


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
    return {
        "kind": "check",
        "check": {key: value for key, value in check.items() if key != "result"},
        "verdict": verdict,
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
