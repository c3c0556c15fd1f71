"""What runs inside a replica's Jupyter kernel, before the notebook's first cell and after its last.

The notebook program (`python -m twinrun.programs.notebook`) sends `prepare(...)` as a silent
request (no execution count, no history) before the first cell, so the hooks (`twinrun.hooks`)
seed, make deterministic and trace the notebook exactly as they do a script: Python and NumPy
at once, each framework as a cell imports it, every Keras `fit` and torch optimizer step.

It also names each cell's code: ipykernel compiles a cell under a file name made from a hash of
its text (`/tmp/ipykernel_<pid>/<hash>.py`), which says nothing about where the cell is.
`prepare` gives the compiler the name `<notebook>#cell<N>` for the text of cell N instead, so
every line the hooks note (a phase's `fit` call, a global draw) names its cell, and so do the
cell's tracebacks.
"""

import json
from pathlib import Path

CELL_MARK = "#cell"


def cell_file_name(notebook_name, position):
    """The file name a cell's code is compiled under: `position` counts the executed notebook's
    cells from 1 (the cell that `-p` injects included).

    Example:
    >>> cell_file_name("train.ipynb", 3)
    'train.ipynb#cell3'
    """
    return f"{notebook_name}{CELL_MARK}{position}"


def cell_position(file_name):
    """The position in `file_name` (`cell_file_name`), or None for any other file.

    Example:
    >>> cell_position("/work/train.ipynb#cell3"), cell_position("train.py")
    (3, None)
    """
    head, mark, tail = str(file_name).rpartition(CELL_MARK)
    if not mark or not head.endswith(".ipynb") or not tail.isdigit():
        return None
    return int(tail)


def prepare(cells_path):
    """Install the hooks and name the cells' code, in this kernel (once).

    Arguments:
        cells_path: a JSON file `{"cells": [[file name, source], ...]}`, in execution order.
    """
    import twinrun.hooks

    cells = json.loads(Path(cells_path).read_text())["cells"]
    sources = [source for _, source in cells]
    twinrun.hooks.install(traces_itself=any(twinrun.hooks.traces_itself(s) for s in sources))
    _name_cells(cells)


def _name_cells(cells):
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    compiler = shell.compile
    waiting = {}
    for name, source in cells:
        waiting.setdefault(source, []).append(name)
    original = compiler.get_code_name

    def get_code_name(raw_code, transformed_code, number):
        # The cells arrive in order, so the first name still waiting for this text is its.
        names = waiting.get(raw_code)
        if names:
            return names.pop(0)
        return original(raw_code, transformed_code, number)

    compiler.get_code_name = get_code_name


def finish():
    """End the trace (the kernel is shut down next, by its client)."""
    import twinrun.hooks

    twinrun.hooks.finish()
