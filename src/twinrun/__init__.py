"""twinrun: make deep-learning training reproducible, prove it, and measure what is left."""

__version__ = "0.1.0"


def deterministic(seed=None, backend=None, threads=None, enabled=None, seeds=None):
    """Make this process's training deterministic; see `twinrun.determinism.deterministic`."""
    from twinrun.determinism import deterministic as _deterministic

    return _deterministic(seed, backend=backend, threads=threads, enabled=enabled, seeds=seeds)


def check(fn, n=2, **options):
    """Run `fn()` in `n` fresh processes and return the verdict of their traces.

    For notebooks, whose kernel cannot be restarted with a new hash seed: `fn` builds and
    trains its model with `twinrun.keras.Trace()` or `twinrun.torch.Tracer(...)` (no path)
    and may call `twinrun.deterministic()` with no seed.

    Arguments:
        fn: a function taking no arguments (sent to the fresh processes with cloudpickle).
        n: number of replicas.
        **options: `seed`, `backend`, `threads`, `hash_seed`, `lockstep`, `timeout`,
            `localize`, `store` as for `twinrun check`.

    Example:
    >>> verdict = twinrun.check(train, n=2, seed=7)
    >>> verdict.verdict
    'identical'
    """
    from twinrun.checks import check_function

    return check_function(fn, n=n, **options)
