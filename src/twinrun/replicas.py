"""Run replicas in fresh processes and compare their traces: the engine of `twinrun check`.

Each replica is a new process whose environment is prepared before it starts. Replicas run
side by side up to `parallel` at a time. In lockstep mode all of them run at once and the
launcher compares every step before letting any replica take the next one, so a divergence
stops them within one step.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from twinrun.errors import TwinrunError
from twinrun.trace import TraceReader
from twinrun.tracing import STOPPED_BY_LAUNCHER


@dataclass
class ReplicaSpec:
    """One replica: what to run and in which environment."""

    label: str
    command: list
    env: dict
    trace: Path
    result: Path | None = None  # built-in workloads write a result JSON here


@dataclass
class ReplicaOutcome:
    spec: ReplicaSpec
    returncode: int | None
    stopped: bool = False  # stopped on purpose by lockstep or localisation
    log: str = ""
    reader: TraceReader = field(default=None)


class _Running:
    def __init__(self, spec, workdir, lockstep):
        self.spec = spec
        self.log_path = Path(workdir) / f"{spec.label}.log"
        self.log = open(self.log_path, "wb")
        env = dict(spec.env)
        pass_fds = ()
        self.go = None
        if lockstep:
            read_end, write_end = os.pipe()
            env["TWINRUN_LOCKSTEP_FD"] = str(read_end)
            pass_fds = (read_end,)
            self.go = write_end
        self.process = subprocess.Popen(
            spec.command, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, pass_fds=pass_fds, start_new_session=True)
        if lockstep:
            os.close(read_end)
        self.reader = TraceReader(spec.trace)
        self.stopped = False

    def release(self):
        if self.go is not None:
            try:
                os.write(self.go, b"g")
            except OSError:
                pass

    def stop(self):
        """Stop on purpose: close the lockstep pipe, then kill the whole process group."""
        self.stopped = True
        if self.go is not None:
            try:
                os.close(self.go)
            except OSError:
                pass
            self.go = None
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()

    def tail(self, lines=10):
        if not self.log.closed:
            self.log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def outcome(self):
        tail = self.tail()
        self.log.close()
        return ReplicaOutcome(self.spec, self.process.returncode, self.stopped, tail, self.reader)


def run_replicas(specs, *, parallel=1, lockstep=False, timeout=None, stop_when=None,
                 poll_interval=0.005, progress=None):
    """Run every replica and return their outcomes (traces read back).

    Arguments:
        specs: the `ReplicaSpec`s.
        parallel: how many run at a time (lockstep runs all at once).
        lockstep: compare step by step and stop every replica at the first difference.
        timeout: seconds a replica may run before it counts as hung.
        stop_when: optional `f(reader) -> bool`; a replica is stopped once it is true (used
            by localisation, which needs the traces only up to one step).
        progress: optional `f({label: (state, steps)})`, called as replicas advance.

    Raises `TwinrunError` (one sentence) when a replica fails or hangs; the others are
    stopped first.
    """
    if lockstep:
        parallel = len(specs)
    workdir = tempfile.mkdtemp(prefix="twinrun-replicas-")
    pending = list(specs)
    running, finished = [], []
    started_at = {}
    compared = 0
    try:
        while pending or running:
            while pending and len(running) < max(1, parallel):
                replica = _Running(pending.pop(0), workdir, lockstep)
                started_at[replica.spec.label] = time.monotonic()
                running.append(replica)
            progressed = False
            for replica in running:
                if replica.reader.poll():
                    progressed = True
            if lockstep:
                compared, diverged = _lockstep_round(running, compared)
                if diverged:
                    for replica in running:
                        replica.stop()
            if stop_when is not None:
                for replica in running:
                    if not replica.stopped and stop_when(replica.reader):
                        replica.stop()
            for replica in list(running):
                code = replica.process.poll()
                if code is None:
                    if timeout and time.monotonic() - started_at[replica.spec.label] > timeout:
                        tail = replica.tail()
                        _stop_all(running)
                        raise TwinrunError(
                            f"Replica {replica.spec.label} did not finish within {timeout:g} s "
                            f"and was stopped (hung?); raise --timeout if it is just slow."
                            + (f" The end of its output:\n{tail}" if tail else ""))
                    continue
                replica.reader.poll()
                if code != 0 and not replica.stopped and code != STOPPED_BY_LAUNCHER:
                    tail = replica.tail()
                    _stop_all(running)
                    raise TwinrunError(
                        f"Replica {replica.spec.label} exited with code {code}; the other "
                        f"replicas were stopped. The end of its output:\n{tail}")
                running.remove(replica)
                finished.append(replica.outcome())
                progressed = True
            if progressed and progress is not None:
                states = {s.label: ("waiting", 0) for s in pending}
                states.update({r.spec.label: ("running", len(r.reader.trace.steps))
                               for r in running})
                states.update({o.spec.label: ("done", len(o.reader.trace.steps))
                               for o in finished})
                progress(states)
            if not progressed:
                time.sleep(poll_interval)
    except BaseException:
        _stop_all(running)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    order = {s.label: i for i, s in enumerate(specs)}
    return sorted(finished, key=lambda o: order[o.spec.label])


def _stop_all(running):
    for replica in running:
        replica.stop()
        replica.log.close()


def _lockstep_round(running, compared):
    """Compare every step all replicas have written; release them while they agree."""
    from twinrun.compare import compare_step

    traces = [r.reader.trace for r in running]
    if compared == 0 and all(t.steps for t in traces):
        data = {t.data["fingerprint"] if t.data else None for t in traces}
        if len(data) > 1:
            return compared, True
    while all(len(t.steps) > compared for t in traces):
        rows = [t.steps[compared] for t in traces]
        if compare_step(rows, traces[0].variables) is not None:
            return compared, True
        compared += 1
        for replica in running:
            replica.release()
    return compared, False


def python_command(module, *args):
    """A command that runs `python -m module args` with this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]
