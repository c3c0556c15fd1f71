"""One determinism switch for every framework: `twinrun.deterministic(seed, backend=None)`.

The framework-specific work lives in one module per framework with the same functions
(`environment_variables`, `apply`, `thread_counts`, `data_loading`), the way Keras keeps
`backend/<name>/`
parallel; `common.py` says what they share, including the states a control can be in.
"""

import importlib
import os
import sys

from twinrun.backends import resolve_backend
from twinrun.determinism.common import (
    APPLIED, Control, DeterminismReport, hash_seed_control, seed_python_and_numpy,
)
from twinrun.errors import TwinrunError
from twinrun.seeds import DEFAULT_SEED, derive_seeds


def seed_keras(seed):
    """Seed Keras' global generator (used by layers and `keras.random` calls without a seed).

    `keras.utils.set_random_seed` also seeds TensorFlow whenever it is installed, importing it
    (2-3 s per run) even on the JAX and torch backends; there we set what it sets for Keras and
    leave TensorFlow alone unless it is already imported.
    """
    import keras

    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return Control("keras.utils.set_random_seed", APPLIED, f"seed {seed}")
    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
    except ImportError:  # a Keras that moved its internals: fall back to the public helper
        keras.utils.set_random_seed(seed)
        return Control("keras.utils.set_random_seed", APPLIED, f"seed {seed}")
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    return Control("keras global seed", APPLIED, f"seed {seed} (TensorFlow not imported)")


def framework_module(backend):
    """The determinism module of one backend (`twinrun.determinism.<backend>`)."""
    return importlib.import_module(f"twinrun.determinism.{resolve_backend(backend)}")


PORTABLE_VARIABLE = "TWINRUN_PORTABLE"


def environment_for(backend, threads=None, determinism=True, hash_seed=None, portable=False):
    """Environment variables a fresh process needs before it starts, for one backend.

    Arguments:
        backend: `"tensorflow"`, `"jax"` or `"torch"`.
        threads: thread-pool size, or None to leave the framework's default.
        determinism: False for a run with determinism off (seeds only).
        hash_seed: value for `PYTHONHASHSEED`, or None to leave hashing randomised.
        portable: add the settings that make the framework's CPU kernels give the same bits
            on any x86-64 CPU with AVX2 (`portable_variables()`; none for TensorFlow and JAX,
            whose reports then say why).
    """
    framework = framework_module(backend)
    env = dict(framework.environment_variables(threads, determinism))
    if portable:
        env.update(framework.portable_variables())
        env[PORTABLE_VARIABLE] = "1"
    env["KERAS_BACKEND"] = backend
    env["TWINRUN_DETERMINISM"] = "1" if determinism else "0"
    if threads is not None:
        env["TWINRUN_THREADS"] = str(threads)
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = str(hash_seed)
    env["TWINRUN_PRESET_VARIABLES"] = ",".join(sorted(env))
    return env


def portable_variables(backend):
    """The variables `--portable` sets for `backend` (empty for TensorFlow and JAX)."""
    return framework_module(backend).portable_variables()


def _from_launcher(seed, threads, determinism):
    """Fill what the caller left out from what `twinrun check` passed to this process."""
    if seed is None:
        value = os.environ.get("TWINRUN_SEED")
        if value is None:
            print(f"twinrun: deterministic() was called without a seed outside `twinrun check`, so "
                  f"it uses the default seed {DEFAULT_SEED} (pass a seed to choose another).",
                  file=sys.stderr, flush=True)
            seed = DEFAULT_SEED
        else:
            seed = _integer_from_environment("TWINRUN_SEED", value)
    if threads is None and os.environ.get("TWINRUN_THREADS"):
        threads = _integer_from_environment("TWINRUN_THREADS", os.environ["TWINRUN_THREADS"])
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise TwinrunError(f"Expected threads to be a positive integer or None. Received: "
                           f"threads={threads!r}.")
    if determinism is None:
        determinism = os.environ.get("TWINRUN_DETERMINISM", "1") != "0"
    return seed, threads, determinism


def _integer_from_environment(name, value):
    try:
        return int(value)
    except ValueError:
        raise TwinrunError(f"Expected the environment variable {name} to be an integer. "
                           f"Received: {name}={value!r}.") from None


def deterministic(seed=None, backend=None, threads=None, determinism=None, seeds=None,
                  portable=None):
    """Make this process's training repeat bit for bit, and say what could not be done.

    Seeds Python, NumPy, Keras (when imported) and the framework from seeds derived from
    `seed` (see `twinrun.seeds`), turns on the framework's op determinism, pins its intra-op
    and inter-op thread pools, keeps input pipelines in order (torch `DataLoader`s made
    afterwards get a generator seeded from the `shuffle` seed; `tf.data` through op
    determinism), and returns a `DeterminismReport` with one entry per control:
    applied, already set, not needed, off, or impossible here and why (a pool that could not
    be pinned says "not pinned: bits may depend on the thread count"). Call it before building
    the model, and before any tensor is created.

    Results depend on the thread counts (a parallel sum adds in another order), so they are
    always pinned, and recorded in `report.threads`: at `threads` when given, else at the
    framework's own default on this machine, read before pinning, so the speed is unchanged.

    Arguments:
        seed: the run seed, an integer from 0 to 2**63 - 1; None takes it from `twinrun check`
            (`TWINRUN_SEED`), and outside `twinrun check` uses `twinrun.seeds.DEFAULT_SEED`
            (0), saying so in one line on stderr.
        backend: `"tensorflow"`, `"jax"`, `"torch"`; None for the one Keras would pick.
        threads: pin the framework's thread pools to this size; None pins them at the
            framework's default (or at `twinrun check --threads`).
        determinism: False seeds only, as a user would by hand, and leaves determinism off and
            the thread pools as they are, unless `threads` asks for a size, which holds either
            way; None means on, unless `twinrun check --no-determinism` launched this process.
        seeds: optional `{source: seed}` that replaces single derived seeds (each from 0 to
            2**31 - 1, see `twinrun.seeds`); the other sources derive from `seed`.
        portable: True asks for CPU kernels that give the same bits on any x86-64 CPU with
            AVX2 (docs/portable.md); the report's `portable CPU kernels` control says whether
            that holds here, or why not (TensorFlow and JAX: not portable). Some of these
            settings are read once, when a library first runs, so in a running process they
            hold only if no convolution or matrix product ran before; `twinrun train/check
            --portable` sets them before start-up. None means off, unless `--portable`
            launched this process.

    Example:
    >>> import twinrun
    >>> report = twinrun.deterministic(7, backend="torch")
    >>> states = {control.name: control.state for control in report.controls}
    >>> states["torch.use_deterministic_algorithms"]
    'applied'
    """
    seed, threads, determinism = _from_launcher(seed, threads, determinism)
    if portable is None:
        portable = os.environ.get(PORTABLE_VARIABLE) == "1"
    backend = resolve_backend(backend)
    seeds = derive_seeds(seed, seeds)  # validates the seed and every given source seed
    framework = framework_module(backend)
    report = DeterminismReport(backend=backend, seed=seed, determinism=determinism,
                               threads=None, seeds=dict(seeds), portable=bool(portable))
    report.controls.append(hash_seed_control(determinism))
    if portable:
        # Before the framework's own switches: torch's must be in place before its first kernel.
        report.controls.append(framework.portability())
    if "keras" in sys.modules:
        report.controls.append(seed_keras(seeds["backend"]))
    report.controls.extend(seed_python_and_numpy(seeds))
    report.controls.extend(framework.apply(seeds, threads, determinism))
    report.threads = framework.thread_counts()
    report.controls.extend(_data_loading(framework, backend, seeds, determinism))
    return report


def _data_loading(framework, backend, seeds, determinism):
    controls = list(framework.data_loading(seeds, determinism))
    if backend != "torch" and "torch" in sys.modules:
        # Keras 3 fits torch DataLoaders on every backend; torch being imported already is
        # the sign one may come, and patching its class then costs no import.
        controls.extend(framework_module("torch").data_loading(seeds, determinism))
    return controls


__all__ = ["deterministic", "environment_for", "portable_variables", "DeterminismReport",
           "Control"]
