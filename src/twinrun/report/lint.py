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
    out = out or Console()
    for finding in findings:
        out.print(Text.assemble(data_text(f"{path}:{finding.line}", "bold"), "  ",
                                data_text(finding.title, "yellow"), "  ",
                                data_text(f"[{finding.rule}]", "dim")))
        if finding.code:
            out.print(Text.assemble("    ", data_text(finding.code, "cyan")))
        out.print(Text.assemble("    why: ", data_text(finding.why)))
        out.print(Text.assemble("    fix: ", data_text(finding.fix)))
        out.print()
    if findings:
        lines = sorted({finding.line for finding in findings})
        out.print(Text.assemble(
            f"{len(findings)} reproducibility pitfall{'s' if len(findings) != 1 else ''} in ",
            data_text(path), f" (line{'s' if len(lines) != 1 else ''} ",
            ", ".join(map(str, lines)), "). `twinrun check -n 2 -- python ", data_text(path),
            "` shows whether the runs still differ."))
    else:
        out.print(Text.assemble(
            "No known reproducibility pitfall in ", data_text(path), ". This reads the code "
            "only; `twinrun check -n 2 -- python ", data_text(path), "` proves the runs "
            "identical."))


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
    out = out or Console()
    for finding in findings:
        out.print(Text.assemble(data_text(f"{path}, {finding.describe()}", "bold"), "  ",
                                data_text(finding.title, "yellow"), "  ",
                                data_text(f"[{finding.rule}]", "dim")))
        if finding.code:
            out.print(Text.assemble("    ", data_text(finding.code, "cyan")))
        out.print(Text.assemble("    why: ", data_text(finding.why)))
        out.print(Text.assemble("    fix: ", data_text(finding.fix)))
        out.print()
    if findings:
        cells = sorted({finding.cell for finding in findings})
        out.print(Text.assemble(
            f"{len(findings)} reproducibility pitfall{'s' if len(findings) != 1 else ''} in ",
            data_text(path), f" (cell{'s' if len(cells) != 1 else ''} ",
            ", ".join(map(str, cells)), "). `twinrun check -n 2 ", data_text(path),
            "` shows whether the runs still differ."))
    else:
        out.print(Text.assemble(
            "No known reproducibility pitfall in ", data_text(path), ". This reads the code "
            "only; `twinrun check -n 2 ", data_text(path), "` proves the runs identical."))
