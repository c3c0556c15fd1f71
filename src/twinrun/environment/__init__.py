"""What a run's result may depend on besides its code and seeds: the environment fingerprint.

`fingerprint_environment()` describes the interpreter, OS, CPU, thread counts, package versions
and GPU as a JSON-compatible dict, without importing TensorFlow, JAX or torch unless a backend is
named. `environment_diff()` says which of those facts differ between runs, which is the first
place to look when two replicas that should be identical are not.

`machine.py` holds the facts of the machine and interpreter; each framework has its own module
with the same function, `describe()` (`tensorflow.py`, `jax.py`, `torch.py`), the way
`twinrun.determinism` keeps one module per framework. The thread counts come from
`twinrun.determinism.<framework>.thread_counts()`, the same numbers `deterministic()` pins.
"""

import importlib
import os
import platform
import time

from twinrun.backends import KERAS_BACKENDS
from twinrun.environment import machine
from twinrun.errors import BackendError

# Environment variables that change thread pools, kernels or hashing, and with them the results.
NUMERICS_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "XLA_FLAGS",
    "PJRT_NPROC",  # the size of XLA's CPU thread pool (see twinrun.determinism.jax)
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC",
    "KERAS_BACKEND",
    # oneDNN kernels in TensorFlow and torch's SIMD level both change the order of sums.
    "TF_ENABLE_ONEDNN_OPTS",
    "ATEN_CPU_CAPABILITY",
    # The rest of `--portable` (twinrun.determinism.torch.PORTABLE_VARIABLES): oneDNN's ISA
    # cap and MKL's code branch and dynamic threading.
    "ONEDNN_MAX_CPU_ISA",
    "MKL_CBWR",
    "MKL_DYNAMIC",
    "TWINRUN_PORTABLE",
    "CUDA_VISIBLE_DEVICES",
)

# Keys `environment_diff` skips because they differ between any two processes by design:
# when the fingerprint was taken and which process took it. Everything else, hostname included,
# is kept: a different machine is a real candidate cause of a divergence.
VOLATILE_KEYS = frozenset({"captured_at", "pid", "load_average"})

# Variables that change how fast a run is, never its bits: recorded so a slow run explains itself.
SPEED_ENV_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def fingerprint_environment(backend=None, threads=None):
    """Describe the environment a run trains in, as a JSON-compatible dict.

    Arguments:
        backend: `"tensorflow"`, `"jax"` or `"torch"` to add that framework's build and device
            facts and the thread counts it uses (this imports the framework); None to import
            no framework at all.
        threads: the thread counts to record when no backend is named (e.g.
            `{"intra_op": 1, "inter_op": 1}`). With a backend, the counts are read from the
            framework instead, since those are the ones the run uses.

    Returns a dict with the keys `python`, `os`, `hostname`, `cpu`, `env`, `threads`, `packages`,
    `gpu`, `framework`, `speed`, `pid` and `captured_at`. `threads` is
    `{"intra_op": n, "inter_op": m}` (`inter_op` None on JAX, which has one CPU pool).
    `speed` holds what changes how fast a run goes but not its results (the load average when
    the fingerprint was taken, OpenMP's wait policy); `environment_diff` ignores the load
    average. Facts that do not apply (no GPU, no framework) are None or empty.

    Example:

        env = fingerprint_environment(backend="torch")
        env["cpu"]["model"], env["threads"]["intra_op"]
    """
    framework = None
    if backend is not None:
        if backend not in KERAS_BACKENDS:
            raise BackendError(
                f"Unknown backend {backend!r}: expected one of {', '.join(KERAS_BACKENDS)}, "
                "or None for no framework details.")
        framework = importlib.import_module(f"twinrun.environment.{backend}").describe()
        threads = importlib.import_module(f"twinrun.determinism.{backend}").thread_counts()
    return {
        "python": machine.python(),
        "os": machine.operating_system(),
        "hostname": platform.node(),
        "cpu": machine.cpu(),
        "env": {name: os.environ.get(name) for name in NUMERICS_ENV_VARS},
        "threads": threads,
        "packages": machine.package_versions(),
        "gpu": machine.gpu(framework),
        "framework": framework,
        "speed": _speed(),
        "pid": os.getpid(),
        "captured_at": time.time(),
    }


def environment_diff(envs):
    """The facts that differ between environments.

    Nested dicts are flattened to dotted keys (`env.OMP_NUM_THREADS`, `cpu.model`); lists are
    compared whole. A key missing from an environment counts as None. The keys in
    `VOLATILE_KEYS` (`pid`, `captured_at`) are ignored because they always differ.

    Arguments:
        envs: a list of dicts from `fingerprint_environment()`, one per run.

    Returns a list of `{"key": ..., "values": [value in envs[0], value in envs[1], ...]}`, sorted
    by key; empty when all environments agree.

    Example:

        >>> environment_diff([{"env": {"OMP_NUM_THREADS": "1"}}, {"env": {"OMP_NUM_THREADS": "4"}}])
        [{'key': 'env.OMP_NUM_THREADS', 'values': ['1', '4']}]
    """
    flat = [_flatten(env or {}) for env in envs]
    keys = sorted(set().union(*flat)) if flat else []
    differences = []
    for key in keys:
        if key.split(".")[-1] in VOLATILE_KEYS:
            continue
        values = [facts.get(key) for facts in flat]
        if any(value != values[0] for value in values[1:]):
            differences.append({"key": key, "values": values})
    return differences


def _speed():
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:  # not on every OS
        load = None
    return {"load_average": load, "env": {name: os.environ.get(name) for name in SPEED_ENV_VARS}}


def _flatten(facts, prefix=""):
    flat = {}
    for key, value in facts.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
