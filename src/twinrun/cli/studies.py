"""`twinrun variance`, `twinrun cv`, `twinrun compare`, `twinrun resume`, `twinrun studies`.

Parse, plan (`twinrun.studies.plan`), run (`twinrun.studies.runner` on an executor), read the
statistics back (`twinrun.studies.results`) and render them (`twinrun.report.studies`) or print
them as one JSON object. Every bad input is refused before any run starts.
"""

import json
import math

import click

from twinrun.cli import main
from twinrun.errors import TwinrunError
from twinrun.cli.options import backend_option, data_dir_option, json_option, store_option

STUDY_METRICS_HELP = "test_accuracy|test_loss|best_val_loss|stopped_epoch"


def _base_options(command):
    """The options that define a study's runs besides its plan: workload, size, backend."""
    for option in reversed([
        click.option("--workload", default="fashion-cnn", show_default=True,
                     metavar="fashion-cnn|answer-demo", help="What each run trains."),
        click.option("--preset", default="study", show_default=True,
                     metavar="quick|study|full", help="Workload size of each run."),
        backend_option,
        click.option("--seed", default=0, type=int, show_default=True,
                     help="The study's base seed (every run's seeds derive from it)."),
        click.option("--threads", default=None, type=int,
                     help="Thread-pool size of each run (default: every CPU it may use)."),
        click.option("--set", "set_values", multiple=True, metavar="KEY=VALUE",
                     help="A training setting for every run: learning_rate, batch_size, "
                          "dropout, epochs, patience, subset, val_fraction, perturb. "
                          "Repeat it, or separate several with commas."),
    ]):
        command = option(command)
    return command


def _executor_options(command):
    for option in reversed([
        click.option("--jobs", default=None, type=int,
                     help="Runs at once in the local pool, each a fresh process (default 1)."),
        click.option("--executor", "executor_name", default="local", show_default=True,
                     metavar="local|ray", help="Where the runs go: this machine, or Ray."),
        click.option("--address", default=None, metavar="ADDR",
                     help="A running Ray cluster (host:port, or auto); default: start a "
                          "local one."),
        click.option("--cpus-per-run", default=None, type=float,
                     help="CPUs Ray reserves for each run (default 1)."),
        click.option("--gpus-per-run", default=None, type=float,
                     help="GPUs Ray reserves for each run; fractions share a GPU (default 0)."),
    ]):
        command = option(command)
    return command


def _metric_option(default_text):
    return click.option("--metric", default=None, metavar=STUDY_METRICS_HELP,
                        help=f"The metric to summarise (default: {default_text}).")


# -- commands ----------------------------------------------------------------------------------

@main.command()
@click.option("--runs", required=True, type=int, help="Runs per source (at least 2).")
@click.option("--vary", default=None, metavar="SOURCES",
              help="Comma list of init, order, dropout, split, perturb, nondeterminism, all "
                   "(default: init,order,dropout,split,all).")
@click.option("--design", default="one-at-a-time", show_default=True,
              metavar="one-at-a-time|crossed",
              help="crossed: the full grid of two sources, split by a two-way ANOVA.")
@_metric_option("test_accuracy")
@_base_options
@_executor_options
@store_option
@data_dir_option
@json_option
def variance(runs, vary, design, metric, workload, preset, backend, seed, threads, set_values,
             jobs, executor_name, address, cpus_per_run, gpus_per_run, store, data_dir,
             as_json):
    """How much of a result is chance: N runs per source of randomness, each varied alone."""
    from twinrun.studies.plan import plan_variance

    settings, metric, base = _prepare(set_values, metric, workload, preset, backend, seed,
                                      threads, data_dir)
    from twinrun.studies.runner import base_definition

    plan = plan_variance(runs, vary, design=design, seed=seed, settings=settings,
                         base=base_definition(base))
    _run_and_report(plan, base, metric, store, as_json,
                    _executor(executor_name, jobs, address, cpus_per_run, gpus_per_run))


@main.command()
@click.option("--folds", required=True, type=int, help="K of the stratified K-fold (at least 2).")
@click.option("--repeats", default=1, show_default=True, type=int,
              help="How many different fold assignments.")
@_metric_option("test_accuracy")
@_base_options
@_executor_options
@store_option
@data_dir_option
@json_option
def cv(folds, repeats, metric, workload, preset, backend, seed, threads, set_values, jobs,
       executor_name, address, cpus_per_run, gpus_per_run, store, data_dir, as_json):
    """Stratified K-fold cross-validation: each fold early-stops on its held-out part."""
    from twinrun.studies.plan import plan_cv
    from twinrun.studies.runner import base_definition, check_folds

    settings, metric, base = _prepare(set_values, metric, workload, preset, backend, seed,
                                      threads, data_dir)
    plan = plan_cv(folds, repeats=repeats, seed=seed, settings=settings,
                   base=base_definition(base))
    check_folds(plan, base)
    _run_and_report(plan, base, metric, store, as_json,
                    _executor(executor_name, jobs, address, cpus_per_run, gpus_per_run))


@main.command()
@click.argument("study_a")
@click.argument("study_b")
@_metric_option("each study's own")
@store_option
@json_option
def compare(study_a, study_b, metric, store, as_json):
    """A against B: does a change beat the noise between seeds?"""
    from twinrun.studies.results import compare_results

    with _open_store(store) as opened:
        results = compare_results(opened, study_a, study_b, metric=metric)
    if as_json:
        click.echo(_json(results))
        return
    from twinrun.report.studies import render_compare

    render_compare(results)


@main.command()
@click.argument("study_id")
@_metric_option("the study's own")
@_executor_options
@store_option
@data_dir_option
@json_option
def resume(study_id, metric, jobs, executor_name, address, cpus_per_run, gpus_per_run, store,
           data_dir, as_json):
    """Run what is missing of a study (its failed, stopped and never-run runs)."""
    from twinrun.studies.runner import base_of, rebuild_plan, validate_metric

    if metric is not None:
        validate_metric(metric)
    with _open_store(store) as opened:
        study = opened.get_study(study_id)
    plan = rebuild_plan(study)
    base = base_of(study, data_dir)
    metric = metric or study["options"].get("metric") or "test_accuracy"
    _run_and_report(plan, base, metric, store, as_json,
                    _executor(executor_name, jobs, address, cpus_per_run, gpus_per_run))


@main.command()
@store_option
@json_option
def studies(store, as_json):
    """List the studies in the store, newest first."""
    from twinrun.store import Store, default_store_path, store_exists

    path = store or default_store_path()
    found = []
    if store_exists(path):
        with Store(path, create=False) as opened:
            found = opened.list_studies()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo(f"No studies in {path} yet; `twinrun variance` or `twinrun cv` runs one.")
        return
    from twinrun.report.studies import render_studies

    render_studies(found, f"Studies in {path}")


# -- the common steps --------------------------------------------------------------------------

def _prepare(set_values, metric, workload, preset, backend, seed, threads, data_dir):
    """Parse `--set` and `--metric` and build the base `RunConfig` (one sentence on error)."""
    from twinrun.runconfig import RunConfig
    from twinrun.studies.runner import validate_metric
    from twinrun.studies.settings import parse_settings

    texts = [part for value in set_values for part in value.split(",") if part.strip()]
    settings = parse_settings(texts)
    metric = validate_metric(metric or "test_accuracy")
    base = RunConfig(workload=workload, preset=preset, backend=backend, seed=seed,
                     threads=threads, data_dir=data_dir).validated()
    return settings, metric, base


def _executor(name, jobs, address, cpus_per_run, gpus_per_run):
    from twinrun.executors import executor_for

    return executor_for(name, jobs=jobs, address=address, cpus_per_run=cpus_per_run,
                        gpus_per_run=gpus_per_run)


def _open_store(path, create=True):
    from twinrun.store import Store

    return Store(path, create=create)


def _run_and_report(plan, base, metric, store_path, as_json, executor):
    from twinrun.report.studies import render_study_run, study_progress
    from twinrun.studies.runner import run_study

    with _open_store(store_path) as store:
        with executor, study_progress(enabled=not as_json) as progress:
            summary = run_study(plan, base, store=store, executor=executor,
                                options={"metric": metric}, progress=progress)
        try:
            results = _results(store, plan, metric, base)
        except TwinrunError:
            if not as_json:  # what ran is still worth seeing above the one-sentence error
                render_study_run(summary.to_dict())
            raise
    if as_json:
        click.echo(_json({**results, "session": summary.to_dict()}))
        return
    render_study_run(summary.to_dict())
    from twinrun.report import studies as report

    (report.render_variance if plan.kind == "variance" else report.render_cv)(results)


def _results(store, plan, metric, base):
    from twinrun.studies.results import cv_results, variance_results

    if plan.kind == "variance":
        return variance_results(store, plan.study_id, metric=metric, data_dir=base.data_dir)
    return cv_results(store, plan.study_id, metric=metric)


def _json(value):
    """One JSON object; a non-finite number (an infinite effect size) becomes null."""
    def clean(item):
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {key: clean(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(value), indent=2, allow_nan=False)
