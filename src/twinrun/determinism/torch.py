"""Determinism switches for PyTorch (plain, and Keras on the torch backend)."""

import os

from twinrun.determinism.common import (
    ALREADY_SET, APPLIED, IMPOSSIBLE, NOT_NEEDED, OFF, Control, thread_environment,
)

# cuBLAS picks reduction strategies per stream unless its workspace is fixed; PyTorch refuses
# deterministic mode on CUDA >= 10.2 without one of these two values.
CUBLAS_WORKSPACE = ":4096:8"


def environment_variables(threads=None, enabled=True):
    """Variables PyTorch, OpenMP and cuBLAS read when they start."""
    env = {}
    if "OMP_WAIT_POLICY" not in os.environ:
        # Speed, not bits: OpenMP threads that wait sleep instead of spinning. Alone on this
        # 2-core CPU the seed CNN steps as fast (55 against 57 ms) on 17 % less CPU time; next to
        # one busy process it steps in 86 instead of 155 ms (bench/contention.py).
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if not enabled:
        return env
    env["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    env.update(thread_environment(threads))
    return env


def apply(seeds, threads=None, enabled=True):
    """Seed torch, turn on deterministic algorithms, and fix its thread pools."""
    import torch

    controls = []
    torch.manual_seed(seeds["backend"])
    controls.append(Control("torch.manual_seed", APPLIED,
                            f"seed {seeds['backend']} (CPU and every CUDA device)"))
    if not enabled:
        controls.append(Control("torch.use_deterministic_algorithms", OFF))
        return controls

    controls.append(_cublas_workspace(torch))
    torch.use_deterministic_algorithms(True)
    controls.append(Control("torch.use_deterministic_algorithms", APPLIED,
                            "ops with no deterministic kernel raise instead of running"))
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    detail = "deterministic=True, benchmark=False"
    if not torch.cuda.is_available():
        controls.append(Control("torch.backends.cudnn", NOT_NEEDED, f"{detail}; no CUDA device"))
    else:
        controls.append(Control("torch.backends.cudnn", APPLIED, detail))

    if threads is None:
        controls.append(Control("torch thread pools", NOT_NEEDED,
                                f"left at {torch.get_num_threads()} (recorded in the environment)"))
    else:
        controls.append(_set_threads(torch, threads))
    return controls


def _cublas_workspace(torch):
    name = "CUBLAS_WORKSPACE_CONFIG"
    value = os.environ.get(name)
    if not torch.cuda.is_available():
        return Control(name, NOT_NEEDED, f"no CUDA device ({value or 'unset'})")
    if value in (":4096:8", ":16:8"):
        if torch.cuda.is_initialized() and not _set_before_start(name):
            return Control(name, IMPOSSIBLE,
                           "it was set after CUDA was initialised in this process, so cuBLAS "
                           "ignores it; set it before start-up or use `twinrun check`")
        return Control(name, ALREADY_SET, value)
    if torch.cuda.is_initialized():
        return Control(name, IMPOSSIBLE,
                       "CUDA was already initialised without it, so cuBLAS reductions may vary; "
                       "set CUBLAS_WORKSPACE_CONFIG=:4096:8 before start-up or use `twinrun check`")
    os.environ[name] = CUBLAS_WORKSPACE
    return Control(name, APPLIED, f"{CUBLAS_WORKSPACE} (before CUDA initialised)")


def _set_before_start(name):
    # The launcher marks the variables it put into a fresh process's environment.
    return name in os.environ.get("TWINRUN_PRESET_VARIABLES", "").split(",")


def _set_threads(torch, threads):
    name = "torch thread pools"
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
        inter = f"{threads} inter-op"
    except RuntimeError:
        # The inter-op pool can be sized only once, before the first parallel work.
        inter = f"inter-op already fixed at {torch.get_num_interop_threads()}"
    if torch.get_num_threads() != threads:
        return Control(name, IMPOSSIBLE, f"asked for {threads}, torch uses {torch.get_num_threads()}")
    return Control(name, APPLIED, f"{threads} intra-op, {inter}")


def framework_version():
    import torch

    return torch.__version__


_ = ALREADY_SET
