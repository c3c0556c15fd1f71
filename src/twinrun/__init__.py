"""twinrun: make deep-learning training reproducible, prove it, and measure what is left.

`import twinrun` imports no deep-learning framework. The framework-specific parts load on
first use, so `twinrun.keras.Trace()` works after a plain `import twinrun` (and imports Keras
only then), as does `twinrun.torch.Tracer(...)` (importing torch only then).
"""

import importlib

# `twinrun.seeds` is a module (the seed derivation) and, below, a function (a study run's
# seeds). Importing the module first lets the function replace it as the package attribute for
# good: Python binds a submodule to its package only when it first loads it, and
# `from twinrun.seeds import ...` reads sys.modules, not this attribute.
import twinrun.seeds as _seeds_module  # noqa: F401

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


def deterministic(seed=None, backend=None, threads=None, determinism=None, seeds=None,
                  portable=None):
    """Make this process's training deterministic; see `twinrun.determinism.deterministic`.

    Arguments:
        seed: the run seed; None takes `twinrun check`'s --seed, else the default seed 0.
        backend: `"tensorflow"`, `"jax"`, `"torch"`; None for the one Keras would pick.
        threads: pin the framework's intra- and inter-op thread pools to this size; None pins
            them at the framework's own default on this machine.
        determinism: False seeds only and leaves determinism off.
        seeds: optional `{source: seed}` to use instead of deriving them from `seed`; None
            (with no seed) takes the run's own seeds under a study of your script.
        portable: True for CPU kernels that give the same bits on any x86-64 CPU with AVX2
            (torch only; docs/portable.md); the report says whether that holds here or why
            not. None takes `twinrun check --portable` from the launcher, else off.

    Example:
    >>> import twinrun
    >>> report = twinrun.deterministic(7, backend="torch")
    >>> report.seed, report.backend
    (7, 'torch')
    """
    from twinrun.determinism import deterministic as _deterministic

    if seed is None and seeds is None:
        # Under a study of the user's script: the run's own seeds (the source it varies).
        from twinrun.handoff import launcher_seeds

        seeds = launcher_seeds()
    return _deterministic(seed, backend=backend, threads=threads, determinism=determinism,
                          seeds=seeds, portable=portable)


def seeds():
    """This run's seeds by name: `init`, `order`, `dropout`, `split`, and the other derived seeds.

    Under `twinrun variance ... -- python train.py` each run gets its own (the source it varies
    changes, the others stay fixed); outside a study they derive from `twinrun check`'s seed,
    or the default seed 0. Reading a seed tells the study the script uses it.

    Example:
    >>> import twinrun
    >>> seeds = twinrun.seeds()
    >>> seeds["init"] == twinrun.seeds()["init"], "order" in seeds
    (True, True)
    """
    from twinrun.handoff import seeds as _seeds

    return _seeds()


def log_metrics(**metrics):
    """Report this run's final metrics (numbers) to the study that started it.

    Arguments:
        **metrics: e.g. `test_accuracy=0.87, test_loss=0.35`; a study summarises
            `test_accuracy`, `test_loss`, `best_val_loss` or `stopped_epoch` (`--metric`).
            Outside a study nothing is kept.

    Example:
    >>> import twinrun
    >>> twinrun.log_metrics(test_accuracy=0.87)
    {'test_accuracy': 0.87}
    """
    from twinrun.handoff import log_metrics as _log_metrics

    return _log_metrics(**metrics)


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


def load_ipython_extension(ipython):
    """`%load_ext twinrun` in Jupyter or Colab: adds the `%%twinrun check` cell magic, which
    checks a training cell in fresh processes without disturbing the kernel (`twinrun.magic`).
    """
    from twinrun.magic import register

    register(ipython)
