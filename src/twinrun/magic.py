"""`%load_ext twinrun`, then `%%twinrun check -n 2`: check a training cell from inside a notebook.

The magic does not run the cell in this kernel. It rebuilds the notebook as this kernel ran it
(every cell from its history, in order: `twinrun.notebooks.history`), puts the cell last, and
checks that (`twinrun check` of a notebook): each replica runs it in a fresh kernel whose hash
seed, threads and determinism are set before it starts, which a running kernel (Colab's, say)
cannot do for itself. The verdict is printed below the cell. The kernel in use is not
disturbed: no variable of it changes, nothing in it is seeded or trained.

    %load_ext twinrun

    %%twinrun check -n 2 --threads 1
    model.fit(x_train, y_train, epochs=1)
"""

import argparse
import os
import shlex
import shutil
import tempfile
from pathlib import Path

USAGE = "%%twinrun check [-n N] [--threads N[,N...]] [--seed S] [--no-determinism] " \
        "[--timeout SECONDS] [--store PATH]"


def register(shell):
    """Register the `%%twinrun` cell magic with an IPython shell."""
    shell.register_magic_function(twinrun_cell_magic, magic_kind="cell", magic_name="twinrun")


def _parser():
    parser = argparse.ArgumentParser(prog="%%twinrun check", add_help=False,
                                     exit_on_error=False)
    parser.add_argument("command", choices=["check"])
    parser.add_argument("-n", type=int, default=2)
    parser.add_argument("--threads", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-determinism", action="store_true")
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--store", default=None)
    return parser


def parse_magic_line(line):
    """The magic's options, or `TwinrunError` (one sentence) for a line it does not take.

    Example:
    >>> options = parse_magic_line("check -n 3 --threads 1")
    >>> options.n, options.threads
    (3, [1])
    """
    from twinrun.errors import TwinrunError

    try:
        words = shlex.split(line)
        options, unknown = _parser().parse_known_args(words)
    except (argparse.ArgumentError, ValueError, SystemExit) as error:
        raise TwinrunError(f"The %%twinrun line is not one it takes ({error}); write "
                           f"`{USAGE}`.") from None
    if unknown:
        raise TwinrunError(f"The %%twinrun line has options it does not take "
                           f"({' '.join(unknown)}); write `{USAGE}`.")
    if options.threads is not None:
        try:
            options.threads = [int(t) for t in options.threads.split(",") if t.strip()]
        except ValueError:
            raise TwinrunError(f"Expected --threads to be numbers separated by commas. "
                               f"Received: {options.threads!r}.") from None
    return options


def twinrun_cell_magic(line, cell):
    """`%%twinrun check -n N`: run this cell after the cells above it, in N fresh processes,
    and print the verdict (the kernel in use runs nothing of it)."""
    from rich.console import Console
    from rich.text import Text

    from twinrun.errors import TwinrunError

    out = Console()
    if os.environ.get("TWINRUN_TRACE"):
        out.print(Text("twinrun: this notebook is itself a replica of a `twinrun check`, so "
                       "%%twinrun does not check the cell again; the check that runs the "
                       "notebook judges it."))
        return
    try:
        verdict, shown = check_cell(line, cell)
    except TwinrunError as error:
        out.print(Text(f"Error: {error}", style="red"))
        return
    from twinrun.report.reference import render_findings_above
    from twinrun.report.terminal import render_verdict

    shown_verdict = verdict.to_dict()
    render_findings_above(shown_verdict["findings"], out=out)
    render_verdict(shown_verdict, shown, out=out)


def check_cell(line, cell, shell=None):
    """Check `cell` after this kernel's history; return the `Verdict` and how it is named."""
    from twinrun.checks.notebook import check_notebook
    from twinrun.notebooks.history import history_notebook

    options = parse_magic_line(line)
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    history = list(shell.history_manager.input_hist_raw)
    # The history ends with this cell itself, as typed (its %%twinrun line included).
    if history and history[-1].lstrip().startswith("%%twinrun"):
        history = history[:-1]
    import nbformat

    folder = tempfile.mkdtemp(prefix="twinrun-cell-")
    try:
        path = Path(folder) / "history.ipynb"
        nbformat.write(history_notebook(history, cell), str(path))
        shown = f"this cell after In [1] to In [{max(len(history) - 1, 0)}]"
        verdict = check_notebook(path, n=options.n, threads=options.threads, seed=options.seed,
                                 determinism=[not options.no_determinism],
                                 timeout=options.timeout, store=options.store,
                                 shown="this notebook's history", cwd=os.getcwd())
        return verdict, shown
    finally:
        shutil.rmtree(folder, ignore_errors=True)
