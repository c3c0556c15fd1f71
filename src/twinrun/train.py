"""`twinrun.train_once`: one run of a built-in workload in a fresh process."""

from twinrun.launch import available_cpus, run_in_fresh_process
from twinrun.runconfig import RunConfig


def prepare(config):
    """Validate a `RunConfig` and fail fast, in this process, on a bad store or missing data."""
    from twinrun.store import Store
    from twinrun.workloads import fashion_mnist

    config = config.validated()
    if config.threads is None and config.determinism:
        config.threads = available_cpus()
    if config.record:
        Store(config.store)  # raises StoreError with one sentence when unwritable
    if config.workload == "fashion-cnn":
        fashion_mnist.locate(config.data_dir)
    return config


def train_once(*, show_progress=True, timeout=None, **options):
    """Train a built-in workload once in a fresh process and return its result dict.

    Arguments:
        show_progress: show the progress display (the child writes to this terminal).
        timeout: seconds before the run is stopped, or None.
        **options: fields of `twinrun.runconfig.RunConfig` (backend, seed, preset, epochs,
            patience, determinism, threads, store, data_dir, workload).

    Example (it trains the Fashion CNN for about a minute, so it is not run as a doctest):

        result = train_once(backend="torch", seed=7, preset="quick")
        result["fingerprint"]  # 32 hex digits, the same in every run with seed 7
    """
    config = prepare(RunConfig(**options))
    return run_in_fresh_process(config, show_progress=show_progress, timeout=timeout)
