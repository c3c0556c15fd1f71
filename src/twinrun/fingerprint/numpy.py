"""Fingerprint words of host arrays: the reference implementation of the scheme in `common`.

Written for clarity, not speed: the framework modules must give the same words as this one.
"""

import numpy as np

from twinrun.fingerprint.common import (
    ROW_KEY_P, ROW_KEY_S, ROW_LENGTH, WORDS_PER_TENSOR, validate_tensor_list, column_keys, fmix32,
    row_count, unsupported_dtype, unwrap_variable)

_SIGNED_BY_SIZE = {1: np.int8, 2: np.int16}


def word_stream(array):
    """The tensor's 32-bit word stream (step 1 of the scheme) as a 1-D uint32 array."""
    array = np.ascontiguousarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    flat = array.reshape(-1)
    size = array.dtype.itemsize
    if size in _SIGNED_BY_SIZE and array.dtype.kind in "biufV":
        return flat.view(_SIGNED_BY_SIZE[size]).astype(np.int32).view(np.uint32)
    if size % 4 == 0 and array.dtype.kind in "iufcV":
        return flat.view("<u4") if flat.size else np.zeros(0, np.uint32)
    raise unsupported_dtype(array.dtype)


def array_words(array):
    """The `WORDS_PER_TENSOR` words of one host array, as a uint32 array."""
    array = np.asarray(array)
    stream = word_stream(array)
    rows = row_count(stream.size)
    grid = np.zeros(rows * ROW_LENGTH, np.uint32)
    grid[:stream.size] = stream
    grid = grid.reshape(rows, ROW_LENGTH)
    row_sum = grid.sum(axis=1, dtype=np.uint32)
    weighted_sum = (grid * column_keys()).sum(axis=1, dtype=np.uint32)
    row = np.arange(1, rows + 1, dtype=np.uint32)
    with np.errstate(over="ignore"):
        w1 = fmix32(row_sum + row * np.uint32(ROW_KEY_S)).sum(dtype=np.uint32)
        w2 = fmix32(weighted_sum + row * np.uint32(ROW_KEY_P)).sum(dtype=np.uint32)
    return np.array([array.size & 0xFFFFFFFF, w1, w2], np.uint32)


def tensor_words(tensors):
    """Fingerprint words of host arrays, computed by the reference implementation.

    Arguments:
        tensors: a list of NumPy arrays (or anything `numpy.asarray` accepts).

    Returns a `(len(tensors), WORDS_PER_TENSOR)` uint32 array; equal bits give equal rows.

    Example:
        >>> tensor_words([np.float32([0.0]), np.float32([-0.0])]).tolist()
        [[1, 2462723854, 4056292419], [1, 3172115818, 637713699]]
    """
    tensors = validate_tensor_list(tensors)
    words = np.zeros((len(tensors), WORDS_PER_TENSOR), np.uint32)
    for i, tensor in enumerate(tensors):
        words[i] = array_words(unwrap_variable(tensor))
    return words
