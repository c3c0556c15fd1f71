"""Two records side by side: which facts differ between two runs, two checks or two references.

Pure: plain dicts in (as the store returns them), one plain dict out; nothing is read or
printed here. `twinrun diff` lays the result out in the terminal, or prints it as JSON.

The result of every `diff_*` function:

    {"kind": "runs" | "checks" | "references",
     "ids": [id_a, id_b],
     "sections": [{"title": "Config",
                   "rows": [{"key": "threads", "a": 1, "b": 2, "differs": True}, ...]}, ...],
     "differing": 3}

Values stay as they were recorded (numbers, strings, lists), so JSON keeps every bit. Two
values are equal when `==` says so, with NaN equal to NaN (a NaN loss in both runs is not a
difference). `differs` is None for facts that differ between any two processes (wall time,
pid, the load average when the environment was taken): they are shown, never counted.
"""

import json
import math

from twinrun.environment import VOLATILE_KEYS

# Run columns shown in the first section, in this order. The id and timestamps are the header
# or always differ; `artifacts` is a folder of this store, not a fact about the run.
_RUN_FIELDS = ("status", "error", "workload", "backend", "seed", "preset", "study_id",
               "check_id", "study_key", "replica", "epochs_trained", "test_accuracy")
_TIMING_FIELDS = ("wall_time",)
_CHECK_FIELDS = ("kind", "label", "verdict", "replicas", "steps_compared")


def diff_runs(run_a, run_b):
    """Two stored runs side by side: config, seeds, determinism report, environment,
    metrics per epoch and final, fingerprints.

    Arguments:
        run_a, run_b: full run records, as `Store.get_run` returns them.

    Returns the diff dict described in this module's docstring, `kind` "runs".

    Example:

        diff = diff_runs(store.get_run("20240501-120000"), store.get_run("20240501-120300"))
        [row["key"] for s in diff["sections"] for row in s["rows"] if row["differs"]]
    """
    a, b = run_a or {}, run_b or {}
    sections = [
        _section("Run", [_row(name, a.get(name), b.get(name)) for name in _RUN_FIELDS]
                 + [_row(name, a.get(name), b.get(name), compared=False)
                    for name in _TIMING_FIELDS]),
        _section("Config", _paired(_flatten(a.get("config")), _flatten(b.get("config")))),
        _section("Seeds", _paired(_flatten(a.get("seeds")), _flatten(b.get("seeds")))),
        _section("Determinism", _paired(_determinism_facts(a.get("determinism")),
                                        _determinism_facts(b.get("determinism")))),
        _section("Environment", _environment_rows(a.get("environment"),
                                                  b.get("environment"))),
        _section("Metrics per epoch", _history_rows(a.get("history"), b.get("history"))),
        _section("Final metrics", _paired(_flatten(a.get("metrics")),
                                          _flatten(b.get("metrics")))),
        _section("Fingerprints", _fingerprint_rows(a, b)),
        _section("Extra", _paired(_without_fingerprints(_flatten(a.get("extra"))),
                                  _without_fingerprints(_flatten(b.get("extra"))))),
    ]
    return _result("runs", a.get("run_id"), b.get("run_id"), sections)


def diff_checks(check_a, check_b, environment_a=None, environment_b=None):
    """Two stored checks side by side: their verdicts and the environments they ran in.

    Arguments:
        check_a, check_b: a check's summary (`Store.get_check`) with its `result` (the verdict
            JSON text, or the dict it holds).
        environment_a, environment_b: the environment of each check's first replica (its
            stored run's `environment`), or None where unknown.

    Returns the diff dict described in this module's docstring, `kind` "checks".

    Example:

        check = store.get_check("check-20240501")
        diff = diff_checks(check, other_check, environment_a=None, environment_b=None)
    """
    a, b = check_a or {}, check_b or {}
    verdict_a, verdict_b = _verdict(a), _verdict(b)
    sections = [
        _section("Check", [_row(name, a.get(name), b.get(name)) for name in _CHECK_FIELDS]),
        _section("Verdict", _paired(_verdict_facts(verdict_a), _verdict_facts(verdict_b))),
        _section("Replicas", _paired(_replica_facts(verdict_a), _replica_facts(verdict_b))),
        _section("Environment", _environment_rows(environment_a, environment_b)),
    ]
    return _result("checks", a.get("check_id"), b.get("check_id"), sections)


# -- references (`.twinrun` files) -------------------------------------------------------------
# Not wired to a command yet: `twinrun record` writes these files, and `twinrun diff A.twinrun
# B.twinrun` will read each into the plain dict this function takes.


def diff_references(reference_a, reference_b, id_a=None, id_b=None):
    """Two recorded references side by side: header, environment and fingerprints.

    Arguments:
        reference_a, reference_b: plain dicts with any of `header` (dict: the trace header,
            e.g. backend, seed, threads, determinism), `environment` (dict, as
            `fingerprint_environment` makes it) and `fingerprints` (a list of per-step
            fingerprints, oldest first, or a dict of named fingerprints).
        id_a, id_b: how the two are named (e.g. their file names).

    Returns the diff dict described in this module's docstring, `kind` "references"; its
    "Fingerprints" section names the first step whose fingerprints differ.

    Example:

        diff_references({"header": {"seed": 0}, "fingerprints": ["ab", "cd"]},
                        {"header": {"seed": 0}, "fingerprints": ["ab", "ce"]},
                        "main.twinrun", "branch.twinrun")
    """
    a, b = reference_a or {}, reference_b or {}
    header_a, header_b = dict(a.get("header") or {}), dict(b.get("header") or {})
    # A header may carry its environment too; the section of its own shows it once.
    env_a = a.get("environment", header_a.pop("environment", None))
    env_b = b.get("environment", header_b.pop("environment", None))
    sections = [
        _section("Header", _paired(_flatten(header_a), _flatten(header_b))),
        _section("Environment", _environment_rows(env_a, env_b)),
        _section("Fingerprints", _reference_fingerprint_rows(a.get("fingerprints"),
                                                             b.get("fingerprints"))),
    ]
    return _result("references", id_a, id_b, sections)


def _reference_fingerprint_rows(a, b):
    if isinstance(a, dict) or isinstance(b, dict):
        return _paired(_flatten(a if isinstance(a, dict) else {}),
                       _flatten(b if isinstance(b, dict) else {}))
    a, b = list(a or []), list(b or [])
    first = next((step for step, (x, y) in enumerate(zip(a, b)) if not _same(x, y)), None)
    if first is None and len(a) != len(b):
        first = min(len(a), len(b))
    # One fact about both: the step where they part (None: they never do).
    parting = {"key": "first differing step", "a": first, "b": first,
               "differs": first is not None}
    rows = [_row("steps", len(a), len(b)), parting,
            _row("last", a[-1] if a else None, b[-1] if b else None)]
    if first is not None and first < min(len(a), len(b)):
        rows.insert(2, _row(f"step {first}", a[first], b[first]))
    return rows


# -- shared --------------------------------------------------------------------------------------


def differing_rows(diff):
    """The rows of `diff` whose two values differ, as (section title, row) pairs.

    Example:

        [(title, row["key"]) for title, row in differing_rows(diff_runs(run_a, run_b))]
    """
    return [(section["title"], row) for section in diff["sections"] for row in section["rows"]
            if row["differs"]]


def _result(kind, id_a, id_b, sections):
    sections = [section for section in sections if section["rows"]]
    differing = sum(1 for section in sections for row in section["rows"] if row["differs"])
    return {"kind": kind, "ids": [id_a, id_b], "sections": sections, "differing": differing}


def _section(title, rows):
    # A fact neither record has (no error, no divergence in either) says nothing.
    return {"title": title, "rows": [row for row in rows
                                     if not (row["a"] is None and row["b"] is None)]}


def _row(key, a, b, compared=True):
    return {"key": key, "a": a, "b": b, "differs": (not _same(a, b)) if compared else None}


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, bool) != isinstance(b, bool):
        return False  # True == 1 in Python, but a flag is not a count
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _paired(facts_a, facts_b, volatile=()):
    """One row per key of either dict, in the first dict's order, then the second's new keys."""
    keys = list(facts_a) + [key for key in facts_b if key not in facts_a]
    return [_row(key, facts_a.get(key), facts_b.get(key),
                 compared=key.split(".")[-1] not in volatile) for key in keys]


def _flatten(values, prefix=""):
    """Nested dicts as one level of dotted keys, sorted; lists stay whole values."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        return {prefix.rstrip(".") or "value": values}
    flat = {}
    for key in sorted(values, key=str):
        value, name = values[key], f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _environment_rows(env_a, env_b):
    return _paired(_flatten(env_a), _flatten(env_b), volatile=VOLATILE_KEYS)


def _determinism_facts(report):
    """A determinism report as facts: one per control (its state, and detail), then the rest."""
    if not isinstance(report, dict):
        return _flatten(report)
    facts = {}
    controls = report.get("controls")
    if isinstance(controls, list) and all(isinstance(c, dict) for c in controls):
        for control in controls:
            state, detail = control.get("state"), control.get("detail")
            facts[str(control.get("name"))] = f"{state}: {detail}" if detail else state
        report = {key: value for key, value in report.items() if key != "controls"}
    facts.update(_flatten(report))
    return facts


def _history_rows(history_a, history_b):
    """One row per (epoch, metric) that either run recorded, epoch by epoch."""
    by_epoch_a, by_epoch_b = _by_epoch(history_a), _by_epoch(history_b)
    rows = []
    for epoch in sorted(set(by_epoch_a) | set(by_epoch_b), key=_sort_key):
        metrics_a, metrics_b = by_epoch_a.get(epoch, {}), by_epoch_b.get(epoch, {})
        names = list(metrics_a) + [name for name in metrics_b if name not in metrics_a]
        rows += [_row(f"epoch {epoch} {name}", metrics_a.get(name), metrics_b.get(name))
                 for name in names]
    return rows


def _by_epoch(history):
    epochs = {}
    for record in history or []:
        if isinstance(record, dict):
            epochs[record.get("epoch")] = {key: value for key, value in record.items()
                                           if key != "epoch"}
    return epochs


def _sort_key(epoch):
    return (0, epoch, "") if isinstance(epoch, (int, float)) else (1, 0, str(epoch))


def _fingerprint_rows(run_a, run_b):
    rows = [_row("weights", run_a.get("fingerprint"), run_b.get("fingerprint"))]
    return rows + _paired(_only_fingerprints(_flatten(run_a.get("extra"))),
                          _only_fingerprints(_flatten(run_b.get("extra"))))


def _only_fingerprints(facts):
    return {key: value for key, value in facts.items() if "fingerprint" in key.lower()}


def _without_fingerprints(facts):
    return {key: value for key, value in facts.items() if "fingerprint" not in key.lower()}


def _verdict(check):
    result = check.get("result")
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except ValueError:
            result = None
    return result if isinstance(result, dict) else {}


def _verdict_facts(verdict):
    divergence = verdict.get("first_divergence") or {}
    layer = divergence.get("layer") or {}
    return {
        "first divergence step": divergence.get("step"),
        "first divergence epoch": divergence.get("epoch"),
        "differed in": divergence.get("records"),
        "first variables": divergence.get("variables"),
        "layer": layer.get("name") if isinstance(layer, dict) else layer,
        "likely causes": verdict.get("likely_causes") or None,
        "differs between replicas": [entry.get("key") for entry in
                                     verdict.get("environment_diff") or []
                                     if isinstance(entry, dict)] or None,
    }


def _replica_facts(verdict):
    facts = {}
    for i, replica in enumerate(verdict.get("replicas") or []):
        if not isinstance(replica, dict):
            continue
        name = replica.get("label") or f"replica {i}"
        for field in ("steps", "final_loss", "fingerprint", "stopped_early"):
            facts[f"{name} {field.replace('_', ' ')}"] = replica.get(field)
    return facts
