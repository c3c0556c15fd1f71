"""The side file next to a hooked replica's trace: `<trace>.hooks.json`.

It holds what the hooks learnt that is no step record: the phases (name, framework, first
step), the dynamic findings, and the determinism controls applied before the script's first
line. It is rewritten whole (to a temporary file, then renamed) whenever one of them changes,
so a replica that lockstep stops with `os._exit` leaves it complete.
"""

import json
from pathlib import Path

from twinrun.files import atomic_file

SUFFIX = ".hooks.json"


def side_path(trace_path):
    """Where the side file of the trace at `trace_path` is."""
    trace_path = Path(trace_path)
    return trace_path.with_name(trace_path.name + SUFFIX)


def write_side(trace_path, content):
    with atomic_file(side_path(trace_path), "w") as out:
        out.write(json.dumps(content, default=str))


def read_side(trace_path):
    """The side file's content, or `{}` where there is none (the script was not hooked)."""
    try:
        content = json.loads(side_path(trace_path).read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}
