"""twinrun: make deep-learning training reproducible, prove it, and measure what is left.

`import twinrun` imports no deep-learning framework. The framework-specific parts load on
first use, so `twinrun.keras.Trace()` works after a plain `import twinrun` (and imports Keras
only then), as does `twinrun.torch.Tracer(...)` (importing torch only then).
"""

import importlib

__version__ = "0.1.0"

# Submodules loaded on first attribute access: each imports its framework, which
# `import twinrun` (and with it `twinrun --help`) must not do.
_LAZY_SUBMODULES = ("keras", "torch")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"twinrun.{name}")
    raise AttributeError(f"module 'twinrun' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


def deterministic(seed=None, backend=None, threads=None, enabled=None, seeds=None):
    """Make this process's training deterministic; see `twinrun.determinism.deterministic`.

    Arguments:
        seed: the run seed; None takes `twinrun check`'s --seed, else the default seed 0.
        backend: `"tensorflow"`, `"jax"`, `"torch"`; None for the one Keras would pick.
        threads: pin the framework's intra- and inter-op thread pools to this size; None pins
            them at the framework's own default on this machine.
        enabled: False seeds only and leaves determinism off.
        seeds: optional `{source: seed}` to use instead of deriving them from `seed`.

    Example:
    >>> import twinrun
    >>> report = twinrun.deterministic(7, backend="torch")
    >>> report.seed, report.backend
    (7, 'torch')
    """
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
    >>> import twinrun
    >>> def train():
    ...     import torch
    ...     import twinrun.torch
    ...     twinrun.deterministic(backend="torch")  # the check's seed, in each fresh process
    ...     model = torch.nn.Linear(4, 1)
    ...     optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ...     x = torch.randn(32, 4)
    ...     with twinrun.torch.Tracer(model, optimizer) as tracer:
    ...         for _ in range(3):
    ...             optimizer.zero_grad()
    ...             loss = model(x).square().mean()
    ...             loss.backward()
    ...             optimizer.step()
    ...             tracer.step(loss, x)
    >>> verdict = twinrun.check(train, n=2, seed=7)
    >>> verdict.verdict, [replica["steps"] for replica in verdict.replicas]
    ('identical', [3, 3])
    """
    from twinrun.checks import check_function

    return check_function(fn, n=n, **options)
