"""Fresh-process runs: every run starts a new interpreter whose environment is prepared first.

`PYTHONHASHSEED`, `XLA_FLAGS`, `CUBLAS_WORKSPACE_CONFIG`, the TensorFlow determinism variables
and the thread-pool variables are read when the interpreter or the framework starts; setting
them from inside a running process is too late. So the parent never trains: it prepares the
environment, starts `python -m twinrun.worker`, and reads the result the child wrote.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from twinrun.determinism import environment_for
from twinrun.errors import TwinrunError


def available_cpus():
    """CPUs this process may run on (its affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def child_environment(config, extra=None):
    """The environment of the fresh process for one validated `RunConfig`."""
    env = dict(os.environ)
    hash_seed = config.seeds["hash"] if config.determinism else None
    env.update(environment_for(config.backend, threads=config.threads,
                               enabled=config.determinism, hash_seed=hash_seed))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class RunProcess:
    """One run in its own fresh process; `wait()` returns its result dict."""

    def __init__(self, config, workdir, *, show_progress=True, extra_env=None, name="run"):
        self.config = config
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / f"{name}.config.json"
        self.result_path = self.workdir / f"{name}.result.json"
        self.log_path = self.workdir / f"{name}.log"
        self.config_path.write_text(json.dumps(config.to_dict()))
        self.result_path.unlink(missing_ok=True)
        command = [sys.executable, "-m", "twinrun.worker", str(self.config_path),
                   str(self.result_path)]
        if not show_progress:
            command.append("--quiet")
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, env=child_environment(config, extra_env),
            stdout=None if show_progress else self._log, stderr=self._log,
            stdin=subprocess.DEVNULL,
        )

    def poll(self):
        return self.process.poll()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines=8):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait(self, timeout=None):
        """Wait for the run; return its result, or raise `TwinrunError` with one sentence."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TwinrunError(f"The run did not finish within {timeout:g} s and was stopped.")
        finally:
            self._log.close()
        result = self.read_result()
        if result is not None and "error" in result:
            raise TwinrunError(result["error"])
        if code != 0 or result is None:
            tail = self.log_tail()
            raise TwinrunError(
                f"The run's process exited with code {code} without a result; the end of its "
                f"log:\n{tail}")
        return result

    def read_result(self):
        try:
            return json.loads(self.result_path.read_text())
        except (OSError, ValueError):
            return None


def run_in_fresh_process(config, *, show_progress=True, extra_env=None, timeout=None):
    """Run one validated `RunConfig` in a fresh process and return its result dict."""
    with tempfile.TemporaryDirectory(prefix="twinrun-") as workdir:
        run = RunProcess(config, workdir, show_progress=show_progress, extra_env=extra_env)
        return run.wait(timeout=timeout)
