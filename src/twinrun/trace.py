"""The per-step record of a run: an append-only JSON-lines file that survives a kill.

One JSON object per line, flushed after every line, so whatever was written before a crash or
a `kill -9` stays readable; a torn last line is ignored when reading. Nothing is pickled.

Records:
- `{"kind": "header", "variables": [names], "shapes": [...], "backend": ..., "replica": ...,
   "environment": {...}, "format": 1}` — first line;
- `{"kind": "data", "fingerprint": hex}` — the whole training set, when the tracer is given it;
- `{"kind": "step", "step": s, "epoch": e, "batch": hex | null, "loss": float | null,
   "variables": [[w0, w1, ...], ...]}` — after every optimizer step: the batch fingerprint, the
   loss (exact: JSON floats round-trip), and each variable's on-device fingerprint words;
- `{"kind": "epoch", "epoch": e, "metrics": {...}, "snapshot": file | null}` — after every
  epoch, with the file name of a weights snapshot (`.npz`, loaded with `allow_pickle=False`);
- `{"kind": "layers", "step": s, "forward": [...], "backward": [...]}` — localisation reruns;
- `{"kind": "end", "steps": n}` — the run finished.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = 1


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

    def header(self, variables, shapes=None, **extra):
        self.write({"kind": "header", "format": FORMAT, "variables": list(variables),
                    "shapes": shapes, **extra})

    def step(self, step, epoch, batch, loss, words):
        self.write({"kind": "step", "step": step, "epoch": epoch, "batch": batch,
                    "loss": loss, "variables": words})

    def close(self):
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


@dataclass
class Trace:
    """A trace read back: the header, and step/epoch/layer records in order."""

    path: Path
    header: dict = field(default_factory=dict)
    data: dict | None = None
    steps: list = field(default_factory=list)
    epochs: list = field(default_factory=list)
    layers: list = field(default_factory=list)
    finished: bool = False

    @property
    def variables(self):
        return self.header.get("variables", [])


class TraceReader:
    """Reads a trace incrementally: `poll()` returns the records appended since the last call.

    A line without its newline yet is a write in progress (or a torn write after a kill); it
    is left for the next poll.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._offset = 0
        self._pending = b""
        self.trace = Trace(self.path)

    def poll(self):
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        records = []
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn line from a killed writer
            records.append(record)
            self._add(record)
        return records

    def _add(self, record):
        kind = record.get("kind")
        if kind == "header":
            self.trace.header = record
        elif kind == "data":
            self.trace.data = record
        elif kind == "step":
            self.trace.steps.append(record)
        elif kind == "epoch":
            self.trace.epochs.append(record)
        elif kind == "layers":
            self.trace.layers.append(record)
        elif kind == "end":
            self.trace.finished = True


def read_trace(path):
    """Read a whole trace file (a torn last line is ignored)."""
    reader = TraceReader(path)
    reader.poll()
    return reader.trace
