"""Run a notebook top to bottom in a fresh kernel, with twinrun's hooks, as one replica.

What one replica leaves next to its trace (`replica-N.trace`):
- `replica-N.ipynb`: the executed notebook, outputs and all, to open in Jupyter;
- `replica-N.trace.cells.json`: which compiled file name is which cell (`places`);
- `replica-N.trace.failure`: when a cell raised, one sentence naming the cell and the
  exception (the launcher says it instead of the end of the log).
Its standard output, the replica's log, gets every cell's outputs as plain text.
"""

import copy
import os
import re
import signal
import sys
from pathlib import Path

from twinrun.notebooks.inkernel import cell_file_name
from twinrun.notebooks.reading import read_notebook, with_parameters, write_json

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# The launcher's variables that hold paths; the kernel starts in the notebook's folder, so a
# relative one (a relative --store) is made absolute here, where it was meant.
PATH_VARIABLES = ("TWINRUN_TRACE", "TWINRUN_METRICS", "TWINRUN_STORE", "TWINRUN_DATA_DIR")
# A replica the launcher stopped in lockstep exits with this status (`twinrun.trace.lockstep`);
# its kernel does, and so does the program that ran it.
STOPPED_BY_LAUNCHER = 75


class CellFailed(Exception):
    """A cell raised (or its kernel died); the message is one sentence naming the cell."""


def cells_file(trace):
    return Path(f"{trace}.cells.json")


def failure_file(trace):
    return Path(f"{trace}.failure")


def executed_notebook_path(trace):
    """Where the executed notebook of the replica writing `trace` is saved.

    Example:
    >>> str(executed_notebook_path("/checks/c1/replica-0.trace"))
    '/checks/c1/replica-0.ipynb'
    """
    trace = Path(trace)
    return trace.with_name(trace.name.removesuffix(".trace") + ".ipynb")


def run_notebook(path, *, parameters=(), trace=None, output=None, hooks=True, out=None,
                 cwd=None):
    """Execute the notebook at `path` in a fresh kernel; return the exit status.

    Arguments:
        path: the notebook (never written).
        parameters: `(name, value)` pairs for the cell tagged `parameters`.
        trace: the replica's trace (`TWINRUN_TRACE`); the cell map and a failure go beside it.
        output: where to save the executed notebook (default: beside the trace).
        hooks: install twinrun's hooks in the kernel before the first cell.
        out: where the cells' outputs are written as text (default: stdout).
        cwd: the folder the kernel starts in (default: the notebook's, as Jupyter does).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    from twinrun.notebooks.kernel import kernel_manager, kernel_pid, remove_private_folders

    out = out or sys.stdout
    for name in PATH_VARIABLES:
        if os.environ.get(name):
            os.environ[name] = os.path.abspath(os.environ[name])
    if trace:
        trace = os.path.abspath(trace)
    source = Path(path)
    notebook, places = with_parameters(copy.deepcopy(read_notebook(source)), parameters,
                                       str(source))
    names = [cell_file_name(source.name, k + 1) for k in range(len(notebook.cells))]
    side = Path(trace) if trace else None
    if output is None and side is not None:
        output = executed_notebook_path(side)
    folder = Path(output).parent if output else Path.cwd()
    cells_path = cells_file(side) if side else folder / f".{source.name}.cells.json"
    write_json(cells_path, {
        "notebook": str(source),
        "cells": [[name, str(cell.get("source", ""))]
                  for name, cell in zip(names, notebook.cells) if cell.get("cell_type") == "code"],
        "places": {name: {"number": place.number, "title": place.title, "label": place.label}
                   for name, place in zip(names, places)}})
    if side is not None:
        failure_file(side).unlink(missing_ok=True)
    status, index = 0, None
    with kernel_manager(cwd=cwd or source.resolve().parent) as (manager, start):
        # nbclient gives a kernel 60 s to answer; on a busy machine a fresh one can take
        # longer, and a replica that truly hangs is the check's --timeout to end.
        client = NotebookClient(notebook, km=manager, allow_errors=False, startup_timeout=600)
        _end_kernel_on_signals(manager, kernel_pid, remove_private_folders)
        with client.setup_kernel(cleanup_kc=True, **start):
            try:
                if hooks:
                    _run_silently(client,
                                  "import twinrun.notebooks.inkernel as _twinrun_kernel\n"
                                  f"_twinrun_kernel.prepare({str(cells_path.resolve())!r})\n"
                                  "del _twinrun_kernel\n")
                for index, cell in enumerate(notebook.cells):
                    if cell.get("cell_type") != "code":
                        continue
                    print(f"── {places[index].describe()} ──", file=out, flush=True)
                    try:
                        client.execute_cell(cell, index)
                    finally:
                        _print_outputs(cell, out)
            except CellFailed as error:
                status = 1
                _fail(side, str(error), out)
            except CellExecutionError as error:
                status = 1
                _fail(side, f"{places[index].describe()} raised {error.ename}: "
                            f"{_first_line(error.evalue)}", out)
            except DeadKernelError:
                code = manager.provisioner.process.poll() if manager.provisioner else None
                if code == STOPPED_BY_LAUNCHER:
                    return STOPPED_BY_LAUNCHER  # lockstep stopped it: nothing to report
                status = 1
                running = places[index].describe() if index is not None else "twinrun's setup"
                _fail(side, f"the kernel died while running {running}"
                            + (f" (exit status {code})" if code is not None else ""), out)
            if hooks and status == 0:
                _run_silently(client, "import twinrun.notebooks.inkernel as _twinrun_kernel\n"
                                      "_twinrun_kernel.finish()\n")
    if side is None:
        cells_path.unlink(missing_ok=True)
    if output is not None:
        nbformat.write(notebook, str(output))
        print(f"The executed notebook is {output}.", file=out, flush=True)
    return status


def _run_silently(client, code):
    """Run twinrun's own code in the kernel: no execution count, no history, no output cell."""
    message = client.kc.execute(code, silent=True, store_history=False)
    reply = client.wait_for_reply(message)
    content = (reply or {}).get("content", {})
    if content.get("status") == "error":
        raise CellFailed(f"twinrun could not prepare the kernel: {content.get('ename')}: "
                         f"{_first_line(content.get('evalue'))}")


def _print_outputs(cell, out):
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            text = output.get("text", "")
        elif kind in ("execute_result", "display_data"):
            text = output.get("data", {}).get("text/plain", "")
            text = text + "\n" if text else ""
        elif kind == "error":
            text = "\n".join(output.get("traceback", [])) + "\n"
        else:
            text = ""
        out.write(_ANSI.sub("", text))
    out.flush()


def _fail(side, sentence, out):
    print(f"twinrun: {sentence}.", file=out, flush=True)
    if side is not None:
        failure_file(side).write_text(sentence)


def _first_line(text):
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def _end_kernel_on_signals(manager, pid_of, clean_up):
    """The launcher stops a replica with SIGTERM to its process group; the kernel runs in a
    session of its own (jupyter_client starts it so), so it is ended here, then this process.
    """
    def end(signum, frame):
        pid = pid_of(manager)
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        clean_up()
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, end)
