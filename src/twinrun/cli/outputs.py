"""Where a command's report goes: `--report PATH` on the commands that record something, and the
one function that writes a stored record's report (`twinrun report` uses it too).

A command that records a run, a check or a study adds the option and, once the record is
stored, hands its id over:

    from twinrun.cli.outputs import offer_report, report_option

    @main.command()
    @report_option
    @store_option
    @json_option
    def check(..., report_path, store, as_json):
        ...                                   # run and record the check
        warn_on_failure(offer_report, check_id, report_path, store=store, as_json=as_json)

- `report_option` adds `--report PATH`; the command receives it as `report_path` (None when
  not given). A PATH whose folder does not exist, is under a file or cannot be written in is
  refused before the command runs anything.
- `offer_report(record_id, report_path, *, store=None, as_json=False, against=None,
  metric=None)`:
  with a PATH it writes the record's page there, in the format its suffix names (`.html`,
  `.md`, `.json`, as `twinrun report -o`; any other suffix gives HTML) and says so: on stdout,
  or on stderr with `--json`, so that stdout stays one JSON object. Without a PATH it prints the
  one command that makes the page (`Report: twinrun report ID -o ID.html`), except with
  `--json`. `store` is the command's `--store` value (None: the default store); `against` is a
  second study id for a comparison of two studies; `metric` a study's `--metric`.
- `write_report(store_path, record_id, output=None, fmt=None, *, against=None, metric=None)`
  writes (or, for `-`, returns) one stored record's report as `WrittenReport(key, fmt, path,
  text)`.

Errors are one `TwinrunError` sentence: an unknown id, a missing store, a file that cannot be
written (after a recorded run, the sentence says the record is kept and how to write it again).
The commands that record call `offer_report` through `twinrun.cli.warn_on_failure`, so that a
report that fails after the result is a `Warning:` and the command keeps its exit status.
"""

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

import click

from twinrun.errors import TwinrunError

FORMATS = ("html", "md", "json")
SUFFIXES = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


def writable_file_path(ctx, param, value):
    """A click callback: refuse a file PATH that cannot be written (`--report`, `record -o`)
    before the command trains anything, in one sentence that names the option."""
    if value is None:
        return None
    import tempfile

    option = max(param.opts, key=len) if param is not None else "PATH"
    path = Path(value).expanduser()
    if path.is_dir():
        example = {"--report": "report.html", "--output": "ref.twinrun"}.get(option, "file")
        raise TwinrunError(f"{option} {value} is a folder; give a file name such as "
                           f"{path / example}.")
    folder = path.parent
    blocking = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()),
                    None)
    if blocking is not None:
        raise TwinrunError(f"{option} {value}: {blocking} is a file, not a folder, so nothing "
                           f"can be written under it; give a file in an existing folder.")
    if not folder.is_dir():
        raise TwinrunError(f"{option} {value}: the folder {folder} does not exist; create "
                           f"it or give a file in an existing folder.")
    try:
        # A real file, not os.access, which says yes to root on a read-only mount.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".twinrun-write-check-"):
            pass
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise TwinrunError(f"{option} {value}: cannot write in the folder {folder} ({reason}); "
                           f"give a file in a folder you can write.") from None
    return str(path)


report_option = click.option(
    "--report", "report_path", metavar="PATH", default=None, callback=writable_file_path,
    expose_value=True,
    help="Also write the report page here (.html, .md or .json by suffix). Without it, the "
         "command that makes the page is printed.")


@dataclass(frozen=True)
class WrittenReport:
    """One report made by `write_report`.

    Arguments:
        key: the record's id (for a comparison, `A-vs-B`).
        fmt: `html`, `md` or `json`.
        path: where it was written, or None when it goes to stdout.
        text: the report itself.
    """

    key: str
    fmt: str
    path: object
    text: str


def format_for(output, fmt=None):
    """The format of a report written to `output`: `fmt` when given, else from the suffix.

    Example:
    >>> format_for("page.md"), format_for("-"), format_for("x.txt"), format_for("a.md", "json")
    ('md', 'html', 'html', 'json')
    """
    if fmt is not None:
        return fmt
    if output in (None, "-"):
        return "html"
    return SUFFIXES.get(Path(str(output)).suffix.lower(), "html")


def record_key(report):
    """The id a report is named after: a run's, a check's or a study's, or `A-vs-B`."""
    kind = report["kind"]
    if kind == "run":
        return report["run"]["run_id"]
    if kind == "check":
        return report["check"]["check_id"]
    if kind == "compare":
        return f"{report['compare']['study_a']}-vs-{report['compare']['study_b']}"
    return report["study"]["study_id"]


def render(report, fmt):
    """`report` (from `twinrun.report.records.load_report`) as text in `fmt`.

    Arguments:
        report: the report's data.
        fmt: `html` (one self-contained page), `md` (a summary) or `json` (the data itself;
            non-finite numbers become null).
    """
    if fmt == "html":
        from twinrun.report.html import render_html

        return render_html(report)
    if fmt == "md":
        from twinrun.report.markdown import render_markdown

        return render_markdown(report)
    return json.dumps(_finite(report), indent=2, sort_keys=True, default=str,
                      allow_nan=False) + "\n"


def _finite(item):
    if isinstance(item, float) and not math.isfinite(item):
        return None
    if isinstance(item, dict):
        return {key: _finite(value) for key, value in item.items()}
    if isinstance(item, (list, tuple)):
        return [_finite(value) for value in item]
    return item


def write_report(store_path, record_id, output=None, fmt=None, *, against=None, metric=None):
    """Write the report of one stored record; return a `WrittenReport`.

    Arguments:
        store_path: the store folder (None: the default store).
        record_id: a run, check or study id, or a prefix matching only one.
        output: a file; `-` or None for stdout (None with html: `ID.html` in this folder).
        fmt: `html`, `md` or `json`; default from `output`'s suffix, else html.
        against: a second study id: the comparison of `record_id` (A) with it (B).
        metric: the metric a study's report summarises (default: the study's own).

    Example:

        written = write_report(None, "variance-3f2a", "study.html")
        written.path   # PosixPath('study.html')
    """
    from twinrun.report.records import load_report
    from twinrun.store import Store, default_store_path

    fmt = format_for(output, fmt)
    with Store(store_path if store_path is not None else default_store_path(),
               create=False) as store:
        data = load_report(store, record_id, against=against, metric=metric)
    text = render(data, fmt)
    key = record_key(data)
    if output is None and fmt == "html":
        output = f"{key}.html"
    if output in (None, "-"):
        return WrittenReport(key, fmt, None, text)
    path = Path(output).expanduser()
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        reason = error.strerror.lower() if error.strerror else str(error)
        raise TwinrunError(f"Cannot write the report to {path}: {reason}; give a writable "
                           f"file instead.") from None
    return WrittenReport(key, fmt, path, text)


def report_command(record_id, *, store=None, against=None, metric=None, output=None):
    """The one command line that writes a record's page, quoted for a POSIX shell.

    Example:
    >>> report_command("variance-3f2a", store="my runs")
    "twinrun report variance-3f2a --store 'my runs' -o variance-3f2a.html"
    """
    key = f"{record_id}-vs-{against}" if against else str(record_id)
    words = ["twinrun", "report", str(record_id)]
    if against:
        words += ["--against", str(against)]
    if metric:
        words += ["--metric", str(metric)]
    if store is not None:
        words += ["--store", str(store)]
    words += ["-o", output or f"{key}.html"]
    return " ".join(shlex.quote(word) for word in words)


def offer_report(record_id, report_path, *, store=None, as_json=False, against=None,
                 metric=None):
    """After a command recorded `record_id`: write its page to `report_path`, or say how.

    Arguments:
        record_id: the run, check or study the command recorded (study A for a comparison).
        report_path: the `--report` value; None prints the command that writes the page.
        store: the command's `--store` value (None: the default store).
        as_json: the command prints JSON: the note goes to stderr, and the hint is left out.
        against: study B, when the command compared two studies.
        metric: the `--metric` a study command summarised (None: the study's own).

    Example:

        offer_report(result["run_id"], report_path, store=store, as_json=as_json)
    """
    if report_path is None:
        if not as_json:
            click.echo("Report: " + report_command(record_id, store=store, against=against,
                                                   metric=metric))
        return None
    try:
        written = write_report(store, record_id, report_path, against=against, metric=metric)
    except TwinrunError as error:
        raise TwinrunError(f"{record_id} is recorded, but its report was not written: "
                           f"{error}") from None
    click.echo(f"Wrote the {written.fmt} report of {written.key} to {written.path}.",
               err=as_json)
    return written
