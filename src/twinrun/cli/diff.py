"""`twinrun diff ID_A ID_B`: two stored runs, or two stored checks, side by side.

The two records are read by `twinrun.report.records.load_diff`, what differs is worked out by
`twinrun.report.diff`, and `twinrun.report.diff_table` lays the rows out.
"""

import json

import click

from twinrun.cli.app import main
from twinrun.cli.runs import _json_option, _path, _store_option
from twinrun.report.diff_table import FOLD_AFTER_ROWS


@main.command()
@click.argument("id_a")
@click.argument("id_b")
@click.option("--all", "show_all", is_flag=True,
              help=f"Show every row; by default a section of more than {FOLD_AFTER_ROWS} rows "
                   f"shows only the rows that differ.")
@_store_option
@_json_option
def diff(id_a, id_b, show_all, store_dir, as_json):
    """Put two runs, or two checks (`check-...`), side by side, with what differs marked.

    For runs: config, seeds, determinism report, environment, metrics per epoch and final,
    and fingerprints. For checks: their verdicts, replicas and environments. ID_A and ID_B are
    ids or prefixes that match only one; `twinrun runs` and `twinrun checks` list them. Exit
    status 0 whenever the two are shown, whatever differs; 2 when one is not found.
    """
    from twinrun.report.diff_table import render_diff
    from twinrun.report.records import load_diff

    result = load_diff(_path(store_dir), id_a, id_b)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    render_diff(result, show_all=show_all)
