"""The HTML page of one stored run: learning curves, confusion matrix, per-class scores,
determinism report and environment."""

from twinrun.report.formatting import short_fingerprint
from twinrun.report.html import svg
from twinrun.report.html.page import Html, figure, join, page, pairs, paragraph, section, table, tag
from twinrun.report.html.shared import environment_pairs, flat_pairs, status_badge, when
from twinrun.report.runs import group_pairs, wall_time

CURVES = (("loss", ("loss", "val_loss")), ("accuracy", ("accuracy", "val_accuracy")))


def render(report):
    """The page of `twinrun.report.records.run_report(...)` as one HTML document (`Html`).

    Arguments:
        report: the dict `run_report` returns (`kind` "run").
    """
    run = report["run"]
    subtitle = join([status_badge(run.get("status")), " ", run.get("workload") or "", " on ",
                     run.get("backend") or "", f" · seed {run.get('seed')}",
                     f" · preset {run.get('preset')}" if run.get("preset") else "",
                     f" · started {when(run.get('created_at'))}"])
    return page(f"Run {run['run_id']}", subtitle,
                _summary(run),
                _learning_curves(report),
                _test_metrics(report),
                _determinism(run.get("determinism")),
                section("Seeds", pairs(flat_pairs(run.get("seeds")))),
                section("Environment", pairs(environment_pairs(run.get("environment")))),
                section("Configuration", pairs(flat_pairs(run.get("config")))))


def _summary(run):
    metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    rows = [("status", run.get("status")), ("error", run.get("error")),
            ("test accuracy", metrics.get("test_accuracy", run.get("test_accuracy"))),
            ("test loss", metrics.get("test_loss")),
            ("epochs trained", run.get("epochs_trained")),
            ("best epoch (restored)", metrics.get("best_epoch")),
            ("best val_loss", metrics.get("best_val_loss")),
            ("weights fingerprint", Html(tag("code", short_fingerprint(run.get("fingerprint"))))
             if run.get("fingerprint") else None),
            ("wall time", f"{wall_time(run):.1f} s" if wall_time(run) else None),
            *group_pairs(run),
            ("finished", when(run.get("finished_at")))]
    return section("Summary", pairs(rows))


def _learning_curves(report):
    history = report["run"].get("history") or []
    if not history:
        return section("Learning curves", paragraph("No epochs were recorded for this run.",
                                                    class_="note"))
    marks = []
    last, best = report.get("last_epoch"), report.get("best_epoch")
    if isinstance(last, int):
        marks.append((last, f"stopped after epoch {last}"))
    if isinstance(best, int):
        marks.append((best, f"restored best: epoch {best}"))
    plots = []
    for title, names in CURVES:
        series = [(name, [e["epoch"] for e in history if name in e],
                   [e[name] for e in history if name in e]) for name in names]
        series = [s for s in series if s[1]]
        if series:
            plots.append(figure(svg.line_chart(series, title=title, x_label="epoch",
                                               y_label=title, marks=marks)))
    others = sorted({key for e in history for key in e} - {"epoch"}
                    - {name for _, names in CURVES for name in names})
    for name in others:
        points = [(e["epoch"], e[name]) for e in history
                  if isinstance(e.get(name), (int, float)) and not isinstance(e.get(name), bool)]
        if points:
            plots.append(figure(svg.line_chart([(name, *zip(*points))], title=name,
                                               x_label="epoch", y_label=name, marks=marks)))
    caption = paragraph("Dashed lines: the last epoch trained (early stopping ends training "
                        "there) and the epoch whose weights were restored as the best.",
                        class_="note")
    return section("Learning curves", tag("div", plots, class_="grid"), caption)


def _test_metrics(report):
    metrics = report["run"].get("metrics")
    if not isinstance(metrics, dict):
        return Html("")
    names = report.get("class_names") or []
    parts = []  # the heatmap and the per-class table side by side on a wide screen
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, list) and matrix:
        parts.append(figure(svg.heatmap(matrix, title="confusion matrix (test set)",
                                        row_labels=names, column_labels=names,
                                        x_label="predicted class", y_label="true class"),
                            "Rows: the true class; columns: the predicted class; each cell "
                            "counts test images."))
    per_class = metrics.get("per_class")
    if isinstance(per_class, dict) and per_class:
        columns = [c for c in ("precision", "recall", "f1", "support") if c in per_class]
        columns += sorted(set(per_class) - set(columns))
        count = max(len(per_class[c]) for c in columns if isinstance(per_class[c], list))
        rows = [[names[i] if i < len(names) else i] +
                [_at(per_class[c], i) for c in columns] for i in range(count)]
        parts.append(table(["class", *columns], rows, numeric=set(columns)))
    scalars = {key: value for key, value in metrics.items()
               if key not in ("confusion_matrix", "per_class")}
    return section("Test metrics", tag("div", parts, class_="grid"), pairs(flat_pairs(scalars)))


def _at(values, i):
    return values[i] if isinstance(values, list) and i < len(values) else None


def _determinism(report):
    if not report:
        return section("Determinism", paragraph("No determinism report was stored.",
                                                class_="note"))
    controls = report.get("controls") if isinstance(report, dict) else None
    parts = []
    if isinstance(controls, list):
        rows = [[c.get("name"), Html(tag("span", c.get("state"),
                                         class_="state-" + _css(c.get("state")))),
                 c.get("detail")] for c in controls if isinstance(c, dict)]
        parts.append(table(["control", "state", "detail"], rows))
        rest = {key: value for key, value in report.items() if key not in ("controls", "seeds")}
        parts.append(pairs(flat_pairs(rest)))
    else:
        parts.append(pairs(flat_pairs(report)))
    return section("Determinism", *parts)


def _css(state):
    return "".join(ch if ch.isalnum() else "-" for ch in str(state or "")).strip("-") or "unknown"
