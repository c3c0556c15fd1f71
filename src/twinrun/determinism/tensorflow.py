"""Determinism switches for TensorFlow (and Keras on the TensorFlow backend)."""

import os

from twinrun.determinism.common import (
    ALREADY_SET, APPLIED, IMPOSSIBLE, NOT_NEEDED, OFF, Control, thread_environment,
)


def environment_variables(threads=None, enabled=True):
    """Variables TensorFlow reads when it starts.

    `TF_DETERMINISTIC_OPS`/`TF_CUDNN_DETERMINISTIC` are the pre-2.9 spellings of
    `enable_op_determinism()`; older TensorFlow versions only honour those.
    """
    env = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    if not enabled:
        return env
    env.update(TF_DETERMINISTIC_OPS="1", TF_CUDNN_DETERMINISTIC="1")
    env.update(thread_environment(threads))
    if threads is not None:
        env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
    return env


def apply(seeds, threads=None, enabled=True):
    """Seed TensorFlow, turn on op determinism and fix its thread pools."""
    import tensorflow as tf

    controls = []
    tf.random.set_seed(seeds["backend"])
    controls.append(Control("tf.random.set_seed", APPLIED, f"seed {seeds['backend']}"))
    if not enabled:
        controls.append(Control("tf.config.experimental.enable_op_determinism", OFF))
        return controls

    tf.config.experimental.enable_op_determinism()
    controls.append(Control("tf.config.experimental.enable_op_determinism", APPLIED))

    if threads is None:
        controls.append(Control("TensorFlow thread pools", NOT_NEEDED,
                                "left at TensorFlow's default (recorded in the environment)"))
    else:
        controls.append(_set_threads(tf, threads))

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        controls.append(Control("cuDNN determinism", APPLIED,
                                "enable_op_determinism selects deterministic cuDNN kernels"))
    else:
        controls.append(Control("cuDNN determinism", NOT_NEEDED, "no GPU visible to TensorFlow"))
    return controls


def _set_threads(tf, threads):
    name = "TensorFlow thread pools"
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    if intra == threads and inter == threads:
        return Control(name, ALREADY_SET, f"{threads} intra-op, {threads} inter-op")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # TensorFlow fixes its pools when its runtime context starts (the first op).
        return Control(name, IMPOSSIBLE,
                       "TensorFlow's runtime had already started, so its thread pools are fixed "
                       f"at {intra} intra-op / {inter} inter-op; call deterministic() before "
                       "creating tensors, or set TF_NUM_INTRAOP_THREADS before start-up")
    return Control(name, APPLIED, f"{threads} intra-op, {threads} inter-op")


def framework_version():
    import tensorflow as tf

    return tf.__version__


# Silence the unused-import linters: kept for the parallel API of the other backends.
_ = os
