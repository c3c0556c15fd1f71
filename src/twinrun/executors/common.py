"""What every executor shares: a task, its outcome, and one run of the worker program.

A run is `python -m twinrun.programs.worker CONFIG RESULT --quiet` in a fresh process started
by the one launcher (`twinrun.launch.ChildProcess`: own process group, killed with its
launcher). Its config has `record=False`: the worker trains and writes its result (metrics,
fingerprint, history, environment, test predictions) as JSON, and the driver records it, so a
worker on another machine (Ray) needs no access to the driver's store.
"""

import json
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from twinrun.files import read_json
from twinrun.launch import ChildProcess, run_environment, worker_command

# The last lines of a failed run's log kept in its error.
LOG_TAIL_LINES = 6


@dataclass(frozen=True)
class Task:
    """One planned run to execute.

    Arguments:
        key: the planned run's key within its study (`"init/3"`).
        config: its validated `RunConfig` (with `record=False`).
    """

    key: str
    config: object


@dataclass(frozen=True)
class Outcome:
    """How one run ended: its worker's result dict, or one sentence saying why it failed.

    Arguments:
        result: the worker's result (None when it failed).
        error: the failure, one sentence (None when it finished).
        node: where it ran (a host name), when the executor knows.
    """

    result: dict | None = None
    error: str | None = None
    node: str | None = field(default=None, compare=False)

    @property
    def ok(self):
        return self.error is None and self.result is not None

    def to_dict(self):
        return {"result": self.result, "error": self.error, "node": self.node}

    @classmethod
    def from_dict(cls, values):
        return cls(result=values.get("result"), error=values.get("error"),
                   node=values.get("node"))


class ChildRun:
    """One study run in its fresh process (`self.child`, a `ChildProcess`), not waited for:
    what the worker program and a user's script share. Subclasses say how an ended run's
    `outcome()` is read."""

    def poll(self):
        """The exit code once the process has ended, else None."""
        return self.child.process.poll()

    def wait(self, timeout=None):
        """Wait for the run to end; past `timeout` seconds it is stopped and fails."""
        try:
            self.child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return Outcome(error=f"The run did not finish within {timeout:g} s and was "
                                 f"stopped.")
        return self.outcome()

    def stop(self, reason):
        self.child.stop(reason)


class WorkerRun(ChildRun):
    """The worker program running one `RunConfig` in a fresh process, not waited for.

    Arguments:
        config: a validated `RunConfig` (written to a file the worker reads).
        folder: where its config, result and log go (created).
        extra_env: variables added to the run's prepared environment.

    Example:

        run = WorkerRun(config, Path("/tmp/run-0"))
        while run.poll() is None:
            time.sleep(0.1)
        outcome = run.outcome()
    """

    def __init__(self, config, folder, extra_env=None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = self.folder / "run.config.json"
        self.result_path = self.folder / "run.result.json"
        self.config_path.write_text(json.dumps(config.to_dict()))
        self.child = ChildProcess(worker_command(self.config_path, self.result_path),
                                  run_environment(config, extra_env),
                                  log_path=self.folder / "run.log")

    def outcome(self):
        """The ended run's `Outcome` (call after `poll()` returned a code)."""
        code = self.child.process.poll()
        self.child.finish()
        result = read_json(self.result_path)
        if isinstance(result, dict) and "error" in result:
            return Outcome(error=str(result["error"]))
        if code == 0 and isinstance(result, dict):
            return Outcome(result=result)
        how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
        tail = " | ".join(line.strip() for line in
                          self.child.log_tail(LOG_TAIL_LINES).splitlines() if line.strip())
        return Outcome(error=f"The run's process {how} without a result"
                             + (f"; the end of its log: {tail}" if tail else "."))


def launch(config, folder, extra_env=None):
    """Start one task's fresh process: the worker program for a `RunConfig`, the user's own
    command for a script study's `ScriptConfig` (which knows how to start itself)."""
    start = getattr(config, "launch", None)
    if start is not None:
        return start(folder, extra_env=extra_env)
    return WorkerRun(config, folder, extra_env=extra_env)


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
