"""`twinrun diff ID_A ID_B`: two stored runs, or two stored checks, side by side.

What differs is worked out by `twinrun.report.diff`; this module reads the two records from the
store and lays the rows out: a Rich table per section on a terminal, aligned plain text in a
pipe, a marker (`*`) on every row that differs either way. Every value is data, never markup.
"""

import json
import math

import click

from twinrun.cli import main
from twinrun.cli.runs import _json_option, _path, _store_option

# A section longer than this shows only its differing rows, and says how many equal ones it
# left out; --all shows every row. The environment alone has about sixty.
FOLD_AFTER_ROWS = 12
# Longer cells (a CPU's flag list, a confusion matrix) are cut in the table; --json keeps all.
MAX_CELL_CHARS = 72
DIFFERS_MARK = "*"
DIFFERS_STYLE = "bold yellow"
NOT_COMPARED_STYLE = "dim"


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
    from twinrun.errors import TwinrunError
    from twinrun.report import diff as record_diff
    from twinrun.store import Store

    kinds = {_kind(id_a), _kind(id_b)}
    if kinds == {"reference"}:
        result = record_diff.diff_references(_reference_dict(id_a), _reference_dict(id_b),
                                             id_a, id_b)
        if as_json:
            click.echo(json.dumps(result, indent=2, default=str))
            return
        render_diff(result, show_all=show_all)
        return
    if "reference" in kinds:
        raise TwinrunError(f"Cannot compare a reference file with a stored record ({id_a}, "
                           f"{id_b}); give two `.twinrun` files, two run ids or two check ids.")
    with Store(_path(store_dir), create=False) as store:
        if len(kinds) > 1:
            # An unknown id is named first: a typo is likelier than a run meant as a check.
            for record_id in (id_a, id_b):
                _full_id(store, record_id)
            raise TwinrunError(f"Cannot compare a run with a check ({id_a}, {id_b}); give two "
                               "run ids or two check ids (`check-...`).")
        if kinds == {"check"}:
            check_a, check_b = store.get_check(id_a), store.get_check(id_b)
            result = record_diff.diff_checks(
                check_a, check_b, _check_environment(store, check_a["check_id"]),
                _check_environment(store, check_b["check_id"]))
        else:
            result = record_diff.diff_runs(store.get_run(id_a), store.get_run(id_b))
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    render_diff(result, show_all=show_all)


def _reference_dict(path):
    """A `.twinrun` file as `diff_references` reads it: what was recorded and how, the
    environment, and one digest per step (its batch, loss and every tensor's words)."""
    import hashlib

    from twinrun.checks.reference import read_reference

    reference = read_reference(path)
    header = {key: value for key, value in reference.header.items()
              if key not in ("environment", "epochs", "extras", "renamed", "data")}
    # Each step record as written (batch, loss, every tensor's words), digested.
    fingerprints = [hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode())
                    .hexdigest()[:16] for record in reference.trace.steps]
    return {"header": header, "environment": reference.environment,
            "fingerprints": fingerprints}


def _full_id(store, record_id):
    """The stored id `record_id` names; the store's one-sentence error when there is none."""
    if _kind(record_id) == "check":
        return store.get_check(record_id)["check_id"]
    return store.resolve_run_id(record_id)


def _kind(record_id):
    key = str(record_id).strip()
    if key.endswith(".twinrun"):
        return "reference"
    return "check" if key.startswith("check-") else "run"


def _check_environment(store, check_id):
    """The environment of a check's first replica that recorded one (its replicas are runs
    whose study id is the check's id), or None."""
    for summary in sorted(store.list_runs(study_id=check_id),
                          key=lambda run: (run["replica"] is None, run["replica"] or 0)):
        environment = store.get_run(summary["run_id"]).get("environment")
        if environment:
            return environment
    return None


# -- rendering -----------------------------------------------------------------------------------


def render_diff(result, show_all=False, out=None):
    """Print a diff of `twinrun.report.diff`: one table per section, differing rows marked.

    Arguments:
        result: the dict `diff_runs`, `diff_checks` or `diff_references` returned.
        show_all: show every row, also of long sections with few differences.
        out: a Rich console (default: stdout's).
    """
    from rich.console import Console

    out = out or Console()
    id_a, id_b = (str(value) if value is not None else "A" for value in result["ids"])
    for section in result["sections"]:
        rows = section["rows"]
        shown = rows if show_all or len(rows) <= FOLD_AFTER_ROWS else [
            row for row in rows if row["differs"]]
        left_out = len(rows) - len(shown)
        if not shown:
            _line(out, f"{section['title']}: all {left_out} rows equal or not compared; "
                       f"--all shows them.")
            _line(out, "")
            continue
        note = (f"{left_out} more rows, equal or not compared, not shown; --all shows them"
                if left_out else None)
        _print_section(out, section["title"], [id_a, id_b], shown, note)
    count = result["differing"]
    noun = {"runs": "runs", "checks": "checks", "references": "references"}[result["kind"]]
    summary = (f"The two {noun} differ in {count} row{'s' if count != 1 else ''} "
               f"(marked {DIFFERS_MARK})." if count else f"The two {noun} agree on every row "
               f"compared (timings, process ids and load aside).")
    _line(out, summary)


def _print_section(out, title, ids, rows, note):
    from twinrun.errors import printable

    cells = [[DIFFERS_MARK if row["differs"] else "", printable(row["key"]),
              _cell(row["a"]), _cell(row["b"])] for row in rows]
    styles = [DIFFERS_STYLE if row["differs"] else
              NOT_COMPARED_STYLE if row["differs"] is None else None for row in rows]
    columns = ["", "", printable(ids[0]), printable(ids[1])]
    if out.is_terminal:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(title), title_justify="left", caption=Text(note or ""),
                      caption_justify="left")
        for column in columns:
            table.add_column(Text(column), overflow="fold")
        for row, style in zip(cells, styles):
            table.add_row(*(Text(cell, style=style or "") for cell in row))
        out.print(table)
        return
    # A pipe or a file: aligned text, no boxes and no colour; the marker carries the meaning.
    widths = [max(len(row[i]) for row in [columns, *cells]) for i in range(len(columns))]
    _line(out, title)
    for row in [columns, *cells]:
        _line(out, "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if note:
        _line(out, f"  ({note})")
    _line(out, "")


def _line(out, text):
    if out.is_terminal:
        from rich.text import Text

        out.print(Text(text), soft_wrap=True)
    else:
        out.file.write(text + "\n")


def _cell(value):
    """A value as the table shows it: floats to the last bit (equal-looking values that are
    marked different would be a riddle), lists and dicts as compact JSON, cut when long."""
    from twinrun.errors import printable

    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, (list, dict)):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = printable(value)
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS - 1] + "…"
