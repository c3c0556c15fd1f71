"""Fingerprint words of JAX arrays, computed on their device by one jitted function.

Works in JAX's default 32-bit mode: everything is uint32, whose arithmetic XLA defines to wrap
modulo 2**32. 64-bit arrays exist only with `jax_enable_x64`, and are handled then too.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from twinrun.fingerprint.common import (
    FMIX_MULTIPLIERS, ROW_KEY_P, ROW_KEY_S, ROW_LENGTH, WORDS_PER_TENSOR, validate_tensor_list,
    column_keys, row_count, unsupported_dtype, unwrap_variable)

_SIGNED_BY_SIZE = {1: jnp.int8, 2: jnp.int16}


def _word_stream(x):
    size = x.dtype.itemsize
    if x.dtype == jnp.bool_:
        return x.reshape(-1).astype(jnp.uint32)
    if size in _SIGNED_BY_SIZE:
        signed = lax.bitcast_convert_type(x, _SIGNED_BY_SIZE[size]).astype(jnp.int32)
        return lax.bitcast_convert_type(signed, jnp.uint32).reshape(-1)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):  # XLA cannot bitcast complex numbers
        x = jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
        size //= 2
    if size % 4 == 0:
        # XLA puts the narrower words of a wider element on a new minor axis, low word first.
        return lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
    raise unsupported_dtype(x.dtype)


def _fmix32(h):
    h = h ^ (h >> 16)
    h = h * jnp.uint32(FMIX_MULTIPLIERS[0])
    h = h ^ (h >> 13)
    h = h * jnp.uint32(FMIX_MULTIPLIERS[1])
    return h ^ (h >> 16)


# Tensors of at most this many words (and every tensor's partial last row) are concatenated into
# one shared grid, so the seed CNN's 16 small vectors cost one pipeline instead of 16 (less to
# trace and compile on the first call).
_SMALL_WORDS = 4 * ROW_LENGTH
_COLUMN_KEYS = column_keys()


def _grid_sums(grid):
    """S and P of every row of a (rows, ROW_LENGTH) uint32 grid (steps 2 and 3 of the scheme)."""
    weight = jnp.asarray(_COLUMN_KEYS)[None, :]
    zero = np.uint32(0)
    return lax.reduce((grid, grid * weight), (zero, zero),
                      lambda a, b: (a[0] + b[0], a[1] + b[1]), (1,))


def _mixed(row_sum, weighted_sum, row):
    """fmix32 of every row's sums plus its row key, as a (rows, 2) array."""
    return jnp.stack([_fmix32(row_sum + row * jnp.uint32(ROW_KEY_S)),
                      _fmix32(weighted_sum + row * jnp.uint32(ROW_KEY_P))], axis=1)


@jax.jit
def _mixed_words(arrays):
    """w1 and w2 of every array, as a (len(arrays), 2) uint32 array.

    Big arrays' full rows are summed in place; the rest (small arrays, partial last rows,
    zero-padded to a row) is concatenated into one grid whose mixed rows are added to their
    arrays with one segment sum. Sums modulo 2**32 do not depend on the order of addition.
    """
    words = jnp.zeros((len(arrays), 2), jnp.uint32)
    pieces, rows, segments = [], [], []
    for i, x in enumerate(arrays):
        stream = _word_stream(x)
        m = stream.shape[0]
        full = m // ROW_LENGTH if m > _SMALL_WORDS else 0
        if full:
            grid = stream[:full * ROW_LENGTH].reshape(full, ROW_LENGTH)
            row = lax.iota(jnp.uint32, full) + 1
            words = words.at[i].add(jnp.sum(_mixed(*_grid_sums(grid), row), axis=0,
                                            dtype=jnp.uint32))
        if m > full * ROW_LENGTH:
            left = m - full * ROW_LENGTH
            pieces.append(jnp.pad(stream[full * ROW_LENGTH:],
                                  (0, row_count(left) * ROW_LENGTH - left)))
            rows.append(np.arange(full, full + row_count(left)) + 1)
            segments.append(np.full(row_count(left), i))
    if pieces:
        grid = jnp.concatenate(pieces).reshape(-1, ROW_LENGTH)
        row = jnp.asarray(np.concatenate(rows).astype(np.uint32))
        mixed = _mixed(*_grid_sums(grid), row)
        words = words + jax.ops.segment_sum(mixed, np.concatenate(segments), len(arrays))
    return words


def tensor_words(tensors):
    """Fingerprint words of JAX arrays, computed on their device with one transfer to the host.

    Arguments:
        tensors: a list of JAX arrays or Keras 3 variables on the JAX backend.

    Returns a `(len(tensors), WORDS_PER_TENSOR)` uint32 NumPy array, equal to what
    `twinrun.fingerprint.numpy.tensor_words` gives for the same bits.

    Example:
        >>> tensor_words([jnp.zeros((3, 3))]).shape
        (1, 3)
    """
    arrays = tuple(_as_array(t) for t in validate_tensor_list(tensors))
    if not arrays:
        return np.zeros((0, WORDS_PER_TENSOR), np.uint32)
    words = np.empty((len(arrays), WORDS_PER_TENSOR), np.uint32)
    words[:, 0] = [x.size & 0xFFFFFFFF for x in arrays]
    words[:, 1:] = _mixed_words(arrays)
    return words


def _as_array(value):
    value = unwrap_variable(value)
    # jnp.asarray costs ~10 us even on a JAX array: 20 variables would double the step's cost.
    if isinstance(value, jax.Array):
        return value
    array = jnp.asarray(value)
    if array.dtype != np.asarray(value).dtype:  # 64-bit values without jax_enable_x64
        raise TypeError(
            f"JAX would change this {np.asarray(value).dtype} array to {array.dtype} before "
            "fingerprinting it: enable `jax_enable_x64`, or fingerprint host arrays with "
            "twinrun.fingerprint.numpy.tensor_words.")
    return array
