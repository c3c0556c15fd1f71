"""`twinrun runs`, `twinrun checks`, `twinrun show`: look at the run store."""

import json
from pathlib import Path

import click

from twinrun.cli.app import main
from twinrun.cli.options import STORE_HELP, json_text, wide_option

# Rich and the store are imported inside the commands, like the other command modules, so that
# `twinrun --help` stays instant.

DEFAULT_LIMIT = 50

_store_option = click.option(
    "--store",
    "store_dir",
    metavar="DIR",
    type=click.Path(path_type=Path),
    envvar="TWINRUN_STORE",
    default=None,
    help=STORE_HELP,
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
_limit_option = click.option(
    "--limit",
    metavar="N",
    type=click.IntRange(min=0),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Show at most this many, newest first; 0 shows all.",
)


def _path(store_dir):
    from twinrun.store import default_store_path

    return store_dir if store_dir is not None else default_store_path()


def store_to_list(store_dir):
    """The store a listing command reads, open, or None when there is nothing to list yet.

    Only the default folder may be missing (a new user's first `twinrun runs`); a store that
    was named, with --store or $TWINRUN_STORE, must exist, be a folder and hold a run store, so
    that a mistyped path is an error rather than an empty list.
    """
    import os

    from twinrun.store import STORE_ENV_VAR, Store, store_exists

    named = store_dir is not None or bool(os.environ.get(STORE_ENV_VAR))
    path = _path(store_dir)
    if not named and not store_exists(path):
        return None
    return Store(path, create=False)


@main.command()
@click.option("--workload", metavar="W", default=None,
              help="Only runs of this workload: a built-in one (fashion-cnn, answer-demo) or a "
                   "script, as its path was given.")
@click.option("--backend", metavar="B", default=None,
              help="Only runs on this backend: tensorflow, jax or torch.")
@click.option("--study", "study_id", metavar="ID", default=None,
              help="Only the runs of this study (its id or a prefix; `twinrun studies` lists "
                   "them).")
@click.option("--check", "check_id", metavar="ID", default=None,
              help="Only the replicas of this check (its id or a prefix; `twinrun checks` "
                   "lists them).")
@_store_option
@_limit_option
@wide_option
@_json_option
def runs(workload, backend, study_id, check_id, store_dir, limit, wide, as_json):
    """List the runs in the store, newest first.

    The filters combine: `--backend torch --study ID` lists that study's runs on PyTorch.
    """
    path = _path(store_dir)
    wanted = _run_filters(workload, backend)
    among = None
    opened = store_to_list(store_dir)
    if opened is None and (study_id or check_id):
        from twinrun.store import Store

        opened = Store(path, create=False)  # says that there is no store to look in
    if opened is None:
        summaries, total = [], 0
    else:
        with opened as store:
            groups = _groups(store, study_id, check_id)
            if len(groups) > 1:  # a study and a check: no run belongs to both
                summaries, total = [], 0
            else:
                wanted.update(groups)
                summaries = store.list_runs(limit=limit or None, **wanted)
                total = (store.count_runs(**wanted) if limit and len(summaries) == limit
                         else len(summaries))
                among = store.record_ids() if summaries and not as_json else None
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
        return
    shown = _filters_shown(workload, backend, study_id, check_id)
    if not summaries:
        click.echo(_printable(f"No runs in {path} match {shown}; `twinrun runs` lists them all."
                              if shown else f"No runs in {path} yet; `twinrun train` records one."))
        return
    from twinrun.report.runs import render_runs

    render_runs(summaries, f"Runs in {path}" + (f" matching {shown}" if shown else ""),
                among=among, wide=wide)
    if total > len(summaries):
        click.echo(f"Showing the newest {len(summaries)} of {total} runs; --limit 0 shows all.")


def _run_filters(workload, backend):
    """The store's equality filters for --workload and --backend (the backend checked first)."""
    from twinrun.backends import KERAS_BACKENDS
    from twinrun.errors import BackendError

    wanted = {}
    if workload is not None:
        wanted["workload"] = workload
    if backend is not None:
        if backend not in KERAS_BACKENDS:
            raise BackendError(f"Unknown backend {backend!r} for --backend: expected one of "
                               f"{', '.join(KERAS_BACKENDS)}.")
        wanted["backend"] = backend
    return wanted


def _groups(store, study_id, check_id):
    """The store filters that --study and --check name (`{"study_id": ...}`, `{"check_id":
    ...}`, with full ids); an unknown id raises the store's one-sentence error."""
    from twinrun.errors import StoreError

    groups = {}
    if study_id is not None:
        try:
            groups["study_id"] = store.get_study(study_id)["study_id"]
        except StoreError:
            if str(study_id).strip().startswith("check-"):
                raise StoreError(f"{study_id} is a check id, not a study id; pass it as "
                                 f"--check {study_id}.") from None
            raise
    if check_id is not None:
        groups["check_id"] = store.get_check(check_id)["check_id"]
    return groups


def _filters_shown(workload, backend, study_id, check_id):
    named = [("--workload", workload), ("--backend", backend), ("--study", study_id),
             ("--check", check_id)]
    return " ".join(f"{option} {value}" for option, value in named if value is not None)


def _printable(text):
    from twinrun.errors import printable

    return printable(text)


@main.command()
@_store_option
@_limit_option
@wide_option
@_json_option
def checks(store_dir, limit, wide, as_json):
    """List the checks in the store (`twinrun check` verdicts), newest first."""
    path = _path(store_dir)
    among = None
    opened = store_to_list(store_dir)
    if opened is None:
        summaries, total = [], 0
    else:
        with opened as store:
            summaries = store.list_checks(limit=limit or None)
            total = store.count_checks() if limit and len(summaries) == limit else len(summaries)
            among = store.record_ids() if summaries and not as_json else None
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
        return
    if not summaries:
        click.echo(f"No checks in {path} yet; `twinrun check` records one.")
        return
    from twinrun.report.runs import render_checks

    render_checks(summaries, f"Checks in {path}", among=among, wide=wide)
    if total > len(summaries):
        click.echo(f"Showing the newest {len(summaries)} of {total} checks; --limit 0 shows all.")


@main.command()
@click.argument("run_id", metavar="ID")
@_store_option
@_json_option
def show(run_id, store_dir, as_json):
    """Show one record again, without running anything: a run (config, seeds, determinism,
    environment, history and metrics), a check's verdict, or a study's statistics.

    ID is a run id, a check id (`check-...`) or a study id (`variance-...`, `cv-...`), or
    any prefix of one that matches only one (`twinrun runs`, `checks` and `studies` print
    them so).
    """
    from twinrun.store import Store

    with Store(_path(store_dir), create=False) as store:
        study = _study_named(store, run_id)
        if study is not None:
            _show_study(store, study, as_json)
            return
        if run_id.strip().startswith("check-"):
            check = store.get_check(run_id)
            run = None
        else:
            run = store.get_run(run_id)
    if run is None:
        if as_json:
            from twinrun.report.headline import verdict_with_reading_json

            click.echo(verdict_with_reading_json(check["result"]))  # as `check --json` printed
            return
        from twinrun.report.reference import render_findings_above
        from twinrun.report.terminal import render_check_headline, render_verdict

        verdict = json.loads(check["result"])
        render_check_headline(verdict)
        render_findings_above(verdict.get("findings"))
        render_verdict(verdict, check["label"], headline=False)
        return
    if as_json:
        click.echo(json.dumps(run, indent=2, sort_keys=True, default=str))
        return
    from twinrun.report.runs import render_run

    render_run(run)


def _study_named(store, record_id):
    """The study `record_id` names (its id or a prefix), or None when it names no study."""
    from twinrun.errors import StoreError

    if not str(record_id).strip().startswith(("variance-", "cv-", "compare-")):
        return None
    try:
        return store.get_study(record_id)
    except StoreError:
        return None


def _show_study(store, study, as_json):
    """A study's statistics again, as `twinrun variance`/`cv` printed them after running."""
    from twinrun.report.records import study_report

    report = study_report(store, study["study_id"])
    if as_json:
        click.echo(json_text(report["results"]))
        return
    from twinrun.report import studies as render

    results = report["results"]
    (render.render_variance if results.get("kind") == "variance" else render.render_cv)(results)
