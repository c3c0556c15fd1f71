"""One stored record's report written to a file, or returned for stdout: HTML (one
self-contained page), Markdown (a summary) or JSON (the data itself, non-finite numbers as null).

`twinrun report` writes one on demand; `--report PATH` on the commands that record something
writes one right after (`twinrun.cli.outputs`).

Errors are one `TwinrunError` sentence: an unknown id, a missing store, a file that cannot be
written.
"""

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from twinrun.errors import TwinrunError
from twinrun.files import finite

FORMATS = ("html", "md", "json")
SUFFIXES = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


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
    return json.dumps(finite(report), indent=2, sort_keys=True, default=str,
                      allow_nan=False) + "\n"


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
