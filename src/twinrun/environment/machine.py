"""Facts about the machine and interpreter a run trains on; no framework is imported here."""

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys

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

_NVIDIA_SMI_TIMEOUT_S = 3.0


def python():
    """The interpreter: version, implementation, executable and the compiler that built it."""
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "compiler": platform.python_compiler(),
    }


def operating_system():
    """The OS, kernel, machine type and C library."""
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


def cpu():
    """The CPU model (its name, and family/model numbers, since a name such as "AMD EPYC" can
    cover several generations), its widest vector instruction set, its feature flags, the
    logical cores and this process's affinity."""
    model, flags, identity = _cpuinfo()
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None  # not Linux
    return {
        "model": model or platform.processor() or None,
        "identity": identity,
        "isa": widest_vector_isa(flags),
        "flags": flags,
        "logical_cores": os.cpu_count(),
        "affinity": affinity,
    }


def widest_vector_isa(flags):
    """The widest x86 vector instruction set among `flags` ("AVX-512", "AVX2", "AVX",
    "SSE4.2"), or None for other CPUs: what kernels that pick their code by CPU use here.

    Example:
    >>> widest_vector_isa(["avx", "avx2", "fma", "avx512f"])
    'AVX-512'
    """
    flags = set(flags or ())
    for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"),
                       ("sse4_2", "SSE4.2")):
        if flag in flags:
            return name
    return None


def _cpuinfo():
    """CPU model name, sorted feature flags and "family F model M stepping S" from
    /proc/cpuinfo (x86 and ARM spellings)."""
    model, flags, numbers = None, [], {}
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
                elif name in ("cpu family", "model", "stepping") and name not in numbers:
                    numbers[name] = value
    except OSError:
        pass
    identity = None
    if "cpu family" in numbers and "model" in numbers:
        identity = f"family {numbers['cpu family']} model {numbers['model']}"
        if "stepping" in numbers:
            identity += f" stepping {numbers['stepping']}"
    return model, flags, identity


def package_versions():
    """Versions of `PACKAGES`, None for those not installed."""
    return {name: version_or_none(name) for name in PACKAGES}


def gpu(framework):
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


def version_or_none(name):
    """The installed version of distribution `name`, or None (read from its metadata)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
