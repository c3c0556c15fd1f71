"""A run's or a check's report as Markdown: the summary a colleague reads in a pull request.

User text (names, arguments, paths) is data here too: Markdown renderers pass HTML through, so
`<`, `>` and `&` become entities, and the characters Markdown reads as formatting (`*`, `_`,
backticks, brackets, `|` in tables) are backslash-escaped.
"""

import html

from twinrun.report.runs import _environment_pairs

# `<`, `>` and `&` are entities already; brackets are escaped, so parentheses never form a link.
_MARKDOWN_SPECIAL = "\\`*_[]|~"
MAX_NAMES = 50


def md(value):
    """`value` as literal Markdown text: HTML entities for `<>&`, backslashes before the rest.

    Arguments:
        value: any object; None gives "".

    Example:
    >>> md("<script>alert(1)</script> a|b *c* [x](y)")
    '&lt;script&gt;alert(1)&lt;/script&gt; a\\\\|b \\\\*c\\\\* \\\\[x\\\\](y)'
    """
    if value is None:
        return ""
    text = html.escape(str(value), quote=False).replace("\r", " ").replace("\n", " ")
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in text)


def _number(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _table(columns, rows):
    lines = ["| " + " | ".join(md(c) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(md(_number(cell)) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _pairs(rows):
    rows = [(name, value) for name, value in rows if value not in (None, "", [], {})]
    return _table(["", ""], rows) if rows else ""


def render_markdown(report):
    """The Markdown summary of `twinrun.report.records.load_report(...)`.

    Arguments:
        report: a dict with `kind` "run" or "check".
    """
    return (_run if report["kind"] == "run" else _check)(report)


def _run(report):
    run = report["run"]
    metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    out = [f"# Run {md(run['run_id'])}\n",
           f"{md(run.get('status'))} · {md(run.get('workload'))} on {md(run.get('backend'))} · "
           f"seed {md(run.get('seed'))} · preset {md(run.get('preset'))}\n",
           "## Summary\n",
           _pairs([("test accuracy", metrics.get("test_accuracy")),
                   ("test loss", metrics.get("test_loss")),
                   ("epochs trained", run.get("epochs_trained")),
                   ("last epoch (early stopping)", report.get("last_epoch")),
                   ("best epoch (restored)", report.get("best_epoch")),
                   ("weights fingerprint", run.get("fingerprint")),
                   ("error", run.get("error"))])]
    history = run.get("history") or []
    if history:
        columns = ["epoch"] + sorted({k for e in history for k in e} - {"epoch"})
        out += ["## Learning curves\n", _table(columns, [[e.get(c) for c in columns]
                                                         for e in history])]
    per_class = metrics.get("per_class")
    names = report.get("class_names") or []
    if isinstance(per_class, dict) and per_class:
        columns = [c for c in ("precision", "recall", "f1", "support") if c in per_class]
        count = max(len(per_class[c]) for c in columns) if columns else 0
        rows = [[names[i] if i < len(names) else i] +
                [per_class[c][i] if i < len(per_class[c]) else None for c in columns]
                for i in range(count)]
        out += ["## Per-class scores (test set)\n", _table(["class", *columns], rows)]
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, list) and matrix:
        out += ["## Confusion matrix (rows: true class, columns: predicted)\n",
                _table(["", *names], [[names[i] if i < len(names) else i, *row]
                                      for i, row in enumerate(matrix)])]
    determinism = run.get("determinism") or {}
    controls = determinism.get("controls") if isinstance(determinism, dict) else None
    if isinstance(controls, list):
        out += ["## Determinism\n", _table(["control", "state", "detail"],
                                           [[c.get("name"), c.get("state"), c.get("detail")]
                                            for c in controls if isinstance(c, dict)])]
    out += ["## Environment\n", _pairs(_environment_pairs(run.get("environment")))]
    return "\n".join(part for part in out if part)


def _check(report):
    check, verdict = report["check"], report["verdict"]
    divergence = verdict.get("first_divergence")
    out = [f"# Check {md(check['check_id'])}\n",
           f"**{md(str(verdict.get('verdict')).upper())}** · {len(verdict.get('replicas') or [])} "
           f"replicas of {md(check.get('label'))} · {md(verdict.get('steps_compared'))} steps "
           f"compared\n",
           "## Replicas\n",
           _table(["replica", "steps", "final loss", "fingerprint", "run id"],
                  [[r.get("label"), r.get("steps"), r.get("final_loss"), r.get("fingerprint"),
                    r.get("run_id")] for r in verdict.get("replicas") or []])]
    if divergence:
        localization = verdict.get("localization") or {}
        layer = divergence.get("layer") or localization.get("layer") or {}
        variables = divergence.get("variables") or []
        shown = ", ".join(str(v) for v in variables[:MAX_NAMES])
        if len(variables) > MAX_NAMES:
            shown += f" and {len(variables) - MAX_NAMES} more"
        out += ["## First divergence\n", _pairs([
            ("step (from 0)", divergence.get("step")),
            ("epoch (from 0)", divergence.get("epoch")),
            ("what differs first", ", ".join(map(str, divergence.get("records") or []))),
            ("localised layer", layer.get("name")),
            ("layer class", layer.get("class")),
            ("found in", localization.get("where")),
            ("first gradient to differ", layer.get("variable")),
            ("optimizer / generator state", ", ".join(map(str, localization.get("state") or []))),
            ("localisation note", localization.get("note")),
            ("tensors that differ", shown)])]
        growth = verdict.get("loss_growth") or []
        if growth:
            picks = growth if len(growth) <= 12 else growth[:: len(growth) // 11][:11] + growth[-1:]
            out += ["## |Δloss| by step\n", _table(["step", "max |Δloss|"],
                                                   [[g["step"], g["max_abs_loss_diff"]]
                                                    for g in picks])]
        distance = verdict.get("weight_distance") or []
        if distance:
            out += ["## Relative weight distance by epochs finished\n",
                    _table(["epochs finished", "max relative distance"],
                           [[d["epoch"], d["max_relative_distance"]] for d in distance])]
        causes = verdict.get("likely_causes") or []
        if causes:
            out += ["## Likely causes\n", "\n".join(f"- {md(c)}" for c in causes) + "\n"]
    diff = verdict.get("environment_diff") or []
    if diff:
        count = max(len(d.get("values") or []) for d in diff)
        out += ["## Environment differences\n",
                _table(["setting", *[f"replica {i}" for i in range(count)]],
                       [[d.get("key"), *(d.get("values") or [])] for d in diff])]
    else:
        out.append("The replicas' environments were the same.\n")
    notes = verdict.get("notes") or []
    if notes:
        out += ["## Notes\n", "\n".join(f"- {md(n)}" for n in notes) + "\n"]
    return "\n".join(part for part in out if part)
