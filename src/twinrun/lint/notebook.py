"""`twinrun lint nb.ipynb`: the script rules, run over a notebook's code cells, found by cell.

The code cells are read as one script, in the order of the notebook (the order `twinrun check`
runs them in), so a rule that follows names across lines sees a seed set in cell 2 before a
model built in cell 5. IPython's own syntax is not Python and is skipped, never a parse error:
line magics (`%pip install x`), shell lines (`!ls`, `files = !ls`), help (`model?`), and cells
whose cell magic runs something else (`%%bash`, `%%writefile`); the body of a cell magic that
runs Python (`%%time`, `%%capture`) is read.

Two findings are the notebook's own:
- `PYTHONHASHSEED` set in a cell comes too late in a subtler way than in a script: the kernel
  has already started, so it says so and what to do instead;
- cells last run out of order (their execution counts do not increase down the notebook):
  the saved outputs came from a state that running the notebook top to bottom does not build.
"""

import ast
import re
from dataclasses import dataclass

from twinrun.lint import lint_source
from twinrun.lint.findings import Finding
from twinrun.notebooks.reading import cell_title, describe_cell

# Cell magics whose body IPython runs as Python in the kernel.
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug"}
_IPYTHON_LINE = re.compile(r"^\s*(%|!)|^\s*[\w.,\s\[\]()*]+=\s*[%!]|^[^#'\"]*\?\s*$")

KERNEL_HASH_SEED_WHY = (
    "Python reads PYTHONHASHSEED once, when the interpreter starts, and this notebook's kernel "
    "has already started: set in a cell it only reaches child processes, so the order of sets "
    "of strings (and whatever follows from it: label indices, file order) still changes from "
    "run to run.")
KERNEL_HASH_SEED_FIX = (
    "The kernel has already started; set it in the kernel's environment, or run the notebook "
    "under `twinrun check` (each replica's kernel starts with it fixed). Better still, make the "
    "order independent of it with `sorted(...)`.")


@dataclass(frozen=True)
class CellFinding:
    """A `Finding` in a notebook: `line` counts within cell number `cell` (from 1, by
    position in the notebook), whose title is `cell_title`."""

    finding: Finding
    cell: int
    cell_title: str

    @property
    def line(self):
        return self.finding.line

    def __getattr__(self, name):
        return getattr(self.finding, name)

    def describe(self):
        return f"{describe_cell(self.cell, self.cell_title)}, line {self.finding.line}"

    def to_dict(self):
        return dict(self.finding.to_dict(), cell=self.cell, cell_title=self.cell_title)


def python_lines(source):
    """A cell's text with IPython's own syntax blanked out as `pass` (same indentation, so
    the lines keep their numbers and a shell line inside a block stays a statement); None for
    a cell whose cell magic runs something other than Python.

    Example:
    >>> python_lines("%pip install keras\\nimport keras\\n!ls")
    'pass\\nimport keras\\npass'
    >>> python_lines("%%bash\\nls") is None
    True
    """
    lines = str(source).split("\n")
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        magic = first[2:].split()[0] if first[2:].split() else ""
        if magic not in PYTHON_CELL_MAGICS:
            return None
        lines[0] = ""
    kept = []
    for line in lines:
        if _IPYTHON_LINE.match(line):
            indent = line[:len(line) - len(line.lstrip())]
            kept.append(f"{indent}pass")
        else:
            kept.append(line)
    return "\n".join(kept)


def lint_notebook(path):
    """The findings in the notebook at `path`, as `CellFinding`s in cell and line order.

    Raises `TwinrunError` (one sentence) when the file is not a notebook.

    Example (it needs a file, so it is not run as a doctest):

        for finding in lint_notebook("train.ipynb"):
            print(finding.describe(), finding.title)
    """
    from twinrun.notebooks.reading import read_notebook

    notebook = read_notebook(path)
    found = []
    parts, owners = [], []  # the script's lines, and (cell, line in cell) of each
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        source = str(cell.get("source", ""))
        text = python_lines(source)
        if text is None or not text.strip():
            continue
        title = cell_title(source)
        try:
            ast.parse(text)
        except (SyntaxError, ValueError) as error:
            line = getattr(error, "lineno", None) or 1
            found.append(CellFinding(Finding(
                rule="cell-not-python", line=line, column=0,
                code=_line(source, line), title="This cell is not Python, so lint skipped it",
                why=f"Python cannot parse it ({getattr(error, 'msg', error)}), and `twinrun "
                    f"check` would stop at it with that error.",
                fix="Fix the cell, or mark IPython syntax with % or ! as the notebook's "
                    "kernel expects."), number, title))
            continue
        for k, line in enumerate(text.split("\n"), start=1):
            parts.append(line)
            owners.append((number, title, k))
    if parts:
        for finding in lint_source("\n".join(parts) + "\n", str(path)):
            number, title, line = owners[finding.line - 1]
            finding = _for_notebook(Finding(**dict(finding.to_dict(), line=line)))
            found.append(CellFinding(finding, number, title))
    found += _out_of_order(notebook)
    return sorted(found, key=lambda f: (f.cell, f.line, f.rule))


def _for_notebook(finding):
    if finding.rule != "hash-seed-in-python":
        return finding
    return Finding(**dict(finding.to_dict(), why=KERNEL_HASH_SEED_WHY, fix=KERNEL_HASH_SEED_FIX))


def _out_of_order(notebook):
    """One finding where the saved execution counts stop increasing down the notebook."""
    counted = [(number, cell) for number, cell in enumerate(notebook.cells, start=1)
               if cell.get("cell_type") == "code" and isinstance(cell.get("execution_count"), int)]
    counts = [cell["execution_count"] for _, cell in counted]
    for k in range(1, len(counted)):
        if counts[k] <= max(counts[:k]):
            number, cell = counted[k]
            source = str(cell.get("source", ""))
            shown = ", ".join(f"[{c}]" for c in counts)
            return [CellFinding(Finding(
                rule="cells-run-out-of-order", line=1, column=0, code=_line(source, 1),
                title=f"The cells were last run out of order (execution counts {shown})",
                why=f"This cell ran before a cell above it, so the outputs saved in the "
                    f"notebook came from a kernel state that running it top to bottom does not "
                    f"build; run in order, it may train something else.",
                fix="Restart the kernel and run all cells in order, or run it under `twinrun "
                    "check`, which runs every replica top to bottom in a fresh kernel."),
                number, cell_title(source))]
    return []


def _line(source, line):
    lines = str(source).splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def notebook_findings_json(findings, path):
    """What `twinrun lint nb.ipynb --json` prints: as for a script, each finding with its cell.

    Example:
    >>> notebook_findings_json([], "train.ipynb")
    {'file': 'train.ipynb', 'count': 0, 'findings': []}
    """
    return {"file": str(path), "count": len(findings),
            "findings": [finding.to_dict() for finding in findings]}

