"""What every tracer records besides the tensors: the process facts that decide
reproducibility, and when to save weight snapshots."""

import os


def snapshot_due(epoch):
    """Save weights after epochs 1-10, then every 10th: enough to see the distance grow
    without filling the disk on a 200-epoch run."""
    return epoch <= 10 or epoch % 10 == 0


def process_facts():
    """Facts about this process that decide reproducibility but are no package or CPU fact:
    the hash seed (and a probe hash, which differs between processes when hashing is
    randomised), and the twinrun settings the launcher passed."""
    return {
        "hash_seed": os.environ.get("PYTHONHASHSEED"),
        "hash_probe": hash("twinrun-hash-probe"),
        "determinism": os.environ.get("TWINRUN_DETERMINISM"),
        "threads": os.environ.get("TWINRUN_THREADS"),
    }


# `--trace-every sampled`: the whole state every 16th step. On the 2-core box a whole-state
# fingerprint of native PyTorch's seed CNN with Adam costs about 5-15 % of a step
# (docs/performance.md), so one step in 16 keeps the trace within 1 %.
SAMPLED_EVERY = 16


class StateSchedule:
    """Which steps fingerprint the whole training state (the step words); every step records
    its batch and its loss whatever this says.

    Every step by default. Sampled (`every` = k > 1): steps k-1, 2k-1, ... (0-based), plus
    every step of `dense`, a `(first, last)` window, both included: what a rerun asks for to
    name the exact step and tensor of a divergence seen between two sampled steps. The
    launcher passes both in the environment (`TWINRUN_TRACE_EVERY`, `TWINRUN_TRACE_DENSE` as
    `first:last`).

    Arguments:
        every: k, at least 1.
        dense: optional `(first, last)` steps traced whole whatever `every` says.

    Example:
    >>> schedule = StateSchedule(4, dense=(9, 10))
    >>> [step for step in range(12) if schedule.due(step)]
    [3, 7, 9, 10, 11]
    """

    def __init__(self, every=1, dense=None):
        from twinrun.errors import TwinrunError

        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise TwinrunError(f"Expected the whole state to be traced every k steps with k a "
                               f"positive integer. Received: {every!r}")
        self.every = every
        self.dense = tuple(dense) if dense else None

    @classmethod
    def from_environment(cls, every=None):
        """The schedule the launcher asked for (`every`, when given, wins over it)."""
        from twinrun.errors import TwinrunError

        text = os.environ.get("TWINRUN_TRACE_EVERY", "1")
        dense = os.environ.get("TWINRUN_TRACE_DENSE")
        try:
            every = int(text) if every is None else every
            window = tuple(int(part) for part in dense.split(":")) if dense else None
        except ValueError:
            raise TwinrunError(f"TWINRUN_TRACE_EVERY={text!r} or TWINRUN_TRACE_DENSE="
                               f"{dense!r} is not what twinrun's launcher writes (an integer; "
                               f"FIRST:LAST); unset them.") from None
        return cls(every, window)

    @property
    def sampled(self):
        return self.every > 1

    def due(self, step):
        """Whether step `step` (0-based) records the whole state's words."""
        if self.dense is not None and self.dense[0] <= step <= self.dense[1]:
            return True
        return (step + 1) % self.every == 0

    def header(self):
        """What the trace's header says of it (`state_every`, `state_dense`)."""
        return {"state_every": self.every,
                "state_dense": list(self.dense) if self.dense else None}
