"""`twinrun export mlflow ID...`, and the `--mlflow [TRACKING_URI]` option other commands take.

Other commands export what they recorded with two lines (a failed export, after the result, is
a warning: `twinrun.cli.app.warn_on_failure`):

    from twinrun.cli.export import export_after, mlflow_option
    from twinrun.cli.app import warn_on_failure

    @mlflow_option                        # adds `mlflow_uri` (None unless --mlflow is given);
                                          # an unusable one is refused before the command runs
    def train(..., mlflow_uri, store, as_json):
        ...                               # run and record
        warn_on_failure(export_after, run_id, mlflow_uri, store=store, as_json=as_json)
"""

import click

from twinrun.cli.app import main
from twinrun.cli.runs import _path, _store_option

# Kept here as well as in twinrun.export.mlflow, so `twinrun --help` need not import that.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def _tracking_uri(ctx, param, value):
    if value is None:
        return None
    # `--mlflow` takes an optional value, so `--mlflow STUDY_A` would read the id as the URI.
    if "://" not in value:
        raise click.BadParameter(
            f"{value!r} is not a tracking URI (sqlite:///mlflow.db, http://HOST:PORT); give "
            f"one after --mlflow, or put --mlflow after the other arguments.")
    from twinrun.export.mlflow import validate_tracking_uri

    # Now, before the command trains: an export that fails at the end must not be the first
    # sign that MLflow is missing or its server down.
    validate_tracking_uri(value)
    return value


mlflow_option = click.option(
    "--mlflow", "mlflow_uri", is_flag=False, flag_value=DEFAULT_TRACKING_URI, default=None,
    metavar="[TRACKING_URI]", callback=_tracking_uri,
    help="Also export what this records to MLflow (default tracking store "
         f"{DEFAULT_TRACKING_URI} in this folder; needs `pip install 'twinrun[mlflow]'`).")


@main.group()
def export():
    """Copy stored runs, checks and studies to other tools."""


@export.command("mlflow")
@click.argument("record_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--tracking-uri", default=DEFAULT_TRACKING_URI, show_default=True, metavar="URI",
              help="The MLflow tracking store: a sqlite:/// database (created if missing) or "
                   "a server's http:// address.")
@_store_option
def export_mlflow(record_ids, tracking_uri, store_dir):
    """Export stored runs, checks and studies to MLflow, experiment "twinrun".

    ID is a run id, a check id (`check-...`) or a study id, or a prefix that matches only one.
    A check becomes a parent run with its verdict and its replicas nested under it; a study a
    parent run with its summary and its runs nested. Exporting a record again adds nothing.
    """
    from twinrun.export.mlflow import export_records
    from twinrun.store import Store

    with Store(_path(store_dir), create=False) as store:
        results = export_records(store, record_ids, tracking_uri)
    echo_exported(results, tracking_uri)


def export_after(record_id, tracking_uri, *, store=None, as_json=False):
    """Export a record a command has just stored, when `--mlflow` was given (else nothing).

    Arguments:
        record_id: the run, check or study id the command recorded.
        tracking_uri: the `--mlflow` value, None when the option was not given.
        store: the command's `--store` value (None: the default store).
        as_json: the command prints one JSON object on stdout, so the lines go to stderr.
    """
    if not tracking_uri:
        return
    from twinrun.export.mlflow import export_records
    from twinrun.store import Store

    with Store(_path(store), create=False) as opened:
        results = export_records(opened, [record_id], tracking_uri, option="--mlflow")
    echo_exported(results, tracking_uri, err=as_json)


def echo_exported(results, tracking_uri, err=False):
    """Print one line per exported record and where they went (`export_records`' results)."""
    from twinrun.export.mlflow import EXPERIMENT_NAME, sqlite_path
    from twinrun.errors import printable

    tracking_uri = tracking_uri or DEFAULT_TRACKING_URI
    for result in results:
        state = "exported as" if result["created"] else "was already exported as"
        nested = ""
        if result["children"]:
            nested = (f", with {result['children']} nested runs "
                      f"({result['children_created']} new)")
        click.echo(printable(f"{result['kind'].capitalize()} {result['record_id']} {state} "
                             f"MLflow run {result['mlflow_run_id']}{nested}."), err=err)
    database = sqlite_path(tracking_uri)
    where = f"{tracking_uri} ({database})" if database is not None else tracking_uri
    view = (f" `mlflow ui --backend-store-uri {tracking_uri}` (from the full mlflow package) "
            f"shows them.") if database else ""
    click.echo(printable(f"MLflow tracking store: {where}, experiment \"{EXPERIMENT_NAME}\"."
                         f"{view}"), err=err)
