"""Lockstep: the replica's side of the launcher's step-by-step comparison."""

import os
import sys

# Exit status of a lockstep replica whose pipe closed (the launcher stopped it, or died). Only
# informative: the launcher knows which replicas it stopped and never reads this code, so a
# script that exits 75 on its own is a failing replica, not a stopped one.
STOPPED_BY_LAUNCHER = 75


class Lockstep:
    """The replica's side of lockstep mode: after each step, wait for the launcher's go.

    The launcher compares every replica's step s before it lets any of them start step s+1,
    so a divergence at step 5 of 10,000 stops all replicas within one step. It talks through a
    pipe whose read end this process inherited (`TWINRUN_LOCKSTEP_FD`): one byte per step;
    end-of-file means stop. The pipe also closes when the launcher dies, so a replica waiting
    for its go never outlives it.
    """

    def __init__(self, fd):
        self.fd = fd

    @classmethod
    def from_environment(cls):
        value = os.environ.get("TWINRUN_LOCKSTEP_FD")
        return cls(int(value)) if value else None

    def wait(self, step):
        try:
            token = os.read(self.fd, 1)
        except OSError:
            token = b""
        if not token:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(STOPPED_BY_LAUNCHER)
