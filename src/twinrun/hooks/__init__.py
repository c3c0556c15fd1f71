"""Zero-change checks: twinrun's hooks inside a script that never imports twinrun.

`twinrun check -- python train.py` starts each replica as
`python -m twinrun.programs.hooked train.py`, which calls `install()` and then runs the script
exactly as `python train.py` would. `install()`, before the script's first line:

- seeds and makes deterministic what `twinrun.deterministic()` would, with the launcher's seed
  (`TWINRUN_SEED`): Python and NumPy at once, each framework right after the script imports it
  (`seeding`); with `--no-determinism` nothing is seeded: the script runs as written;
- traces the training: every Keras `Model.fit` (any backend) gets the trace callback
  (`keras`), every PyTorch optimizer step is recorded (`torch`); each fit, or each optimizer,
  is a phase of the one trace (`trace_phases`; the module `phases` writes them);
- watches for two pitfalls the syntax tree cannot show: a framework trained with no seed set
  by the script, or seeded after it was drawn from (`seeding`), and a global generator drawn
  from by something other than the model (`draws`). `findings(trace_path)` reads them back.

Frameworks are patched when the script imports them (`imports`), never imported here. A script
that traces itself (`twinrun.keras.Trace`, `twinrun.torch.Tracer`) is left to do so.
"""

import atexit
import os

from twinrun.hooks.sidefile import read_side, side_path

__all__ = ["install", "finish", "findings", "trace_phases", "phase_notes", "side_path",
           "traces_itself"]

_session = None


def traces_itself(source):
    """Whether a script's source uses twinrun's explicit tracers (`twinrun.keras.Trace`,
    `twinrun.torch.Tracer`): such a script is traced by them, from where it chose, so the hooks
    write nothing (its steps before the tracer exists, a probe run say, are not its training).

    Arguments:
        source: the script's text (str or bytes), or None when unknown (`python -m`).

    Example:
    >>> traces_itself("import twinrun.torch\\ntracer = twinrun.torch.Tracer(model, optimizer)")
    True
    >>> traces_itself("import torch")
    False
    """
    import re

    if source is None:
        return False
    if isinstance(source, bytes):
        source = source.decode("utf-8", "replace")
    return "twinrun" in source and re.search(r"\bTracer?\b", source) is not None


def install(environ=None, traces_itself=False):
    """Install the hooks in this process (once); return the `Session`.

    Arguments:
        environ: where the launcher's settings are (`TWINRUN_TRACE`, `TWINRUN_SEED`,
            `TWINRUN_DETERMINISM`); default `os.environ`.
        traces_itself: the script uses the explicit tracers (`traces_itself()`): seed and
            watch, but write no trace. Scripts found tracing themselves only at run time (a
            `Trace` in fit's callbacks, a `Tracer` that wrote before the first optimizer step)
            are left to it then.

    Example (it changes the whole process, so it is not run as a doctest):

        import twinrun.hooks
        twinrun.hooks.install()
        import torch  # seeded and deterministic; each optimizer step is traced
    """
    global _session
    if _session is not None:
        return _session
    from twinrun.errors import TwinrunError
    from twinrun.hooks.draws import DrawWatcher
    from twinrun.hooks.imports import when_imported
    from twinrun.hooks.seeding import Seeding
    from twinrun.hooks.session import Session
    from twinrun.seeds import DEFAULT_SEED, validate_seed

    environ = os.environ if environ is None else environ
    value = environ.get("TWINRUN_SEED", str(DEFAULT_SEED))
    try:
        seed = int(value)
    except ValueError:
        raise TwinrunError(f"Expected the environment variable TWINRUN_SEED to be an integer. "
                           f"Received: TWINRUN_SEED={value!r}.") from None
    validate_seed(seed)
    session = Session(environ.get("TWINRUN_TRACE") or None, seed,
                      environ.get("TWINRUN_DETERMINISM", "1") != "0")
    session.explicit = bool(traces_itself)
    _session = session
    seeding = Seeding(session)
    draws = DrawWatcher(session)
    seeding.start()
    draws.watch_python_and_numpy()

    def torch_imported(module):
        from twinrun.hooks.torch import TorchHooks

        TorchHooks(session, seeding, draws).install(module)

    def keras_imported(module):
        from twinrun.hooks import keras as keras_hooks

        keras_hooks.install(session, seeding)

    when_imported("torch", torch_imported)
    when_imported("keras", keras_imported)
    atexit.register(session.finish)
    session.save()
    return session


def finish():
    """End the trace now, not at exit: a notebook's kernel is shut down by its client, which
    need not run the process's exit handlers. Does nothing where the hooks are not installed.
    """
    if _session is not None:
        _session.finish()


def findings(trace_path):
    """The dynamic findings the hooks recorded in one replica, as dicts shaped like
    `twinrun.lint.Finding.to_dict()` plus the file: `rule`, `file`, `line`, `column`, `code`,
    `title`, `why`, `fix`. Empty for a replica that was not hooked.

    Arguments:
        trace_path: the replica's trace (`<check folder>/replica-0.trace`).

    Example:
    >>> findings("no-such.trace")
    []
    """
    return list(read_side(trace_path).get("findings") or [])


def trace_phases(trace_path):
    """The phases of one hooked replica's trace, in order: `{"name", "framework",
    "first_step"}` each (empty for a trace the script wrote itself).

    Example:
    >>> trace_phases("no-such.trace")
    []
    """
    return list(read_side(trace_path).get("phases") or [])


def phase_notes(trace_path, divergence_step=None):
    """Sentences for the verdict about the phases of a hooked trace: which phases were
    traced, and in which one (and at which of its steps) the replicas diverged.

    Arguments:
        trace_path: replica 0's trace.
        divergence_step: the first divergent step, or None.

    Example:
    >>> phase_notes("no-such.trace", 3)
    []
    """
    listed = trace_phases(trace_path)
    if not listed:
        return []
    notes = []
    if read_side(trace_path).get("interleaved"):
        names = ", ".join(p["name"] for p in listed)
        return [f"The script's optimizers took turns ({names}); each step that switches names "
                f"its phase in the trace (`phase`)."]
    if len(listed) > 1:
        names = ", ".join(f"{p['name']} from step {p['first_step']}" for p in listed)
        notes.append(f"The script trained in {len(listed)} phases, traced one after another: "
                     f"{names}.")
    if divergence_step is not None and divergence_step >= 0:
        phase = None
        for candidate in listed:
            if candidate["first_step"] <= divergence_step:
                phase = candidate
        if phase is not None and len(listed) > 1:
            notes.append(f"The divergence at step {divergence_step} is in {phase['name']}, at "
                         f"its step {divergence_step - phase['first_step']}.")
    return notes
