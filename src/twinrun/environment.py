"""What a run's result may depend on besides its code and seeds: the environment fingerprint.

`fingerprint_environment()` describes the interpreter, OS, CPU, thread settings, package versions
and GPU as a JSON-compatible dict, without importing TensorFlow, JAX or torch unless a backend is
named. `environment_diff()` says which of those facts differ between runs, which is the first
place to look when two replicas that should be identical are not.
"""

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time

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
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC",
    "KERAS_BACKEND",
    # oneDNN kernels in TensorFlow and torch's SIMD level both change the order of sums.
    "TF_ENABLE_ONEDNN_OPTS",
    "ATEN_CPU_CAPABILITY",
    "CUDA_VISIBLE_DEVICES",
)

# Distributions whose versions are recorded (read from package metadata, never imported).
PACKAGES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "keras",
    "tensorflow",
    "tensorflow-cpu",
    "jax",
    "jaxlib",
    "torch",
    "twinrun",
)

# Keys `environment_diff` skips because they differ between any two processes by design:
# when the fingerprint was taken and which process took it. Everything else, hostname included,
# is kept: a different machine is a real candidate cause of a divergence.
VOLATILE_KEYS = frozenset({"captured_at", "pid", "load_average"})

# Variables that change how fast a run is, never its bits: recorded so a slow run explains itself.
SPEED_ENV_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

_NVIDIA_SMI_TIMEOUT_S = 3.0


def fingerprint_environment(backend=None, threads=None):
    """Describe the environment a run trains in, as a JSON-compatible dict.

    Arguments:
        backend: `"tensorflow"`, `"jax"` or `"torch"` to add that framework's build and device
            facts (this imports the framework); None to import no framework at all.
        threads: the thread settings the caller applied (e.g. `{"intra_op": 1, "inter_op": 1}`),
            recorded as given.

    Returns a dict with the keys `python`, `os`, `hostname`, `cpu`, `env`, `threads`, `packages`,
    `gpu`, `framework`, `speed`, `pid` and `captured_at`. `speed` holds what changes how fast a
    run goes but not its results (the load average when the fingerprint was taken, OpenMP's wait
    policy); `environment_diff` ignores the load average. Facts that do not apply (no GPU, no framework)
    are None or empty.

    Example:

        env = fingerprint_environment(backend="torch", threads={"intra_op": 1})
        env["cpu"]["model"], env["framework"]["num_threads"]
    """
    framework = None
    if backend is not None:
        describe = _FRAMEWORK_DESCRIBERS.get(backend)
        if describe is None:
            raise BackendError(
                f"Unknown backend {backend!r}: expected one of "
                f"{', '.join(_FRAMEWORK_DESCRIBERS)}, or None for no framework details."
            )
        framework = describe()
    return {
        "python": _python(),
        "os": _operating_system(),
        "hostname": platform.node(),
        "cpu": _cpu(),
        "env": {name: os.environ.get(name) for name in NUMERICS_ENV_VARS},
        "threads": threads,
        "packages": _package_versions(),
        "gpu": _gpu(framework),
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


# -- the machine -------------------------------------------------------------------------------


def _python():
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "compiler": platform.python_compiler(),
    }


def _operating_system():
    try:
        # confstr is instant; platform.libc_ver() scans the interpreter binary.
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        libc = None
    if not libc:
        name, version = platform.libc_ver()
        libc = f"{name} {version}".strip() or None
    return {
        "platform": platform.platform(),
        "system": platform.system(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "libc": libc,
    }


def _cpu():
    model, flags = _cpuinfo()
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None  # not Linux
    return {
        "model": model or platform.processor() or None,
        "flags": flags,
        "logical_cores": os.cpu_count(),
        "affinity": affinity,
    }


def _cpuinfo():
    """CPU model name and sorted feature flags from /proc/cpuinfo (x86 and ARM spellings)."""
    model, flags = None, []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.strip():
                    if model and flags:
                        break  # the first processor says it all
                    continue
                name, _, value = line.partition(":")
                name, value = name.strip(), value.strip()
                if name in ("model name", "Model", "Hardware", "cpu model") and not model:
                    model = value
                elif name in ("flags", "Features") and not flags:
                    flags = sorted(value.split())
    except OSError:
        pass
    return model, flags


def _package_versions():
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _gpu(framework):
    """GPU models and driver from nvidia-smi when present; CUDA and cuDNN from the framework."""
    devices, driver = _nvidia_smi()
    framework = framework or {}
    if not devices:
        devices = framework.get("gpus") or []
    return {
        "devices": devices,
        "driver": driver,
        "cuda": framework.get("cuda"),
        "cudnn": framework.get("cudnn"),
    }


def _nvidia_smi():
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return [], None
    try:
        result = subprocess.run(
            [executable, "--query-gpu=name,driver_version,memory.total",
             "--format=csv,noheader"],
            capture_output=True, text=True, timeout=_NVIDIA_SMI_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return [], None
    if result.returncode != 0:
        return [], None
    devices, driver = [], None
    for line in result.stdout.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) >= 3:
            devices.append({"name": parts[0], "memory": parts[2]})
            driver = driver or parts[1]
    return devices, driver


# -- the frameworks: one describer per backend, each importing only its own framework -----------


def _describe_tensorflow():
    import tensorflow as tf

    build = {
        key: value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        for key, value in tf.sysconfig.get_build_info().items()
    }
    devices = tf.config.list_physical_devices()
    gpus = []
    for device in devices:
        if device.device_type == "GPU":
            details = tf.config.experimental.get_device_details(device)
            gpus.append({"name": details.get("device_name", device.name)})
    threading = tf.config.threading
    return {
        "name": "tensorflow",
        "version": tf.__version__,
        "build": build,
        "devices": [f"{device.device_type}:{device.name}" for device in devices],
        "gpus": gpus,
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
        "intra_op_threads": threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": threading.get_inter_op_parallelism_threads(),
    }


def _describe_torch():
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    gpus = []
    if torch.cuda.is_available():
        gpus = [{"name": torch.cuda.get_device_name(i)} for i in range(torch.cuda.device_count())]
    # The full `torch.__config__.show()` is a page of text; these lines say how it was built.
    build = [
        line.strip() for line in torch.__config__.show().splitlines()
        if line.strip().startswith(("- ", "Build settings", "PyTorch built with"))
    ]
    return {
        "name": "torch",
        "version": torch.__version__,
        "build": build,
        "devices": ["cpu"] + [f"cuda:{i}" for i in range(len(gpus))],
        "gpus": gpus,
        "cuda": torch.version.cuda,
        "cudnn": None if cudnn is None else str(cudnn),
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }


def _describe_jax():
    import jax

    devices = jax.devices()
    gpus = [{"name": device.device_kind} for device in devices if device.platform == "gpu"]
    return {
        "name": "jax",
        "version": jax.__version__,
        "build": {"jaxlib": _version_or_none("jaxlib")},
        "devices": [f"{device.platform}:{device.id} {device.device_kind}" for device in devices],
        "gpus": gpus,
        "default_backend": jax.default_backend(),
        "cuda": _jax_cuda_version(),
        "cudnn": None,  # jax exposes no cuDNN version; the cuda plugin's package pins it
    }


def _jax_cuda_version():
    for name in ("jax-cuda12-plugin", "jax-cuda11-plugin"):
        version = _version_or_none(name)
        if version is not None:
            return f"{name} {version}"
    return None


def _version_or_none(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


_FRAMEWORK_DESCRIBERS = {
    "tensorflow": _describe_tensorflow,
    "jax": _describe_jax,
    "torch": _describe_torch,
}
