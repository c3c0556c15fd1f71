"""A verdict in one line, for a failing test's message or a log: identical, or where it parted."""

from twinrun.report.formatting import where


def verdict_summary(verdict, label=None):
    """Say in one line whether the replicas were identical, and if not, where they diverged.

    Arguments:
        verdict: a `twinrun.checks.verdict.Verdict` or its `to_dict()`.
        label: what was checked (a function's or a command's name), put in front; optional.

    Example:
    >>> verdict_summary({"verdict": "identical", "steps_compared": 8, "replicas": [{}, {}]})
    'identical: 2 replicas, 8 steps compared, same bits at every step'
    >>> verdict_summary({"verdict": "diverged", "steps_compared": 3, "replicas": [{}, {}],
    ...                  "first_divergence": {"step": 0, "epoch": None,
    ...                                       "records": ["batch", "loss"],
    ...                                       "variables": ["0.weight"], "layer": None}},
    ...                 label="train")
    'train diverged at step 0: batch, loss differ; first variables to differ: 0.weight'
    """
    verdict = verdict if isinstance(verdict, dict) else verdict.to_dict()
    prefix = f"{label} " if label else ""
    replicas = len(verdict.get("replicas") or [])
    if verdict["verdict"] == "identical":
        return (f"{prefix}identical: {replicas} replicas, {verdict['steps_compared']} steps "
                "compared, same bits at every step")
    divergence = verdict.get("first_divergence") or {}
    if not divergence:
        return f"{prefix}{verdict['verdict']} ({replicas} replicas)"
    parts = [f"{prefix}{verdict['verdict']} {where(divergence)}: "
             f"{', '.join(divergence.get('records') or ['the traces'])} differ"]
    variables = divergence.get("variables") or []
    if variables:
        shown = ", ".join(variables[:3]) + (f" and {len(variables) - 3} more"
                                            if len(variables) > 3 else "")
        parts.append(f"first variables to differ: {shown}")
    layer = divergence.get("layer") or {}
    if layer.get("name"):
        parts.append(f"localised to layer {layer['name']}")
    return "; ".join(parts)

