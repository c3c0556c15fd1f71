"""`twinrun train`: one run of a built-in workload, in a fresh process, recorded in the store."""

import json

import click

from twinrun.cli.app import main, warn_on_failure
from twinrun.cli.options import (backend_option, data_dir_option, json_option, portable_option,
                                 preset_option, seed_option, store_option, threads_option)
from twinrun.cli.export import export_after, mlflow_option
from twinrun.cli.outputs import offer_report, report_option


@main.command()
@backend_option
@seed_option
@preset_option
@click.option("--epochs", default=None, type=int, help="Most epochs (default: the preset's).")
@click.option("--patience", default=None, type=int, help="Early-stopping patience.")
@click.option("--no-determinism", is_flag=True,
              help="Seed only, as a user would by hand; leave the framework's defaults.")
@threads_option
@portable_option
@store_option
@data_dir_option
@json_option
@report_option
@mlflow_option
def train(backend, seed, preset, epochs, patience, no_determinism, threads, portable, store,
          data_dir, as_json, report_path, mlflow_uri):
    """Train the Fashion-MNIST CNN once and record the run."""
    from twinrun.train import train_once

    result = train_once(backend=backend, seed=seed, preset=preset, epochs=epochs,
                        patience=patience, determinism=not no_determinism, threads=threads,
                        portable=portable, store=store, data_dir=data_dir, show_progress=not as_json)
    if as_json:
        click.echo(json.dumps(result, default=float))
    else:
        from twinrun.report.terminal import render_run_result

        render_run_result(result)
    # The run is recorded: a report or export that fails now is a warning, not a failure.
    warn_on_failure(offer_report, result["run_id"], report_path, store=store, as_json=as_json)
    warn_on_failure(export_after, result["run_id"], mlflow_uri, store=store, as_json=as_json)
