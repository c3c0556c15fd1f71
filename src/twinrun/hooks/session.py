"""What the hooks of one replica share: the launcher's settings, the trace, the findings."""

import linecache
import os
import sys
import sysconfig
from pathlib import Path

from twinrun.hooks.phases import SharedTrace
from twinrun.hooks.sidefile import write_side

_TWINRUN = str(Path(__file__).resolve().parents[1])
_LIBRARIES = tuple({str(Path(p).resolve()) for key in ("stdlib", "platstdlib", "purelib",
                                                       "platlib")
                    if (p := sysconfig.get_paths().get(key))})


class Session:
    """The hooks' state in this process (one per replica).

    Arguments:
        trace: the trace path (`TWINRUN_TRACE`), or None to seed without tracing.
        seed: the run seed (`TWINRUN_SEED`).
        determinism: False for `twinrun check --no-determinism`: the script runs as written.
    """

    def __init__(self, trace, seed, determinism):
        self.trace_path = trace
        self.seed = seed
        self.determinism = determinism
        self.pid = os.getpid()
        self.trace = SharedTrace(trace, on_phase=lambda phases: self.save()) if trace else None
        self.findings = []
        self.controls = []
        self.explicit = False  # the script traces itself (twinrun.keras.Trace, torch.Tracer)
        self.seeding = 0       # > 0 while the hooks seed (their calls are not the script's)
        self.in_fit = False    # a hooked Keras fit is running (its torch modules are Keras')
        self._user_files = {}

    def save(self):
        """Rewrite the side file (phases, findings, controls)."""
        if self.trace_path is None or os.getpid() != self.pid:
            return  # a forked DataLoader worker must not write the parent's file
        phases = self.trace.phases if self.trace is not None else []
        interleaved = self.trace.interleaved if self.trace is not None else False
        write_side(self.trace_path, {"format": 1, "phases": phases, "interleaved": interleaved,
                                     "findings": self.findings, "determinism": self.controls})

    def add_finding(self, rule, frame, title, why, fix):
        """Record a finding at `frame`'s line, once per rule and line."""
        if os.getpid() != self.pid:
            return
        file, line = frame.f_code.co_filename, frame.f_lineno
        if any(f["rule"] == rule and f["file"] == file and f["line"] == line
               for f in self.findings):
            return
        self.findings.append({"rule": rule, "file": file, "line": line, "column": 0,
                              "code": linecache.getline(file, line).strip(),
                              "title": title, "why": why, "fix": fix})
        self.save()

    def is_user_file(self, filename):
        """Whether code in `filename` is the user's (not twinrun's, a library's or Python's)."""
        known = self._user_files.get(filename)
        if known is None:
            if filename.startswith("<"):
                known = filename == "<string>"  # python -c
            else:
                resolved = str(Path(filename).resolve())
                known = not (resolved.startswith(_TWINRUN) or resolved.startswith(_LIBRARIES)
                             or "site-packages" in resolved or "dist-packages" in resolved)
            self._user_files[filename] = known
        return known

    def user_frame(self, depth=2, walk=True):
        """The innermost frame of the user's code from `depth` frames up (None if none);
        with `walk` False, only that frame itself counts."""
        frame = sys._getframe(depth)
        while frame is not None:
            if self.is_user_file(frame.f_code.co_filename):
                return frame
            if not walk:
                return None
            frame = frame.f_back
        return None

    def where(self):
        """The user's `(file, line)` that called into the hooks, or None."""
        frame = self.user_frame(depth=3)
        return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else None

    def finish(self):
        if self.trace is not None and os.getpid() == self.pid:
            self.trace.finish()
