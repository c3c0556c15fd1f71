"""`--jobs N`: a pool of fresh processes on this machine.

No threads and no scheduler: the driver's main thread starts up to N worker processes (the
launcher's `ChildProcess`), polls them, and hands each outcome to the driver as it ends. The
children are the main thread's own, so the kernel kills them when the driver dies
(`PR_SET_PDEATHSIG` follows the thread that started a child), and SIGINT, SIGTERM or SIGHUP
to the driver stops every running child first (`twinrun.launch.stop_on_signals`).
"""

import tempfile
import time
from collections import deque
from pathlib import Path

from twinrun.errors import TwinrunError
from twinrun.executors.common import Outcome, launch
from twinrun.launch import stop_on_signals, stop_reason

POLL_S = 0.05


class LocalExecutor:
    """Run tasks as fresh processes, at most `jobs` at a time.

    Arguments:
        jobs: how many runs at once (at least 1). Each run uses the thread pools its config
            asks for; on a machine with few cores, more jobs than cores only shares them.
        timeout: seconds after which a run is stopped and counted as failed; None waits.

    Example:

        executor = LocalExecutor(jobs=2)
        executor.run(tasks, on_start=lambda task: True,
                     on_finish=lambda task, outcome: print(task.key, outcome.ok))
    """

    name = "local"

    def __init__(self, jobs=1, timeout=None):
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise TwinrunError(f"Expected --jobs to be a positive integer. Received: "
                               f"jobs={jobs!r}.")
        self.jobs = jobs
        self.timeout = timeout

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass

    def describe(self):
        return f"{self.jobs} local process{'es' if self.jobs != 1 else ''} at a time"

    def run(self, tasks, *, on_start, on_finish, on_stop=None):
        """Execute `tasks`; return when every one has ended.

        Arguments:
            tasks: `Task`s, started in this order.
            on_start: `f(task) -> bool`, called just before a task starts; False skips it.
            on_finish: `f(task, Outcome)`, called as each task ends.
            on_stop: `f(task, reason)`, for each task still running when this driver is
                stopped (a signal or an error); then the error is raised again.
        """
        pending = deque(tasks)
        running = {}  # key -> (task, WorkerRun, started)
        with tempfile.TemporaryDirectory(prefix="twinrun-study-") as folder, \
                stop_on_signals():
            try:
                while pending or running:
                    while pending and len(running) < self.jobs:
                        task = pending.popleft()
                        if on_start(task):
                            run = launch(task.config, Path(folder) / _safe(task.key))
                            running[task.key] = (task, run, time.monotonic())
                    for key, (task, run, started) in list(running.items()):
                        if run.poll() is not None:
                            del running[key]
                            on_finish(task, run.outcome())
                        elif self.timeout is not None and \
                                time.monotonic() - started > self.timeout:
                            del running[key]
                            run.stop(f"did not finish within {self.timeout:g} s")
                            on_finish(task, Outcome(
                                error=f"The run did not finish within {self.timeout:g} s "
                                      f"and was stopped."))
                    time.sleep(POLL_S)
            except BaseException as error:
                reason = stop_reason(error)
                for task, run, _ in running.values():
                    run.stop(reason)
                    if on_stop is not None:
                        on_stop(task, reason)
                raise


def _safe(key):
    """A folder name for a run key (`init/3` -> `init_3`)."""
    return "".join(c if c.isalnum() or c in "=,-." else "_" for c in key)
