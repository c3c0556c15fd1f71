"""A trace's step records, packed into arrays instead of one Python object per value.

A full-preset run has 150,000 steps of 50-75 tensors with 3 fingerprint words each. As dicts
of lists of ints that is several gigabytes in the comparing parent; packed, the words take
4 bytes each (about 100 MB per replica), and a streaming comparison frees them once every
replica's step has been compared (`release_words`), so the parent holds only what is not yet
compared.

`StepTable` is a read-only sequence: `table[i]` rebuilds step record `i` as the dict the trace
file holds (`{"kind": "step", "step": ..., "variables": [[...], ...], ...}`), so code that
reads records one at a time keeps working; the comparison reads the arrays directly
(`words`, `words_range`, `loss_column`, `batch_column`).

A field that does not fit its column (a loss written as an int, a batch fingerprint that is not
32 lowercase hex digits, words that are not unsigned 32-bit integers in rows of equal length)
is kept as written, in a small per-step dict beside the arrays: the record reads back exactly.
"""

from collections.abc import Sequence

import numpy as np

# Per-step flags.
HAS_LOSS = 1           # `loss` is a float in the loss column (else null, or raw)
HAS_EPOCH = 2          # `epoch` is an int in the epoch column (else null, or raw)
BATCH_PACKED = 4       # `batch` is 16 bytes in the batch column (else null, or raw)
HAS_RUNNING_MEAN = 8   # `loss_running_mean` is in its column (else absent, or raw)
RAW_COMPARED = 16      # `batch` or `loss` is kept as written in `extras`
WORDS_RAW = 32         # `variables` is kept as written in `extras`
WORDS_DROPPED = 64     # read after `drop_words_after`: only the newest such step keeps words

_PACKED_KEYS = ("kind", "step", "epoch", "batch", "loss", "variables", "loss_running_mean")
_UINT32_MAX = 2**32 - 1


class StepTable(Sequence):
    """Step records in columns: step and epoch numbers, losses, batch fingerprints, and every
    tensor's fingerprint words in one growing `uint32` buffer.

    Example:
    >>> table = StepTable()
    >>> table.append({"kind": "step", "step": 0, "epoch": 0, "batch": "00" * 16, "loss": 0.5,
    ...               "variables": [[4, 1, 2], [4, 3, 5]]})
    >>> len(table), table.words(0).shape, table[0]["variables"]
    (1, (2, 3), [[4, 1, 2], [4, 3, 5]])
    """

    def __init__(self):
        self._n = 0
        self._capacity = 0
        self._step = np.zeros(0, np.int64)
        self._epoch = np.zeros(0, np.int64)
        self._loss = np.zeros(0, np.float64)
        self._running = np.zeros(0, np.float64)
        self._flags = np.zeros(0, np.uint8)
        self._batch = np.zeros((0, 16), np.uint8)
        self._tensors = np.zeros(0, np.int32)  # tensors in the step (rows of words)
        self._width = np.zeros(0, np.int16)    # words per tensor
        self._start = np.zeros(1, np.int64)    # where each step's words begin (logical offset)
        self._extras = {}                      # index -> fields kept as written
        # The words of released steps are gone: the buffer begins at logical offset `_base`.
        self._words = np.zeros(0, np.uint32)
        self._base = 0
        self._released = 0                     # steps before this index have no words
        self._drop_after = None                # steps after this index keep no words...
        self._newest = None                    # ...but the newest step's, kept here

    # -- writing --------------------------------------------------------------------------

    def append(self, record):
        """Add one step record (a dict as read from the trace file)."""
        if self._n == self._capacity:
            self._grow()
        i = self._n
        flags = 0
        extras = {k: v for k, v in record.items() if k not in _PACKED_KEYS}
        step = record.get("step")
        if _is_int(step):
            self._step[i] = step
        else:
            extras["step"] = step
        epoch = record.get("epoch")
        if _is_int(epoch):
            self._epoch[i] = epoch
            flags |= HAS_EPOCH
        elif epoch is not None:
            extras["epoch"] = epoch
        loss = record.get("loss")
        if type(loss) is float:
            self._loss[i] = loss
            flags |= HAS_LOSS
        elif loss is not None:
            extras["loss"] = loss
            flags |= RAW_COMPARED
        if "loss_running_mean" in record:
            running = record["loss_running_mean"]
            if type(running) is float:
                self._running[i] = running
                flags |= HAS_RUNNING_MEAN
            else:
                extras["loss_running_mean"] = running
        batch = record.get("batch")
        packed = _batch_bytes(batch)
        if packed is not None:
            self._batch[i] = packed
            flags |= BATCH_PACKED
        elif batch is not None:
            extras["batch"] = batch
            flags |= RAW_COMPARED
        words = _word_rows(record.get("variables", []))
        if words is None:
            extras["variables"] = record.get("variables")
            flags |= WORDS_RAW
            words = np.zeros((0, 0), np.uint32)
        self._tensors[i], self._width[i] = words.shape
        if self._drop_after is not None and i > self._drop_after:
            flags |= WORDS_DROPPED
            self._newest = words
            words = np.zeros((0, 0), np.uint32)
        self._put_words(i, words.ravel())
        if extras:
            self._extras[i] = extras
        self._flags[i] = flags
        self._n += 1

    def release_words(self, before):
        """Free the fingerprint words of steps `0 .. before-1`.

        Only a comparison calls this, for steps it found equal in every replica
        (`twinrun.checks.verdict.Comparison`); a later comparison of the same traces starts after
        them. The last step read keeps its words (the run's final fingerprint); released steps
        read back with `"variables": None`.
        """
        before = min(before, self._n - 1)
        if before <= self._released:
            return
        self._released = before
        cut = int(self._start[before]) - self._base
        used = int(self._start[self._n]) - self._base
        remaining = used - cut
        if remaining < len(self._words) // 4 and len(self._words) > 1 << 16:
            # Mostly freed: give the memory back instead of keeping the high-water mark.
            self._words = self._words[cut:used].copy()
        else:
            self._words[:remaining] = self._words[cut:used]
        self._base += cut

    def drop_words_after(self, index):
        """Keep no words of the steps after step `index`, except the newest one's.

        For a trace whose comparison ended at `index` (its first difference from replica 0, or
        every other replica's): nothing after it is compared, but the last step's words are
        the run's final fingerprint. Words already read after `index` are freed too.
        """
        if self._drop_after is not None and self._drop_after <= index:
            return
        last = self._n - 1
        if index < last:
            newest = self.words(last)
            self._newest = None if newest is None else newest.copy()
            self._flags[index + 1:self._n] |= WORDS_DROPPED
            self._start[index + 2:self._n + 1] = self._start[index + 1]
            kept = int(self._start[index + 1]) - self._base
            if kept < len(self._words) // 4:
                self._words = self._words[:kept].copy()
        self._drop_after = index

    # -- reading --------------------------------------------------------------------------

    def __len__(self):
        return self._n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._n))]
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError("step index out of range")
        return self._record(index)

    @property
    def released(self):
        """Steps before this index have had their words released."""
        return self._released

    def words(self, index):
        """Step `index`'s fingerprint words, a `(tensors, words per tensor)` uint32 array,
        or None when they were released or are kept as written."""
        flags = self._flags[index]
        if flags & WORDS_DROPPED:
            return self._newest if index == self._n - 1 else None
        if index < self._released or flags & WORDS_RAW:
            return None
        begin = int(self._start[index]) - self._base
        end = int(self._start[index + 1]) - self._base
        return self._words[begin:end].reshape(int(self._tensors[index]), int(self._width[index]))

    def words_range(self, start, stop):
        """The words of steps `start .. stop-1`, back to back in one flat array (a view)."""
        begin = int(self._start[start]) - self._base
        end = int(self._start[stop]) - self._base
        return self._words[begin:end]

    def word_offsets(self, start, stop):
        """Where each step's words begin in `words_range(start, stop)`, and where they end."""
        return self._start[start:stop + 1] - self._start[start]

    def layout(self, start, stop):
        """Tensors and words per tensor of steps `start .. stop-1`, as two arrays."""
        return self._tensors[start:stop], self._width[start:stop]

    def flags(self, start, stop):
        return self._flags[start:stop]

    def step_numbers(self, start=0, stop=None):
        """The `step` field of records `start .. stop-1` (int64)."""
        stop = self._n if stop is None else stop
        return self._step[start:stop]

    def loss_column(self, start=0, stop=None):
        """Losses of steps `start .. stop-1` (float64) and whether each step has one."""
        stop = self._n if stop is None else stop
        return self._loss[start:stop], (self._flags[start:stop] & HAS_LOSS) != 0

    def batch_column(self, start, stop):
        """Batch fingerprints of steps `start .. stop-1` as 16-byte rows."""
        return self._batch[start:stop]

    def index_of_step(self, step):
        """The index of the first record whose `step` field is `step`, or None."""
        found = np.flatnonzero(self._step[:self._n] == step)
        for i in found:
            if "step" not in self._extras.get(int(i), {}):
                return int(i)
        for i, extras in self._extras.items():
            if extras.get("step") == step:
                return i
        return None

    def nbytes(self):
        """Bytes the arrays hold (the words buffer at its current capacity included)."""
        return sum(a.nbytes for a in (self._step, self._epoch, self._loss, self._running,
                                      self._flags, self._batch, self._tensors, self._width,
                                      self._start, self._words))

    def _record(self, i):
        flags = int(self._flags[i])
        extras = self._extras.get(i, {})
        record = {"kind": "step", "step": int(self._step[i]),
                  "epoch": int(self._epoch[i]) if flags & HAS_EPOCH else None,
                  "batch": bytes(self._batch[i]).hex() if flags & BATCH_PACKED else None,
                  "loss": float(self._loss[i]) if flags & HAS_LOSS else None}
        words = self.words(i)
        record["variables"] = words.tolist() if words is not None else None
        if flags & HAS_RUNNING_MEAN:
            record["loss_running_mean"] = float(self._running[i])
        record.update(extras)
        return record

    # -- columns, for reference files (twinrun.checks.reference) --------------------------------

    COLUMNS = ("step", "epoch", "loss", "running", "flags", "batch", "tensors", "width",
               "start", "words")

    def columns(self):
        """Every column as a trimmed array (`COLUMNS`), and the fields kept as written
        (`{index: {field: value}}`): what `from_columns` needs to rebuild the table.

        Only a table with all its words (never compared, so nothing released or dropped)
        can be written out whole.
        """
        if self._released or self._drop_after is not None:
            raise ValueError("a compared StepTable has released words; read the trace again")
        n = self._n
        arrays = {"step": self._step[:n], "epoch": self._epoch[:n], "loss": self._loss[:n],
                  "running": self._running[:n], "flags": self._flags[:n],
                  "batch": self._batch[:n], "tensors": self._tensors[:n],
                  "width": self._width[:n], "start": self._start[:n + 1],
                  "words": self._words[:int(self._start[n])]}
        return arrays, {int(i): dict(e) for i, e in self._extras.items()}

    @classmethod
    def from_columns(cls, arrays, extras):
        """The table that `columns()` described (arrays checked for shape and type)."""
        n = len(arrays["step"])
        kinds = {"step": np.int64, "epoch": np.int64, "loss": np.float64,
                 "running": np.float64, "flags": np.uint8, "batch": np.uint8,
                 "tensors": np.int32, "width": np.int16, "start": np.int64,
                 "words": np.uint32}
        table = cls()
        for name, dtype in kinds.items():
            column = np.asarray(arrays[name])
            if column.dtype != dtype:
                raise ValueError(f"column {name} is {column.dtype}, expected {np.dtype(dtype)}")
            expected = {"start": (n + 1,), "batch": (n, 16)}.get(name, (n,))
            if name != "words" and column.shape != expected:
                raise ValueError(f"column {name} has shape {column.shape}, expected {expected}")
            setattr(table, f"_{name}", np.array(column))
        starts = table._start
        sizes = table._tensors.astype(np.int64) * table._width.astype(np.int64)
        if (starts[0] != 0 or np.any(np.diff(starts) != sizes)
                or table._words.shape != (int(starts[-1]),)):
            raise ValueError("the word offsets do not match the tensors' sizes")
        table._n = table._capacity = n
        table._extras = {int(i): dict(e) for i, e in extras.items()}
        return table

    # -- storage --------------------------------------------------------------------------

    def _grow(self):
        capacity = max(1024, 2 * self._capacity)
        for name in ("_step", "_epoch", "_loss", "_running", "_flags", "_tensors", "_width"):
            old = getattr(self, name)
            new = np.zeros(capacity, old.dtype)
            new[:self._n] = old[:self._n]
            setattr(self, name, new)
        batch = np.zeros((capacity, 16), np.uint8)
        batch[:self._n] = self._batch[:self._n]
        self._batch = batch
        start = np.zeros(capacity + 1, np.int64)
        start[:self._n + 1] = self._start[:self._n + 1]
        self._start = start
        self._capacity = capacity

    def _put_words(self, i, flat):
        begin = int(self._start[i]) - self._base
        end = begin + len(flat)
        if end > len(self._words):
            grown = np.zeros(max(end, 2 * len(self._words), 4096), np.uint32)
            grown[:begin] = self._words[:begin]
            self._words = grown
        self._words[begin:end] = flat
        self._start[i + 1] = self._start[i] + len(flat)


def _is_int(value):
    return type(value) is int


def _batch_bytes(value):
    """16 bytes for a batch fingerprint written as 32 lowercase hex digits, else None."""
    if type(value) is not str or len(value) != 32:
        return None
    try:
        packed = bytes.fromhex(value)
    except ValueError:
        return None
    if packed.hex() != value:  # upper case reads back otherwise: keep it as written
        return None
    return np.frombuffer(packed, np.uint8)


def _word_rows(variables):
    """The words as a `(tensors, words)` uint32 array, or None if they do not fit one."""
    if type(variables) is not list:
        return None
    if not variables:
        return np.zeros((0, 0), np.uint32)
    try:
        rows = np.array(variables)
    except ValueError:  # rows of different lengths
        return None
    if rows.ndim != 2 or rows.dtype.kind not in "iu" or rows.size == 0:
        return None
    if rows.min() < 0 or rows.max() > _UINT32_MAX:
        return None
    return rows.astype(np.uint32)
