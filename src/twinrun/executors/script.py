"""One run of the user's own script in a study, in a fresh process (the one launcher).

The twin of `common.WorkerRun` for `twinrun variance ... -- python train.py`: the same
`poll`/`wait`/`stop`/`outcome`, so the local pool and Ray run both alike. The script gets its
seeds and a metrics file through the environment (`twinrun.studies.handoff`); its outcome is
built here, on the node that ran it, from what it wrote: its metrics, the seeds it read, and
its final weights fingerprint and environment from its trace, when it wrote one.
"""

import time
from pathlib import Path

from twinrun.executors.common import LOG_TAIL_LINES, ChildRun, Outcome, _signal_name
from twinrun.launch import ChildProcess


class ScriptProcess(ChildRun):
    """The user's command running one `ScriptConfig`, not waited for.

    Arguments:
        config: a `twinrun.studies.scripts.ScriptConfig`.
        folder: where its metrics file, trace and log go (created).
        extra_env: variables added to the run's prepared environment.
    """

    def __init__(self, config, folder, extra_env=None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.folder / "run.metrics.jsonl"
        self.trace_path = self.folder / "run.trace"
        for path in (self.metrics_path, self.trace_path):
            path.unlink(missing_ok=True)
        env = config.environment(self.metrics_path, self.trace_path, extra_env)
        self.child = ChildProcess(config.command, env, log_path=self.folder / "run.log",
                                  cwd=config.cwd)

    def outcome(self):
        """The ended run's `Outcome`: its result, or why it has none (one sentence)."""
        from twinrun.studies.handoff import read_records

        code = self.child.process.poll()
        self.child.finish()
        wall_time = time.monotonic() - self.child.started
        metrics, seeds_read = read_records(self.metrics_path)
        if code != 0:
            how = f"was killed by {_signal_name(-code)}" if code < 0 else \
                f"exited with code {code}"
            tail = " | ".join(line.strip() for line in
                              self.child.log_tail(LOG_TAIL_LINES).splitlines() if line.strip())
            return Outcome(error=f"Your script {how}" + (f"; the end of its log: {tail}"
                                                         if tail else "."))
        if not metrics:
            return Outcome(error="Your script ended without reporting a metric: call "
                                 "twinrun.log_metrics(test_accuracy=...) at its end, or give "
                                 "model.fit the callback twinrun.keras.Trace().")
        result = {"logged_metrics": metrics, "seeds_read": seeds_read, "wall_time": wall_time}
        result.update(_from_trace(self.trace_path))
        return Outcome(result=result)


def _from_trace(path):
    """Final weights fingerprint, environment, backend and epochs from the run's trace."""
    found = {"fingerprint": None, "environment": None, "backend": None, "history": [],
             "epochs_trained": None}
    if Path(path).is_file():
        from twinrun.fingerprint import words_to_hex
        from twinrun.trace import read_trace

        try:
            trace = read_trace(path)
        except Exception:  # noqa: BLE001  (a trace cut short: the metrics still count)
            trace = None
        if trace is not None:
            if trace.steps:
                found["fingerprint"] = words_to_hex(trace.steps[-1]["variables"])
            found["environment"] = trace.header.get("environment")
            found["backend"] = trace.header.get("backend")
            found["history"] = [{"epoch": int(epoch.get("epoch", index + 1)),
                                 **(epoch.get("metrics") or {})}
                                for index, epoch in enumerate(trace.epochs)]
            found["epochs_trained"] = len(trace.epochs) or None
    if found["environment"] is None:
        from twinrun.environment import fingerprint_environment

        found["environment"] = fingerprint_environment()
    return found
