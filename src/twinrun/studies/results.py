"""A stored study's statistics: its finished runs, read from the store and summarised.

`variance_results`, `cv_results` and `compare_results` read what `twinrun.studies.runner`
recorded and hand it to the analysis (`variance`, `anova`, `cv`, `compare`); they return
plain JSON-able dicts, which `twinrun ... --json` prints as they are and `report.studies`
renders as tables. Only finished runs count; failed, stopped and missing ones are counted and
named, never averaged in.

A study whose runs came from different hardware or software (another CPU, another framework
version, another host) says so: its spread includes that difference.
"""

from dataclasses import dataclass

import numpy as np

from twinrun.environment import environment_diff
from twinrun.errors import TwinrunError
from twinrun.studies.runner import STUDY_METRICS, rebuild_plan, validate_metric

# Environment facts that say which hardware and software a run had; the rest (seeds in
# PYTHONHASHSEED, determinism switches) changes by design between a study's runs.
HARDWARE_AND_SOFTWARE = ("hostname", "cpu", "gpu", "os", "python", "packages", "framework",
                         "threads")


@dataclass
class LoadedStudy:
    """A stored study and its runs.

    Arguments:
        study: the study's record (`Store.get_study`).
        plan: its `StudyPlan`, planned again from the definition.
        finished: its finished runs, in plan order (`Store.study_runs` dicts).
        failed: its failed or stopped runs.
        missing: keys of planned runs with no row (never started, or their driver was
            killed before they could be marked).
    """

    study: dict
    plan: object
    finished: list
    failed: list
    missing: list

    @property
    def study_id(self):
        return self.study["study_id"]

    def counts(self):
        return {"planned": len(self.plan.runs), "finished": len(self.finished),
                "failed": len(self.failed), "missing": len(self.missing)}

    def failures(self):
        return [{"key": run["study_key"], "status": run["status"], "error": run["error"]}
                for run in self.failed]


def load_study(store, study_id, *, with_predictions=False):
    """Read a study and its runs from `store` (id or unique prefix)."""
    study = store.get_study(study_id)
    plan = rebuild_plan(study)
    order = {run.key: run.position for run in plan.runs}
    runs = [run for run in store.study_runs(study["study_id"], with_predictions=with_predictions)
            if run["study_key"] in order]
    runs.sort(key=lambda run: order[run["study_key"]])
    finished = [run for run in runs if run["status"] == "finished"]
    failed = [run for run in runs if run["status"] in ("failed", "stopped")]
    present = {run["study_key"] for run in runs if run["status"] != "running"}
    missing = [run.key for run in plan.runs if run.key not in present]
    return LoadedStudy(study=study, plan=plan, finished=finished, failed=failed,
                       missing=missing)


def metric_values(loaded, metric):
    """The metric of each finished run, or one sentence naming the metrics the runs have."""
    values = []
    for run in loaded.finished:
        value = (run["metrics"] or {}).get(metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            known = sorted(k for k, v in (run["metrics"] or {}).items()
                           if isinstance(v, (int, float)) and k in STUDY_METRICS)
            raise TwinrunError(
                f"Run {run['study_key']} of study {loaded.study_id} has no {metric}; its runs "
                f"report {', '.join(known) or 'no study metric'}; pick one with --metric.")
        values.append(float(value))
    return values


def study_metric(loaded, metric=None):
    """The metric to summarise: the one asked for, else the study's own (test_accuracy)."""
    return validate_metric(metric or loaded.study["options"].get("metric")
                           or "test_accuracy")


def environment_note(runs):
    """A sentence when `runs` came from different hardware or software, else None."""
    environments = [run["environment"] for run in runs if run.get("environment")]
    if len(environments) < 2:
        return None
    keys = [d["key"] for d in environment_diff(environments)
            if d["key"].split(".")[0] in HARDWARE_AND_SOFTWARE
            and "determinis" not in d["key"]]
    if not keys:
        return None
    shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    return (f"These runs came from different hardware or software (they differ in {shown}); "
            f"their spread includes that difference, not only chance.")


def variance_results(store, study_id, *, metric=None, data_dir=None):
    """The per-source variance breakdown of a stored variance study, as a JSON-able dict.

    Arguments:
        store: an open `Store`.
        study_id: the study's id or a unique prefix.
        metric: one of `STUDY_METRICS`; default the study's own.
        data_dir: where Fashion-MNIST lies (for the test labels); default the study's.

    Returns `{"study_id", "kind", "metric", "design", counts..., "sources": {source: {n, mean,
    sd, sd_err, ci95, share, disagreement, floor_sd, effect, ...}}, "anova", "failures",
    "environment_note", "notes"}`.
    """
    from twinrun.studies.variance import SourceRuns, variance_breakdown

    loaded = load_study(store, study_id, with_predictions=True)
    if loaded.plan.kind != "variance":
        raise TwinrunError(f"Study {loaded.study_id} is a {loaded.plan.kind} study, not a "
                           f"variance study; `twinrun resume {loaded.study_id}` shows it.")
    metric = study_metric(loaded, metric)
    _require_finished(loaded)
    values = dict(zip((run["study_key"] for run in loaded.finished),
                      metric_values(loaded, metric)))
    planned = {run.key: run for run in loaded.plan.runs}
    crossed = loaded.plan.definition["design"] == "crossed"
    groups = {}
    for run in loaded.finished:
        source = planned[run["study_key"]].source
        groups.setdefault(source, []).append(run)
    notes = []
    labels = _test_labels(loaded, data_dir, notes)
    runs_by_source = {
        source: SourceRuns(values=[values[run["study_key"]] for run in runs],
                           fingerprints=[run["fingerprint"] for run in runs],
                           predictions=_stacked_predictions(runs, source, notes))
        for source, runs in groups.items()}
    breakdown = variance_breakdown(runs_by_source, metric=metric, labels=labels)
    anova = None
    if crossed:
        anova = _crossed(loaded, planned, values)
    return {"study_id": loaded.study_id, "kind": "variance", "metric": metric,
            "design": loaded.plan.definition["design"], **loaded.counts(),
            "sources": breakdown.to_dict()["sources"], "anova": anova,
            "failures": loaded.failures(), "environment_note": environment_note(loaded.finished),
            "notes": notes}


def cv_results(store, study_id, *, metric=None):
    """The cross-validation summary of a stored cv study, as a JSON-able dict.

    Returns `{"study_id", "kind", "metric", counts..., "folds", "mean", "sd", "ci95", ...,
    "cross_validate": {key: [per-fold values]}, "fold_keys", "failures", "environment_note"}`;
    `cross_validate` is shaped like scikit-learn's (`test_accuracy`, `test_loss`, `val_loss`,
    `stopped_epoch`, `fit_time`).
    """
    from twinrun.studies.cv import cv_summary

    loaded = load_study(store, study_id)
    if loaded.plan.kind != "cv":
        raise TwinrunError(f"Study {loaded.study_id} is a {loaded.plan.kind} study, not a "
                           f"cross-validation.")
    metric = study_metric(loaded, metric)
    _require_finished(loaded)
    metric_values(loaded, metric)  # one sentence when a run lacks it
    folds = []
    for run in loaded.finished:
        metrics = run["metrics"] or {}
        fold = {"test_accuracy": metrics.get("test_accuracy"),
                "test_loss": metrics.get("test_loss"),
                "val_loss": metrics.get("best_val_loss"),
                "stopped_epoch": metrics.get("stopped_epoch"),
                "fit_time": run["wall_time"]}
        fold[metric] = metrics.get(metric)
        folds.append(fold)
    definition = loaded.plan.definition
    summary = cv_summary(folds, metric=metric, n_splits=definition["folds"],
                         repeats=definition["repeats"])
    return {"study_id": loaded.study_id, "kind": "cv", **loaded.counts(), **summary.to_dict(),
            "fold_keys": [run["study_key"] for run in loaded.finished],
            "failures": loaded.failures(),
            "environment_note": environment_note(loaded.finished)}


def compare_results(store, study_a, study_b, *, metric=None):
    """A against B: two stored studies' runs compared on one metric, as a JSON-able dict.

    Arguments:
        store: an open `Store`.
        study_a, study_b: the two studies (ids or unique prefixes).
        metric: compare on this metric; default each study's own, which must then agree.

    Each arm is a study's runs that vary everything the user would not fix: a study of one
    source gives all its runs, a study of several gives its `all` runs, and a
    cross-validation its folds.

    Returns `StudyComparison.to_dict()` (difference, ci95, p_welch, p_permutation,
    p_a_beats_b, runs_for_power80, reading, ...) with `study_a`, `study_b` and each arm's
    source.
    """
    from twinrun.studies.compare import compare_runs

    arms = [load_study(store, study) for study in (study_a, study_b)]
    if metric is not None:
        metrics = [validate_metric(metric)] * 2
    else:
        metrics = [study_metric(arm) for arm in arms]
    values, sources = [], []
    for arm, arm_metric in zip(arms, metrics):
        runs, source = _arm_runs(arm)
        sub = LoadedStudy(arm.study, arm.plan, runs, arm.failed, arm.missing)
        values.append(metric_values(sub, arm_metric))
        sources.append(source)
    names = tuple(arm.study_id for arm in arms)
    comparison = compare_runs(values[0], values[1], metric=metrics[0], metric_b=metrics[1],
                              names=names)
    return {"study_a": names[0], "study_b": names[1], "source_a": sources[0],
            "source_b": sources[1], **comparison.to_dict(),
            "environment_note": environment_note(arms[0].finished + arms[1].finished)}


def _arm_runs(loaded):
    plan = loaded.plan
    if plan.kind == "cv":
        return loaded.finished, "cv"
    planned = {run.key: run for run in plan.runs}
    sources = plan.sources
    if plan.definition["design"] == "crossed":
        return loaded.finished, "crossed"
    if len(sources) == 1:
        return loaded.finished, sources[0]
    if "all" in sources:
        return [run for run in loaded.finished
                if planned[run["study_key"]].source == "all"], "all"
    raise TwinrunError(
        f"Study {loaded.study_id} varies {', '.join(sources)} one at a time, so it has no "
        f"single set of runs to compare; compare studies that vary one source, or that "
        f"include all (--vary all).")


def _require_finished(loaded):
    if not loaded.finished:
        raise TwinrunError(
            f"Study {loaded.study_id} has no finished runs yet ({len(loaded.failed)} failed, "
            f"{len(loaded.missing)} not run); `twinrun resume {loaded.study_id}` runs them.")


def _test_labels(loaded, data_dir, notes):
    """Fashion-MNIST's test labels when the runs kept predictions of them, else None."""
    if not any(run.get("predictions") for run in loaded.finished):
        notes.append("The runs kept no test predictions, so disagreement, per-class spread "
                     "and the independent-errors floor are left out.")
        return None
    if loaded.plan.definition["base"].get("workload") != "fashion-cnn":
        return None
    from twinrun.workloads import fashion_mnist

    folder = data_dir or loaded.study["options"].get("data_dir")
    try:
        labels = fashion_mnist.load(folder).y_test
    except TwinrunError as error:
        notes.append(f"Without the test labels ({error}) the per-class spread and the "
                     f"independent-errors floor are left out.")
        return None
    sizes = {len(run["predictions"]) for run in loaded.finished if run.get("predictions")}
    if sizes != {labels.size}:
        notes.append(f"The runs kept predictions of {', '.join(map(str, sorted(sizes)))} test "
                     f"images, not of Fashion-MNIST's {labels.size}, so the per-class spread "
                     f"and the independent-errors floor are left out.")
        return None
    return labels


def _stacked_predictions(runs, source, notes):
    kept = [run.get("predictions") for run in runs]
    if not all(kept) or len({len(p) for p in kept}) != 1:
        if any(kept):
            notes.append(f"Some {source} runs kept no test predictions; its disagreement is "
                         f"left out.")
        return None
    return np.stack([np.frombuffer(p, dtype=np.uint8) for p in kept])


def _crossed(loaded, planned, values):
    from twinrun.studies.anova import crossed_variance

    first, second = loaded.plan.sources
    keys = [run["study_key"] for run in loaded.finished]
    try:
        result = crossed_variance([values[k] for k in keys],
                                  [planned[k].levels[first] for k in keys],
                                  [planned[k].levels[second] for k in keys],
                                  factors=(first, second))
    except TwinrunError as error:
        return {"error": str(error)}
    return result.to_dict()
