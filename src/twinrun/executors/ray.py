"""`--executor ray [--address ADDR]`: each run is a Ray task that starts a fresh process.

Ray places the tasks (`--cpus-per-run`, `--gpus-per-run`, fractions allowed, so several small
runs can share one GPU); twinrun writes no scheduler of its own. The task runs the worker
program in a fresh process on its node (the same launcher as `--jobs`) with `record=False`,
and returns the worker's result, environment fingerprint included, to the driver, which records
it in its own store: the nodes need twinrun installed, not the driver's filesystem.

The driver keeps only as many tasks in flight as the cluster can run at once, so a run counted
as "running" is running, and a study interrupted with Ctrl-C has nothing queued to cancel.

Ray is an optional extra (`pip install 'twinrun[ray]'`); it is imported only here, only when
a study asks for it.
"""

import contextlib
import logging
import math
import os
import socket
import tempfile
import time

from twinrun.errors import TwinrunError
from twinrun.executors.common import Outcome, launch
from twinrun.launch import available_cpus, stop_on_signals, stop_reason

# Seconds to reach a cluster's address before saying it is unreachable.
CONNECT_TIMEOUT_S = 10.0
POLL_S = 0.2


# Variables Ray sets in its workers for its own reasons (`OMP_NUM_THREADS` = the task's CPUs)
# that change a run's thread pools: each run gets the driver's value instead, so a Ray run is
# the same run as under --jobs.
DRIVER_VARIABLES = ("OMP_NUM_THREADS",)


def _task(config_dict, timeout, driver_env):
    """The body of one Ray task, on a worker node: run the config in a fresh process."""
    for name, value in driver_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    outcome = run_to_end(config_from_dict(config_dict), timeout=timeout)
    outcome["node"] = socket.gethostname()
    return outcome


def validate_resources(cpus_per_run, gpus_per_run):
    """Return `(cpus, gpus)` per run as floats if Ray can place them, else raise.

    Example:
    >>> validate_resources(1, 0.25)
    (1.0, 0.25)
    """
    values = []
    for name, value, low_open in (("--cpus-per-run", cpus_per_run, True),
                                  ("--gpus-per-run", gpus_per_run, False)):
        number = None
        if not isinstance(value, bool):
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = None
        if number is None or not math.isfinite(number) or number < 0 or \
                (low_open and number == 0):
            least = "above 0" if low_open else "at least 0"
            raise TwinrunError(f"Expected {name} to be a number {least}, e.g. 1 or 0.5. "
                               f"Received: {value!r}.")
        if number > 1 and number != int(number):
            raise TwinrunError(f"Expected {name} to be a fraction below 1 or a whole number "
                               f"(Ray's rule). Received: {value!r}.")
        values.append(number)
    return tuple(values)


class RayExecutor:
    """Run tasks as Ray tasks, each one a fresh process on its node.

    Arguments:
        address: a running cluster's address (`host:port`, `ray://host:port`, or `auto`);
            None starts a local Ray instance with this machine's CPUs.
        cpus_per_run: CPUs Ray reserves for each run (default 1).
        gpus_per_run: GPUs Ray reserves for each run, fractions allowed (default 0).
        timeout: seconds after which a run is stopped and counted as failed; None waits.

    Raises `TwinrunError` (one sentence, within about 30 s) when Ray is not installed, the
    address cannot be reached, or the cluster cannot ever place one run.

    Example:

        with RayExecutor(address="10.0.0.5:6379", gpus_per_run=0.25) as executor:
            executor.run(tasks, on_start=..., on_finish=...)
    """

    name = "ray"

    def __init__(self, address=None, cpus_per_run=1, gpus_per_run=0, timeout=None):
        self.address = address
        self.cpus, self.gpus = validate_resources(cpus_per_run, gpus_per_run)
        self.timeout = timeout
        self._ray = None
        self._capacity = None

    def describe(self):
        where = self.address or "a local Ray instance"
        gpus = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"Ray tasks on {where} ({self.cpus:g} CPU{gpus} per run)"

    # -- connecting ----------------------------------------------------------------------------

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def connect(self):
        """Connect to the cluster (or start a local one) and size the in-flight window."""
        if self._ray is not None:
            return
        try:
            import ray
        except ImportError:
            raise TwinrunError("--executor ray needs Ray, an optional extra: install it with "
                               "`pip install 'twinrun[ray]'`, or use --jobs N.") from None
        if self.address not in (None, "auto", "local"):
            _validate_reachable(self.address)
        options = dict(include_dashboard=False, log_to_driver=False,
                       logging_level=logging.WARNING, configure_logging=True)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            with _quiet_stderr():
                if self.address in (None, "local"):
                    ray.init(num_cpus=available_cpus(), **options)
                else:
                    ray.init(address=self.address, **options)
        except Exception as error:  # noqa: BLE001  (Ray raises many kinds; each is one sentence)
            detail = str(error).strip().splitlines()[0] if str(error).strip() else \
                type(error).__name__
            raise TwinrunError(f"Could not connect to the Ray cluster at "
                               f"{self.address or 'a new local instance'} ({detail}); check "
                               f"the address, or use --jobs N.") from None
        self._ray = ray
        self._capacity = self._window(ray.cluster_resources())

    def _window(self, resources):
        """How many runs the cluster can run at once; refuse a run it could never place."""
        cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
        if self.cpus > cpus:
            raise TwinrunError(f"Each run asks for {self.cpus:g} CPUs but the Ray cluster has "
                               f"{cpus:g}; lower --cpus-per-run.")
        if self.gpus > gpus:
            raise TwinrunError(f"Each run asks for {self.gpus:g} GPUs but the Ray cluster has "
                               f"{gpus:g}; lower --gpus-per-run or add a GPU node.")
        window = math.floor(cpus / self.cpus + 1e-9)
        if self.gpus:
            window = min(window, math.floor(gpus / self.gpus + 1e-9))
        return max(1, window)

    def close(self):
        if self._ray is not None:
            self._ray.shutdown()
            self._ray = None

    # -- running -------------------------------------------------------------------------------

    def run(self, tasks, *, on_start, on_finish, on_stop=None):
        """Execute `tasks` on the cluster; the same contract as `LocalExecutor.run`."""
        self.connect()
        ray = self._ray
        remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(_task)
        driver_env = {name: os.environ.get(name) for name in DRIVER_VARIABLES}
        pending = list(tasks)
        pending.reverse()  # pop() from the end keeps the plan's order
        in_flight = {}  # ObjectRef -> task
        with stop_on_signals():
            try:
                while pending or in_flight:
                    while pending and len(in_flight) < self._capacity:
                        task = pending.pop()
                        if on_start(task):
                            config = task.config.to_dict()
                            in_flight[remote.remote(config, self.timeout, driver_env)] = task
                    if not in_flight:
                        continue
                    done, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
                    for ref in done:
                        task = in_flight.pop(ref)
                        on_finish(task, self._outcome(ref))
            except BaseException as error:
                reason = stop_reason(error)
                for ref, task in in_flight.items():
                    try:
                        ray.cancel(ref, force=True)
                    except Exception:  # noqa: BLE001  (already ended: nothing to cancel)
                        pass
                    if on_stop is not None:
                        on_stop(task, reason)
                raise

    def _outcome(self, ref):
        try:
            return Outcome.from_dict(self._ray.get(ref))
        except Exception as error:  # noqa: BLE001  (a lost node or a crashed Ray worker)
            detail = str(error).strip().splitlines()[0] if str(error).strip() else \
                type(error).__name__
            return Outcome(error=f"Its Ray task failed: {detail}")


@contextlib.contextmanager
def _quiet_stderr():
    """Keep Ray's C++ core from writing to this process's stderr while it connects.

    Its client logs a warning a second while it retries an address that does not answer as
    a Ray cluster, straight to file descriptor 2 (no Python logger or variable silences it);
    the user gets one sentence instead.
    """
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _validate_reachable(address):
    """Raise one sentence when nothing answers at `address` within `CONNECT_TIMEOUT_S`.

    `ray.init` itself retries an unreachable address for minutes.
    """
    target = address.split("://", 1)[-1].rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise TwinrunError(f"Expected --address to be host:port (or ray://host:port, or auto). "
                           f"Received: {address!r}.")
    started = time.monotonic()
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        waited = time.monotonic() - started
        reason = "timed out" if isinstance(error, socket.timeout) else \
            (error.strerror or str(error)).lower()
        raise TwinrunError(f"Could not reach a Ray cluster at {address} ({reason} after "
                           f"{waited:.0f} s); start one there with `ray start --head`, check "
                           f"the address, or use --jobs N.") from None


def config_from_dict(values):
    """A task's config from its JSON form (what a Ray task receives)."""
    if values.get("kind") == "script":
        from twinrun.executors.script import ScriptConfig

        return ScriptConfig.from_dict(values)
    from twinrun.runconfig import RunConfig

    return RunConfig.from_dict(values)


def run_to_end(config, timeout=None, extra_env=None):
    """Run one task's config in a fresh process, wait, and return its `Outcome` as a dict.

    For executors whose tasks block (a Ray task): the files live in a temporary folder that
    is removed afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="twinrun-task-") as folder:
        run = launch(config, folder, extra_env=extra_env)
        try:
            return run.wait(timeout=timeout).to_dict()
        except BaseException:
            run.stop("its task was cancelled")
            raise
