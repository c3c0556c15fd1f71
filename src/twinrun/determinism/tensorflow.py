"""Determinism switches for TensorFlow (and Keras on the TensorFlow backend)."""

import os

from twinrun.determinism.common import (
    ALREADY_SET, APPLIED, IMPOSSIBLE, NOT_NEEDED, OFF, PORTABLE, Control, allocator_environment,
    not_pinned, pinned_detail, schedulable_cpus, thread_environment,
)

THREADS = "TensorFlow thread pools"
DATA = "tf.data deterministic order"


def environment_variables(threads=None, determinism=True):
    """Variables TensorFlow reads when it starts, and glibc's allocator settings
    (`allocator_environment`).

    `TF_DETERMINISTIC_OPS`/`TF_CUDNN_DETERMINISTIC` are the pre-2.9 spellings of
    `enable_op_determinism()`; older TensorFlow versions only honour those.
    """
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", **allocator_environment()}
    if determinism:
        env.update(TF_DETERMINISTIC_OPS="1", TF_CUDNN_DETERMINISTIC="1")
    elif threads is None:
        return env
    # A thread count that was asked for holds with determinism off too (a study's `all` runs).
    env.update(thread_environment(threads))
    if threads is not None:
        env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
    return env


def portable_variables():
    """None found: no setting measured made TensorFlow's CPU bits travel (see `portability`)."""
    return {}


def portability():
    """TensorFlow has no portable CPU kernels: always `impossible`, with the measurement.

    Measured with TensorFlow 2.21 on an AVX2-only AMD EPYC (Zen 3) and an AVX-512 one (Zen 5):
    a one-thread float32 matmul already differs, by default, with oneDNN off and with op
    determinism, because Eigen sizes its blocks from the CPU's cache sizes.
    """
    return Control(PORTABLE, IMPOSSIBLE,
                   "TensorFlow's CPU kernels depend on the cache sizes (Eigen picks its "
                   "blocking from them): not portable; a 1-thread matmul differs between two "
                   "AMD EPYC models under every setting measured. Compare across machines "
                   "with --rtol, or train on Keras' torch backend with --portable")


def thread_counts():
    """The sizes of TensorFlow's intra-op and inter-op pools in this process.

    TensorFlow reports 0 for "its default", which is `TF_NUM_INTRAOP_THREADS` /
    `TF_NUM_INTEROP_THREADS` when set, else the CPUs this process may run on
    (`DefaultNumIntraOpThreads` in tensorflow/core/common_runtime/process_util.cc).
    """
    import tensorflow as tf

    threading = tf.config.threading
    return {
        "intra_op": threading.get_intra_op_parallelism_threads()
        or _from_environment("TF_NUM_INTRAOP_THREADS"),
        "inter_op": threading.get_inter_op_parallelism_threads()
        or _from_environment("TF_NUM_INTEROP_THREADS"),
    }


def _from_environment(name):
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        value = 0
    return value if value > 0 else schedulable_cpus()


def apply(seeds, threads=None, determinism=True):
    """Seed TensorFlow, turn on op determinism and pin its thread pools."""
    import tensorflow as tf

    controls = []
    tf.random.set_seed(seeds["backend"])
    controls.append(Control("tf.random.set_seed", APPLIED, f"seed {seeds['backend']}"))
    if not determinism:
        controls.append(Control("tf.config.experimental.enable_op_determinism", OFF))
        if threads is not None:  # asked for: it holds with determinism off too
            controls.append(_pin_threads(tf, threads))
            return controls
        counts = thread_counts()
        controls.append(Control(THREADS, OFF, f"left at {counts['intra_op']} intra-op, "
                                              f"{counts['inter_op']} inter-op"))
        return controls

    tf.config.experimental.enable_op_determinism()
    controls.append(Control("tf.config.experimental.enable_op_determinism", APPLIED))
    controls.append(_pin_threads(tf, threads))

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        controls.append(Control("cuDNN determinism", APPLIED,
                                "enable_op_determinism selects deterministic cuDNN kernels"))
    else:
        controls.append(Control("cuDNN determinism", NOT_NEEDED, "no GPU visible to TensorFlow"))
    return controls


def _pin_threads(tf, threads):
    # The default is read before pinning, so pinning at it keeps TensorFlow's speed and turns
    # "whatever this machine gives" into a recorded count.
    default = thread_counts()
    wanted = {"intra_op": threads or default["intra_op"],
              "inter_op": threads or default["inter_op"]}
    origin = "as asked" if threads else "TensorFlow's default here"
    try:
        tf.config.threading.set_intra_op_parallelism_threads(wanted["intra_op"])
        tf.config.threading.set_inter_op_parallelism_threads(wanted["inter_op"])
    except RuntimeError:
        # TensorFlow sizes its pools when its runtime context starts (the first op); after
        # that they keep their size, which is pinned enough when it is the size wanted.
        if default == wanted:
            return Control(THREADS, ALREADY_SET,
                           pinned_detail(default, "fixed when TensorFlow's runtime started"))
        return not_pinned(THREADS, f"TensorFlow's runtime had already started with "
                                   f"{default['intra_op']} intra-op, {default['inter_op']} "
                                   f"inter-op threads, not the {threads} asked for; call "
                                   "deterministic() before creating tensors, or set "
                                   "TF_NUM_INTRAOP_THREADS and TF_NUM_INTEROP_THREADS before "
                                   "start-up")
    return Control(THREADS, APPLIED, pinned_detail(thread_counts(), origin))


def data_loading(seeds, determinism=True):
    """Say what makes `tf.data` pipelines deterministic here: TensorFlow's op determinism.

    `enable_op_determinism()` (TensorFlow 2.9 and later) overrides `deterministic=False` in
    `Dataset.map`, `interleave` and `batch`, and `tf.data.Options().deterministic = False`,
    to True, and runs map functions with stateful ops (random augmentation) serially; a
    `Dataset.shuffle` without a seed takes one from `tf.random.set_seed`. There is no global
    `tf.data` option to set besides it (options belong to each dataset), so this only checks.
    Measured with TensorFlow 2.21: a 60-element `map(num_parallel_calls=4, deterministic=False)`
    of uneven work comes out of order without op determinism and in order with it.

    `seeds` is unused: `apply()` already seeded TensorFlow's global generator.
    """
    from tensorflow.python.framework import config

    if not determinism:
        return [Control(DATA, OFF, "deterministic=False in tf.data is honoured: elements may "
                                   "come out in the order they finish")]
    if config.is_op_determinism_enabled():
        return [Control(DATA, APPLIED, "enable_op_determinism makes every tf.data pipeline "
                                       "keep its order (deterministic=False is overridden) "
                                       "and runs map functions with random ops serially")]
    return [Control(DATA, IMPOSSIBLE, "TensorFlow's op determinism is off, so tf.data "
                                      "pipelines with deterministic=False may reorder "
                                      "elements; call deterministic() with determinism on")]
