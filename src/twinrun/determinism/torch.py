"""Determinism switches for PyTorch (plain, and Keras on the torch backend)."""

import os
import sys

from twinrun.determinism.common import (
    ALREADY_SET, APPLIED, IMPOSSIBLE, NOT_NEEDED, OFF, PORTABLE, Control, not_pinned,
    pinned_detail, portable_cpu_problem, set_before_start, thread_environment,
)

# cuBLAS picks reduction strategies per stream unless its workspace is fixed; PyTorch refuses
# deterministic mode on CUDA >= 10.2 without one of these two values.
CUBLAS_WORKSPACE = ":4096:8"

THREADS = "torch thread pools"
LOADER_ORDER = "torch DataLoader order"
LOADER_WORKERS = "torch DataLoader workers"


def environment_variables(threads=None, determinism=True):
    """Variables PyTorch, OpenMP and cuBLAS read when they start."""
    env = {}
    if "OMP_WAIT_POLICY" not in os.environ:
        # Speed, not bits: OpenMP threads that wait sleep instead of spinning. Alone on this
        # 2-core CPU the seed CNN steps as fast (55 against 57 ms) on 17 % less CPU time; next to
        # one busy process it steps in 86 instead of 155 ms (bench/contention.py).
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if not determinism:
        # A thread count that was asked for holds with determinism off too.
        return {**env, **thread_environment(threads)} if threads is not None else env
    env["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    env.update(thread_environment(threads))
    return env


# What makes torch's CPU kernels give the same bits on any x86-64 CPU with AVX2, at any thread
# count (measured: docs/portable.md). Each caps one library, and none is enough alone: on an
# AVX-512 AMD EPYC (Zen 5) the seed probe's 20 steps match an AVX2-only Zen 3 only with all
# three. ATen's vectorised kernels (`ATEN_CPU_CAPABILITY`) and oneDNN's convolutions
# (`ONEDNN_MAX_CPU_ISA`) otherwise pick AVX-512 where the CPU has it; MKL's compatible branch
# (`MKL_CBWR`) makes its GEMMs take one code path on Intel and AMD, which oneMKL's conditional
# numerical reproducibility guide says also needs dynamic threading off (`MKL_DYNAMIC`).
# Every one is read once, when its library first runs, so they go in before start-up.
PORTABLE_VARIABLES = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "MKL_DYNAMIC": "FALSE",
}


def portable_variables():
    """The environment that makes torch's CPU kernels portable (`PORTABLE_VARIABLES`)."""
    return dict(PORTABLE_VARIABLES)


def portability():
    """Whether torch's CPU kernels give portable bits in this process, as a `Control`.

    Before start-up (`twinrun train/check/record --portable`) the variables are simply there.
    In a process that is already running they can still be set before torch first runs a
    kernel: ATen reads its capability at its first vectorised kernel, oneDNN its ISA cap at
    its first primitive and MKL its branch at its first call. ATen's can be read back; oneDNN's
    and MKL's cannot, so the control says what it cannot promise.
    """
    problem = portable_cpu_problem()
    if problem is not None:
        return Control(PORTABLE, IMPOSSIBLE, f"{problem}: not portable; compare runs across "
                                             "machines with --rtol instead")
    shown = ", ".join(f"{k}={v}" for k, v in PORTABLE_VARIABLES.items())
    missing = {k: v for k, v in PORTABLE_VARIABLES.items() if os.environ.get(k) != v}
    if not missing:
        if all(set_before_start(k) for k in PORTABLE_VARIABLES):
            return Control(PORTABLE, ALREADY_SET, f"{shown} (set before start-up)")
        return _checked_capability(Control(PORTABLE, ALREADY_SET,
                                           f"{shown} (in the environment)"))
    os.environ.update(missing)
    if "torch" not in sys.modules:
        return _checked_capability(Control(
            PORTABLE, APPLIED, f"{shown}, set before torch was imported"))
    return _checked_capability(Control(
        PORTABLE, APPLIED,
        f"{shown}, set in this running process: oneDNN and MKL read them once, at their first "
        "convolution or matrix product, so the bits are portable only if none ran before "
        "this call; to be sure, set them before start-up (`twinrun train --portable`, "
        "`twinrun check --portable`)"))


def _checked_capability(control):
    """`control`, or `impossible` when ATen already picked a level above AVX2 here."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if capability in ("AVX2", "DEFAULT"):
        return control
    return Control(PORTABLE, IMPOSSIBLE,
                   f"ATen already runs its {capability} kernels in this process (it picks them "
                   "once, at its first vectorised kernel), so the bits are this CPU's, not "
                   "portable; set ATEN_CPU_CAPABILITY=avx2 before start-up or use "
                   "`twinrun train --portable` / `twinrun check --portable`")


def thread_counts():
    """The sizes of torch's intra-op (OpenMP) and inter-op pools in this process."""
    import torch

    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}


def apply(seeds, threads=None, determinism=True):
    """Seed torch, turn on deterministic algorithms, and pin its thread pools."""
    import torch

    controls = []
    torch.manual_seed(seeds["backend"])
    controls.append(Control("torch.manual_seed", APPLIED,
                            f"seed {seeds['backend']} (CPU and every CUDA device)"))
    if not determinism:
        controls.append(Control("torch.use_deterministic_algorithms", OFF))
        if threads is not None:  # asked for: it holds with determinism off too
            controls.append(_pin_threads(torch, threads))
        else:
            controls.append(Control(THREADS, OFF, _counts_text(thread_counts())))
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
    controls.append(_pin_threads(torch, threads))
    return controls


def _counts_text(counts):
    return f"left at {counts['intra_op']} intra-op, {counts['inter_op']} inter-op"


def _pin_threads(torch, threads):
    # torch's defaults (OMP_NUM_THREADS, else the cores it finds) are read before pinning, so
    # pinning at the default keeps the speed and makes the count a recorded fact.
    default = thread_counts()
    wanted = {"intra_op": threads or default["intra_op"],
              "inter_op": threads or default["inter_op"]}
    torch.set_num_threads(wanted["intra_op"])
    try:
        torch.set_num_interop_threads(wanted["inter_op"])
    except RuntimeError:
        # The inter-op pool can be sized only once, before the first parallel work; after
        # that its size is fixed, which is pinned enough when it is the size wanted.
        pass
    now = thread_counts()
    origin = "as asked" if threads else "torch's default here"
    if now == wanted:
        return Control(THREADS, APPLIED, pinned_detail(now, origin))
    return not_pinned(THREADS, f"asked for {wanted['intra_op']} intra-op, "
                               f"{wanted['inter_op']} inter-op, torch uses {now['intra_op']} "
                               f"intra-op, {now['inter_op']} inter-op (its inter-op pool is "
                               "sized once, before the first parallel work); call "
                               "deterministic() first, or use `twinrun check --threads N`")


def _cublas_workspace(torch):
    name = "CUBLAS_WORKSPACE_CONFIG"
    value = os.environ.get(name)
    if not torch.cuda.is_available():
        return Control(name, NOT_NEEDED, f"no CUDA device ({value or 'unset'})")
    if value in (":4096:8", ":16:8"):
        if torch.cuda.is_initialized() and not set_before_start(name):
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


def data_loading(seeds, determinism=True):
    """Make `DataLoader`s made from now on deterministic (see `twinrun.determinism.torch_loader`).

    Returns two controls: the order (a seeded generator for loaders given none) and the
    workers (torch's own worker seeding, kept even after a `worker_init_fn` that reseeds).
    """
    import torch

    from twinrun.determinism import torch_loader

    if not determinism:
        torch_loader.unpatch(torch)
        left = ("left as torch makes it: from torch's global generator, so it moves when the "
                "model draws more or fewer random numbers first")
        return [Control(LOADER_ORDER, OFF, left),
                Control(LOADER_WORKERS, OFF, "left as torch makes them: random, NumPy and "
                                             "torch seeded from the loader's base seed; a "
                                             "worker_init_fn of yours has the last word")]
    has_in_order = torch_loader.patch(torch, seeds["shuffle"])
    order = (f"loaders made from now on without a generator, that shuffle or have workers, get "
             f"one seeded from the shuffle seed {seeds['shuffle']} (each loader its own), so "
             "their order and workers' seeds do not move with the model's random draws; a "
             "generator you pass is used as is")
    workers = ("torch seeds random, NumPy and torch in each worker from the loader's generator; "
               "after a worker_init_fn of yours twinrun seeds them again the same way, so one "
               "that reseeds from the OS cannot make runs differ; seed generators your dataset "
               "creates itself from get_worker_info().seed")
    if has_in_order:
        workers += "; in_order=False is set back to True"
    return [Control(LOADER_ORDER, APPLIED, order), Control(LOADER_WORKERS, APPLIED, workers)]
