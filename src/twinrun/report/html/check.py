"""The HTML page of one stored check: the replicas' loss curves overlaid, how the divergence
grew, where it started (with the localised layer or optimizer slot), and how the replicas'
environments differed.

Steps and epochs read as the JSON verdict holds them, counted as everywhere in twinrun: steps
from 0, epochs from 1 (`weight_distance[].epoch` is the epoch whose end was measured).
"""

from pathlib import Path

from twinrun.checks.causes import environment_changes
from twinrun.report.formatting import number, where
from twinrun.report.html import svg
from twinrun.report.headline import check_reading
from twinrun.report.html.page import (Html, figure, join, page, pairs, paragraph, prose,
                                      section, table, tag)
from twinrun.report.html.shared import flat_pairs, status_badge, when
from twinrun.report.formatting import short_fingerprint

# Longest lists shown in full; the rest is counted ("and 312 more").
MAX_NAMES = 200
MAX_ENVIRONMENT_ROWS = 200
_KNOWN = {"verdict", "steps_compared", "replicas", "first_divergence", "loss_growth",
          "weight_distance", "environment_diff", "likely_causes", "notes", "localization",
          "findings", "reading"}


def render(report):
    """The page of `twinrun.report.records.check_report(...)` as one HTML document (`Html`).

    Arguments:
        report: the dict `check_report` returns (`kind` "check").
    """
    check, verdict = report["check"], report["verdict"]
    subtitle = join([status_badge(verdict.get("verdict")), " ",
                     f"{len(verdict.get('replicas') or [])} replicas of ",
                     tag("code", check.get("label")),
                     f" · {verdict.get('steps_compared')} steps compared",
                     f" · {when(check.get('created_at'))}"])
    divergence = verdict.get("first_divergence")
    return page(f"Check {check['check_id']}", subtitle,
                headline(verdict),
                _outcome(verdict),
                _replicas(verdict),
                _loss_curves(report["replica_losses"], divergence),
                _growth(verdict, divergence) if divergence else Html(""),
                _first_divergence(verdict, divergence) if divergence else Html(""),
                _environment_diff(verdict),
                _findings(verdict),
                _other(verdict),
                _notes(check, verdict))


def headline(verdict):
    """The verdict's one sentence, and under it the finding that explains a divergence (its
    `file:line`, code and fix): the first thing on the page, above every plot."""
    reading = check_reading(verdict)
    good = verdict.get("verdict") in ("identical", "within_tolerance", "recorded")
    parts = [tag("p", prose(reading["headline"]), class_="headline " + ("good" if good else "bad"),
                 id="headline")]
    culprit = reading["culprit"]
    if culprit:
        lines = [tag("div", [tag("strong", culprit["where"]), ": ",
                             prose(culprit.get("title") or "")])]
        if culprit.get("code"):
            lines.append(tag("div", tag("code", culprit["code"])))
        if culprit.get("fix"):
            lines.append(tag("div", ["fix: ", prose(culprit["fix"])]))
        parts.append(tag("div", lines, class_="culprit", id="culprit"))
    return Html("".join(parts))


def _findings(verdict):
    """The pitfalls lint and the hooks found in the script, each with its line, why and fix."""
    findings = [f for f in verdict.get("findings") or [] if isinstance(f, dict)]
    if not findings:
        return Html("")
    from twinrun.report.headline import finding_place

    items = []
    for f in findings:
        where = (finding_place(f) if f.get("line") is not None
                 else "while training")
        body = [tag("strong", where), ": ", prose(f.get("title") or "")]
        if f.get("rule"):
            body += [" ", tag("span", f"[{f['rule']}]", class_="note")]
        if f.get("code"):
            body += [tag("div", tag("code", f["code"]))]
        if f.get("why"):
            body += [tag("div", ["why: ", prose(f["why"])])]
        if f.get("fix"):
            body += [tag("div", ["fix: ", prose(f["fix"])])]
        items.append(tag("li", body))
    return section("Pitfalls in the script", tag("ul", items))


def _outcome(verdict):
    divergence = verdict.get("first_divergence")
    if verdict.get("verdict") == "identical" or not divergence:
        text = (f"Identical: every step, every tensor, the same bits "
                f"({verdict.get('steps_compared')} steps compared).")
        return section("Verdict", paragraph(text))
    records = ", ".join(str(r) for r in divergence.get("records") or [])
    parts = [paragraph(f"Diverged {where(divergence)}: {records} differ.")]
    causes = verdict.get("likely_causes") or []
    if causes:
        parts.append(paragraph("Likely cause" + ("s:" if len(causes) > 1 else ":")))
        parts.append(tag("ul", [tag("li", prose(cause)) for cause in causes]))
    return section("Verdict", *parts)


def _replicas(verdict):
    replicas = verdict.get("replicas") or []
    metric_names = sorted({name for r in replicas for name in (r.get("metrics") or {})
                           if name != "loss"})[:6]
    columns = ["replica", "steps", "final loss", *metric_names, "fingerprint", "run id"]
    rows = []
    for r in replicas:
        metrics = r.get("metrics") or {}
        rows.append([r.get("label"), f"{r.get('steps')}" + (" (stopped early)"
                                                            if r.get("stopped_early") else ""),
                     number(r.get("final_loss"), 9), *[metrics.get(n) for n in metric_names],
                     Html(tag("code", short_fingerprint(r.get("fingerprint")))), r.get("run_id")])
    return section("Replicas", table(columns, rows,
                                     numeric={"steps", "final loss", *metric_names}))


def _loss_curves(curves, divergence):
    if not curves:
        return section("Loss per step", paragraph(
            "The replicas' traces are no longer in the check's folder, so their per-step "
            "losses cannot be drawn.", class_="note"))
    marks = _step_mark(divergence)
    series = [(f"replica {c['replica']}", c["steps"], c["loss"]) for c in curves]
    chart = svg.line_chart(series, title="batch loss per step, replicas overlaid",
                           x_label="step", y_label="batch loss", marks=marks)
    return section("Loss per step", figure(chart, "Each replica's loss on each batch, from its "
                                                  "trace; where they part, they diverged."))


def _step_mark(divergence):
    if divergence and isinstance(divergence.get("step"), int) and divergence["step"] >= 0:
        return [(divergence["step"], f"first divergence: step {divergence['step']}")]
    return []


def _growth(verdict, divergence):
    plots = []
    growth = verdict.get("loss_growth") or []
    if sum(1 for g in growth if g.get("max_abs_loss_diff")) >= 2:
        # One point or none on a log scale is an empty box: the sentence below says it.
        chart = svg.line_chart(
            [("max |Δloss|", [g["step"] for g in growth],
              [g.get("max_abs_loss_diff") for g in growth])],
            title="|Δloss| between replicas", x_label="step", y_label="|Δloss|",
            log_y=True, marks=_step_mark(divergence))
        zeros = sum(1 for g in growth if not g.get("max_abs_loss_diff"))
        caption = ("The largest difference of any replica's batch loss from replica 0's."
                   + (f" {zeros} steps with equal losses are left out of the log scale."
                      if zeros else ""))
        plots.append(figure(chart, caption))
    distance = verdict.get("weight_distance") or []
    if distance:
        epoch = divergence.get("epoch")
        marks = ([(epoch, f"first divergence: in epoch {epoch}")]
                 if isinstance(epoch, int) else [])
        chart = svg.line_chart(
            [("max ‖w − w₀‖ / ‖w₀‖", [d["epoch"] for d in distance],
              [d.get("max_relative_distance") for d in distance])],
            title="relative weight distance", x_label="epoch (at its end)",
            y_label="relative distance", log_y=True, marks=marks)
        plots.append(figure(chart, "The largest relative distance of any replica's weights "
                                   "from replica 0's, from the snapshot after each epoch."))
    if not plots:
        return section("Divergence growth", paragraph(prose(_no_growth(verdict, growth)),
                                                      class_="note"))
    return section("Divergence growth", tag("div", plots, class_="grid"))


def _no_growth(verdict, growth):
    """The one sentence that replaces an empty growth panel."""
    steps = [g["step"] for g in growth]
    largest = max((g.get("max_abs_loss_diff") or 0 for g in growth), default=0)
    seen = (f" The losses were compared over {len(steps)} step{'s' if len(steps) != 1 else ''} "
            f"(largest |Δloss| {largest:.3g})." if steps else "")
    if any(r.get("stopped_early") for r in verdict.get("replicas") or []):
        return ("The replicas stopped at the first difference (lockstep), so there is no "
                "growth to show." + seen + " `twinrun check --no-lockstep` trains each to its "
                "end.")
    return "There is too little to plot: fewer than two steps with unequal losses." + seen


def _operation_rows(verdict, localization):
    """The first operation to differ, its line, and what differed in the kernels."""
    op = localization.get("op") or {}
    rows = []
    if op:
        rows.append(("first operation to differ", Html(tag("code", op.get("op")))))
        rows.append(("operation ran in", f"{op.get('phase')} pass"
                     + (f", layer {op['module']}" if op.get("module") else "")))
        if op.get("file"):
            place = f"{Path(op['file']).name}:{op.get('line')}"
            label = ("its forward line" if op.get("phase") == "backward" else "called at")
            rows.append((label, Html(join([tag("code", place), " ",
                                           tag("code", op.get("code") or "")]))))
    kernels = [d for d in verdict.get("environment_diff") or []
               if d["key"] in _KERNEL_KEYS]
    if kernels:
        rows.append(("instruction set and threads", "; ".join(environment_changes(kernels))))
    return rows


# What decides which kernels run (their vector width, their split over threads).
_KERNEL_KEYS = ("framework.cpu_capability", "cpu.isa", "cpu.identity", "threads.intra_op",
                "threads.inter_op", "env.ATEN_CPU_CAPABILITY", "env.ONEDNN_MAX_CPU_ISA",
                "env.MKL_CBWR", "env.TWINRUN_PORTABLE")


def _first_divergence(verdict, divergence):
    localization = verdict.get("localization") or {}
    layer = divergence.get("layer") or localization.get("layer") or {}
    rows = [("step", divergence.get("step")),
            ("epoch", divergence.get("epoch")),
            ("what differs first", ", ".join(str(r) for r in divergence.get("records") or []))]
    if layer:
        rows += [("localised layer", Html(tag("code", layer.get("name")))),
                 ("layer class", layer.get("class")),
                 ("layer index", layer.get("index")),
                 ("found in", _found_in(localization.get("where"), layer))]
        if layer.get("variable"):
            rows.append(("first gradient to differ", Html(tag("code", layer["variable"]))))
    rows += _operation_rows(verdict, localization)
    state = localization.get("state") or []
    if state:
        rows.append(("optimizer / generator state that differs", _names(state)))
    if localization:
        rows += [("rerun diverged at step", localization.get("rerun_divergence")),
                 ("race (moves between runs)", localization.get("race")),
                 ("localisation note", prose(localization.get("note")))]
    elif not layer:
        rows.append(("localisation", prose("not run (`twinrun check --localize` names the "
                                           "layer)")))
    variables = divergence.get("variables") or []
    rows.append((f"tensors that differ ({len(variables)})", _names(variables)))
    return section("First divergence", pairs(rows))


def _found_in(where, layer):
    if where == "forward" or (where is None and not layer.get("variable")):
        return ("forward pass: its input was identical, its output differed"
                if not layer.get("inputs_differed") else "forward pass: its input already differed")
    if where == "backward":
        return "backward pass: the first gradient to differ, in backward order"
    return where


def _names(names):
    shown = [tag("code", name) for name in names[:MAX_NAMES]]
    items = []
    for i, item in enumerate(shown):
        items += [", "] if i else []
        items.append(item)
    if len(names) > MAX_NAMES:
        items.append(f" and {len(names) - MAX_NAMES} more")
    return join(items)


def _environment_diff(verdict):
    diff = verdict.get("environment_diff") or []
    if not diff:
        return section("Environment", paragraph(
            "The replicas' environments (packages, threads, environment variables, hardware) "
            "were the same."))
    count = max(len(d.get("values") or []) for d in diff)
    columns = ["setting", *[f"replica {i}" for i in range(count)]]
    rows = [[Html(tag("code", d.get("key"))), *[_value(v) for v in (d.get("values") or [])]]
            for d in diff[:MAX_ENVIRONMENT_ROWS]]
    more = (paragraph(f"and {len(diff) - MAX_ENVIRONMENT_ROWS} more differences", class_="note")
            if len(diff) > MAX_ENVIRONMENT_ROWS else Html(""))
    return section("Environment differences", table(columns, rows), more)


def _value(value):
    text = "" if value is None else str(value)
    return text if len(text) <= 300 else text[:299] + "…"


def _other(verdict):
    """Fields of the verdict this page does not lay out itself (e.g. lint findings)."""
    rest = {key: ("; ".join(map(str, value)) if isinstance(value, list)
                  and all(isinstance(v, str) for v in value) else value)
            for key, value in verdict.items() if key not in _KNOWN and value not in (None, [], {})}
    if not rest:
        return Html("")
    return section("More from the verdict", pairs(flat_pairs(rest)))


def _notes(check, verdict):
    rows = [("check id", check.get("check_id")), ("kind", check.get("kind")),
            ("what was checked", Html(tag("code", check.get("label")))),
            ("recorded", when(check.get("created_at"))), ("folder", check.get("folder"))]
    notes = verdict.get("notes") or []
    parts = [pairs(rows)]
    if notes:
        parts.append(tag("ul", [tag("li", prose(note)) for note in notes], class_="note"))
    return section("About this check", *parts)
