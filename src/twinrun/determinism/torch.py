"""Determinism switches for PyTorch (plain, and Keras on the torch backend)."""

import os

from twinrun.determinism.common import (
    ALREADY_SET, APPLIED, IMPOSSIBLE, NOT_NEEDED, OFF, Control, not_pinned, pinned_detail,
    set_before_start, thread_environment,
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
