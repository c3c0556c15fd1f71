"""Fingerprint words of TensorFlow tensors and variables, computed on their device by one
XLA-compiled `tf.function` per list signature (traced once, reused every step).

All arithmetic is uint32, which XLA defines to wrap modulo 2**32.
"""

import numpy as np
import tensorflow as tf

from twinrun.fingerprint.common import (
    FMIX_MULTIPLIERS, ROW_KEY_P, ROW_KEY_S, ROW_LENGTH, WORDS_PER_TENSOR, validate_tensor_list,
    column_keys, row_count, unsupported_dtype, unwrap_variable)

try:  # XLA's variadic reduce: not in TensorFlow's public API, so optional.
    from tensorflow.compiler.tf2xla.python.xla import variadic_reduce as _variadic_reduce
except ImportError:  # pragma: no cover - depends on the TensorFlow build
    _variadic_reduce = None

# XLA compiles the whole computation into a few fused loops: measured 3x faster than the
# op-by-op graph on a CPU (bench/bench_fingerprint.py).
JIT_COMPILE = True

_SIGNED_BY_SIZE = {1: tf.int8, 2: tf.int16}
_U32 = tf.TensorSpec([], tf.uint32)


@tf.function(input_signature=[_U32] * 4, autograph=False)
def _add_pairs(a_sum, a_weighted, b_sum, b_weighted):
    return a_sum + b_sum, a_weighted + b_weighted


def _word_stream(x):
    if x.dtype == tf.bool:
        return tf.reshape(tf.cast(x, tf.uint32), [-1])
    if x.dtype.is_complex:  # XLA cannot bitcast complex numbers
        x = tf.stack([tf.math.real(x), tf.math.imag(x)], axis=-1)
    size = x.dtype.size
    if size in _SIGNED_BY_SIZE and x.dtype.is_numeric:
        signed = tf.cast(tf.bitcast(x, _SIGNED_BY_SIZE[size]), tf.int32)
        return tf.reshape(tf.bitcast(signed, tf.uint32), [-1])
    if size % 4 == 0 and x.dtype.is_numeric:
        # bitcast puts the narrower words of a wider element on a new last axis, low word first.
        return tf.reshape(tf.bitcast(x, tf.uint32), [-1])
    raise unsupported_dtype(x.dtype.name)


def _fmix32(h):
    h = h ^ tf.bitwise.right_shift(h, tf.constant(16, tf.uint32))
    h = h * tf.constant(FMIX_MULTIPLIERS[0], tf.uint32)
    h = h ^ tf.bitwise.right_shift(h, tf.constant(13, tf.uint32))
    h = h * tf.constant(FMIX_MULTIPLIERS[1], tf.uint32)
    return h ^ tf.bitwise.right_shift(h, tf.constant(16, tf.uint32))


# Tensors of at most this many words (and every tensor's partial last row) are copied into one
# shared grid: the seed CNN's 16 small BatchNorm and bias vectors then cost one pipeline instead
# of 16, which halves the one-time tracing and compilation (about 0.8 s on this CPU).
_SMALL_WORDS = 4 * ROW_LENGTH


def _grid_sums(grid, variadic):
    """S and P of every row of a (rows, ROW_LENGTH) uint32 grid (steps 2 and 3 of the scheme)."""
    weighted = grid * tf.constant(column_keys(), tf.uint32)
    if variadic:
        # One reduce with two outputs: XLA:CPU runs it 3-4x faster than two reduce_sum calls.
        zero = tf.constant(0, tf.uint32)
        return _variadic_reduce([grid, weighted], [zero, zero], [1],
                                _add_pairs.get_concrete_function())
    return tf.reduce_sum(grid, axis=1), tf.reduce_sum(weighted, axis=1)


def _mix(row_sum, weighted_sum, row):
    """fmix32 of every row's sums plus its row key (step 4, before the sum over rows)."""
    return (_fmix32(row_sum + row * tf.constant(ROW_KEY_S, tf.uint32)),
            _fmix32(weighted_sum + row * tf.constant(ROW_KEY_P, tf.uint32)))


def _mixed_words(tensors, variadic):
    """w1 and w2 of every tensor, as a (len(tensors), 2) uint32 tensor.

    Big tensors' full rows are summed in place; everything else (small tensors, partial last
    rows, zero-padded to a row) is concatenated into one grid, summed once, and its mixed rows
    are added to their tensors with one segment sum. Sums modulo 2**32 do not depend on the
    order they are added in, so the words are those of the scheme.
    """
    words = [None] * len(tensors)
    pieces, rows, segments = [], [], []
    for i, x in enumerate(tensors):
        stream = _word_stream(x)
        m = int(stream.shape[0])
        full = m // ROW_LENGTH if m > _SMALL_WORDS else 0
        if full:
            grid = tf.reshape(stream[:full * ROW_LENGTH], [full, ROW_LENGTH])
            mixed = _mix(*_grid_sums(grid, variadic),
                         tf.constant(np.arange(1, full + 1, dtype=np.uint32)))
            words[i] = tf.stack([tf.reduce_sum(mixed[0]), tf.reduce_sum(mixed[1])])
        if m > full * ROW_LENGTH:
            left = m - full * ROW_LENGTH
            pad = row_count(left) * ROW_LENGTH - left
            pieces.append(tf.pad(stream[full * ROW_LENGTH:], [[0, pad]]))
            rows.append(np.arange(full, full + row_count(left)) + 1)
            segments.append(np.full(row_count(left), i))
    zero = tf.zeros([2], tf.uint32)
    words = tf.stack([zero if w is None else w for w in words])
    if pieces:
        grid = tf.reshape(tf.concat(pieces, 0), [-1, ROW_LENGTH])
        mixed = _mix(*_grid_sums(grid, variadic),
                     tf.constant(np.concatenate(rows).astype(np.uint32)))
        segment = tf.constant(np.concatenate(segments).astype(np.int32))
        words += tf.math.unsorted_segment_sum(tf.stack(mixed, 1), segment, len(tensors))
    return words


class _Compiled:
    """The traced function for one list signature, and what the host adds to its words."""

    def __init__(self, tensors):
        variadic = JIT_COMPILE and _variadic_reduce is not None
        self.function = tf.function(lambda ts: _mixed_words(ts, variadic),
                                    jit_compile=JIT_COMPILE, autograph=False)
        # Calling the concrete function skips tf.function's per-call argument matching,
        # which costs ~0.3 ms for 20 variables: as much as the fingerprint itself.
        self.concrete = self.function.get_concrete_function(tensors)
        self.sizes = np.array([int(np.prod(t.shape)) & 0xFFFFFFFF for t in tensors], np.uint32)


_compiled = {}


def _function_for(tensors):
    """The compiled function for this list's kinds, shapes and dtypes; traced only once."""
    key = (JIT_COMPILE,) + tuple(
        (isinstance(t, tf.Variable), tuple(t.shape), t.dtype) for t in tensors)
    if key not in _compiled:
        _compiled[key] = _Compiled(tensors)
    return _compiled[key]


def _as_tensor(value):
    value = unwrap_variable(value)
    return value if isinstance(value, (tf.Tensor, tf.Variable)) else tf.convert_to_tensor(value)


def tensor_words(tensors):
    """Fingerprint words of TensorFlow tensors, computed on their device with one transfer to
    the host.

    Arguments:
        tensors: a list of `tf.Tensor`s, `tf.Variable`s or Keras 3 variables on the TensorFlow
            backend.

    Returns a `(len(tensors), WORDS_PER_TENSOR)` uint32 NumPy array, equal to what
    `twinrun.fingerprint.numpy.tensor_words` gives for the same bits.

    Example:
        >>> tensor_words([tf.Variable(tf.zeros((3, 3)))]).shape
        (1, 3)
    """
    tensors = [_as_tensor(t) for t in validate_tensor_list(tensors)]
    if not tensors:
        return np.zeros((0, WORDS_PER_TENSOR), np.uint32)
    compiled = _function_for(tensors)
    words = np.empty((len(tensors), WORDS_PER_TENSOR), np.uint32)
    words[:, 0] = compiled.sizes
    words[:, 1:] = compiled.concrete(tensors).numpy()
    return words
