"""What a check notices beside the verdict: the static findings of the script (`twinrun lint`),
what the hooks saw while the runs trained, and the phases of a hooked script.
"""

import os

from twinrun.checks.commands import PYTHON_PROGRAM, python_target
from twinrun.errors import TwinrunError


def hook_phase_notes(verdict, outcomes):
    """The verdict's notes on the phases of a hooked script (several fits or optimizers)."""
    from twinrun.hooks import phase_notes

    divergence = verdict.first_divergence
    return phase_notes(outcomes[0].spec.trace,
                       divergence.step if divergence is not None else None)


def script_findings(command):
    """The static findings (`twinrun lint`) of the script a `python script.py` command runs,
    as dicts; empty for other commands, or a script lint cannot read (the run says why)."""
    from twinrun.lint import lint_file

    args = [str(a) for a in command]
    if not args or not PYTHON_PROGRAM.match(os.path.basename(args[0])):
        return []
    kind, script = python_target(args[1:])
    if kind != "script":
        return []
    try:
        return [dict(f.to_dict(), source="lint", file=script) for f in lint_file(script)]
    except TwinrunError:
        return []


def dynamic_findings(traces):
    """What the hooks noticed while the runs trained (`twinrun.hooks.findings`), as dicts;
    empty where this twinrun has no such hooks or they found nothing."""
    try:
        from twinrun.hooks import findings as hook_findings
    except ImportError:
        return []
    found = []
    for trace in traces:
        try:
            items = hook_findings(trace) or []
        except Exception:  # noqa: BLE001  (the hooks only add to a verdict; never lose it)
            continue
        for item in items:
            entry = item.to_dict() if hasattr(item, "to_dict") else item
            entry = dict(entry) if isinstance(entry, dict) else {"title": str(entry)}
            entry.setdefault("source", "hooks")
            if entry not in found:
                found.append(entry)
    return found
