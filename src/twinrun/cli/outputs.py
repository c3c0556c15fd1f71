"""Where a command's report goes: `--report PATH` on the commands that record something.

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
- the report itself is written by `twinrun.report.write.write_report`.

Errors are one `TwinrunError` sentence: an unknown id, a missing store, a file that cannot be
written (after a recorded run, the sentence says the record is kept and how to write it again).
The commands that record call `offer_report` through `twinrun.cli.app.warn_on_failure`, so that a
report that fails after the result is a `Warning:` and the command keeps its exit status.
"""

from pathlib import Path

import click

from twinrun.errors import TwinrunError
from twinrun.report.write import report_command, write_report


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
