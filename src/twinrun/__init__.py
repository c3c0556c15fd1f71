"""twinrun: make deep-learning training reproducible, prove it, and measure what is left."""

__version__ = "0.1.0"


def deterministic(seed=None, backend=None, threads=None, enabled=None, seeds=None):
    """Make this process's training deterministic; see `twinrun.determinism.deterministic`."""
    from twinrun.determinism import deterministic as _deterministic

    return _deterministic(seed, backend=backend, threads=threads, enabled=enabled, seeds=seeds)
