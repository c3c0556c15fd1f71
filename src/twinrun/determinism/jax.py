"""Determinism switches for JAX (and Keras on the JAX backend).

JAX has no global random state: its randomness is explicit keys. What can vary is XLA's
choice of GPU kernels (atomics in scatter and reductions), switched off by
`--xla_gpu_deterministic_ops=true`, which XLA reads from `XLA_FLAGS` once, when the backend
initialises; and, on the CPU, the size of XLA's thread pool, which splits large matrix
products and reductions and so changes their last bits.

That pool is sized by the environment variable `PJRT_NPROC` (else `NPROC`, else the CPUs this
process may run on), read once when the CPU client is created (`DefaultThreadPoolSize` in
xla/pjrt/utils.cc). No `XLA_FLAGS` entry sizes it in jaxlib 0.10: measured on this machine,
`PJRT_NPROC=1` gives one `tf_XLAEigen` thread instead of two and other bits for a
4096-long matrix product and a 2**24-element sum, while `--xla_cpu_multi_thread_eigen=false`
changes neither the threads nor the bits, and `intra_op_parallelism_threads=1` (the old
TensorFlow-era spelling) is refused by XLA's flag parser.
"""

import os

from twinrun.determinism.common import (
    ALREADY_SET, APPLIED, IMPOSSIBLE, NOT_NEEDED, OFF, PORTABLE, Control, allocator_environment,
    not_pinned, pinned_detail, schedulable_cpus, set_before_start, thread_environment,
)

DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"
POOL_VARIABLE = "PJRT_NPROC"
THREADS = "XLA CPU thread pool"


def environment_variables(threads=None, determinism=True):
    """Variables XLA reads when its backend initialises, and glibc's allocator settings for
    XLA's large step buffers (`allocator_environment`)."""
    env = allocator_environment()
    if determinism:
        flags = os.environ.get("XLA_FLAGS", "").split()
        if DETERMINISTIC_FLAG not in flags:
            flags.append(DETERMINISTIC_FLAG)
        env["XLA_FLAGS"] = " ".join(flags)
    elif threads is None:
        return env
    # A thread count that was asked for holds with determinism off too.
    env.update(thread_environment(threads))
    if threads is not None:
        env[POOL_VARIABLE] = str(threads)
    return env


def portable_variables():
    """None claimed: XLA's CPU flags were measured on one CPU only (see `portability`)."""
    return {}


def portability():
    """JAX makes no portable claim: always `impossible`, with what was measured.

    XLA CPU has `--xla_cpu_max_isa`, but it was measured on one CPU model only (docs/portable.md),
    and twinrun claims portability only where two CPU models agreed.
    """
    return Control(PORTABLE, IMPOSSIBLE,
                   "XLA's CPU kernels: not portable as far as twinrun knows; "
                   "--xla_cpu_max_isa=AVX2 was measured on one CPU model only, so twinrun "
                   "claims nothing (docs/portable.md). Compare across machines with --rtol, or "
                   "train on Keras' torch backend with --portable")


def thread_counts():
    """The size of XLA's CPU pool in this process; XLA has no separate inter-op pool."""
    return {"intra_op": _pool_size_from_environment() or schedulable_cpus(), "inter_op": None}


def _pool_size_from_environment():
    for name in (POOL_VARIABLE, "NPROC"):
        try:
            return max(0, int(os.environ[name]))
        except (KeyError, ValueError):
            continue
    return None


def _backend_initialised():
    from jax._src import xla_bridge

    check = getattr(xla_bridge, "backends_are_initialized", None)
    if check is not None:
        return check()
    return bool(getattr(xla_bridge, "_backends", {}))


def apply(seeds, threads=None, determinism=True):
    """Check XLA's determinism flag and pin XLA's CPU thread pool.

    `seeds` is unused: JAX has no global generator (Keras' is seeded by `deterministic()`).
    """
    controls = [Control("JAX random keys", NOT_NEEDED,
                        "JAX has no global random state; keys are explicit")]
    if not determinism:
        controls.append(Control("XLA --xla_gpu_deterministic_ops", OFF))
        if threads is not None:  # asked for: it holds with determinism off too
            controls.append(_pin_threads(threads, _backend_initialised()))
        else:
            controls.append(Control(THREADS, OFF,
                                    f"left at {thread_counts()['intra_op']} threads"))
        return controls
    initialised = _backend_initialised()
    controls.append(_deterministic_ops(initialised))
    controls.append(_pin_threads(threads, initialised))
    return controls


def _deterministic_ops(initialised):
    name = "XLA --xla_gpu_deterministic_ops"
    flags = os.environ.get("XLA_FLAGS", "").split()
    if DETERMINISTIC_FLAG in flags:
        if initialised and not set_before_start("XLA_FLAGS"):
            return Control(name, ALREADY_SET, "present in XLA_FLAGS (cannot tell whether it was "
                                              "there before the backend started)")
        return Control(name, ALREADY_SET, "in XLA_FLAGS")
    if initialised:
        return Control(name, IMPOSSIBLE, "JAX's backend already started without it; XLA reads "
                                         "XLA_FLAGS once. Set XLA_FLAGS before start-up or use "
                                         "`twinrun check`")
    os.environ["XLA_FLAGS"] = " ".join(flags + [DETERMINISTIC_FLAG])
    return Control(name, APPLIED, "added to XLA_FLAGS before the backend started")


def _pin_threads(threads, initialised):
    current = thread_counts()
    wanted = {"intra_op": threads or current["intra_op"], "inter_op": None}
    origin = "as asked" if threads else "XLA's default here"
    value = str(wanted["intra_op"])
    if os.environ.get(POOL_VARIABLE) == value and (not initialised
                                                   or set_before_start(POOL_VARIABLE)):
        return Control(THREADS, ALREADY_SET, pinned_detail(wanted, f"{POOL_VARIABLE}={value}"))
    if initialised:
        return not_pinned(THREADS, f"JAX's backend had already started, and XLA sized its CPU "
                                   f"pool then ({POOL_VARIABLE}, else the CPU count); set "
                                   f"{POOL_VARIABLE} before start-up or use `twinrun check "
                                   "--threads N`")
    os.environ[POOL_VARIABLE] = value
    return Control(THREADS, APPLIED, pinned_detail(wanted, f"{origin}; {POOL_VARIABLE}={value} "
                                                           "before the backend started"))


def data_loading(seeds, determinism=True):
    """JAX has no data loader of its own: nothing to do here.

    A torch `DataLoader` feeding Keras on JAX is covered by `twinrun.determinism.torch` when
    torch is imported before `deterministic()` runs.
    """
    return [Control("JAX data loading", NOT_NEEDED,
                    "JAX has no data loader of its own; a torch DataLoader is made "
                    "deterministic when torch is imported before deterministic()")]
