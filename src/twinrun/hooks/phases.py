"""One trace for a whole script: each `fit` call, or each PyTorch optimizer, is a phase.

The launcher reads one trace per replica, so the phases share it. The first phase writes the
header; a later phase writes no header of its own: its first step record carries `phase` (its
name) and, where its tensors are not the ones in effect, `names` and `shapes`, the optional
fields that format 2 already defines for "the tensors changed from this step on". Step numbers
run on across phases, and the `end` record is written once, when the script ends. A reader that
knows nothing of phases reads an ordinary format-2 trace.

The phases are also listed, with their first step, in the side file (`twinrun.hooks.sidefile`),
where the check reads them to name the phase of a divergence.
"""

from twinrun.trace import TraceWriter


class SharedTrace:
    """The replica's trace file, written by several tracers one phase at a time.

    Arguments:
        path: the trace file (`TWINRUN_TRACE`).
        on_phase: called with the list of phases whenever a phase begins.
    """

    def __init__(self, path, on_phase=None):
        self.path = path
        self.next_step = 0
        self.phases = []
        self._on_phase = on_phase
        self._writer = None
        self._names = None   # the tensor names in effect in the file
        self._current = None  # the phase that wrote the last step
        self._newest = None
        self._writers = []
        self.interleaved = False  # an earlier phase wrote again after a later one began

    def phase(self, name, framework, where=None):
        """A writer for a new phase; tracers get it from their `_open_writer`.

        `where` is the user's `(file, line)` that started it (the `fit` call, the first
        `optimizer.step()`), kept so that a notebook's verdict can name its cell.
        """
        phase = PhaseWriter(self, f"{name}", framework)
        self._newest = phase
        self._writers.append(phase)
        entry = {"name": phase.name, "framework": framework, "first_step": self.next_step}
        if where is not None:
            entry["file"], entry["line"] = where
        self.phases.append(entry)
        if self._on_phase is not None:
            self._on_phase(self.phases)
        return phase

    def _header(self, phase, variables, shapes, extra):
        if self._writer is None:
            self._writer = TraceWriter(self.path)
            self._writer.header(variables, shapes, phase=phase.name, **extra)
            self._names = list(variables)
            self._current = phase

    def _step(self, phase, step, epoch, batch, loss, words, extra):
        if self._current is not phase:
            extra.setdefault("phase", phase.name)
            if self._current is not None and phase is not self._newest:
                self.interleaved = True  # optimizers taking turns (a GAN, say)
                if self._on_phase is not None:
                    self._on_phase(self.phases)
            self._current = phase
        if "names" in extra:
            self._names = list(extra["names"])
        elif phase.names != self._names:
            extra["names"], extra["shapes"] = phase.names, phase.shapes
            self._names = phase.names
        self._writer.step(step, epoch, batch, loss, words, **extra)
        self.next_step = step + 1

    def write(self, record):
        if self._writer is not None:
            self._writer.write(record)

    def finish(self):
        """Write each phase's final digest, the `end` record (once), and close the file."""
        if self._writer is not None:
            for phase in self._writers:
                if phase.final_digest is not None:
                    self._writer.write(phase.final_digest())
            self._writer.write({"kind": "end", "steps": self.next_step})
            self._writer.close()
            self._writer = None


class PhaseWriter:
    """What one tracer sees as its `TraceWriter`: the shared trace, for one phase."""

    def __init__(self, shared, name, framework):
        self.shared = shared
        self.name = name
        self.framework = framework
        self.names = None
        self.shapes = None
        # A tracer that is never closed (the torch hooks') gives its state's digest record
        # here, written when the script ends.
        self.final_digest = None

    def header(self, variables, shapes=None, **extra):
        self.names, self.shapes = list(variables), shapes
        self.shared._header(self, variables, shapes, extra)

    def step(self, step, epoch, batch, loss, words, **extra):
        if "names" in extra:
            self.names, self.shapes = list(extra["names"]), extra.get("shapes")
        self.shared._step(self, step, epoch, batch, loss, words, extra)

    def write(self, record):
        if record.get("kind") != "end":  # the script's end, not the phase's, ends the trace
            self.shared.write(record)

    def close(self):
        pass  # the shared trace is closed when the script ends
