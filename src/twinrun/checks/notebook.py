"""`twinrun check nb.ipynb`, `twinrun record nb.ipynb`, `check --against` for a notebook.

A notebook is checked as a script is (`twinrun.checks.check_command`), through one program:
each replica is `python -m twinrun.programs.notebook nb.ipynb`, started in the environment the
launcher builds for every replica (hash seed, threads, determinism), which the notebook's fresh
kernel inherits before its interpreter starts. The hooks are installed in the kernel before the
first cell, so the verdict, the findings, references and tolerances are a script's; what the
notebook adds is where things are: each phase and finding by cell and line
(`twinrun.notebooks.places`), and a cell that raised named in one sentence.
"""

import hashlib
import sys
from pathlib import Path

from twinrun.errors import TwinrunError

NOTEBOOK_PROGRAM = "twinrun.programs.notebook"


def notebook_command(path, parameters=()):
    """The replica command that runs the notebook at `path` (`twinrun.programs.notebook`).

    Example:
    >>> notebook_command("nb.ipynb", [("lr", "0.1")])[1:]
    ['-m', 'twinrun.programs.notebook', 'nb.ipynb', '-p', 'lr', '0.1']
    """
    command = [sys.executable, "-m", NOTEBOOK_PROGRAM, str(path)]
    for name, value in parameters:
        command += ["-p", str(name), str(value)]
    return command


def shown_command(path, parameters=()):
    """The notebook and its `-p` parameters, as the user writes them after `twinrun check`.

    Example:
    >>> shown_command("nb.ipynb", [("lr", "0.1")])
    ['nb.ipynb', '-p', 'lr', '0.1']
    """
    shown = [str(path)]
    for name, value in parameters:
        shown += ["-p", str(name), str(value)]
    return shown


class NotebookProgram:
    """What `check_command` needs to know of a notebook (its `program`)."""

    kind = "notebook"

    def __init__(self, path, parameters=(), shown=None):
        self.path = str(path)
        self.shown = shown or self.path  # how messages name the notebook
        self.parameters = [tuple(p) for p in parameters]
        self.label = " ".join(shown_command(self.shown, parameters))

    def no_trace_message(self, outcome):
        replica = outcome.spec.label.split()[-1]
        return (f"Replica {replica} ran {self.shown} to its end but wrote no trace: twinrun "
                f"saw no training it can trace in its cells (no Keras `Model.fit`, no "
                f"`torch.optim` optimizer step); add `twinrun.keras.Trace()` to model.fit's "
                f"callbacks, or a `twinrun.torch.Tracer` to the training loop.")

    def locate(self, verdict, outcomes):
        from twinrun.notebooks.places import locate_verdict

        locate_verdict(verdict, outcomes[0].spec.trace, self.shown)


def validate_notebook(path, parameters=()):
    """Read the notebook now, so a missing file, a file that is no notebook or a `-p` without a
    `parameters` cell is one sentence before any replica starts."""
    import copy

    from twinrun.notebooks.reading import read_notebook, with_parameters

    with_parameters(copy.deepcopy(read_notebook(path)), parameters, str(path))
    try:
        import ipykernel  # noqa: F401
        import nbclient  # noqa: F401
    except ImportError as error:
        raise TwinrunError(f"Checking a notebook needs nbclient and ipykernel ({error.name} is "
                           f"missing): `pip install 'twinrun[notebook]'`.") from None


def notebook_findings(path, shown=None):
    """The notebook's lint findings (`twinrun lint nb.ipynb`) as a verdict keeps them."""
    from twinrun.lint.notebook import lint_notebook

    return [dict(f.to_dict(), source="lint", file=str(shown or path))
            for f in lint_notebook(path)]


def notebook_identity(path, parameters=(), *, seed=0, backend=None):
    """What a notebook reference was recorded from: the notebook and its parameters, the seed
    and backend, and a digest of its code cells (outputs and metadata change with every save;
    they are not what trains).
    """
    from twinrun.notebooks.reading import code_cells, read_notebook

    digest = hashlib.sha256()
    for _, source in code_cells(read_notebook(path)):
        digest.update(source.encode("utf-8") + b"\0")
    return {"kind": "command", "command": shown_command(path, parameters), "seed": seed,
            "backend": backend, "script": str(path), "script_sha256": digest.hexdigest()}


def check_notebook(path, *, parameters=(), n=2, judging=None, findings=None, shown=None,
                   cwd=None, **options):
    """Run the notebook `n` times, each top to bottom in a fresh kernel, and compare them.

    Arguments:
        path: the notebook (never written; each replica's executed copy is kept in the
            check's folder as `replica-N.ipynb`).
        parameters: `(name, value)` pairs set after the cell tagged `parameters`.
        n: replicas (at least 2).
        judging: a `twinrun.checks.Judging` (a tolerance, say).
        findings: the lint findings to keep (default: `notebook_findings(path)`).
        shown: how the verdict names the notebook (default: `path`).
        cwd: the folder each replica's kernel starts in (default: the notebook's).
        **options: as for `twinrun.checks.check_command` (seed, threads, store, ...).

    Example (it starts two kernels, so it is not run as a doctest):

        verdict = check_notebook("train.ipynb", n=2, store="runs")
        verdict.verdict  # 'identical', or 'diverged' naming the cell
    """
    from twinrun.checks import Judging, check_command

    validate_notebook(path, parameters)
    if findings is None:
        findings = notebook_findings(path, shown)
    judging = judging or Judging()
    if judging.findings is None:
        judging.findings = findings
    command = notebook_command(path, parameters) + (["--cwd", str(cwd)] if cwd else [])
    return check_command(command, n=n, judging=judging,
                         program=NotebookProgram(path, parameters, shown), **options)


def record_notebook(path, output, *, parameters=(), snapshots=False, seed=0, backend=None,
                    **options):
    """Run the notebook once and write its trace as a reference file (`twinrun record`)."""
    from twinrun.checks import Judging

    validate_notebook(path, parameters)
    judging = Judging(record_to=Path(output), snapshots=snapshots,
                      identity=notebook_identity(path, parameters, seed=seed, backend=backend),
                      findings=notebook_findings(path), portable=options.get("portable", False))
    return check_notebook(path, parameters=parameters, n=1, seed=seed, backend=backend,
                          localize=False, judging=judging, **options)


def check_notebook_against(path, reference, *, parameters=(), n=1, tolerance=None, seed=0,
                           backend=None, **options):
    """Run the notebook (once by default) and compare it with a reference, step by step."""
    from twinrun.checks import Judging
    from twinrun.checks.identity import validate_same_workload

    validate_notebook(path, parameters)
    identity = notebook_identity(path, parameters, seed=seed, backend=backend)
    validate_same_workload(reference, identity)
    judging = Judging(reference=reference, tolerance=tolerance, identity=identity,
                      findings=notebook_findings(path))
    # A portable reference is checked under the settings it was recorded with.
    options["portable"] = options.get("portable", False) or reference.portable
    return check_notebook(path, parameters=parameters, n=n, seed=seed, backend=backend,
                          localize=False, judging=judging, **options)


def split_notebook_command(command):
    """`(notebook, parameters)` when the words after `twinrun check` name a notebook
    (`nb.ipynb [-p NAME VALUE]...`, also after `python`), else None.

    Example:
    >>> split_notebook_command(["nb.ipynb", "-p", "lr", "0.1"])
    ('nb.ipynb', [('lr', '0.1')])
    >>> split_notebook_command(["python", "train.py"]) is None
    True
    """
    from twinrun.notebooks.reading import is_notebook

    words = [str(w) for w in command]
    if len(words) > 1 and Path(words[0]).name.startswith("python") and is_notebook(words[1]):
        words = words[1:]
    if not words or not is_notebook(words[0]):
        return None
    parameters = []
    rest = words[1:]
    while rest:
        if rest[0] in ("-p", "--parameter") and len(rest) >= 3:
            parameters.append((rest[1], rest[2]))
            rest = rest[3:]
            continue
        raise TwinrunError(f"After a notebook, only `-p NAME VALUE` may follow. Received: "
                           f"{' '.join(rest)!r}.")
    return words[0], parameters
