"""Run replicas in fresh processes and compare their traces: the engine of `twinrun check`.

Each replica is a `twinrun.launch.ChildProcess` whose environment is prepared before it
starts. Replicas run side by side up to `parallel` at a time, and the launcher compares their
traces as they grow (`twinrun.checks.verdict.Comparison`), each replica against replica 0, freeing
every step's words once it is compared: the launcher's memory stays small however long the
training. In lockstep mode all of them run at once and the launcher compares every step before
letting any replica take the next one, so a divergence stops them within one step; when their
threads are more than the CPUs, fewer of them compute a step at a time (`concurrent_steps`:
with one, the replicas take turns, step by step), so they do not fight over the cores.

Whatever ends the check (a verdict, a failing or hung replica, a signal to the launcher), every
replica's process group is ended before `run_replicas` returns or raises, and `on_end` hears
how each replica ended, so its store row never stays `running`.
"""

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from twinrun.checks.verdict import Comparison
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
    def __init__(self, spec, reader, lockstep):
        self.spec = spec
        self.reader = reader
        self.child = ChildProcess(spec.command, spec.env, log_path=spec.log, lockstep=lockstep)
        self.released = 0  # lockstep: steps it was let go past

    def outcome(self, failure=None):
        return ReplicaOutcome(self.spec, self.child.returncode, self.child.stop_reason, failure,
                              self.child.log_tail(), self.reader,
                              time.monotonic() - self.child.started)


def run_replicas(specs, *, parallel=1, lockstep=False, concurrent_steps=None, timeout=None,
                 stop_when=None, compare=True, poll_interval=0.005, progress=None, on_start=None,
                 on_end=None):
    """Run every replica and return their outcomes (traces read back), in the order of `specs`.

    Arguments:
        specs: the `ReplicaSpec`s.
        parallel: how many run at a time (lockstep runs all at once).
        lockstep: compare step by step and stop every replica at the first difference.
        concurrent_steps: lockstep only: how many replicas may compute a step at once (None:
            all). The others wait for their go at a step already written, so each step is
            still compared before any replica goes past it; start-up and step 0 run in all.
        timeout: seconds a replica may run before it counts as hung.
        stop_when: optional `f(reader) -> bool`; a replica is stopped once it is true (used
            by localisation, which needs the traces only up to one step).
        compare: compare the traces as they grow and free the words of every step found
            equal (`twinrun.checks.verdict.Comparison`); `first_divergence` of the outcomes' traces
            then goes on from there. False keeps every record (localisation reruns).
        progress: optional `f({label: (state, steps)})`, called as replicas advance.
        on_start: optional `f(spec)`, called as each replica's process starts.
        on_end: optional `f(outcome)`, called once for every replica that started, however
            it ended (also when this function raises).

    Raises `TwinrunError` (one sentence) when a replica fails or hangs, and
    `twinrun.launch.Interrupted` on SIGINT, SIGTERM or SIGHUP; the others are stopped first.
    """
    if lockstep:
        parallel = len(specs)
    readers = {s.label: TraceReader(s.trace) for s in specs}
    comparison = Comparison([readers[s.label].trace for s in specs]) if compare or lockstep \
        else None
    pending = list(specs)
    running, finished = [], []
    order = {s.label: i for i, s in enumerate(specs)}

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
            replica.reader.advance()
            end(replica)

    with stop_on_signals():
        try:
            while pending or running:
                while pending and len(running) < max(1, parallel):
                    spec = pending.pop(0)
                    running.append(_Replica(spec, readers[spec.label], lockstep))
                    if on_start is not None:
                        on_start(spec)
                progressed = False
                for replica in running:
                    if replica.reader.advance():
                        progressed = True
                limit = math.inf
                if comparison is not None:
                    divergence = comparison.advance()
                    if lockstep:
                        if divergence is not None:
                            for replica in running:
                                replica.child.stop(f"stopped by lockstep: the replicas "
                                                   f"diverged at step {divergence.step}")
                        else:
                            limit = _lockstep_limit(comparison, running, order)
                            _release(running, limit, concurrent_steps or math.inf)
                if stop_when is not None:
                    for replica in running:
                        if replica.child.stop_reason is None and stop_when(replica.reader):
                            replica.child.stop("stopped once localisation had its step")
                for replica in list(running):
                    # A lockstep replica that wrote its step and waits for its go is not hung:
                    # the one behind it, or the one whose turn it is, is, and is timed out.
                    waiting = lockstep and len(replica.reader.trace.steps) > replica.released
                    progressed |= _check_one(replica, timeout, end, stop_all, waiting)
                if progressed and progress is not None:
                    progress(_states(pending, running, finished))
                if not progressed:
                    time.sleep(poll_interval)
        except BaseException as error:
            stop_all(stop_reason(error))
            raise
    return sorted(finished, key=lambda o: order[o.spec.label])


def _lockstep_limit(comparison, running, order):
    """Lockstep: how many steps the running replicas may have finished.

    A step is let go once every running replica's copy of it was found equal to replica 0's.
    A replica that has ended holds no one back (a shorter trace is reported once all end).
    """
    active = {order[r.spec.label] for r in running}
    reference_ended = 0 not in active
    bounds = []
    for k in active - {0}:
        position = comparison.positions[k - 1]
        if reference_ended and position >= len(comparison.traces[0].steps):
            continue  # nothing of replica 0's left to compare it with
        bounds.append(position)
    return min(bounds) if bounds else math.inf


def _release(running, limit, concurrent):
    """Lockstep: give the running replicas one go for each step let go, while at most
    `concurrent` of them compute at once; the one furthest behind goes first."""
    computing = sum(r.released >= len(r.reader.trace.steps) for r in running)
    for replica in sorted(running, key=lambda r: r.released):
        while (computing < concurrent or concurrent >= len(running)) and \
                replica.released < min(limit, len(replica.reader.trace.steps)):
            replica.child.release()
            replica.released += 1
            if replica.released >= len(replica.reader.trace.steps):
                computing += 1


def _check_one(replica, timeout, end, stop_all, waiting=False):
    """Look at one running replica: still going, finished, failed or hung. True if it ended.

    `waiting`: it is waiting for the others (lockstep), so it is not timed out.
    """
    child = replica.child
    code = child.process.poll()
    if code is None:
        if timeout and not waiting and time.monotonic() - child.started > timeout:
            label = replica.spec.label
            child.stop(f"did not finish within {timeout:g} s")
            replica.reader.advance()
            tail = child.log_tail()
            end(replica, failure=f"did not finish within {timeout:g} s (hung?)")
            stop_all(f"stopped by twinrun check: {label} did not finish within {timeout:g} s")
            raise TwinrunError(
                f"{label.capitalize()} did not finish within {timeout:g} s and was stopped "
                f"(hung?); raise --timeout if it is just slow."
                + (f" The end of its output:\n{tail}" if tail else ""))
        return False
    child.finish()
    replica.reader.advance()
    if code != 0 and child.stop_reason is None:
        label = replica.spec.label
        tail = child.log_tail()
        end(replica, failure=f"exited with code {code}")
        stop_all(f"stopped by twinrun check: {label} exited with code {code}")
        explained = _own_explanation(replica.spec)
        if explained:
            raise TwinrunError(f"{label.capitalize()} failed: {explained}; the other replicas "
                               f"were stopped, and its whole output is in {replica.spec.log}.")
        raise TwinrunError(
            f"{label.capitalize()} exited with code {code}; the other replicas were stopped. "
            f"Its whole output is in {replica.spec.log}; the end of it:\n{tail}")
    end(replica)
    return True


def _own_explanation(spec):
    """The one sentence a failing replica left on why (`<trace>.failure`: a notebook's cell
    that raised), or None."""
    try:
        text = Path(f"{spec.trace}.failure").read_text(errors="replace").strip()
    except OSError:
        return None
    return text.rstrip(".") or None


def _states(pending, running, finished):
    states = {s.label: ("waiting", 0) for s in pending}
    states.update({r.spec.label: ("running", len(r.reader.trace.steps)) for r in running})
    states.update({o.spec.label: ("done", len(o.reader.trace.steps)) for o in finished})
    return states
