"""Run replicas in fresh processes and compare their traces: the engine of `twinrun check`.

Each replica is a `twinrun.launch.ChildProcess` whose environment is prepared before it
starts. Replicas run side by side up to `parallel` at a time. In lockstep mode all of them run
at once and the launcher compares every step before letting any replica take the next one, so
a divergence stops them within one step.

Whatever ends the check (a verdict, a failing or hung replica, a signal to the launcher), every
replica's process group is ended before `run_replicas` returns or raises, and `on_end` hears
how each replica ended, so its store row never stays `running`.
"""

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from twinrun.errors import TwinrunError
from twinrun.launch import ChildProcess, stop_on_signals, stop_reason
from twinrun.trace import TraceReader


@dataclass
class ReplicaSpec:
    """One replica: what to run and in which environment."""

    label: str
    command: list
    env: dict
    trace: Path
    log: Path  # everything the replica writes, kept whole
    result: Path | None = None  # built-in workloads write a result JSON here


@dataclass
class ReplicaOutcome:
    """How one replica ended.

    `stop_reason` is set only when the launcher stopped the replica on purpose (lockstep saw a
    divergence, another replica failed, a signal); `failure` when the replica itself failed
    (its exit status, or a timeout).
    """

    spec: ReplicaSpec
    returncode: int | None
    stop_reason: str | None = None
    failure: str | None = None
    log: str = ""  # the end of its output
    reader: TraceReader = field(default=None)
    wall_time: float | None = None

    @property
    def stopped(self):
        return self.stop_reason is not None


class _Replica:
    def __init__(self, spec, lockstep):
        self.spec = spec
        self.reader = TraceReader(spec.trace)
        self.child = ChildProcess(spec.command, spec.env, log_path=spec.log, lockstep=lockstep)

    def outcome(self, failure=None):
        return ReplicaOutcome(self.spec, self.child.returncode, self.child.stop_reason, failure,
                              self.child.log_tail(), self.reader,
                              time.monotonic() - self.child.started)


def run_replicas(specs, *, parallel=1, lockstep=False, timeout=None, stop_when=None,
                 poll_interval=0.005, progress=None, on_start=None, on_end=None):
    """Run every replica and return their outcomes (traces read back), in the order of `specs`.

    Arguments:
        specs: the `ReplicaSpec`s.
        parallel: how many run at a time (lockstep runs all at once).
        lockstep: compare step by step and stop every replica at the first difference.
        timeout: seconds a replica may run before it counts as hung.
        stop_when: optional `f(reader) -> bool`; a replica is stopped once it is true (used
            by localisation, which needs the traces only up to one step).
        progress: optional `f({label: (state, steps)})`, called as replicas advance.
        on_start: optional `f(spec)`, called as each replica's process starts.
        on_end: optional `f(outcome)`, called once for every replica that started, however
            it ended (also when this function raises).

    Raises `TwinrunError` (one sentence) when a replica fails or hangs, and
    `twinrun.launch.Interrupted` on SIGINT, SIGTERM or SIGHUP; the others are stopped first.
    """
    if lockstep:
        parallel = len(specs)
    pending = list(specs)
    running, finished = [], []
    compared = 0

    def end(replica, failure=None):
        running.remove(replica)
        outcome = replica.outcome(failure)
        finished.append(outcome)
        if on_end is not None:
            on_end(outcome)
        return outcome

    def stop_all(reason):
        for replica in list(running):
            replica.child.stop(reason)
            replica.reader.poll()
            end(replica)

    with stop_on_signals():
        try:
            while pending or running:
                while pending and len(running) < max(1, parallel):
                    spec = pending.pop(0)
                    running.append(_Replica(spec, lockstep))
                    if on_start is not None:
                        on_start(spec)
                progressed = False
                for replica in running:
                    if replica.reader.poll():
                        progressed = True
                if lockstep:
                    compared, diverged = _lockstep_round(running, compared)
                    if diverged:
                        for replica in running:
                            replica.child.stop(f"stopped by lockstep: the replicas diverged at "
                                               f"step {compared}")
                if stop_when is not None:
                    for replica in running:
                        if replica.child.stop_reason is None and stop_when(replica.reader):
                            replica.child.stop("stopped once localisation had its step")
                for replica in list(running):
                    progressed |= _check_one(replica, timeout, end, stop_all)
                if progressed and progress is not None:
                    progress(_states(pending, running, finished))
                if not progressed:
                    time.sleep(poll_interval)
        except BaseException as error:
            stop_all(stop_reason(error))
            raise
    order = {s.label: i for i, s in enumerate(specs)}
    return sorted(finished, key=lambda o: order[o.spec.label])


def _check_one(replica, timeout, end, stop_all):
    """Look at one running replica: still going, finished, failed or hung. True if it ended."""
    child = replica.child
    code = child.process.poll()
    if code is None:
        if timeout and time.monotonic() - child.started > timeout:
            label = replica.spec.label
            child.stop(f"did not finish within {timeout:g} s")
            replica.reader.poll()
            tail = child.log_tail()
            end(replica, failure=f"did not finish within {timeout:g} s (hung?)")
            stop_all(f"stopped by twinrun check: {label} did not finish within {timeout:g} s")
            raise TwinrunError(
                f"{label.capitalize()} did not finish within {timeout:g} s and was stopped "
                f"(hung?); raise --timeout if it is just slow."
                + (f" The end of its output:\n{tail}" if tail else ""))
        return False
    child.finish()
    replica.reader.poll()
    if code != 0 and child.stop_reason is None:
        label = replica.spec.label
        tail = child.log_tail()
        end(replica, failure=f"exited with code {code}")
        stop_all(f"stopped by twinrun check: {label} exited with code {code}")
        raise TwinrunError(
            f"{label.capitalize()} exited with code {code}; the other replicas were stopped. "
            f"Its whole output is in {replica.spec.log}; the end of it:\n{tail}")
    end(replica)
    return True


def _states(pending, running, finished):
    states = {s.label: ("waiting", 0) for s in pending}
    states.update({r.spec.label: ("running", len(r.reader.trace.steps)) for r in running})
    states.update({o.spec.label: ("done", len(o.reader.trace.steps)) for o in finished})
    return states


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
            replica.child.release()
    return compared, False


def python_command(module, *args):
    """A command that runs `python -m module args` with this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]
