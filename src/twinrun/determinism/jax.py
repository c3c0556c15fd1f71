"""Determinism switches for JAX (and Keras on the JAX backend).

JAX has no global random state: its randomness is explicit keys. What can vary is XLA's
choice of GPU kernels (atomics in scatter and reductions), switched off by
`--xla_gpu_deterministic_ops=true`, which XLA reads from `XLA_FLAGS` once, when the backend
initialises.
"""

import os

from twinrun.determinism.common import (
    ALREADY_SET, APPLIED, IMPOSSIBLE, NOT_NEEDED, OFF, Control, thread_environment,
)

DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


def environment_variables(threads=None, enabled=True, current_xla_flags=None):
    """Variables XLA reads when its backend initialises."""
    if not enabled:
        return {}
    flags = (current_xla_flags if current_xla_flags is not None
             else os.environ.get("XLA_FLAGS", "")).split()
    if DETERMINISTIC_FLAG not in flags:
        flags.append(DETERMINISTIC_FLAG)
    env = {"XLA_FLAGS": " ".join(flags)}
    env.update(thread_environment(threads))
    return env


def _backend_initialised():
    from jax._src import xla_bridge

    check = getattr(xla_bridge, "backends_are_initialized", None)
    if check is not None:
        return check()
    return bool(getattr(xla_bridge, "_backends", {}))


def apply(seeds, threads=None, enabled=True):
    """Check XLA's determinism flag and seed Keras' global generator when Keras is in use."""
    controls = [Control("JAX random keys", NOT_NEEDED,
                        "JAX has no global random state; keys are explicit")]
    if not enabled:
        controls.append(Control("XLA --xla_gpu_deterministic_ops", OFF))
        return controls

    flags = os.environ.get("XLA_FLAGS", "").split()
    initialised = _backend_initialised()
    if DETERMINISTIC_FLAG in flags:
        if initialised and not _set_before_start("XLA_FLAGS"):
            controls.append(Control("XLA --xla_gpu_deterministic_ops", ALREADY_SET,
                                    "present in XLA_FLAGS (cannot tell whether it was there "
                                    "before the backend started)"))
        else:
            controls.append(Control("XLA --xla_gpu_deterministic_ops", ALREADY_SET, "in XLA_FLAGS"))
    elif initialised:
        controls.append(Control("XLA --xla_gpu_deterministic_ops", IMPOSSIBLE,
                                "JAX's backend already started without it; XLA reads XLA_FLAGS "
                                "once. Set XLA_FLAGS before start-up or use `twinrun check`"))
    else:
        os.environ["XLA_FLAGS"] = " ".join(flags + [DETERMINISTIC_FLAG])
        controls.append(Control("XLA --xla_gpu_deterministic_ops", APPLIED,
                                "added to XLA_FLAGS before the backend started"))

    if threads is None:
        controls.append(Control("XLA CPU thread pool", NOT_NEEDED,
                                "left at XLA's default (recorded in the environment)"))
    else:
        # XLA sizes its CPU pool from the machine, not from a setting it exposes; OpenMP and
        # BLAS pools are fixed through the launcher's environment variables.
        controls.append(Control("XLA CPU thread pool", NOT_NEEDED,
                                f"XLA exposes no pool size; OMP/BLAS pools set to {threads} by "
                                "the launcher"))
    return controls


def _set_before_start(name):
    return name in os.environ.get("TWINRUN_PRESET_VARIABLES", "").split(",")


def framework_version():
    import jax

    return jax.__version__


_ = APPLIED
