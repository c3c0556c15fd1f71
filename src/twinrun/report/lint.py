"""`twinrun lint` for the terminal and as JSON: each finding with its line, why, and the fix.

The file name, the code line and everything quoted from the script are data, never Rich
markup: they go in as `rich.text.Text`, with control characters escaped.
"""

from rich.console import Console
from rich.text import Text

from twinrun.report.text import data_text


def render_findings(findings, path, out=None):
    """Print the findings of one script, then a one-line summary.

    Arguments:
        findings: `twinrun.lint.Finding`s, sorted by line.
        path: the script, as the user named it.
        out: a Rich console (default: stdout).
    """
    _render(findings, path, out, place=lambda finding: f"{path}:{finding.line}",
            unit="line", unit_of=lambda finding: finding.line,
            command="twinrun check -n 2 -- python ")


def findings_json(findings, path):
    """What `twinrun lint --json` prints: the file, the number of findings, and each finding.

    Arguments:
        findings: `twinrun.lint.Finding`s.
        path: the script, as the user named it.

    Example:
    >>> findings_json([], "train.py")
    {'file': 'train.py', 'count': 0, 'findings': []}
    """
    return {"file": str(path), "count": len(findings),
            "findings": [finding.to_dict() for finding in findings]}


def render_notebook_findings(findings, path, out=None):
    """Print the findings of one notebook (`twinrun.lint.notebook.CellFinding`s), each by its
    cell and the line within it, then a one-line summary.

    Arguments:
        findings: in cell and line order.
        path: the notebook, as the user named it.
        out: a Rich console (default: stdout).
    """
    _render(findings, path, out, place=lambda finding: f"{path}, {finding.describe()}",
            unit="cell", unit_of=lambda finding: finding.cell, command="twinrun check -n 2 ")


def _render(findings, path, out, *, place, unit, unit_of, command):
    """Scripts and notebooks alike: each finding at its place, why and fix, then a summary
    naming the lines (or cells) and the check that proves whether the runs differ."""
    out = out or Console()
    for finding in findings:
        out.print(Text.assemble(data_text(place(finding), "bold"), "  ",
                                data_text(finding.title, "yellow"), "  ",
                                data_text(f"[{finding.rule}]", "dim")))
        if finding.code:
            out.print(Text.assemble("    ", data_text(finding.code, "cyan")))
        out.print(Text.assemble("    why: ", data_text(finding.why)))
        out.print(Text.assemble("    fix: ", data_text(finding.fix)))
        out.print()
    if findings:
        units = sorted({unit_of(finding) for finding in findings})
        out.print(Text.assemble(
            f"{len(findings)} reproducibility pitfall{'s' if len(findings) != 1 else ''} in ",
            data_text(path), f" ({unit}{'s' if len(units) != 1 else ''} ",
            ", ".join(map(str, units)), f"). `{command}", data_text(path),
            "` shows whether the runs still differ."))
    else:
        out.print(Text.assemble(
            "No known reproducibility pitfall in ", data_text(path), ". This reads the code "
            f"only; `{command}", data_text(path), "` proves the runs identical."))
