"""A notebook as twinrun reads it: its cells, numbered and titled, and its parameters.

Cells are numbered by their position in the file, from 1, markdown cells included: the number
a reader counts down to in Jupyter, Colab or VS Code. A cell's title is its first line that is
not blank. The notebook file itself is never written: parameters go into a copy.
"""

import ast
import json
from dataclasses import dataclass
from pathlib import Path

from twinrun.errors import TwinrunError

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"  # papermill's name for the cell it adds
TITLE_LENGTH = 60


def is_notebook(path):
    """Whether `path` names a Jupyter notebook (by its `.ipynb` suffix).

    Example:
    >>> is_notebook("train.ipynb"), is_notebook("train.py")
    (True, False)
    """
    return str(path).lower().endswith(".ipynb")


def read_notebook(path):
    """The notebook at `path` as an `nbformat` v4 node.

    Raises `TwinrunError` (one sentence) when the file is missing or is not a notebook.

    Example (it needs a file, so it is not run as a doctest):

        notebook = read_notebook("train.ipynb")
        len(notebook.cells)
    """
    import nbformat

    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            notebook = nbformat.read(handle, as_version=4)
    except FileNotFoundError:
        raise TwinrunError(f"Notebook not found: {path} (from {Path.cwd()}).") from None
    except OSError as error:
        raise TwinrunError(f"Cannot read {path} ({error.strerror or error}); pass the path of a "
                           f"Jupyter notebook (.ipynb).") from None
    except (ValueError, UnicodeDecodeError, KeyError, AttributeError, TypeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TwinrunError(f"{path} is not a Jupyter notebook ({reason}); open and save it in "
                           f"Jupyter, or pass a .ipynb file written by Jupyter or Colab.") \
            from None
    if not isinstance(notebook.get("cells"), list):
        raise TwinrunError(f"{path} is not a Jupyter notebook (it has no list of cells); pass "
                           f"a .ipynb file written by Jupyter or Colab.")
    return notebook


def cell_title(source):
    """A cell's first line that is not blank, cut to `TITLE_LENGTH` characters.

    Example:
    >>> cell_title("\\n# Train the model\\nmodel.fit(x, y)")
    '# Train the model'
    """
    for line in str(source).splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= TITLE_LENGTH else line[:TITLE_LENGTH - 1] + "…"
    return ""


def describe_cell(number, title, label=None):
    """How messages name a cell: by its number, or by `label` where it has one (a cell the
    `%%twinrun` magic took from a kernel's history is `In [5]`).

    Example:
    >>> describe_cell(3, "order = rng.permutation(n)")
    'cell 3 (`order = rng.permutation(n)`)'
    >>> describe_cell(3, "model.fit(x, y)", "In [7]")
    'In [7] (`model.fit(x, y)`)'
    """
    if number is None and label is None:
        return "the injected parameters cell"
    name = label or f"cell {number}"
    return f"{name} (`{title}`)" if title else name


@dataclass(frozen=True)
class CellPlace:
    """Where one executed cell comes from: its number in the user's notebook (None for the
    cell `-p` injected) and its title."""

    number: int | None
    title: str
    label: str | None = None

    def describe(self):
        return describe_cell(self.number, self.title, self.label)


def parameter_value(text):
    """A `-p NAME VALUE` value as papermill reads one from a command line: a Python literal
    where it is one (`3`, `0.5`, `True`, `[1, 2]`), else the text itself.

    Example:
    >>> parameter_value("3"), parameter_value("0.5"), parameter_value("adam")
    (3, 0.5, 'adam')
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def with_parameters(notebook, parameters, path="the notebook"):
    """The notebook with a cell setting `parameters` after the cell tagged `parameters`
    (papermill's convention), and the `CellPlace` of every cell of the result.

    Arguments:
        notebook: an `nbformat` node (changed in place: pass a copy you may change).
        parameters: `(name, value text)` pairs, in order.
        path: how messages name the notebook.

    Example:
    >>> import nbformat.v4 as v4
    >>> nb = v4.new_notebook(cells=[v4.new_code_cell("lr = 0.1", metadata={"tags": ["parameters"]}),
    ...                             v4.new_code_cell("print(lr)")])
    >>> nb, places = with_parameters(nb, [("lr", "0.01")])
    >>> nb.cells[1].source, [p.number for p in places]
    ('# Parameters\\nlr = 0.01\\n', [1, None, 2])
    """
    import nbformat.v4 as v4

    places = [CellPlace(i + 1, cell_title(c.get("source", "")),
                        (c.get("metadata", {}).get("twinrun") or {}).get("label"))
              for i, c in enumerate(notebook.cells)]
    if not parameters:
        return notebook, places
    lines = ["# Parameters"]
    for name, value in parameters:
        if not str(name).isidentifier():
            raise TwinrunError(f"Expected -p to name a Python variable. Received: {name!r}.")
        lines.append(f"{name} = {parameter_value(value)!r}")
    tagged = [i for i, c in enumerate(notebook.cells)
              if PARAMETERS_TAG in (c.get("metadata", {}).get("tags") or [])]
    if not tagged:
        raise TwinrunError(f"-p sets variables in the cell tagged `parameters`, and {path} has "
                           f"none; tag the cell that sets them (in Jupyter: View, Cell "
                           f"Toolbar, Tags) and run again.")
    at = tagged[0] + 1
    notebook.cells.insert(at, v4.new_code_cell("\n".join(lines) + "\n",
                                               metadata={"tags": [INJECTED_TAG]}))
    places.insert(at, CellPlace(None, "# Parameters"))
    return notebook, places


def code_cells(notebook):
    """`(number, source)` of every code cell, numbered by position from 1.

    Example:
    >>> import nbformat.v4 as v4
    >>> code_cells(v4.new_notebook(cells=[v4.new_markdown_cell("# Title"),
    ...                                   v4.new_code_cell("x = 1")]))
    [(2, 'x = 1')]
    """
    return [(i + 1, str(c.get("source", ""))) for i, c in enumerate(notebook.cells)
            if c.get("cell_type") == "code"]


def write_json(path, content):
    """Write `content` as JSON to `path` (replaced whole: a reader never sees half a file)."""
    import os

    path = Path(path)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(content))
    os.replace(temporary, path)
