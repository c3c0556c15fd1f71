"""`twinrun variance`, `twinrun cv`, `twinrun compare`, `twinrun resume`, `twinrun studies`.

Parse, plan (`twinrun.studies.plan`), run (`twinrun.studies.runner` on an executor), read the
statistics back (`twinrun.studies.results`) and render them (`twinrun.report.studies`) or print
them as one JSON object. Every bad input is refused before any run starts.
"""

import json

import click

from twinrun.cli.app import main, warn_on_failure
from twinrun.errors import TwinrunError
from twinrun.cli.options import (backend_option, data_dir_option, json_option, json_text,
                                 notebook_target, parameter_option, portable_option, store_option,
                                 wide_option)
from twinrun.cli.export import export_after, mlflow_option
from twinrun.cli.outputs import offer_report, report_option

STUDY_METRICS_HELP = "test_accuracy|test_loss|best_val_loss|stopped_epoch"


def _base_options(command):
    """The options that define a study's runs besides its plan: workload, size, backend."""
    for option in reversed([
        click.option("--workload", default="fashion-cnn", show_default=True,
                     metavar="fashion-cnn|answer-demo", help="What each run trains."),
        click.option("--preset", default="study", show_default=True,
                     metavar="quick|study|full|tiny", help="Workload size of each run."),
        backend_option,
        click.option("--seed", default=0, type=int, show_default=True,
                     help="The study's base seed (every run's seeds derive from it)."),
        click.option("--threads", default=None, type=int,
                     help="Thread-pool size of each run (default: every CPU it may use)."),
        portable_option,
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

@main.command(context_settings={"ignore_unknown_options": False})
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
@report_option
@mlflow_option
@parameter_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def variance(ctx, runs, vary, design, metric, workload, preset, backend, seed, threads,
             portable, set_values, jobs, executor_name, address, cpus_per_run, gpus_per_run,
             store, data_dir, as_json, report_path, mlflow_uri, parameters, command):
    """How much of a result is chance: N runs per source of randomness, each varied alone.

    Without COMMAND it studies a built-in workload; with `-- python train.py ARGS` it runs
    your script once per run, which takes its seeds from twinrun.seeds() and reports with
    twinrun.log_metrics(...) (or twinrun.keras.Trace() in fit). A notebook (NOTEBOOK.ipynb,
    -p NAME VALUE) runs top to bottom in a fresh kernel per run, with the same hand-over.
    """
    from twinrun.studies.plan import plan_variance

    if command or parameters:
        settings, metric, base = _prepare_script(ctx, command, set_values, vary, metric,
                                                 backend, threads, parameters, portable)
    else:
        settings, metric, base = _prepare(set_values, metric, workload, preset, backend, seed,
                                          threads, data_dir, portable)
    from twinrun.studies.runner import base_definition

    plan = plan_variance(runs, vary, design=design, seed=seed, settings=settings,
                         base=base_definition(base))
    _run_and_report(plan, base, metric, store, as_json,
                    _executor(executor_name, jobs, address, cpus_per_run, gpus_per_run),
                    report_path, mlflow_uri)


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
@report_option
@mlflow_option
def cv(folds, repeats, metric, workload, preset, backend, seed, threads, portable, set_values,
       jobs,
       executor_name, address, cpus_per_run, gpus_per_run, store, data_dir, as_json,
       report_path, mlflow_uri):
    """Stratified K-fold cross-validation: each fold early-stops on its held-out part."""
    from twinrun.studies.plan import plan_cv
    from twinrun.studies.runner import base_definition, validate_study_folds

    settings, metric, base = _prepare(set_values, metric, workload, preset, backend, seed,
                                      threads, data_dir, portable)
    plan = plan_cv(folds, repeats=repeats, seed=seed, settings=settings,
                   base=base_definition(base))
    validate_study_folds(plan, base)
    _run_and_report(plan, base, metric, store, as_json,
                    _executor(executor_name, jobs, address, cpus_per_run, gpus_per_run),
                    report_path, mlflow_uri)


@main.command()
@click.argument("study_a", required=False)
@click.argument("study_b", required=False)
@click.option("--set-a", "set_a", multiple=True, metavar="KEY=VALUE",
              help="A setting of arm A only (with --runs: run both arms now).")
@click.option("--set-b", "set_b", multiple=True, metavar="KEY=VALUE",
              help="A setting of arm B only; --set applies to both arms.")
@click.option("--runs", default=None, type=int,
              help="Runs per arm when running the two arms now (each varies everything).")
@_metric_option("each study's own")
@_base_options
@_executor_options
@store_option
@data_dir_option
@json_option
@report_option
@mlflow_option
@click.pass_context
def compare(ctx, study_a, study_b, set_a, set_b, runs, metric, workload, preset, backend, seed,
            threads, portable, set_values, jobs, executor_name, address, cpus_per_run, gpus_per_run,
            store, data_dir, as_json, report_path, mlflow_uri):
    """A against B: does a change beat the noise between seeds?

    \b
    Two stored studies:   twinrun compare STUDY_A STUDY_B
    Two variants, run now: twinrun compare --set-a learning_rate=0.001 \\
                              --set-b learning_rate=0.003 --runs 5
    --set applies to both arms; an arm without --set-a/--set-b keeps the defaults.
    """
    from twinrun.studies.results import compare_results

    if set_a or set_b or runs is not None:
        results, sessions = _compare_variants(ctx, study_a, study_b, set_a, set_b, runs,
                                              metric, workload, preset, backend, seed, threads,
                                              portable, set_values, jobs, executor_name, address,
                                              cpus_per_run, gpus_per_run, store, data_dir,
                                              as_json)
    else:
        _refuse_run_options(ctx)
        if study_a is None or study_b is None:
            raise TwinrunError(
                "Give two study ids (`twinrun compare STUDY_A STUDY_B`; `twinrun studies` "
                "lists them), or two variants to run now (`twinrun compare --set-a "
                "learning_rate=0.001 --set-b learning_rate=0.003 --runs 5`).")
        sessions = None
        with _open_store(store, create=False) as opened:
            results = compare_results(opened, study_a, study_b, metric=metric)
    if as_json:
        click.echo(json_text(results if sessions is None else {**results, "sessions": sessions}))
    else:
        from twinrun.report.studies import render_compare, render_study_run

        for session in sessions or ():
            render_study_run(session)
        render_compare(results)
    # The results are shown: a report or export that fails now is a warning, not a failure.
    warn_on_failure(offer_report, results["study_a"], report_path, store=store,
                    as_json=as_json, against=results["study_b"], metric=metric)
    for study in (results["study_a"], results["study_b"]):
        warn_on_failure(export_after, study, mlflow_uri, store=store, as_json=as_json)


@main.command()
@click.argument("study_id")
@_metric_option("the study's own")
@_executor_options
@store_option
@data_dir_option
@json_option
@report_option
@mlflow_option
def resume(study_id, metric, jobs, executor_name, address, cpus_per_run, gpus_per_run, store,
           data_dir, as_json, report_path, mlflow_uri):
    """Run what is missing of a study (its failed, stopped and never-run runs)."""
    from twinrun.studies.runner import base_of, rebuild_plan, validate_metric

    if metric is not None:
        validate_metric(metric)
    with _open_store(store, create=False) as opened:
        study = opened.get_study(study_id)
    plan = rebuild_plan(study)
    base = base_of(study, data_dir)
    metric = metric or study["options"].get("metric") or "test_accuracy"
    _run_and_report(plan, base, metric, store, as_json,
                    _executor(executor_name, jobs, address, cpus_per_run, gpus_per_run),
                    report_path, mlflow_uri)


@main.command()
@store_option
@wide_option
@json_option
def studies(store, wide, as_json):
    """List the studies in the store, newest first."""
    from twinrun.cli.runs import store_to_list
    from twinrun.store import default_store_path

    path = store or default_store_path()
    found, among = [], None
    opened = store_to_list(store)
    if opened is not None:
        with opened:
            found = opened.list_studies()
            among = opened.record_ids() if found and not as_json else None
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo(f"No studies in {path} yet; `twinrun variance` or `twinrun cv` runs one.")
        return
    from twinrun.report.studies import render_studies

    render_studies(found, f"Studies in {path}", among=among, wide=wide)


# -- the common steps --------------------------------------------------------------------------

def _prepare(set_values, metric, workload, preset, backend, seed, threads, data_dir,
             portable=False):
    """Parse `--set` and `--metric` and build the base `RunConfig` (one sentence on error)."""
    from twinrun.runconfig import RunConfig
    from twinrun.studies.runner import validate_metric
    from twinrun.workloads.settings import parse_settings

    texts = [part for value in set_values for part in value.split(",") if part.strip()]
    settings = parse_settings(texts)
    metric = validate_metric(metric or "test_accuracy")
    base = RunConfig(workload=workload, preset=preset, backend=backend, seed=seed,
                     threads=threads, data_dir=data_dir, portable=portable).validated()
    return settings, metric, base


def _prepare_script(ctx, command, set_values, vary, metric, backend, threads, parameters=(),
                    portable=False):
    """The settings, metric and `ScriptBase` of a study of the user's script."""
    from twinrun.studies.plan import parse_sources
    from twinrun.studies.runner import validate_metric
    from twinrun.studies.scripts import ScriptBase, validate_script_study
    from twinrun.workloads.settings import parse_settings

    for name in ("workload", "preset", "data_dir"):
        if _given(ctx, name):
            flag = "--" + name.replace("_", "-")
            raise TwinrunError(f"{flag} belongs to the built-in workload; your script after "
                               f"`--` trains what it trains, so leave {flag} out.")
    settings = parse_settings([part for value in set_values for part in value.split(",")
                               if part.strip()])
    validate_script_study(parse_sources(vary), settings)
    metric = validate_metric(metric or "test_accuracy")

    notebook = notebook_target(command, parameters)
    if notebook is not None:
        return settings, metric, ScriptBase.from_notebook(*notebook, backend=backend,
                                                          threads=threads,
                                                          portable=portable)
    return settings, metric, ScriptBase.from_command(command, backend=backend, threads=threads,
                                                     portable=portable)


# Options of `compare` that only running two variants uses.
_RUN_ONLY = ("workload", "preset", "backend", "seed", "threads", "portable", "set_values",
             "jobs", "executor_name", "address", "cpus_per_run", "gpus_per_run", "data_dir")


def _given(ctx, name):
    from click.core import ParameterSource

    return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)


def _refuse_run_options(ctx):
    for name in _RUN_ONLY:
        if _given(ctx, name):
            flag = "--set" if name == "set_values" else \
                "--executor" if name == "executor_name" else "--" + name.replace("_", "-")
            raise TwinrunError(f"{flag} applies when compare runs two variants (--set-a, "
                               f"--set-b, --runs); comparing two stored studies runs nothing, "
                               f"so leave it out.")


def _compare_variants(ctx, study_a, study_b, set_a, set_b, runs, metric, workload, preset,
                      backend, seed, threads, portable, set_values, jobs, executor_name, address,
                      cpus_per_run, gpus_per_run, store, data_dir, as_json):
    """Run two variants as studies varying `all`, then compare them: `(results, sessions)`."""
    from twinrun.studies.plan import plan_variance
    from twinrun.studies.results import compare_results
    from twinrun.studies.runner import base_definition
    from twinrun.workloads.settings import parse_settings

    if study_a is not None:
        raise TwinrunError("Give either two study ids or two variants (--set-a, --set-b, "
                           "--runs), not both.")
    if runs is None:
        raise TwinrunError("Running two variants needs --runs N (runs per arm, at least 2; "
                           "5 or more for a reading worth having).")

    def parsed(values):
        return parse_settings([part for value in values for part in value.split(",")
                               if part.strip()])

    shared, metric, base = _prepare(set_values, metric, workload, preset, backend, seed,
                                    threads, data_dir, portable)
    arms = [{**shared, **parsed(set_a)}, {**shared, **parsed(set_b)}]
    if arms[0] == arms[1]:
        raise TwinrunError("Arms A and B would train with the same settings; give the setting "
                           "that differs with --set-a KEY=VALUE and --set-b KEY=VALUE.")
    plans = [plan_variance(runs, "all", seed=seed, settings=arm, base=base_definition(base))
             for arm in arms]
    executor = _executor(executor_name, jobs, address, cpus_per_run, gpus_per_run)
    from twinrun.report.studies import study_progress
    from twinrun.studies.runner import run_study

    sessions = []
    with _open_store(store) as opened:
        with executor:
            for plan in plans:
                with study_progress(enabled=not as_json) as progress:
                    summary = run_study(plan, base, store=opened, executor=executor,
                                        options={"metric": metric}, progress=progress)
                sessions.append(summary.to_dict())
        results = compare_results(opened, plans[0].study_id, plans[1].study_id, metric=metric)
    return results, sessions


def _executor(name, jobs, address, cpus_per_run, gpus_per_run):
    from twinrun.executors import executor_for

    return executor_for(name, jobs=jobs, address=address, cpus_per_run=cpus_per_run,
                        gpus_per_run=gpus_per_run)


def _open_store(path, create=True):
    from twinrun.store import Store

    return Store(path, create=create)


def _run_and_report(plan, base, metric, store_path, as_json, executor, report_path=None,
                    mlflow_uri=None):
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
        own_metric = store.get_study(plan.study_id)["options"].get("metric") or "test_accuracy"
    if as_json:
        from twinrun.report.headline import study_reading

        click.echo(json_text({"reading": study_reading(results), **results,
                          "session": summary.to_dict()}))
    else:
        render_study_run(summary.to_dict())
        from twinrun.report import studies as report

        (report.render_variance if plan.kind == "variance" else report.render_cv)(results)
    # The results are shown: a report or export that fails now is a warning, not a failure.
    warn_on_failure(offer_report, plan.study_id, report_path, store=store_path,
                    as_json=as_json, metric=None if metric == own_metric else metric)
    warn_on_failure(export_after, plan.study_id, mlflow_uri, store=store_path,
                    as_json=as_json)


def _results(store, plan, metric, base):
    from twinrun.studies.results import cv_results, variance_results

    if plan.kind != "variance":
        return cv_results(store, plan.study_id, metric=metric)
    results = variance_results(store, plan.study_id, metric=metric, data_dir=base.data_dir)
    from twinrun.studies.scripts import name_unread_seeds

    name_unread_seeds(store, plan, results)
    return results


