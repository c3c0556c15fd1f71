"""`twinrun report ID`: one stored run's, check's or study's report as a page, Markdown or JSON.

The writing itself is `twinrun.cli.outputs.write_report`, which `--report PATH` on `train`,
`check` and the studies uses too.
"""

import click

from twinrun.cli.app import main
from twinrun.report.write import FORMATS, write_report
from twinrun.cli.runs import _store_option


@main.command()
@click.argument("record_id", metavar="ID")
@click.option("-o", "--output", metavar="FILE", default=None,
              help="Where to write it; `-` is stdout. Default: ID.html in this folder for "
                   "html, stdout for md and json.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="html: one self-contained page with plots, works offline; md: a summary; "
                   "json: the data behind them. Default: from FILE's suffix, else html.")
@click.option("--against", metavar="STUDY_B", default=None,
              help="With a study ID: compare it (A) with study B, as `twinrun compare A B` "
                   "does, on one page.")
@click.option("--metric", default=None,
              metavar="test_accuracy|test_loss|best_val_loss|stopped_epoch",
              help="For a study: the metric to report (default: the study's own).")
@_store_option
def report(record_id, output, fmt, against, metric, store_dir):
    """Write the report of a stored run, check (`check-...`) or study.

    ID is a run id, a check id or a study id, or any prefix that matches only one;
    `twinrun runs`, `twinrun checks` and `twinrun studies` list them. `--against STUDY_B`
    makes the comparison of two studies. The HTML page is one file with its plots inline: it
    fetches nothing and runs no script, so it can be mailed or attached as it is.
    """
    written = write_report(store_dir, record_id, output, fmt, against=against, metric=metric)
    if written.path is None:
        click.echo(written.text, nl=False)
        return
    click.echo(f"Wrote the {written.fmt} report of {written.key} to {written.path}.")
