"""Jupyter notebooks, checked as they are: read, run in a fresh kernel, located by cell.

- `reading`: the notebook's cells, numbered and titled, and `-p` parameters (papermill's
  convention: a cell after the one tagged `parameters`);
- `kernel`: a fresh kernel of this interpreter, registered for the run only;
- `inkernel`: what runs inside that kernel first (the hooks, and each cell's file name);
- `execute`: one replica: the notebook top to bottom, its outputs kept;
- `places`: the cell and line of a traced phase or a finding;
- `history`: the notebook's cells from a live kernel's history (the `%%twinrun` magic).
"""

from twinrun.notebooks.reading import is_notebook, read_notebook

__all__ = ["is_notebook", "read_notebook"]
