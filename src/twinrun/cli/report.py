"""`twinrun report ID`: one stored run's or check's report as a page, Markdown or JSON."""

import json
from pathlib import Path

import click

from twinrun.cli import main
from twinrun.cli.runs import _path, _store_option

FORMATS = ("html", "md", "json")
_SUFFIXES = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


@main.command()
@click.argument("record_id", metavar="ID")
@click.option("-o", "--output", metavar="FILE", default=None,
              help="Where to write it; `-` is stdout. Default: ID.html in this folder for "
                   "html, stdout for md and json.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="html: one self-contained page with plots, works offline; md: a summary; "
                   "json: the data behind them. Default: from FILE's suffix, else html.")
@_store_option
def report(record_id, output, fmt, store_dir):
    """Write the report of a stored run or check (`check-...`).

    ID is a run id or a check id, or any prefix that matches only one; `twinrun runs` and
    `twinrun checks` list them. The HTML page is one file with its plots inline: it fetches
    nothing and runs no script, so it can be mailed or attached as it is.
    """
    from twinrun.errors import TwinrunError
    from twinrun.report.records import load_report
    from twinrun.store import Store

    if fmt is None:
        fmt = _SUFFIXES.get(Path(output).suffix.lower(), "html") if output not in (None, "-") \
            else "html"
    with Store(_path(store_dir), create=False) as store:
        data = load_report(store, record_id)
    if fmt == "html":
        from twinrun.report.html import render_html

        text = render_html(data)
    elif fmt == "md":
        from twinrun.report.markdown import render_markdown

        text = render_markdown(data)
    else:
        text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    key = data["run"]["run_id"] if data["kind"] == "run" else data["check"]["check_id"]
    if output is None and fmt == "html":
        output = f"{key}.html"
    if output in (None, "-"):
        click.echo(text, nl=False)
        return
    path = Path(output).expanduser()
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        reason = error.strerror.lower() if error.strerror else str(error)
        raise TwinrunError(f"Cannot write the report to {path}: {reason}; pass -o with a "
                           f"writable file, or -o - for stdout.") from None
    click.echo(f"Wrote the {fmt} report of {key} to {path}.")
