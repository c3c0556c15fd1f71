"""Exact words of tensors that lie in the process's own memory: fingerprint scheme 3.

The row sums of scheme 2 (`twinrun.fingerprint.common`) exist so that a tensor on a GPU can be
reduced where it lies and only a few words cross to the host. A tensor in host memory (torch
on a CPU, the default) needs no such detour: its bytes are read in place and hashed.

Words of one tensor: `[n mod 2**32, low 32 bits, high 32 bits]` of xxh3-64 over its bytes in C
order and native byte order (the bytes `digest_arrays` digests), seeded with the xxh3-64 of its
dtype name and shape written as `float32[3,4]`.

What it guarantees: any change of bits, dtype or shape changes the words except with
probability about 2**-64 (xxh3's collisions, for any pattern of change). There is no structured
blind spot: the +1, -1, -1, +1 ulp patterns and the even numbers of sign flips that scheme 2's
sums can miss are all seen.

Why only in host memory: the bytes are hashed by the CPU, so a GPU tensor would be copied to
the host first (a whole transfer of the state every step). Tracers choose scheme 3 where the
state lies in host memory (`twinrun.fingerprint.trace_words_for`), and record the scheme in
the trace's header: words of two schemes are never compared.

On the 2-core AMD EPYC box, the whole state of native PyTorch's seed CNN with Adam (28.5 MB,
67 tensors) right after an optimizer step: about 1.3 ms with these words (`TensorWords`), 3.9 ms
with scheme 2's (docs/performance.md).
"""

import os

import numpy as np
import xxhash

from twinrun.fingerprint.common import (WORDS_PER_TENSOR, unwrap_variable,
                                        validate_tensor_list)

SCHEME = 3


def _header_seed(name, shape):
    return xxhash.xxh3_64_intdigest(f"{name}[{','.join(str(s) for s in shape)}]".encode())


def _torch_bytes(tensor):
    """Name, shape and a NumPy byte view of a torch tensor, read in place where it is a
    contiguous CPU tensor."""
    import torch  # only reached with a torch tensor in hand

    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    name = str(tensor.dtype).removeprefix("torch.")
    shape = tuple(tensor.shape)
    flat = tensor.contiguous().reshape(-1)
    if flat.is_conj():
        flat = flat.resolve_conj()
    if flat.is_neg():
        flat = flat.resolve_neg()
    return name, shape, flat.view(torch.uint8).numpy()


def _numpy_bytes(array):
    shape = array.shape  # before `ascontiguousarray`, which gives a 0-d array one dimension
    array = np.ascontiguousarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array.dtype.name, shape, array.reshape(-1).view(np.uint8)


def _is_torch(tensor):
    return hasattr(tensor, "untyped_storage") and hasattr(tensor, "detach")


def _words(name, shape, data, seed=None):
    size = int(np.prod(shape, dtype=np.int64))
    value = xxhash.xxh3_64_intdigest(data, _header_seed(name, shape) if seed is None else seed)
    return size & 0xFFFFFFFF, value & 0xFFFFFFFF, value >> 32


def array_words(tensor):
    """The `WORDS_PER_TENSOR` words of one tensor (a NumPy array, a torch tensor, or anything
    `numpy.asarray` accepts), as a uint32 array: `[n mod 2**32, low, high]` of
    xxh3-64(bytes, seed = xxh3-64(header)), the header being the dtype name and shape as in
    `float32[3,4]`."""
    tensor = unwrap_variable(tensor)
    parts = _torch_bytes(tensor) if _is_torch(tensor) else _numpy_bytes(np.asarray(tensor))
    return np.array(_words(*parts), np.uint32)


def tensor_words(tensors):
    """Scheme 3's words of tensors in host memory (NumPy arrays, torch CPU tensors, Keras
    variables); a tensor elsewhere is copied to the host first.

    Arguments:
        tensors: a list or tuple of tensors.

    Returns a `(len(tensors), WORDS_PER_TENSOR)` uint32 NumPy array; equal bits, dtypes and
    shapes give equal rows, whichever of those types held them.

    Example:
        >>> a = np.zeros(4, np.float32)
        >>> b = a.copy(); b[3] = -0.0
        >>> (tensor_words([a])[0] == tensor_words([b])[0]).tolist()
        [True, False, False]
    """
    tensors = validate_tensor_list(tensors)
    words = np.zeros((len(tensors), WORDS_PER_TENSOR), np.uint32)
    for i, tensor in enumerate(tensors):
        words[i] = array_words(tensor)
    return words


class TensorWords:
    """`tensor_words` for a tracer, which fingerprints the same tensors step after step: the
    byte view, size and header hash of each contiguous torch CPU tensor are made once and
    reused while the tensor keeps its storage and shape (a third of the time on the seed CNN's
    67 tensors, most of them small).

    Where OpenMP's idle threads sleep (`OMP_WAIT_POLICY=PASSIVE`, which twinrun gives the torch
    processes it starts), the hashing of a large state is shared among the training's own
    threads (torch's intra-op thread count; one thread when the training runs on one): xxh3
    releases the GIL on large buffers, and the training waits for the words, so the threads
    read a state nobody writes. Each tensor's words are those of `tensor_words`, whichever
    thread hashed it. Reading the state from memory bounds the gain: about a sixth of the call
    on the 2-core Zen 3; with OpenMP's threads spinning for the cores, none
    (docs/performance.md)."""

    # Below this many bytes in all, handing tensors to another thread costs more than it saves.
    PARALLEL_BYTES = 4 << 20

    def __init__(self):
        self._views = {}  # id(tensor) -> (tensor, data_ptr, shape, bytes, seed, size)
        self._pool = None  # (pid, executor, workers)

    def __call__(self, tensors):
        tensors = validate_tensor_list(tensors)
        if len(self._views) > 4 * len(tensors) + 64:
            self._views.clear()  # tensors replaced (a new optimizer): forget the old ones
        rows = [None] * len(tensors)
        items = []  # (row, bytes, seed, size) of each tensor read in place
        for row, tensor in enumerate(tensors):
            tensor = unwrap_variable(tensor)
            entry = self._views.get(id(tensor))
            if (entry is None or entry[0] is not tensor or entry[1] != tensor.data_ptr()
                    or entry[2] != tensor.shape):
                entry = self._remember(tensor)
            if entry is not None:
                items.append((row, entry[3], entry[4], entry[5]))
            else:
                rows[row] = array_words(tensor)
        for item, words in zip(items, self._hash(items)):
            rows[item[0]] = words
        return np.array(rows, np.uint32).reshape(len(tensors), WORDS_PER_TENSOR)

    def _hash(self, items):
        """The words `(size, low, high)` of every `(row, bytes, seed, size)` item, in their
        order, hashed on the step's threads."""
        def words(i):
            _, data, seed, size = items[i]
            value = xxhash.xxh3_64_intdigest(data, seed)
            return size, value & 0xFFFFFFFF, value >> 32

        workers = self._workers(sum(item[1].nbytes for item in items))
        if workers == 1:
            return [words(i) for i in range(len(items))]
        # Largest first, each to the thread with the fewest bytes so far.
        groups = [[] for _ in range(workers)]
        loads = [0] * workers
        for i in sorted(range(len(items)), key=lambda i: -items[i][1].nbytes):
            lightest = loads.index(min(loads))
            groups[lightest].append(i)
            loads[lightest] += items[i][1].nbytes

        def hash_group(group):
            return [(i, words(i)) for i in group]

        others = [self._pool[1].submit(hash_group, group) for group in groups[1:]]
        done = hash_group(groups[0])
        for future in others:
            done.extend(future.result())
        result = [None] * len(items)
        for i, row_words in done:
            result[i] = row_words
        return result

    def _workers(self, nbytes):
        """How many threads hash this many bytes: the training's thread count for a large
        state where OpenMP's idle threads sleep, else one. Starts (or, in a forked child,
        restarts) the helper threads."""
        if (nbytes < self.PARALLEL_BYTES
                or os.environ.get("OMP_WAIT_POLICY", "").strip().lower() != "passive"):
            return 1
        import torch  # the cached views are torch tensors': already imported

        workers = max(1, min(torch.get_num_threads(), len(os.sched_getaffinity(0))))
        if workers > 1 and (self._pool is None or self._pool[0] != os.getpid()
                            or self._pool[2] != workers):
            from concurrent.futures import ThreadPoolExecutor

            if self._pool is not None and self._pool[0] == os.getpid():
                self._pool[1].shutdown(wait=False)
            self._pool = (os.getpid(), ThreadPoolExecutor(
                max_workers=workers - 1, thread_name_prefix="twinrun-words"), workers)
        return workers

    def _remember(self, tensor):
        """The cache entry of a contiguous torch CPU tensor; None for anything else."""
        if not _is_torch(tensor) or tensor.device.type != "cpu" or not tensor.is_contiguous() \
                or tensor.is_conj() or tensor.is_neg():
            return None
        name, shape, data = _torch_bytes(tensor)
        entry = (tensor, tensor.data_ptr(), tensor.shape, data, _header_seed(name, shape),
                 tensor.numel() & 0xFFFFFFFF)
        self._views[id(tensor)] = entry
        return entry
