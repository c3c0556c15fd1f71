"""The parts of `twinrun check`'s output that references, tolerances and lint add: the
script's findings above the verdict, and below it the reference compared against, what changed
since it was recorded, and how far the runs drifted.

Everything quoted from a script, a path or a reference is data, never Rich markup.
"""

from rich.console import Console
from rich.text import Text

from twinrun.report.text import data_text
from twinrun.checks.tolerance import percent


def render_findings_above(findings, out=None):
    """The pitfalls found in the checked script (`twinrun lint`, and what the hooks saw), one
    block each: where, what, why and the fix.

    Arguments:
        findings: the verdict's `findings` (dicts).
        out: a Rich console (default: stdout).
    """
    if not findings:
        return
    out = out or Console()
    for f in findings:
        if f.get("cell") is not None:
            from twinrun.report.headline import finding_place

            where = finding_place(f)
        else:
            where = f"{f['file']}:{f['line']}" if f.get("file") and f.get("line") else \
                ("while training" if f.get("source") == "hooks" else "")
        rule = f" [{f['rule']}]" if f.get("rule") else ""
        out.print(Text.assemble(data_text(where, "bold"), "  " if where else "",
                                data_text(f.get("title") or "", "yellow"),
                                data_text(rule, "dim")))
        if f.get("code"):
            out.print(Text.assemble("    ", data_text(f["code"], "cyan")))
        if f.get("why"):
            out.print(Text.assemble("    why: ", data_text(f["why"])))
        if f.get("fix"):
            out.print(Text.assemble("    fix: ", data_text(f["fix"])))
    what = "notebook" if any(f.get("cell") is not None for f in findings) else "script"
    out.print(Text(f"{len(findings)} reproducibility pitfall"
                   f"{'s' if len(findings) != 1 else ''} found in the {what} (`twinrun lint` "
                   "explains them); the verdict follows."))
    out.print()


def render_reference_and_tolerance(verdict, out=None):
    """What a check against a reference, or with a tolerance, adds below the verdict.

    Arguments:
        verdict: `Verdict.to_dict()`.
        out: a Rich console (default: stdout).
    """
    out = out or Console()
    if verdict["verdict"] == "within_tolerance":
        tolerance = verdict.get("tolerance") or {}
        out.print(Text.assemble(("WITHIN TOLERANCE", "bold yellow"),
                                ": the bits differ, but every loss and weight stays within "
                                f"rtol {tolerance.get('rtol'):g}, atol "
                                f"{tolerance.get('atol'):g}."))
    if verdict.get("tolerance") is not None:
        line = f"  max loss difference {percent(verdict.get('max_loss_difference'))}"
        if verdict.get("max_weight_distance") is not None:
            line += f", max relative weight distance {verdict['max_weight_distance']:.3g}"
        else:
            line += " (no weight snapshots to compare)"
        out.print(Text(line))
    reference = verdict.get("reference")
    if not reference:
        return
    if verdict["verdict"] == "recorded":
        out.print(Text.assemble(("RECORDED", "bold green"), ": ", data_text(reference["path"]),
                                f" holds {reference.get('steps')} steps; check later runs "
                                "with `twinrun check --against ", data_text(reference["path"]),
                                "`."))
        return
    out.print(Text.assemble("  against the reference ", data_text(reference["path"]),
                            " recorded ", data_text(reference.get("recorded_at") or "?"),
                            " on ", data_text(reference.get("hostname") or "?")))
    changes = verdict.get("environment_changes") or []
    if changes:
        out.print(Text.assemble("  changed since the recording: ",
                                data_text("; ".join(changes))))
    else:
        out.print(Text("  nothing recorded about the environment changed since the recording"))
