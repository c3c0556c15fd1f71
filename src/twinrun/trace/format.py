"""The per-step record of a run: an append-only JSON-lines file that survives a kill.

One JSON object per line, flushed after every line, so whatever was written before a crash or
a `kill -9` stays readable; a torn last line is ignored when reading. Nothing is pickled.

Records (format 2):
- `{"kind": "header", "variables": [names], "shapes": [...], "backend": ..., "replica": ...,
   "environment": {...}, "format": 2, "fingerprint_scheme": 2}` — first line (the scheme of
   the step words: 2, row sums on the device, `twinrun.fingerprint.common`; 3, each tensor's
   bytes hashed in host memory, `twinrun.fingerprint.exact`; absent: scheme 1; words of two
   schemes are never compared). `variables` names every fingerprinted
   tensor known when training starts: the model's variables (BatchNorm statistics included),
   then the optimizer's state (`optimizer/...`: slots such as Adam's moments, and the
   iteration or step counters), then the random generators' states (`rng/...`);
- `{"kind": "data", "fingerprint": hex}` — the whole training set, when the tracer is given it;
- `{"kind": "step", "step": s, "epoch": e, "batch": hex | null, "loss": float | null,
   "variables": [[w0, w1, ...], ...]}` — after every optimizer step: the batch fingerprint, the
   batch's own loss (exact: JSON floats round-trip; null where it cannot be had exactly), and
   each tensor's on-device fingerprint words, in the order of the names. Optional fields:
   `loss_running_mean` (Keras: the epoch's running mean that Keras logs as `loss`), and
   `names` with `shapes` when the list of tensors changed since the previous step (PyTorch
   optimizers create their state at the first step): they hold for this step and later ones;
- `{"kind": "epoch", "epoch": e, "metrics": {...}, "snapshot": file | null}` — after every
  epoch, with the file name of a weights snapshot (`.npz`, loaded with `allow_pickle=False`);
- `{"kind": "digest", "at": "epoch e" | "end", "names": [...], "tensors": [hex, ...],
   "digest": hex}` — at the end of every epoch and of the run: the exact xxh3-128 digest of
  each tensor of the training state and of them all (`twinrun.trace.digests`);
- `{"kind": "layers", "step": s, "forward": [...], "backward": [...]}` — localisation reruns;
- `{"kind": "end", "steps": n}` — the run finished.

Steps and epochs are counted from 0 in step records, so step `s` is the `s+1`-th optimizer
step (the epoch is the index a framework's callbacks receive); epoch records carry the number
of epochs finished. What twinrun prints counts epochs from 1, as Keras prints them
(`twinrun.checks.verdict.epoch_number`), and steps from 0.

Read back, the step records are packed into arrays (`twinrun.trace.steps.StepTable`): a
full-preset trace of 150,000 steps is about 100 MB of words per replica instead of gigabytes
of Python objects, and `trace.steps[i]` still rebuilds record `i` as the dict on disk.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from twinrun.trace.steps import StepTable

FORMAT = 2


class TraceWriter:
    """Appends records to a trace file, one flushed line each."""

    def __init__(self, path):
        from twinrun.errors import TwinrunError

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Line-buffered text in append mode: each record reaches the OS as one write.
        self._file = open(self.path, "a", buffering=1, encoding="utf-8")
        if self._file.tell() > 0:
            # Appending would make two runs read as one, with step numbers restarting at 0.
            self._file.close()
            raise TwinrunError(f"The trace file {self.path} already holds a trace; give a new "
                               f"path, or move the old trace aside first.")

    def write(self, record):
        self._file.write(json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n")

    def header(self, variables, shapes=None, fingerprint_scheme=None, **extra):
        """The header; `fingerprint_scheme` is that of the step words the tracer writes
        (`twinrun.fingerprint.trace_words_for`; default scheme 2's)."""
        from twinrun.fingerprint.common import SCHEME

        self.write({"kind": "header", "format": FORMAT,
                    "fingerprint_scheme": fingerprint_scheme or SCHEME,
                    "variables": list(variables), "shapes": shapes, **extra})

    def step(self, step, epoch, batch, loss, words, **extra):
        """One step record; `extra` holds the optional fields (`loss_running_mean`, `names`
        and `shapes`)."""
        self.write({"kind": "step", "step": step, "epoch": epoch, "batch": batch,
                    "loss": loss, "variables": words, **extra})

    def close(self):
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


@dataclass
class Trace:
    """A trace read back: the header, and step/epoch/layer records in order.

    `steps` is a `StepTable`: a sequence of step records (dicts, rebuilt on access) whose
    fields are kept in arrays.
    """

    path: Path
    header: dict = field(default_factory=dict)
    data: dict | None = None
    steps: StepTable = field(default_factory=StepTable)
    epochs: list = field(default_factory=list)
    layers: list = field(default_factory=list)
    # The digest records, each with `after`: how many step records precede it.
    digests: list = field(default_factory=list)
    finished: bool = False
    # (index of the first step they hold for, names), for each step record that renamed.
    renamed: list = field(default_factory=list)

    @property
    def variables(self):
        """The names of the tensors in the latest step read (the header's until a step
        renames them)."""
        return self.renamed[-1][1] if self.renamed else self.header.get("variables", [])

    def names_at(self, index):
        """The names of the tensors in `steps[index]`."""
        names = self.header.get("variables", [])
        for first, renamed in self.renamed:
            if first > index:
                break
            names = renamed
        return names


class TraceReader:
    """Reads a trace incrementally: `poll()` returns the records appended since the last call.

    A line without its newline yet is a write in progress (or a torn write after a kill); it
    is left for the next poll. The file is read a block at a time, so a finished 300 MB trace
    never sits in memory as one string.
    """

    BLOCK = 1 << 20

    def __init__(self, path):
        self.path = Path(path)
        self._offset = 0
        self._pending = b""
        self.trace = Trace(self.path)

    def poll(self):
        """Read the records appended since the last call; return them (dicts)."""
        records = []
        self._read(records.append)
        return records

    def advance(self):
        """Read the records appended since the last call into `trace`; return how many.

        Unlike `poll` it keeps no list of the records read, only the packed trace.
        """
        return self._read(None)

    def _read(self, collect):
        count = 0
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return 0
        with handle:
            handle.seek(self._offset)
            while True:
                chunk = handle.read(self.BLOCK)
                if not chunk:
                    break
                self._offset += len(chunk)
                lines = (self._pending + chunk).split(b"\n")
                self._pending = lines.pop()
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a torn line from a killed writer
                    if not isinstance(record, dict):
                        continue
                    count += 1
                    self._add(record)
                    if collect is not None:
                        collect(record)
        return count

    def _add(self, record):
        kind = record.get("kind")
        if kind == "header":
            self.trace.header = record
        elif kind == "data":
            self.trace.data = record
        elif kind == "step":
            if "names" in record:
                self.trace.renamed.append((len(self.trace.steps), record["names"]))
            self.trace.steps.append(record)
        elif kind == "epoch":
            self.trace.epochs.append(record)
        elif kind == "layers":
            self.trace.layers.append(record)
        elif kind == "digest":
            self.trace.digests.append(dict(record, after=len(self.trace.steps)))
        elif kind == "end":
            self.trace.finished = True


def read_trace(path):
    """Read a whole trace file (a torn last line is ignored)."""
    reader = TraceReader(path)
    reader.advance()
    return reader.trace
