"""Fingerprint words of torch tensors, computed on their device with a few vectorised ops.

Row sums run in int32, whose kernels wrap modulo 2**32 (torch has no general uint32 arithmetic);
the few row-level mixing steps run in int64 masked to 32 bits, where shifts are logical.
"""

import numpy as np
import torch

from twinrun.fingerprint.common import (
    FMIX_MULTIPLIERS, MASK32, ROW_KEY_P, ROW_KEY_S, ROW_LENGTH, WORDS_PER_TENSOR,
    validate_tensor_list, column_keys, row_count, unsupported_dtype, unwrap_variable)

_SIGNED_BY_SIZE = {1: torch.int8, 2: torch.int16}
_WORD_DTYPES = (torch.float32, torch.int32)


def _word_stream(t):
    """The tensor's word stream as a 1-D int32 tensor (a view when no conversion is needed).

    Called under `torch.no_grad()`; `reshape` copies in C order only when `t` is not contiguous.
    """
    t = t.reshape(-1)
    if t.dtype in _WORD_DTYPES:
        return t.view(torch.int32)
    if t.dtype == torch.bool:
        return t.to(torch.int32)
    if t.is_complex():
        t = torch.view_as_real(t).reshape(-1)
    size = t.element_size()
    if size in _SIGNED_BY_SIZE:
        return t.view(_SIGNED_BY_SIZE[size]).to(torch.int32)
    if size % 4 == 0:
        return t.view(torch.int32)
    raise unsupported_dtype(t.dtype)


# Tensors of at most this many words are copied into one shared grid (with the partial last
# rows of bigger ones), so that 20 small BatchNorm vectors cost a few kernels instead of 80.
_SMALL_WORDS = 4 * ROW_LENGTH
# On a CPU, rows are summed 256 at a time (1 MB): the weighted copy of a chunk is summed while
# it is still in the L2 cache, which halves the cost against whole-tensor ops (and avoids a
# 10 MB temporary). On a GPU one kernel per tensor is faster.
_CPU_CHUNK_ROWS = 256


class _Plan:
    """Everything about a list of tensors that depends only on their shapes, dtypes and device:
    built on the first call, reused every step.

    Rows are processed in this order: the full rows of each big tensor, then one shared grid
    holding, row-aligned and zero-padded, every small tensor and every big tensor's last
    partial row. `keys` and `segment` give each of those rows its key and its tensor.
    """

    def __init__(self, tensors):
        device = tensors[0].device
        words = [_word_stream(t).numel() for t in tensors]
        self.sizes = np.array([t.numel() & MASK32 for t in tensors], np.uint32)
        self.big = [i for i, m in enumerate(words) if m > _SMALL_WORDS]
        self.pieces = []  # (tensor, first word, pad words) in the shared grid
        rows, segment = [], []
        for i in self.big:
            full = words[i] // ROW_LENGTH
            rows.append(np.arange(1, full + 1))
            segment.append(np.full(full, i))
        for i, m in enumerate(words):
            first = m // ROW_LENGTH * ROW_LENGTH if i in self.big else 0
            if m > first:
                self.pieces.append((i, first, row_count(m - first) * ROW_LENGTH - (m - first)))
                rows.append(np.arange(first // ROW_LENGTH, row_count(m)) + 1)
                segment.append(np.full(row_count(m) - first // ROW_LENGTH, i))
        row = torch.from_numpy(np.concatenate(rows + [np.zeros(0, np.int64)]).astype(np.int64))
        self.keys = (torch.stack([row * ROW_KEY_S, row * ROW_KEY_P]) & MASK32).to(device)
        self.segment = torch.from_numpy(
            np.concatenate(segment + [np.zeros(0, np.int64)]).astype(np.int64)).to(device)
        self.padding = {pad: torch.zeros(pad, dtype=torch.int32, device=device)
                        for _, _, pad in self.pieces if pad}
        self.column_weight = torch.from_numpy(column_keys().view(np.int32)).to(device)
        self.sums = torch.empty(2, len(row), dtype=torch.int32, device=device)
        shared = sum(row_count(words[i] - first) for i, first, _ in self.pieces)
        self.chunk = _CPU_CHUNK_ROWS if device.type == "cpu" else max(
            [words[i] // ROW_LENGTH for i in self.big] + [shared])
        self.product = torch.empty(max(self.chunk, shared), ROW_LENGTH, dtype=torch.int32,
                                   device=device)

    def row_sums(self, streams):
        """S and P of every row of every tensor, in plan order, as one (2, rows) int32 tensor."""
        start = 0
        for i in self.big:
            full = streams[i].numel() // ROW_LENGTH
            self._sum_rows(streams[i][:full * ROW_LENGTH].view(full, ROW_LENGTH), start)
            start += full
        if self.pieces:
            grid = []
            for i, first, pad in self.pieces:
                grid.append(streams[i][first:])
                if pad:
                    grid.append(self.padding[pad])
            self._sum_rows(torch.cat(grid).view(-1, ROW_LENGTH), start, chunk=len(self.product))
        return self.sums

    def _sum_rows(self, grid, start, chunk=None):
        chunk = chunk or self.chunk
        for first in range(0, len(grid), chunk):
            rows = grid[first:first + chunk]
            end = start + first + len(rows)
            torch.sum(rows, 1, dtype=torch.int32, out=self.sums[0, start + first:end])
            product = torch.mul(rows, self.column_weight, out=self.product[:len(rows)])
            torch.sum(product, 1, dtype=torch.int32, out=self.sums[1, start + first:end])


_plans = {}


def _plan_for(tensors):
    key = tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)
    if key not in _plans:
        _plans[key] = _Plan(tensors)
    return _plans[key]


def _fmix32(h):
    h = h ^ (h >> 16)
    h = (h * FMIX_MULTIPLIERS[0]) & MASK32
    h = h ^ (h >> 13)
    h = (h * FMIX_MULTIPLIERS[1]) & MASK32
    return h ^ (h >> 16)


def tensor_words(tensors):
    """Fingerprint words of torch tensors, computed on their device with one transfer to the host.

    Arguments:
        tensors: a list of torch tensors or Parameters, or Keras 3 variables on the torch
            backend. Tensors on several devices are fingerprinted one device at a time (an
            optimizer's step counters stay on the CPU when the parameters are on a GPU). No
            gradient is recorded.

    Returns a `(len(tensors), WORDS_PER_TENSOR)` uint32 NumPy array, equal to what
    `twinrun.fingerprint.numpy.tensor_words` gives for the same bits.

    Example:
        >>> tensor_words(list(torch.nn.Linear(4, 2).parameters())).shape
        (2, 3)
    """
    tensors = [torch.as_tensor(unwrap_variable(t)) for t in validate_tensor_list(tensors)]
    if not tensors:
        return np.zeros((0, WORDS_PER_TENSOR), np.uint32)
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        words = np.zeros((len(tensors), WORDS_PER_TENSOR), np.uint32)
        for device in devices:
            rows = [i for i, t in enumerate(tensors) if t.device == device]
            words[rows] = _one_device_words([tensors[i] for i in rows])
        return words
    return _one_device_words(tensors)


def _one_device_words(tensors):
    threads = torch.get_num_threads()
    if tensors[0].device.type != "cpu" or threads == 1:
        return _words_now(tensors)
    # On a CPU the words run on one thread: with the step's intra-op threads every one of the
    # ~100 short reductions wakes and joins the OpenMP pool, whose waiting threads spin. On
    # the 2-core box that made a traced native-torch step +29 % in wall time and +37 % in CPU
    # time, against +0 % (within noise) on one thread (docs/performance.md). The words are
    # integer sums, equal on any thread count, and the step's own count is back before the
    # next step runs.
    torch.set_num_threads(1)
    try:
        return _words_now(tensors)
    finally:
        torch.set_num_threads(threads)


def _words_now(tensors):
    with torch.no_grad():
        plan = _plan_for(tensors)
        words = np.zeros((len(tensors), WORDS_PER_TENSOR), np.uint32)
        words[:, 0] = plan.sizes
        if plan.segment.numel():  # else: only empty tensors
            row_sums = plan.row_sums([_word_stream(t) for t in tensors])
            mixed = _fmix32((row_sums.to(torch.int64) + plan.keys) & MASK32)
            sums = torch.zeros(2, len(tensors), dtype=torch.int64, device=mixed.device)
            sums.index_add_(1, plan.segment, mixed)
            words[:, 1:] = (sums & MASK32).T.cpu().numpy()
    return words
