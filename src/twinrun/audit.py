"""The determinism audit of each installed backend, each in a fresh process.

`python -m twinrun.programs.audit BACKEND` imports Keras on that backend, calls
`deterministic()` exactly as a run would, and prints the report as JSON. Fresh processes, because a framework
once imported cannot be un-configured, and the launcher's environment must be in place first.
"""

import json
import os
import signal
import subprocess

from twinrun.backends import KERAS_BACKENDS, is_installed
from twinrun.errors import TwinrunError

# Importing TensorFlow cold takes about 10 s here; 180 s means the import hangs (a driver
# probe, a lock on a network file system), not that it is slow.
DEFAULT_TIMEOUT = 180.0
TIMEOUT_VARIABLE = "TWINRUN_AUDIT_TIMEOUT"


def audit_timeout(value=None):
    """Seconds an audit process may take: `value`, else `$TWINRUN_AUDIT_TIMEOUT`, else 180.

    Raises `TwinrunError` with one sentence when the value is not a positive number.

    Example:
    >>> audit_timeout(5)
    5.0
    """
    source = "--timeout"
    if value is None:
        value, source = os.environ.get(TIMEOUT_VARIABLE), TIMEOUT_VARIABLE
    if value is None or value == "":
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise TwinrunError(f"Expected {source} to be a positive number of seconds. "
                           f"Received: {value!r}.")
    return seconds


def audit_backend(backend, seed=0, threads=None, timeout=None):
    """Run the audit of one backend in a fresh, launcher-prepared process; return its dict.

    A process that hangs, crashes or prints something other than a report gives
    `{"backend": ..., "error": sentence}` instead of raising, so `doctor` still shows the
    other backends.

    Arguments:
        backend: `"tensorflow"`, `"jax"` or `"torch"`.
        seed: the run seed `deterministic()` is called with.
        threads: thread-pool size, as `twinrun train --threads`.
        timeout: seconds before the process counts as hung (default: `audit_timeout()`).
    """
    from twinrun.launch import program_command

    timeout = audit_timeout() if timeout is None else timeout
    env = audit_environment(backend, seed, threads)
    # Its own session, so a hung import's helper processes are killed with it and cannot
    # keep the output pipes open.
    process = subprocess.Popen(
        program_command("twinrun.programs.audit", backend, seed),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, errors="replace", start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_session(process)
        return {"backend": backend,
                "error": f"the {backend} audit did not finish within {timeout:g} s (importing "
                         f"{backend} may hang here); allow more time with `twinrun doctor "
                         f"--timeout SEC` or {TIMEOUT_VARIABLE}"}
    return _parse_report(backend, process.returncode, stdout, stderr)


def audit_environment(backend, seed=0, threads=None):
    """The environment of one backend's audit process: the one child environment
    (`twinrun.launch.child_environment`) of a run with this seed and thread count, determinism
    on, as `twinrun train` would give it."""
    from twinrun.launch import child_environment
    from twinrun.seeds import derive_seeds

    return child_environment(backend, seeds=derive_seeds(seed), threads=threads)


def _kill_session(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        process.kill()
    process.communicate()


def _parse_report(backend, returncode, stdout, stderr):
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if returncode != 0 or not lines:
        tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        how = (f"exited with status {returncode}" if returncode >= 0
               else f"was killed by signal {-returncode}")
        return {"backend": backend, "error": f"the {backend} audit process {how}: {tail[0]}"}
    try:
        report = json.loads(lines[-1])
    except ValueError:
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("controls"), list):
        return {"backend": backend,
                "error": f"the {backend} audit printed something that is not a determinism "
                         f"report: {lines[-1][:120]!r}"}
    return report


def audit_installed(seed=0, threads=None, timeout=None, on_done=None):
    """Audits of every installed Keras backend, and `not installed` for the others.

    Arguments:
        seed: the run seed each audit calls `deterministic()` with.
        threads: thread-pool size, as `twinrun train --threads`.
        timeout: seconds each audit may take (default: `audit_timeout()`).
        on_done: called with each backend's audit as it ends (for progress), from the
            thread that ran it.
    """
    timeout = audit_timeout() if timeout is None else timeout
    from concurrent.futures import ThreadPoolExecutor

    def one(backend):
        if not is_installed(backend):
            return {"backend": backend, "error": "not installed"}
        audit = audit_backend(backend, seed=seed, threads=threads, timeout=timeout)
        if on_done is not None:
            on_done(audit)
        return audit

    # Each audit is a separate process that mostly waits on imports: run them side by side.
    with ThreadPoolExecutor(max_workers=len(KERAS_BACKENDS)) as pool:
        return list(pool.map(one, KERAS_BACKENDS))
