"""A diff of two records (`twinrun.report.diff`) for the terminal: a Rich table per section on
a terminal, aligned plain text in a pipe, a marker (`*`) on every row that differs either way.
Every value is data, never markup.
"""

import json
import math

from twinrun.report.formatting import console

# A section longer than this shows only its differing rows, and says how many equal ones it
# left out; --all shows every row. The environment alone has about sixty.
FOLD_AFTER_ROWS = 12
# Longer cells (a CPU's flag list, a confusion matrix) are cut in the table; --json keeps all.
MAX_CELL_CHARS = 72
DIFFERS_MARK = "*"
DIFFERS_STYLE = "bold yellow"
NOT_COMPARED_STYLE = "dim"


def render_diff(result, show_all=False, out=None):
    """Print a diff of `twinrun.report.diff`: one table per section, differing rows marked.

    Arguments:
        result: the dict `diff_runs`, `diff_checks` or `diff_references` returned.
        show_all: show every row, also of long sections with few differences.
        out: a Rich console (default: stdout's).
    """
    out = out or console()
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
