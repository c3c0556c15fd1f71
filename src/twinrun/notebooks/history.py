"""The notebook a kernel has run so far, rebuilt from its history (for the `%%twinrun` magic).

IPython keeps every cell it ran, as typed, in `history_manager.input_hist_raw` (`In[k]` is
cell `k`). The magic's check replays them, in the order they ran, before the checked cell:
that is the state the cell saw. Left out are twinrun's own lines (`%load_ext twinrun`, other
`%%twinrun` cells, which would check themselves) and package installs (`%pip install`,
`!pip install`): the replicas run in this very interpreter, which has the packages already.
"""

import re

_LEFT_OUT = re.compile(r"^\s*(%(re)?load_ext\s+twinrun\b|[%!]\s*pip3?\s+install\b|"
                       r"[%!]\s*(uv\s+)?pip\s+install\b)")


def replayed_cells(history):
    """`(label, source)` of the cells to run before the checked one.

    Arguments:
        history: the raw inputs, `In[0]` (empty) up to the cell running now, excluded.

    Example:
    >>> replayed_cells(["", "%pip install twinrun", "%load_ext twinrun\\nx = 1",
    ...                 "%%twinrun check\\nfit()", "y = x + 1"])
    [('In [2]', 'x = 1'), ('In [4]', 'y = x + 1')]
    """
    cells = []
    for number, source in enumerate(history):
        if number == 0 or str(source).lstrip().startswith("%%twinrun"):
            continue
        lines = [line for line in str(source).split("\n") if not _LEFT_OUT.match(line)]
        text = "\n".join(lines).strip("\n")
        if text.strip():
            cells.append((f"In [{number}]", text))
    return cells


def history_notebook(history, cell, label="this cell"):
    """An `nbformat` notebook of the replayed cells, then `cell`, each labelled for messages.

    Example:
    >>> nb = history_notebook(["", "import torch"], "model.fit(x)")
    >>> [(c.source, c.metadata["twinrun"]["label"]) for c in nb.cells]
    [('import torch', 'In [1]'), ('model.fit(x)', 'this cell')]
    """
    import nbformat.v4 as v4

    cells = [v4.new_code_cell(source, metadata={"twinrun": {"label": name}})
             for name, source in replayed_cells(history)]
    cells.append(v4.new_code_cell(cell, metadata={"twinrun": {"label": label}}))
    return v4.new_notebook(cells=cells)
