"""Run a study: its plan becomes `RunConfig`s, an executor runs them, the driver records them.

    plan (twinrun.studies.plan) -> one RunConfig per planned run -> executor (--jobs / Ray)
        -> each outcome recorded in the store by this process -> the study's status

Resumable and lossless by construction:
- the study is recorded under its id (a hash of its definition) before anything runs, so the
  same command, or `twinrun resume STUDY_ID`, finds it and runs only the planned runs that have
  no finished row (`Store.finished_study_keys`);
- a run's row is taken (`Store.begin_study_run`) just before it starts and written whole, in
  one transaction, when it ends (`Store.finish_study_run`): a driver killed with `kill -9`
  leaves rows `running` under its dead pid, which the next store opened marks failed, and the
  resume replaces them; nothing finished is run or recorded twice;
- a run that fails is recorded `failed` with its error and the study goes on; the summary
  counts the failures and the statistics use only the finished runs.
"""

import time
from dataclasses import dataclass, field

from twinrun.errors import TwinrunError
from twinrun.executors.common import Task
from twinrun.runconfig import RunConfig
from twinrun.store.studies import StudyRunTaken

# The metrics a study can summarise (`--metric`).
STUDY_METRICS = ("test_accuracy", "test_loss", "best_val_loss", "stopped_epoch")
# What a run's `metrics` keep from the worker's result.
KEPT_METRICS = (*STUDY_METRICS, "best_epoch", "best_val_accuracy", "class_accuracy",
                "per_class", "confusion_matrix", "loss", "acc", "val_loss", "val_acc")
# What else of the result is kept (in the run's `extra`): how it started and where it ran.
KEPT_EXTRA = ("steps_per_epoch", "impossible_controls", "perturbation", "initial_fingerprint")
# The fields of the base config that define a study's runs (part of its id).
BASE_FIELDS = ("workload", "preset", "backend", "threads")
# Workloads with one class per test image, whose runs keep their test predictions (the
# answer's experiment has random multi-hot labels).
PREDICTING_WORKLOADS = ("fashion-cnn",)


def validate_metric(metric):
    """Return `metric` if a study can summarise it, else raise `TwinrunError`.

    Example:
    >>> validate_metric("test_loss")
    'test_loss'
    """
    if metric not in STUDY_METRICS:
        raise TwinrunError(f"Unknown --metric {metric!r}: expected one of "
                           f"{', '.join(STUDY_METRICS)}.")
    return metric


def base_definition(config):
    """What of a validated base `RunConfig` is part of a study's identity (its plan's `base`).

    Example:
    >>> base_definition(RunConfig(backend="jax", preset="study"))
    {'workload': 'fashion-cnn', 'preset': 'study', 'backend': 'jax', 'threads': None}

    A study of the user's script (`twinrun.studies.scripts.ScriptBase`) is defined by its
    command, folder, backend and threads instead.
    """
    if hasattr(config, "config_for"):
        return config.definition()
    definition = {name: getattr(config, name) for name in BASE_FIELDS}
    if config.portable:  # only when asked: the ids of studies without it stay as they were
        definition["portable"] = True
    return definition


def planned_config(planned, base, study_id):
    """The validated `RunConfig` of one planned run.

    Arguments:
        planned: a `PlannedRun`.
        base: the study's base `RunConfig` (workload, preset, backend, threads, data folder).
        study_id: the study's id (kept in the config, for the record).

    The worker gets `record=False`: the driver records the run from its result. A script
    study's base gives a `ScriptConfig` (see `twinrun.studies.scripts`).
    """
    if hasattr(base, "config_for"):
        return base.config_for(planned, study_id)
    values = base.to_dict()
    values.update(seed=planned.seed, seed_overrides=dict(planned.seed_overrides),
                  determinism=planned.determinism, split_seed=planned.split_seed,
                  perturb_seed=planned.perturb_seed, fold=planned.fold,
                  settings=dict(planned.settings),
                  predictions=base.workload in PREDICTING_WORKLOADS, study_id=study_id,
                  replica=planned.position, record=False, store=None, trace=None)
    return RunConfig(**values).validated()


def validate_study_folds(plan, base):
    """Refuse a cross-validation whose folds the training set cannot fill (one sentence).

    `StratifiedKFold` needs every class in every fold, so `--folds` may not exceed the
    smallest class among the images the runs split: the preset's (or `--set subset`'s)
    stratified draw from the training set, drawn here exactly as the workload draws it.
    Loading the data also fails fast, before any run starts, when it is missing.
    """
    if plan.kind != "cv" or base.workload not in PREDICTING_WORKLOADS:
        return
    from twinrun.workloads.variations import validate_folds
    from twinrun.workloads import fashion_mnist
    from twinrun.workloads.fashion_cnn import PRESETS
    from twinrun.workloads.variations import subset_indices

    labels = fashion_mnist.load(base.data_dir).y_train
    subset = plan.definition["settings"].get("subset", PRESETS[base.preset].train_subset)
    validate_folds(plan.definition["folds"], labels[subset_indices(labels, subset)])


def rebuild_plan(study):
    """The `StudyPlan` of a stored study (`Store.get_study`), planned again from its definition.

    Raises `TwinrunError` when this twinrun plans it differently (another plan version).
    """
    from twinrun.studies.plan import plan_cv, plan_variance

    definition = study["definition"]
    if definition.get("kind") == "variance":
        plan = plan_variance(definition["runs"], definition["sources"],
                             design=definition["design"], seed=definition["seed"],
                             settings=definition["settings"], base=definition["base"])
    elif definition.get("kind") == "cv":
        plan = plan_cv(definition["folds"], repeats=definition["repeats"],
                       seed=definition["seed"], settings=definition["settings"],
                       base=definition["base"])
    else:
        raise TwinrunError(f"Study {study['study_id']} is of an unknown kind "
                           f"{definition.get('kind')!r}; it was written by another twinrun.")
    if plan.study_id != study["study_id"]:
        raise TwinrunError(f"Study {study['study_id']} was planned by another version of "
                           f"twinrun and cannot be resumed by this one; run it again with "
                           f"the same command to start it anew.")
    return plan


def base_of(study, data_dir=None):
    """The base `RunConfig` of a stored study (for `twinrun resume`), or its `ScriptBase`."""
    options = study.get("options") or {}
    values = dict(study["definition"]["base"])
    if "command" in values:
        from twinrun.studies.scripts import ScriptBase

        return ScriptBase.from_definition(values)
    values["data_dir"] = data_dir if data_dir is not None else options.get("data_dir")
    return RunConfig(**{k: v for k, v in values.items()
                        if k in (*BASE_FIELDS, "data_dir", "portable")}).validated()


@dataclass(frozen=True)
class Progress:
    """Where a study stands, for a progress display.

    Arguments:
        study_id: the study.
        total: planned runs.
        done: finished runs (earlier sessions included).
        running: runs in progress now.
        failed: runs that failed or were stopped in this session.
        eta_s: seconds until every run has ended at this session's pace, or None.
    """

    study_id: str
    total: int
    done: int
    running: int
    failed: int
    eta_s: float | None


@dataclass
class StudyRun:
    """What one session of running a study did.

    Arguments:
        study_id: the study.
        planned: its planned runs.
        finished: its finished runs, earlier sessions included.
        failed: `{key: error}` of its runs that failed or were stopped in this session.
        ran: runs this session started.
        already_done: runs that were finished before this session.
        taken: runs another live process was running (skipped).
        wall_time: seconds this session took.
    """

    study_id: str
    planned: int
    finished: int = 0
    failed: dict = field(default_factory=dict)
    ran: int = 0
    already_done: int = 0
    taken: int = 0
    wall_time: float = 0.0

    @property
    def complete(self):
        return self.finished == self.planned

    def to_dict(self):
        return {"study_id": self.study_id, "planned": self.planned, "finished": self.finished,
                "failed": len(self.failed), "errors": dict(self.failed), "ran": self.ran,
                "already_done": self.already_done, "taken": self.taken,
                "wall_time": self.wall_time}


def run_study(plan, base, *, store, executor, options=None, progress=None):
    """Run what is missing of `plan`, record every outcome, and return a `StudyRun`.

    Arguments:
        plan: the `StudyPlan`.
        base: the base `RunConfig` (workload, preset, backend, threads, data folder).
        store: an open `Store`: the study, its runs and their predictions go there.
        executor: a `LocalExecutor` or `RayExecutor`.
        options: kept with the study (e.g. `{"metric": "test_accuracy"}`); the data folder is
            added, so `twinrun resume` finds it again.
        progress: optional `f(Progress)`, called as runs start and end.

    Raises what the executor raises when the driver is interrupted (its running runs marked
    stopped first); the study is then `incomplete` and `twinrun resume` finishes it.

    Example:

        plan = plan_variance(8, "init,order", base=base_definition(base))
        with Store() as store:
            summary = run_study(plan, base, store=store, executor=LocalExecutor(jobs=2))
    """
    started = time.monotonic()
    # Every run's config is checked before the study is recorded or anything starts.
    configs = {run.key: planned_config(run, base, plan.study_id) for run in plan.runs}
    stored_options = {**(options or {}), "data_dir": base.data_dir}
    store.record_study(plan.study_id, kind=plan.kind, definition=plan.definition,
                       planned=len(plan.runs), options=stored_options)
    done_keys = store.finished_study_keys(plan.study_id)
    summary = StudyRun(study_id=plan.study_id, planned=len(plan.runs),
                       finished=len(done_keys & set(configs)))
    summary.already_done = summary.finished
    tasks = [Task(key=run.key, config=configs[run.key]) for run in plan.missing(done_keys)]
    run_ids, running = {}, set()
    ended = {"count": 0}

    def report():
        if progress is None:
            return
        ended_now = ended["count"]
        remaining = summary.planned - summary.finished - len(summary.failed)
        elapsed = time.monotonic() - started
        eta = remaining * elapsed / ended_now if ended_now else None
        progress(Progress(plan.study_id, summary.planned, summary.finished, len(running),
                          len(summary.failed), eta))

    def on_start(task):
        config = task.config
        try:
            run_ids[task.key] = store.begin_study_run(
                plan.study_id, task.key, replica=config.replica, workload=config.workload,
                backend=config.backend, seed=config.seed, config=config.to_dict(),
                seeds=config.seeds)
        except StudyRunTaken:
            summary.taken += 1
            return False
        summary.ran += 1
        running.add(task.key)
        report()
        return True

    def on_finish(task, outcome):
        running.discard(task.key)
        ended["count"] += 1
        run_id = run_ids[task.key]
        error = outcome.error
        if outcome.ok:
            error = _record_result(store, run_id, outcome)
        if error is None:
            summary.finished += 1
        else:
            store.fail_run(run_id, error)
            summary.failed[task.key] = error
        report()

    def on_stop(task, reason):
        running.discard(task.key)
        store.end_unfinished_run(run_ids[task.key], "stopped", reason)
        summary.failed[task.key] = reason

    store.set_study_status(plan.study_id, "running")
    try:
        report()
        executor.run(tasks, on_start=on_start, on_finish=on_finish, on_stop=on_stop)
    finally:
        summary.finished = len(store.finished_study_keys(plan.study_id)
                               & {run.key for run in plan.runs})
        summary.wall_time = time.monotonic() - started
        store.set_study_status(plan.study_id,
                               "finished" if summary.complete else "incomplete")
    return summary


def _record_result(store, run_id, outcome):
    """Write a finished run's result; return None, or the sentence why it could not be kept."""
    from twinrun.errors import StoreError

    result = outcome.result
    # A user's script reports its own metrics; its weights fingerprint comes from its trace,
    # which a script without twinrun's Trace or Tracer does not write.
    script = "logged_metrics" in result
    if not result.get("fingerprint") and not script:
        return "The run ended without a weights fingerprint; it cannot be part of a study."
    if script:
        metrics = dict(result["logged_metrics"])
        extra = {"seeds_read": result.get("seeds_read") or [], "node": outcome.node}
    else:
        metrics = {key: result[key] for key in KEPT_METRICS if key in result}
        extra = {**{key: result.get(key) for key in KEPT_EXTRA}, "node": outcome.node}
    try:
        store.finish_study_run(
            run_id, fingerprint=result["fingerprint"], metrics=metrics,
            epochs_trained=result.get("epochs_trained"), wall_time=result.get("wall_time"),
            history=result.get("history") or (), predictions=result.get("predictions"),
            environment=result.get("environment"),
            determinism=result.get("determinism_report"), backend=result.get("backend"),
            extra=extra)
    except StoreError as error:
        if "predictions" in str(error):
            return str(error)
        raise
    return None
