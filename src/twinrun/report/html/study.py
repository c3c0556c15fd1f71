"""The HTML page of a stored study, and of two studies compared.

- a variance study: every run's value per source of randomness (dots, with the mean's 95 % CI),
  each source's share of the `all` variance and its SD against the independent-errors floor,
  how often two runs predict a test image differently, the crossed ANOVA where there is one;
- a cross-validation: the folds' values with the mean's CI, and the fold table;
- a comparison (`twinrun report A --against B`): both arms' runs, the difference of means with
  its bootstrap CI, the tests, and the one-line reading.

Each page ends with the runs, failures and the study's definition. Numbers come as
`twinrun.studies.results` computed them; this module only lays them out.
"""

from twinrun.report.headline import FEW_RUNS
from twinrun.report.formatting import interval, number
from twinrun.report.html import svg
from twinrun.report.html.page import (Html, figure, join, page, pairs, paragraph, prose,
                                      section, table, tag)
from twinrun.report.html.shared import flat_pairs, status_badge, when
from twinrun.report.html.strip import strip_chart

METRIC_WORDS = {"test_accuracy": "test accuracy", "test_loss": "test loss",
                "best_val_loss": "best val_loss", "stopped_epoch": "epoch early stopping "
                                                                   "stopped at"}


def render(report):
    """The page of `twinrun.report.records.study_report(...)` as one HTML document (`Html`).

    Arguments:
        report: the dict `study_report` returns (`kind` "study").
    """
    study, results = report["study"], report["results"]
    metric = results["metric"]
    subtitle = join([status_badge(study.get("status")), " ",
                     _kind_words(study), f" of {_metric_words(metric)}",
                     f" · {results.get('finished')} of {results.get('planned')} runs finished",
                     f" · started {when(study.get('created_at'))}"])
    if results.get("kind") == "cv":
        body = [_headline(results), _cv_folds(report), _cv_table(results)]
    else:
        body = [_headline(results), _variance_distributions(report), _variance_spread(results),
                _disagreement(results), _variance_table(results), _anova(results.get("anova"))]
    return page(f"Study {study['study_id']}", subtitle, *body,
                _notes(results),
                _runs_table(report["runs"], metric),
                _definition(study))


def render_compare(report):
    """The page of `twinrun.report.records.compare_report(...)` (`kind` "compare").

    Arguments:
        report: the dict `compare_report` returns.
    """
    results, arms = report["compare"], report["arms"]
    metric = results["metric"]
    badge = tag("span", "distinguishable" if results.get("distinguishable")
                else "within seed noise",
                class_="verdict " + ("good" if results.get("distinguishable") else "bad"))
    subtitle = join([badge, f" · {_metric_words(metric)} · "
                            f"{results.get('n_a')} against {results.get('n_b')} runs"])
    return page(f"Study {results['study_a']} against {results['study_b']}", subtitle,
                _compare_verdict(results),
                _compare_plots(results, arms),
                _compare_tests(results),
                *[_runs_table(arm["runs"], arm["metric"], title=f"Runs of arm {arm['arm']} "
                                                              f"({arm['study']['study_id']})")
                  for arm in arms],
                *[_definition(arm["study"], title=f"Arm {arm['arm']}: how "
                                                  f"{arm['study']['study_id']} was defined")
                  for arm in arms])


# -- words -------------------------------------------------------------------------------------

def _metric_words(metric):
    return METRIC_WORDS.get(metric, metric)


def _kind_words(study):
    definition = study.get("definition") or {}
    if study.get("kind") == "cv":
        repeats = definition.get("repeats") or 1
        return (f"{definition.get('folds')}-fold cross-validation"
                + (f", {repeats} repeats" if repeats > 1 else ""))
    sources = ", ".join(str(s) for s in definition.get("sources") or [])
    design = " (crossed)" if definition.get("design") == "crossed" else ""
    return f"variance study{design} over {sources}"


def _percent(value, digits=2):
    return "" if value is None else f"{100 * value:.{digits}f} %"


def _points(runs, source=None):
    return [(run["key"], run["value"]) for run in runs
            if run["value"] is not None and (source is None or run["source"] == source)]


def _headline(results):
    """The study's one sentence, first, and the warning its intervals carry with few runs."""
    from twinrun.report.headline import (cv_interval_notes, study_reading,
                                         variance_table_notes)

    reading = study_reading(results)
    parts = [tag("p", reading["headline"], class_="headline", id="headline")]
    notes = (cv_interval_notes(results) if results.get("kind") == "cv"
             else variance_table_notes(results))
    parts += [tag("p", note, class_="warn few-runs") for note in notes
              if note.startswith("Warning")]
    return Html("".join(parts))


def _axis_range(metric):
    from twinrun.studies.stats import metric_range

    return metric_range(metric)


# -- variance ----------------------------------------------------------------------------------

def _variance_distributions(report):
    results = report["results"]
    groups = [(source, _points(report["runs"], source), line.get("mean"), line.get("ci95"))
              for source, line in results["sources"].items()]
    chart = strip_chart(groups, title=f"{_metric_words(results['metric'])} by source",
                        y_label=results["metric"], y_range=_axis_range(results["metric"]))
    return section("Distributions by source", figure(
        chart, "Each dot is one run, varying only that source's seed (all: every source at "
               "once). Beside the dots: the mean (diamond) and its 95 % CI (Student t)."))


def _variance_spread(results):
    sources = results["sources"]
    plots = []
    if any(line.get("share") is not None for line in sources.values()):
        floor_share = _floor_share(sources.get("all") or {})
        reference = ((floor_share, f"independent-errors floor: {_percent(floor_share, 0)}")
                     if floor_share is not None else None)
        shares = {source: line for source, line in sources.items()
                  if line.get("share") is not None}
        # With a few runs the F interval of a share reaches 40 and more: drawn in full it
        # would flatten every bar, so it is cut at the top of the chart and the caption says so.
        top = max(1.5, 1.25 * max(line["share"] for line in shares.values()))
        bars, cut = [], False
        for source, line in shares.items():
            low, high = line.get("share_ci95") or [None, None]
            cut = cut or (high is not None and high > top)
            bars.append((source, line["share"], low, min(high, top) if high is not None
                         else None))
        plots.append(figure(
            svg.bar_chart(bars, title="share of the all-sources variance",
                          y_label="variance / variance of all", reference=reference),
            prose("Each source's variance over the variance of the runs that vary everything, with "
            "its 95 % CI (F distribution). The dashed line: the share that test-set sampling "
            "alone would give (the independent-errors floor of the all runs)."
            + (" Intervals that reach past the chart are cut at its top: with this few runs "
               "a share is known only roughly (`--format json` gives each interval in full)."
               if cut else ""))))
    floors = [line.get("floor_sd") for line in sources.values() if line.get("floor_sd")]
    bars = [(source, line["sd"], *_sd_band(line)) for source, line in sources.items()
            if line.get("sd") is not None]
    if bars:
        floor = (sources.get("all") or {}).get("floor_sd") or (max(floors) if floors else None)
        reference = (floor, f"independent-errors floor: {number(floor, 3)}") if floor else None
        plots.append(figure(
            svg.bar_chart(bars, title=f"SD of {_metric_words(results['metric'])} by source",
                          y_label="standard deviation", reference=reference),
            "Each source's SD across its runs, ± the SD's own standard error "
            "(≈ SD/√(2(n−1))). The dashed line: the SD test-set sampling alone would give, "
            "√(Σ pᵢ(1−pᵢ))/n_test."))
    if not plots:
        return section("Variance by source", paragraph(
            "Each source needs at least two finished runs for a spread.", class_="note"))
    return section("Variance by source", tag("div", plots, class_="grid"))


def _floor_share(line):
    floor, sd = line.get("floor_sd"), line.get("sd")
    if not floor or not sd:
        return None
    return (floor / sd) ** 2


def _sd_band(line):
    sd, err = line.get("sd"), line.get("sd_err")
    if sd is None or err is None:
        return (None, None)
    return (max(sd - err, 0.0), sd + err)


def _disagreement(results):
    sources = results["sources"]
    bars = [(source, line["disagreement"]) for source, line in sources.items()
            if line.get("disagreement") is not None]
    if not bars:
        return section("Prediction disagreement", paragraph(
            "The runs kept no test predictions, so how often two runs disagree cannot be "
            "shown.", class_="note"))
    parts = [figure(svg.bar_chart(bars, title="test images two runs predict differently",
                                  y_label="fraction of test images"),
                    "The mean, over pairs of runs of one source, of the fraction of test images "
                    "on which the two predict different classes.")]
    # The per-class table below the plot, not beside it: on a phone a grid cell would not
    # scroll, it would widen the page.
    spread = {source: line["class_accuracy_sd"] for source, line in sources.items()
              if isinstance(line.get("class_accuracy_sd"), dict)}
    if spread:
        classes = list(next(iter(spread.values())))
        rows = [[_class_name(name, len(classes)),
                 *[(spread[source] or {}).get(name) for source in spread]] for name in classes]
        parts += [paragraph("SD across runs of each class's test accuracy:"),
                  table(["class", *spread], rows, numeric=set(spread))]
    return section("Prediction disagreement", *parts)


def _class_name(key, count):
    """Fashion-MNIST's name for class `key` (`"0"`: `T-shirt/top`) when the runs predict its
    ten classes; the key itself otherwise."""
    from twinrun.workloads.fashion_mnist import CLASS_NAMES

    text = str(key)
    if count == len(CLASS_NAMES) and text.isdigit() and int(text) < len(CLASS_NAMES):
        return f"{CLASS_NAMES[int(text)]} ({text})"
    return text


def _variance_table(results):
    columns = ["source", "n", "mean", "SD ± err", "95% CI (t)", "95% CI (bootstrap)", "min",
               "max", "share of all", "disagree", "floor SD", "effect"]
    rows = []
    for source, line in results["sources"].items():
        sd = "" if line.get("sd") is None else \
            f"{number(line['sd'], 4)} ± {number(line.get('sd_err'), 2)}"
        few = "*" if (line.get("n") or 0) < FEW_RUNS and line.get("ci95") else ""
        rows.append([source, line.get("n"), number(line.get("mean"), 5), sd,
                     interval(line.get("ci95"), form=number) + few,
                     interval(line.get("ci95_bootstrap"), form=number) + few,
                     number(line.get("min"), 5), number(line.get("max"), 5),
                     _percent(line.get("share"), 0) or "—",
                     _percent(line.get("disagreement")) or "—",
                     number(line.get("floor_sd"), 3) or "—",
                     "yes" if line.get("effect") else Html(tag("span", "no effect here",
                                                              class_="state-off"))])
    notes = [tag("li", [tag("b", source), ": ", line["note"]])
             for source, line in results["sources"].items() if line.get("note")]
    from twinrun.report.headline import variance_table_notes

    explained = [paragraph(note, class_="warn" if note.startswith("Warning") else "note")
                 for note in variance_table_notes(results)]
    return section("Statistics", table(columns, rows, numeric=set(columns[1:-1])), *explained,
                   tag("ul", notes, class_="note") if notes else Html(""))


def _anova(anova):
    if not anova:
        return Html("")
    if "error" in anova:
        return section("Crossed design", paragraph(anova["error"], class_="note"))
    rows = [[name, number(c.get("variance"), 6), number(c.get("sd"), 5),
             _percent(c.get("share"), 0), "clipped to 0" if c.get("clipped") else ""]
            for name, c in (anova.get("components") or {}).items()]
    extra = [paragraph(anova["note"])] if anova.get("note") else []
    extra += [paragraph(flag, class_="note") for flag in anova.get("flags") or []]
    return section("Crossed design: two-way random-effects ANOVA",
                   table(["component", "variance", "SD", "share", "note"], rows,
                         numeric={"variance", "SD", "share"}), *extra)


# -- cross-validation --------------------------------------------------------------------------

def _cv_folds(report):
    results = report["results"]
    corrected = results.get("ci95_corrected")
    interval = corrected or results.get("ci95")
    groups = [("folds", _points(report["runs"]), results.get("mean"), interval)]
    chart = strip_chart(groups, title=f"{_metric_words(results['metric'])} by fold",
                        y_label=results["metric"], y_range=_axis_range(results["metric"]))
    tests = results.get("tests") or {}
    which = (f"{tests.get('ci95_corrected') or 'Nadeau & Bengio'}, corrected for the folds' "
             f"shared training data; the table below also gives the uncorrected interval"
             if corrected else f"{tests.get('ci95') or 'Student t'} over folds")
    return section("Folds", figure(
        chart, "Each dot is one fold, evaluated on the test set after early-stopping on its "
               f"held-out part. Beside them: the mean and its 95 % CI, {which}."))


def _cv_table(results):
    folds = results.get("cross_validate") or {}
    columns = ["fold", "test accuracy", "test loss", "best val_loss", "stopped at epoch",
               "fit time"]
    names = ["test_accuracy", "test_loss", "val_loss", "stopped_epoch", "fit_time"]
    rows = []
    for i, key in enumerate(results.get("fold_keys") or []):
        row = [key]
        for name in names:
            values = folds.get(name)
            value = values[i] if values is not None and i < len(values) else None
            if name == "fit_time" and value is not None:
                row.append(f"{value:.1f} s")
            elif name == "stopped_epoch" and value is not None:
                row.append(str(int(value)))
            else:
                row.append(number(value, 5))
        rows.append(row)
    summary = [("metric", _metric_words(results["metric"])),
               ("mean", number(results.get("mean"), 5)),
               ("SD ± its error", f"{number(results.get('sd'), 4)} ± "
                                  f"{number(results.get('sd_err'), 2)}"
                if results.get("sd") is not None else None),
               (f"95 % CI ({(results.get('tests') or {}).get('ci95') or 'Student t'} over "
                f"folds)", interval(results.get("ci95"), form=number)),
               ("95 % CI (bootstrap)", interval(results.get("ci95_bootstrap"), form=number)),
               ("95 % CI corrected for shared training data",
                interval(results.get("ci95_corrected"), form=number))]
    from twinrun.report.headline import cv_interval_notes

    return section("Fold table", table(columns, rows, numeric=set(columns)), pairs(summary),
                   *[paragraph(note, class_="warn" if note.startswith("Warning") else "note")
                     for note in cv_interval_notes(results)])


# -- comparison --------------------------------------------------------------------------------

def _compare_verdict(results):
    parts = [tag("p", tag("b", results.get("reading")))]
    parts += [paragraph("Warning: ", warning, class_="note")
              for warning in results.get("warnings") or []]
    if results.get("environment_note"):
        parts.append(paragraph(results["environment_note"], class_="note"))
    return section("Verdict", *parts)


def _compare_plots(results, arms):
    groups = [(f"{arm['arm']}: {arm['study']['study_id']}", _points(arm["runs"]),
               results.get("mean_a" if arm["arm"] == "A" else "mean_b"), arm.get("ci95"))
              for arm in arms]
    plots = [figure(strip_chart(groups, title=f"{_metric_words(results['metric'])}, A and B",
                                y_label=results["metric"],
                                y_range=_axis_range(results["metric"])),
                    "Each dot is one run of the arm; beside them, the arm's mean and its 95 % "
                    "CI (Student t).")]
    ci = results.get("ci95") or [None, None]
    plots.append(figure(
        svg.bar_chart([("B − A", results.get("difference"), *ci)],
                      title="difference of means, B − A", y_label=f"Δ {results['metric']}",
                      reference=(0.0, "no difference")),
        "The difference of the arms' means with its 95 % CI "
        f"({(results.get('tests') or {}).get('ci95', 'bootstrap')}). An interval that "
        "crosses the dashed line does not tell B from A."))
    return section("A against B", tag("div", plots, class_="grid"))


def _compare_tests(results):
    tests = results.get("tests") or {}
    rows = [
        ["difference B − A", f"{number(results.get('difference'), 5)}, 95 % CI "
                             f"{interval(results.get('ci95'), 5, form=number)}", tests.get("ci95")],
        ["Welch's t-test", f"p = {_p(results.get('p_welch'))}", tests.get("p_welch")],
        ["permutation test", f"p = {_p(results.get('p_permutation'))}"
                             + (" (exact)" if results.get("permutation_exact") else ""),
         tests.get("p_permutation")],
        ["P(A beats B)", f"{number(results.get('p_a_beats_b'), 3)}, 95 % CI "
                         f"{interval(results.get('p_a_beats_b_ci95'), 3, form=number)}",
         tests.get("p_a_beats_b")],
        ["Cohen's d", number(results.get("cohen_d"), 3), None],
        ["runs for 80 % power", "" if results.get("runs_for_power80") is None else
         f"{results['runs_for_power80']} per arm", tests.get("runs_for_power80")],
    ]
    arms = [["A", results.get("study_a"), results.get("source_a"), results.get("n_a"),
             number(results.get("mean_a"), 5), number(results.get("sd_a"), 4)],
            ["B", results.get("study_b"), results.get("source_b"), results.get("n_b"),
             number(results.get("mean_b"), 5), number(results.get("sd_b"), 4)]]
    return section("Is the difference more than seed noise?",
                   table(["arm", "study", "runs", "n", "mean", "SD"], arms,
                         numeric={"n", "mean", "SD"}),
                   table(["test", "result", "method"], rows))


def _p(value):
    if value is None:
        return ""
    return "< 0.001" if value < 0.001 else f"{value:.3g}"


# -- common ------------------------------------------------------------------------------------

def _notes(results):
    parts = []
    notes = list(results.get("notes") or [])
    if results.get("environment_note"):
        notes.append(results["environment_note"])
    if results.get("unread_seeds"):
        notes.append("Your script never read the seed of " +
                     ", ".join(results["unread_seeds"]) + ".")
    if notes:
        parts.append(tag("ul", [tag("li", prose(note)) for note in notes], class_="note"))
    failures = results.get("failures") or []
    if failures:
        parts.append(paragraph(f"{len(failures)} of {results.get('planned')} runs failed or "
                               f"were stopped; the statistics use the "
                               f"{results.get('finished')} finished runs."))
        parts.append(table(["run", "status", "error"],
                           [[f.get("key"), f.get("status"), f.get("error")] for f in failures]))
    if results.get("missing"):
        parts.append(paragraph(f"{results['missing']} of {results.get('planned')} planned runs "
                               "have not run; ",
                               tag("code", f"twinrun resume {results['study_id']}"),
                               " runs them.", class_="note"))
    return section("Notes", *parts) if parts else Html("")


def _runs_table(runs, metric, title="Runs"):
    rows = [[run["key"], run["source"], number(run["value"], 6),
             Html(tag("code", run.get("fingerprint") or "")),
             f"{run['wall_time']:.1f} s" if run.get("wall_time") else "", run["run_id"]]
            for run in runs]
    columns = ["run", "source", metric, "weights fingerprint", "wall time", "run id"]
    return section(title, table(columns, rows, numeric={metric, "wall time"}),
                   paragraph(tag("code", "twinrun report RUN_ID"),
                             " makes the page of one run.", class_="note"))


def _definition(study, title="How the study was defined"):
    rows = [("study id", study.get("study_id")), ("status", study.get("status")),
            ("planned runs", study.get("planned")), ("created", when(study.get("created_at"))),
            ("updated", when(study.get("updated_at")))]
    rows += flat_pairs(study.get("definition") or {})
    rows += [(f"options.{name}", value) for name, value in flat_pairs(study.get("options") or {})]
    return section(title, pairs(rows))
