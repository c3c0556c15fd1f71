"""Executors: where a study's runs go, each one a fresh process of the worker program (or of
the user's own command, for a study of a script: `script.ScriptProcess`).

- `local.LocalExecutor` (`--jobs N`): a pool of N fresh processes on this machine; needs
  nothing beyond twinrun.
- `ray.RayExecutor` (`--executor ray [--address ADDR]`): each run is a Ray task that starts a
  fresh process on its node (Ray is an optional extra: `pip install 'twinrun[ray]'`).

Both take `Task`s and report each one back to the driver through the same two callbacks,
`on_start(task)` and `on_finish(task, outcome)`, in the driver's main thread: the driver alone
writes the store, so records come out the same whichever executor ran them.
"""

from twinrun.errors import TwinrunError
from twinrun.executors.common import Outcome, Task

__all__ = ["Outcome", "Task", "executor_for"]

EXECUTORS = ("local", "ray")


def executor_for(name="local", *, jobs=None, address=None, cpus_per_run=None,
                 gpus_per_run=None, timeout=None):
    """The executor a command line asks for, its options checked (one sentence each).

    Arguments:
        name: `"local"` or `"ray"`.
        jobs: runs at once in the local pool (default 1); not with Ray.
        address, cpus_per_run, gpus_per_run: Ray's options (defaults: a local Ray instance,
            1 CPU, 0 GPU); not with the local pool.
        timeout: seconds after which a run is stopped and counted as failed.

    Example:
    >>> executor_for("local", jobs=2).describe()
    '2 local processes at a time'
    """
    if name not in EXECUTORS:
        raise TwinrunError(f"Unknown --executor {name!r}: expected one of "
                           f"{', '.join(EXECUTORS)}.")
    if name == "local":
        ray_only = [flag for flag, value in (("--address", address),
                                             ("--cpus-per-run", cpus_per_run),
                                             ("--gpus-per-run", gpus_per_run))
                    if value is not None]
        if ray_only:
            raise TwinrunError(f"{ray_only[0]} is an option of --executor ray; add "
                               f"--executor ray or leave it out.")
        from twinrun.executors.local import LocalExecutor

        return LocalExecutor(jobs=1 if jobs is None else jobs, timeout=timeout)
    if jobs is not None:
        raise TwinrunError("--jobs sizes the local pool; with --executor ray, Ray places the "
                           "runs, so give --cpus-per-run (and --gpus-per-run) instead.")
    from twinrun.executors.ray import RayExecutor

    return RayExecutor(address=address, cpus_per_run=1 if cpus_per_run is None else cpus_per_run,
                       gpus_per_run=0 if gpus_per_run is None else gpus_per_run,
                       timeout=timeout)
