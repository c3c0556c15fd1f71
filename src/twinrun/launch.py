"""Fresh-process runs: every run starts a new interpreter whose environment is prepared first.

`PYTHONHASHSEED`, `XLA_FLAGS`, `CUBLAS_WORKSPACE_CONFIG`, the TensorFlow determinism variables
and the thread-pool variables are read when the interpreter or the framework starts; setting
them from inside a running process is too late. So the parent never trains: it prepares the
environment, starts the run as a `ChildProcess`, and reads the result the child wrote.

One class starts, stops and kills every child (`twinrun train`, the replicas of
`twinrun check`), with one set of rules:
- each child leads its own process group, so stopping it ends its whole tree (a user's script
  may start processes of its own);
- stopping is SIGTERM to the group, then SIGKILL to the group after a short grace;
- on Linux each child asks the kernel to SIGKILL it when its launcher dies
  (`PR_SET_PDEATHSIG`), so a `kill -9` of `twinrun check` leaves no replica training;
- whether a child was stopped is the launcher's own record (`stop_reason`), never read from
  the child's exit code, which belongs to the user's script;
- SIGINT, SIGTERM and SIGHUP to the launcher stop every child first (`stop_on_signals`).
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from twinrun.determinism import environment_for
from twinrun.errors import TwinrunError
from twinrun.files import read_json
from twinrun.store.owners import LAUNCHER_ENV_VAR, this_process

# Seconds a stopped child gets to end after SIGTERM before its group is killed.
STOP_GRACE_S = 2.0


class Interrupted(TwinrunError):
    """The launcher was told to stop by a signal; its children were stopped first."""

    def __init__(self, signum):
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"twinrun was stopped by {self.signal_name}; the runs it had started "
                         f"were stopped with it and are marked stopped in the store.")
        self.signum = signum
        # 130 is what shells report for Ctrl-C; every other stop is an error (2).
        self.exit_code = 130 if signum == signal.SIGINT else 2


def available_cpus():
    """CPUs this process may run on (its affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def child_environment(backend=None, *, seeds=None, threads=None, determinism=True,
                      hash_seed="fixed", portable=False, extra=None):
    """The complete environment of a fresh process, built here for every one twinrun starts:
    a workload's run (`twinrun train`, a check's replica, a study's run), a user's script under
    `twinrun check` or a study, the doctor's audit and self-test, and the benchmarks.

    Arguments:
        backend: the Keras backend to prepare; None prepares every one (a user's script may use
            any, or several) and leaves `KERAS_BACKEND` as this process has it.
        seeds: the run's derived seeds (`twinrun.seeds.derive_seeds`); `seeds["hash"]` is the
            child's `PYTHONHASHSEED`.
        threads: thread-pool size, or None for the framework's default.
        determinism: False turns the framework's determinism controls off.
        hash_seed: `"fixed"` sets `PYTHONHASHSEED` from `seeds["hash"]`; `"random"` leaves
            hashing randomised (a `PYTHONHASHSEED` of this process is removed). This option
            alone decides it: `PYTHONHASHSEED` is a seed, and turning determinism off keeps the
            seeds (as `deterministic(determinism=False)` does), so `--no-determinism` leaves
            it fixed; `--hash-seed random` is how to let it vary.
        portable: the `--portable` settings (docs/portable.md).
        extra: variables the caller adds last (the trace path, the replica's number, ...).

    Example:
    >>> from twinrun.seeds import derive_seeds
    >>> env = child_environment("torch", seeds=derive_seeds(7), threads=2, determinism=False)
    >>> env["PYTHONHASHSEED"] == str(derive_seeds(7)["hash"]), env["TWINRUN_DETERMINISM"]
    (True, '0')
    """
    from twinrun.backends import KERAS_BACKENDS

    if hash_seed not in ("fixed", "random"):
        raise TwinrunError(f"Expected --hash-seed to be one of fixed, random. Received: "
                           f"{hash_seed!r}.")
    env = dict(os.environ)
    preset = set()
    for name in [backend] if backend else KERAS_BACKENDS:
        prepared = environment_for(name, threads=threads, determinism=determinism,
                                   portable=portable)
        preset.update(prepared.pop("TWINRUN_PRESET_VARIABLES").split(","))
        env.update(prepared)
    if backend is None:
        env.pop("KERAS_BACKEND", None)
        if "KERAS_BACKEND" in os.environ:
            env["KERAS_BACKEND"] = os.environ["KERAS_BACKEND"]
    if hash_seed == "fixed":
        env["PYTHONHASHSEED"] = str(seeds["hash"])
        preset.add("PYTHONHASHSEED")
    else:
        env.pop("PYTHONHASHSEED", None)
    env["TWINRUN_PRESET_VARIABLES"] = ",".join(sorted(preset))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_environment(config, extra=None, hash_seed="fixed"):
    """`child_environment` of one validated `RunConfig` (a built-in workload's run)."""
    return child_environment(config.backend, seeds=config.seeds, threads=config.threads,
                             determinism=config.determinism, hash_seed=hash_seed,
                             portable=config.portable, extra=extra)


def program_command(module, *args):
    """The command line that runs twinrun's program `module` (`python -m module ARGS`) in a
    fresh process with this interpreter.

    Example:
    >>> program_command("twinrun.programs.worker", "run.config.json")[1:]
    ['-m', 'twinrun.programs.worker', 'run.config.json']
    """
    return [sys.executable, "-m", module, *map(str, args)]


def worker_command(config_path, result_path, quiet=True):
    """The command of the worker program that trains one `RunConfig` (see
    `twinrun.programs.worker`): without `quiet`, it shows its progress on the terminal."""
    return program_command("twinrun.programs.worker", config_path, result_path,
                           *(["--quiet"] if quiet else []))


def _parent_death_signal():
    """A `preexec_fn` that makes the kernel SIGKILL the child when its launcher dies (Linux).

    Runs in the forked child before `exec`; the setting survives `exec`. If the launcher
    already died between fork and here, the child ends at once instead of running orphaned.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    launcher = os.getpid()
    pr_set_pdeathsig = 1

    def preexec():
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != launcher:
            os._exit(1)

    return preexec


class ChildProcess:
    """One fresh process in its own process group, stopped with its whole tree.

    Arguments:
        command: the argument list to run.
        env: its complete environment.
        log_path: file that receives everything it writes (stdout and stderr), kept whole.
        echo: let the child write its stdout to this terminal instead (a progress display);
            stderr still goes to the log.
        lockstep: give the child the read end of a pipe (`TWINRUN_LOCKSTEP_FD`) through which
            `release()` lets it take one more step; the pipe closes when the launcher stops
            or dies.
        cwd: the folder it starts in (default: this process's).

    Example:
    >>> import tempfile
    >>> log = Path(tempfile.mkdtemp()) / "hello.log"
    >>> child = ChildProcess([sys.executable, "-c", "print('hello')"], dict(os.environ),
    ...                      log_path=log)
    >>> child.wait(timeout=60)
    0
    >>> child.log_tail()
    'hello'
    """

    def __init__(self, command, env, *, log_path, echo=False, lockstep=False, cwd=None):
        self.command = list(command)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.stop_reason = None  # set only by `stop()`: the launcher's record, not the child's
        self.started = time.monotonic()
        self._log = open(self.log_path, "wb")
        env = dict(env)
        # The store rows the child opens name this process as answerable for them: it marks
        # them if the child ends without finishing them, and if it dies too, whoever next
        # opens the store does.
        env[LAUNCHER_ENV_VAR] = this_process()
        pass_fds = ()
        self._go = None
        read_end = None
        if lockstep:
            read_end, self._go = os.pipe()
            env["TWINRUN_LOCKSTEP_FD"] = str(read_end)
            pass_fds = (read_end,)
        try:
            self.process = subprocess.Popen(
                self.command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=None if echo else self._log,
                stderr=self._log if echo else subprocess.STDOUT,
                pass_fds=pass_fds, start_new_session=True, preexec_fn=_parent_death_signal())
        except OSError as error:
            self._log.close()
            if self._go is not None:
                os.close(self._go)
            raise TwinrunError(f"Could not start {self.command[0]}: {error.strerror}.") from error
        finally:
            if read_end is not None:
                os.close(read_end)
        self.pid = self.process.pid

    @property
    def returncode(self):
        return self.process.returncode

    @property
    def running(self):
        return self.process.poll() is None

    def release(self):
        """Lockstep: let the child take its next step."""
        if self._go is not None:
            try:
                os.write(self._go, b"g")
            except OSError:
                pass

    def stop(self, reason):
        """Stop the child on purpose and end its whole process group; `reason` is kept.

        SIGTERM first (a script may clean up), SIGKILL to the group after `STOP_GRACE_S`.
        A child that already ended keeps its own exit status and no stop reason.
        """
        # Decided before the pipe closes: a lockstep replica exits by itself on end-of-file.
        if self.process.poll() is None:
            self.stop_reason = reason
        self._close_pipe()
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        self.close()

    def finish(self):
        """After the child ended on its own: end what it left running in its group."""
        self._close_pipe()
        self._signal_group(signal.SIGKILL)
        self.close()

    def wait(self, timeout=None):
        """Wait for the child to end; on timeout stop it and raise `subprocess.TimeoutExpired`."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(f"did not finish within {timeout:g} s")
            raise
        self.finish()
        return code

    def log_tail(self, lines=10):
        """The last `lines` lines the child wrote."""
        if not self._log.closed:
            self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def close(self):
        self._close_pipe()
        if not self._log.closed:
            self._log.close()

    def _close_pipe(self):
        if self._go is not None:
            try:
                os.close(self._go)
            except OSError:
                pass
            self._go = None

    def _signal_group(self, signum):
        # The group id is the child's pid (start_new_session); Linux does not hand that
        # number to a new process while any member of the group is alive.
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


@contextlib.contextmanager
def stop_on_signals():
    """Turn SIGINT, SIGTERM and SIGHUP into `Interrupted` while the block runs.

    The block's cleanup (stopping children, marking runs in the store) then runs as for any
    error; a second signal during that cleanup is ignored so it cannot cut it short. Only the
    main thread can take signals: elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []

    def handler(signum, frame):
        if caught:
            return
        caught.append(signum)
        raise Interrupted(signum)

    signums = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def stop_reason(error):
    """Why the launcher stopped its children, for the store: a signal, or its own failure."""
    if isinstance(error, Interrupted):
        return f"twinrun was stopped by {error.signal_name}"
    if isinstance(error, KeyboardInterrupt):
        return "twinrun was interrupted"
    return f"twinrun stopped it after an error: {error}"


def run_id_path(result_path):
    """Where a worker writes its run id as soon as its store row exists."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.name + ".run_id")


def read_run_id(result_path):
    try:
        return run_id_path(result_path).read_text().strip() or None
    except OSError:
        return None


def mark_unfinished(store_path, run_id, status, reason):
    """Mark a run whose process ended without finishing it; a finished run is left alone."""
    if run_id is None:
        return
    from twinrun.store import Store

    with Store(store_path) as store:
        store.end_unfinished_run(run_id, status, reason)


def run_in_fresh_process(config, *, show_progress=True, extra_env=None, timeout=None):
    """Run one validated `RunConfig` in a fresh process and return its result dict.

    Raises `TwinrunError` (one sentence) when the run fails or times out, and `Interrupted`
    when this process gets SIGINT, SIGTERM or SIGHUP; the run's store row is marked failed or
    stopped either way.
    """
    with tempfile.TemporaryDirectory(prefix="twinrun-") as workdir:
        workdir = Path(workdir)
        config_path, result_path = workdir / "run.config.json", workdir / "run.result.json"
        config_path.write_text(json.dumps(config.to_dict()))
        command = worker_command(config_path, result_path, quiet=not show_progress)
        with stop_on_signals():
            child = ChildProcess(command, run_environment(config, extra_env),
                                 log_path=workdir / "run.log", echo=show_progress)
            try:
                code = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                mark_unfinished(config.store, read_run_id(result_path), "failed",
                                f"did not finish within {timeout:g} s and was stopped")
                raise TwinrunError(f"The run did not finish within {timeout:g} s and was "
                                   f"stopped; raise --timeout if it is just slow.") from None
            except BaseException as error:
                reason = stop_reason(error)
                child.stop(reason)
                mark_unfinished(config.store, read_run_id(result_path), "stopped", reason)
                raise
        result = read_json(result_path)
        if result is not None and "error" in result:
            raise TwinrunError(result["error"])
        if code != 0 or result is None:
            mark_unfinished(config.store, read_run_id(result_path), "failed",
                            f"its process exited with code {code}")
            raise TwinrunError(
                f"The run's process exited with code {code} without a result; the end of its "
                f"log:\n{child.log_tail(8)}")
        return result
