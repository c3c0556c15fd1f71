"""A run's, a check's or a study's report as Markdown: the summary a colleague reads in a pull
request.

User text (names, arguments, paths) is data here too: Markdown renderers pass HTML through, so
`<`, `>` and `&` become entities, and the characters Markdown reads as formatting (`*`, `_`,
backticks, brackets, `|` in tables) are backslash-escaped.
"""

import html
from pathlib import Path

from twinrun.report.formatting import interval, number, short_fingerprint
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


def md_prose(value):
    """A sentence as Markdown: each `quoted` name a code span, the rest escaped as `md` does.

    Example:
    >>> md_prose("run `twinrun lint a_b.py` *now*")
    'run `twinrun lint a_b.py` \\\\*now\\\\*'
    """
    parts = str("" if value is None else value).replace("\n", " ").split("`")
    if len(parts) % 2 == 0:
        return md(value)
    return "".join(f"`{part}`" if i % 2 else md(part) for i, part in enumerate(parts))


def _number(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return number(value)
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
        report: a dict with `kind` "run", "check", "study" or "compare".
    """
    return {"run": _run, "check": _check, "study": _study,
            "compare": _compare}[report["kind"]](report)


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
           *_check_headline(verdict),
           f"**{md(str(verdict.get('verdict')).upper())}** · {len(verdict.get('replicas') or [])} "
           f"replicas of {md(check.get('label'))} · {md(verdict.get('steps_compared'))} steps "
           f"compared\n",
           "## Replicas\n",
           _table(["replica", "steps", "final loss", "fingerprint", "run id"],
                  [[r.get("label"), r.get("steps"), r.get("final_loss"), short_fingerprint(r.get("fingerprint")),
                    r.get("run_id")] for r in verdict.get("replicas") or []])]
    if divergence:
        localization = verdict.get("localization") or {}
        layer = divergence.get("layer") or localization.get("layer") or {}
        op = localization.get("op") or {}
        variables = divergence.get("variables") or []
        shown = ", ".join(str(v) for v in variables[:MAX_NAMES])
        if len(variables) > MAX_NAMES:
            shown += f" and {len(variables) - MAX_NAMES} more"
        out += ["## First divergence\n", _pairs([
            ("step", divergence.get("step")),
            ("epoch", divergence.get("epoch")),
            ("what differs first", ", ".join(map(str, divergence.get("records") or []))),
            ("localised layer", layer.get("name")),
            ("layer class", layer.get("class")),
            ("found in", localization.get("where")),
            ("first gradient to differ", layer.get("variable")),
            ("first operation to differ", op.get("op")),
            ("operation ran in", op.get("phase") and f"{op['phase']} pass"
             + (f", layer {op['module']}" if op.get("module") else "")),
            ("source line", op.get("file") and f"{Path(op['file']).name}:{op.get('line')}: "
             f"{op.get('code') or ''}"),
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
            out += ["## Relative weight distance at the end of each epoch\n",
                    _table(["epoch", "max relative distance"],
                           [[d["epoch"], d["max_relative_distance"]] for d in distance])]
        causes = verdict.get("likely_causes") or []
        if causes:
            out += ["## Likely causes\n", "\n".join(f"- {md_prose(c)}" for c in causes) + "\n"]
    diff = verdict.get("environment_diff") or []
    if diff:
        count = max(len(d.get("values") or []) for d in diff)
        out += ["## Environment differences\n",
                _table(["setting", *[f"replica {i}" for i in range(count)]],
                       [[d.get("key"), *(d.get("values") or [])] for d in diff])]
    else:
        out.append("The replicas' environments were the same.\n")
    out += _findings(verdict.get("findings") or [])
    notes = verdict.get("notes") or []
    if notes:
        out += ["## Notes\n", "\n".join(f"- {md_prose(n)}" for n in notes) + "\n"]
    return "\n".join(part for part in out if part)


def _check_headline(verdict):
    from twinrun.report.headline import check_reading

    reading = check_reading(verdict)
    lines = [f"**{md_prose(reading['headline'])}**\n"]
    culprit = reading["culprit"]
    if culprit:
        lines.append("\n".join(
            [f"> at **{md(culprit['where'])}**: {md_prose(culprit.get('title'))}"]
            + ([f"> `{culprit['code']}`"] if culprit.get("code") and "`" not in culprit["code"]
               else [])
            + ([f"> fix: {md_prose(culprit['fix'])}"] if culprit.get("fix") else [])) + "\n")
    return lines


def _findings(findings):
    from twinrun.report.headline import finding_place

    items = []
    for f in findings:
        if not isinstance(f, dict):
            continue
        where = (finding_place(f) if f.get("line") is not None
                 else "while training")
        text = f"- **{md(where)}**: {md_prose(f.get('title'))}"
        if f.get("why"):
            text += f" {md_prose(f['why'])}"
        if f.get("fix"):
            text += f" Fix: {md_prose(f['fix'])}"
        items.append(text)
    return ["## Pitfalls in the script\n", "\n".join(items) + "\n"] if items else []


# -- studies -----------------------------------------------------------------------------------


def _at(values, i):
    return values[i] if isinstance(values, list) and i < len(values) else None


def _percent(value):
    return "" if value is None else f"{100 * value:.2f} %"


def _study(report):
    study, results = report["study"], report["results"]
    out = [f"# Study {md(study['study_id'])}\n",
           f"{md(study.get('status'))} · {md(study.get('kind'))} of {md(results['metric'])} · "
           f"{results.get('finished')} of {results.get('planned')} runs finished\n",
           *_study_headline(results)]
    if results.get("kind") == "cv":
        folds = results.get("cross_validate") or {}
        names = ["test_accuracy", "test_loss", "val_loss", "stopped_epoch", "fit_time"]
        rows = [[key, *[_at(folds.get(name), i) for name in names]]
                for i, key in enumerate(results.get("fold_keys") or [])]
        out += ["## Folds\n", _table(["fold", *names], rows),
                _pairs([("mean", results.get("mean")), ("SD", results.get("sd")),
                        ("SD's standard error", results.get("sd_err")),
                        ("95 % CI (Student t over folds)",
                         interval(results.get("ci95"), 6, form=number)),
                        ("95 % CI (bootstrap)",
                         interval(results.get("ci95_bootstrap"), 6, form=number)),
                        ("95 % CI corrected for shared training data",
                         interval(results.get("ci95_corrected"), 6, form=number))])]
        from twinrun.report.headline import cv_interval_notes

        out.append("\n".join(f"- {md(note)}" for note in cv_interval_notes(results)) + "\n")
    else:
        columns = ["source", "n", "mean", "SD", "SD error", "95% CI (t)", "95% CI (bootstrap)",
                   "share of all", "disagreement", "floor SD", "effect"]
        from twinrun.report.headline import FEW_RUNS, variance_table_notes

        def few(line):
            return "*" if (line.get("n") or 0) < FEW_RUNS and line.get("ci95") else ""

        rows = [[source, line.get("n"), line.get("mean"), line.get("sd"), line.get("sd_err"),
                 interval(line.get("ci95"), 6, form=number) + few(line),
                 interval(line.get("ci95_bootstrap"), 6, form=number) + few(line),
                 _percent(line.get("share")) or "—", _percent(line.get("disagreement")) or "—",
                 "—" if line.get("floor_sd") is None else line.get("floor_sd"),
                 "yes" if line.get("effect") else "no effect here"]
                for source, line in results["sources"].items()]
        out += ["## By source of randomness\n", _table(columns, rows),
                "\n".join(f"- {md(note)}" for note in variance_table_notes(results)) + "\n"]
        notes = [f"- **{md(source)}**: {md(line['note'])}"
                 for source, line in results["sources"].items() if line.get("note")]
        if notes:
            out.append("\n".join(notes) + "\n")
        anova = results.get("anova")
        if anova and "components" in anova:
            out += ["## Crossed design: two-way random-effects ANOVA\n",
                    _table(["component", "variance", "SD", "share"],
                           [[name, c.get("variance"), c.get("sd"), _percent(c.get("share"))]
                            for name, c in anova["components"].items()])]
    notes = list(results.get("notes") or [])
    if results.get("environment_note"):
        notes.append(results["environment_note"])
    if notes:
        out += ["## Notes\n", "\n".join(f"- {md(n)}" for n in notes) + "\n"]
    failures = results.get("failures") or []
    if failures:
        out += ["## Failed runs\n", _table(["run", "status", "error"],
                                           [[f.get("key"), f.get("status"), f.get("error")]
                                            for f in failures])]
    out += ["## Runs\n", _table(["run", "source", results["metric"], "run id"],
                                [[r["key"], r["source"], r["value"], r["run_id"]]
                                 for r in report["runs"]])]
    return "\n".join(part for part in out if part)


def _study_headline(results):
    from twinrun.report.headline import study_reading

    return [f"**{md(study_reading(results)['headline'])}**\n"]


def _compare(report):
    results = report["compare"]
    out = [f"# Study {md(results['study_a'])} against {md(results['study_b'])}\n",
           f"**{md(results.get('reading'))}**\n"]
    out += [f"Warning: {md(w)}\n" for w in results.get("warnings") or []]
    out += ["## Arms\n", _table(["arm", "study", "runs", "n", "mean", "SD"], [
        ["A", results["study_a"], results.get("source_a"), results.get("n_a"),
         results.get("mean_a"), results.get("sd_a")],
        ["B", results["study_b"], results.get("source_b"), results.get("n_b"),
         results.get("mean_b"), results.get("sd_b")]])]
    tests = results.get("tests") or {}
    out += ["## Tests\n", _table(["test", "result", "method"], [
        ["difference B - A", f"{number(results.get('difference'))}, 95 % CI "
                             f"{interval(results.get('ci95'), 6, form=number)}", tests.get("ci95")],
        ["Welch's t-test", f"p = {number(results.get('p_welch'), 3)}", tests.get("p_welch")],
        ["permutation test", f"p = {number(results.get('p_permutation'), 3)}",
         tests.get("p_permutation")],
        ["P(A beats B)", f"{number(results.get('p_a_beats_b'), 3)}, 95 % CI "
                         f"{interval(results.get('p_a_beats_b_ci95'), 6, form=number)}",
         tests.get("p_a_beats_b")],
        ["runs for 80 % power", results.get("runs_for_power80"),
         tests.get("runs_for_power80")]])]
    if results.get("environment_note"):
        out.append(md(results["environment_note"]) + "\n")
    for arm in report["arms"]:
        out += [f"## Runs of arm {md(arm['arm'])} ({md(arm['study']['study_id'])})\n",
                _table(["run", arm["metric"], "run id"],
                       [[r["key"], r["value"], r["run_id"]] for r in arm["runs"]])]
    return "\n".join(part for part in out if part)
