"""One run of the user's own script in a study, in a fresh process (the one launcher).

The twin of `common.WorkerRun` for `twinrun variance ... -- python train.py`: the same
`poll`/`wait`/`stop`/`outcome`, so the local pool and Ray run both alike. The script gets its
seeds and a metrics file through the environment (`twinrun.handoff`); its outcome is
built here, on the node that ran it, from what it wrote: its metrics, the seeds it read, and
its final weights fingerprint and environment from its trace, when it wrote one.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from twinrun.executors.common import LOG_TAIL_LINES, ChildRun, Outcome, _signal_name
from twinrun.handoff import script_seeds
from twinrun.launch import ChildProcess


@dataclass(frozen=True)
class ScriptConfig:
    """One run of the user's script in a study: plain data that crosses to a Ray worker.

    Arguments:
        command, cwd, backend, threads, label: as `ScriptBase`.
        seed: the study's base seed (`TWINRUN_SEED`, what `deterministic()` takes).
        seed_overrides: the derived seeds this run changes (`RunConfig.seed_overrides`).
        split_seed: the split seed the run varies, or None (derived from `seed`).
        determinism: False for the `nondeterminism` and `all` sources.
        study_id, replica: the study and the run's position in it.
        portable: the `--portable` settings in the run's environment.
    """

    command: list
    cwd: str
    seed: int
    seed_overrides: dict = field(default_factory=dict)
    split_seed: int | None = None
    determinism: bool = True
    backend: str | None = None
    threads: int | None = None
    label: str = ""
    study_id: str | None = None
    replica: int | None = None
    portable: bool = False

    kind = "script"

    @property
    def workload(self):
        return self.label

    @property
    def seeds(self):
        from twinrun.seeds import derive_seeds

        return derive_seeds(self.seed, self.seed_overrides)

    def script_seeds(self):
        """What `twinrun.seeds()` returns in this run."""
        return script_seeds(self.seed, self.seed_overrides, self.split_seed)

    def environment(self, metrics_path, trace_path, extra=None):
        """The run's complete environment: prepared as for `twinrun check -- ...`, plus the
        study's hand-over (`TWINRUN_SEED`, `TWINRUN_SEEDS`, `TWINRUN_METRICS`) and a trace
        path, so a script with `twinrun.keras.Trace()` or a `twinrun.torch.Tracer` gets its
        final weights fingerprinted."""
        from twinrun.handoff import METRICS_VAR, SEEDS_VAR
        from twinrun.launch import child_environment

        return child_environment(
            self.backend, seeds=self.seeds, threads=self.threads, determinism=self.determinism,
            portable=self.portable,
            extra={"TWINRUN_SEED": str(self.seed), SEEDS_VAR: json.dumps(self.script_seeds()),
                   METRICS_VAR: str(metrics_path), "TWINRUN_TRACE": str(trace_path),
                   "TWINRUN_REPLICA": str(self.replica or 0), **(extra or {})})

    def launch(self, folder, extra_env=None):
        """Start the run in a fresh process (see `ScriptProcess`)."""
        return ScriptProcess(self, folder, extra_env=extra_env)

    def to_dict(self):
        return {**asdict(self), "kind": self.kind}

    @classmethod
    def from_dict(cls, values):
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in names})


class ScriptProcess(ChildRun):
    """The user's command running one `ScriptConfig`, not waited for.

    Arguments:
        config: a `ScriptConfig`.
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
        from twinrun.handoff import read_records

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
