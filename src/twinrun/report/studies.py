"""Studies for the terminal: the variance breakdown, the folds of a CV, A against B, progress.

Tables are Rich tables on a terminal and aligned plain text in a pipe (as `twinrun runs`);
every value that came from the user or the store (study ids, run keys, error messages, notes)
goes in as text, never as Rich markup.
"""

import contextlib
import sys

from rich.console import Console
from rich.text import Text

from twinrun.report.formatting import console, decimals, duration, interval
from twinrun.report.headline import FEW_RUNS
from twinrun.report.runs import _print_table, _styled
from twinrun.report.text import data_text


def _say(out, *parts, style=""):
    out.print(Text.assemble(*[data_text(p) if isinstance(p, str) else p for p in parts],
                            style=style), soft_wrap=True)


# -- running -----------------------------------------------------------------------------------

def render_study_run(summary, out=None):
    """What a session of `variance`/`cv`/`resume` did: finished, failed (with errors), skipped.

    Arguments:
        summary: `StudyRun.to_dict()`.
    """
    out = out or console()
    parts = [f"Study {summary['study_id']}: {summary['finished']} of {summary['planned']} "
             f"runs finished"]
    if summary["already_done"]:
        parts.append(f"{summary['already_done']} of them before this session")
    if summary["failed"]:
        parts.append(f"{summary['failed']} failed")
    if summary["taken"]:
        parts.append(f"{summary['taken']} being run by another process")
    _say(out, ", ".join(parts) + f" ({duration(summary['wall_time'])}).")
    for key, error in list(summary["errors"].items())[:10]:
        _say(out, "  failed ", (key, "bold"), ": ", (error or "", "red"))
    if summary["planned"] > summary["finished"]:
        _say(out, f"The statistics use the {summary['finished']} finished runs; "
                  f"`twinrun resume {summary['study_id']}` runs the rest.", style="yellow")


# -- variance ----------------------------------------------------------------------------------

def render_study_headline(results, out=None):
    """The study's one sentence (`twinrun.report.headline.study_reading`), first."""
    from twinrun.report.headline import study_reading

    out = out or console()
    reading = study_reading(results)
    _say(out, (reading["headline"], "bold yellow" if reading["few_runs"] else "bold"))
    out.print()


def render_variance(results, out=None):
    """The per-source table of `twinrun variance` (see `studies.results.variance_results`)."""
    out = out or console()
    render_study_headline(results, out)
    metric = results["metric"]
    columns = ["source", "n", "mean", "SD ± err", "95% CI (t)", "95% CI (bootstrap)", "min",
               "max", "share of all", "disagree", "floor SD", "effect"]
    rows = []
    for source, line in results["sources"].items():
        sd = "" if line["sd"] is None else f"{decimals(line['sd'])} ± {decimals(line['sd_err'])}"
        share = "" if line["share"] is None else f"{100 * line['share']:.0f} %"
        disagreement = "" if line["disagreement"] is None else \
            f"{100 * line['disagreement']:.2f} %"
        effect = "yes" if line["effect"] else _styled("no effect here", "yellow")
        few = "*" if (line["n"] or 0) < FEW_RUNS and line["ci95"] else ""
        rows.append([source, line["n"], decimals(line["mean"]), sd, interval(line["ci95"]) + few,
                     interval(line["ci95_bootstrap"]) + few, decimals(line["min"]),
                     decimals(line["max"]), share or "—", disagreement or "—",
                     decimals(line["floor_sd"]) or "—", effect])
    _print_table(out, f"Study {results['study_id']}: {metric} by source of randomness",
                 columns, rows, right_aligned={"n", "mean", "min", "max", "share of all",
                                               "disagree", "floor SD"})
    from twinrun.report.headline import variance_table_notes

    for note in variance_table_notes(results):
        _say(out, (note, "yellow" if note.startswith("Warning") else "dim"))
    for source, line in results["sources"].items():
        if line.get("note"):
            _say(out, (source, "bold"), ": ", line["note"])
        if line.get("floor_sd") is not None and line.get("sd") is not None:
            _say(out, (source, "bold"), f": observed SD {decimals(line['sd'])} against "
                      f"{decimals(line['floor_sd'])} from test-set sampling alone "
                      f"(independent-errors floor).")
    if results.get("anova"):
        _render_anova(results["anova"], out)
    _render_tail(results, out)


def _render_anova(anova, out):
    if "error" in anova:
        _say(out, "Crossed ANOVA: ", (anova["error"], "yellow"))
        return
    columns = ["component", "variance", "SD", "share", "note"]
    rows = [[name, decimals(c["variance"], 6), decimals(c["sd"], 5),
             "" if c["share"] is None else f"{100 * c['share']:.0f} %",
             "clipped to 0" if c["clipped"] else ""]
            for name, c in anova["components"].items()]
    _print_table(out, "Crossed design: two-way random-effects ANOVA", columns, rows,
                 right_aligned={"variance", "SD", "share"})
    if anova.get("note"):
        _say(out, anova["note"])
    for flag in anova.get("flags") or []:
        _say(out, (flag, "yellow"))


def _render_tail(results, out):
    for note in results.get("notes") or []:
        _say(out, (note, "dim"))
    if results.get("environment_note"):
        _say(out, (results["environment_note"], "yellow"))
    failed, missing = results.get("failed", 0), results.get("missing", 0)
    if failed or missing:
        _say(out, f"{results['finished']} of {results['planned']} runs finished; {failed} "
                  f"failed and {missing} not run are left out of these statistics; "
                  f"`twinrun resume {results['study_id']}` runs them.", style="yellow")


# -- cv ----------------------------------------------------------------------------------------

def render_cv(results, out=None):
    """The per-fold table of `twinrun cv` and its mean, SD and CIs."""
    out = out or console()
    render_study_headline(results, out)
    folds = results["cross_validate"]
    columns = ["fold", "test acc", "test loss", "val loss", "stopped", "fit time"]
    rows = []
    for i, key in enumerate(results["fold_keys"]):
        def cell(name, digits=4):
            values = folds.get(name)
            return decimals(values[i], digits) if values is not None else ""

        stopped = folds.get("stopped_epoch")
        rows.append([key, cell("test_accuracy"), cell("test_loss", 5), cell("val_loss", 5),
                     "" if stopped is None else str(int(stopped[i])),
                     duration(folds["fit_time"][i]) if "fit_time" in folds else ""])
    _print_table(out, f"Study {results['study_id']}: {results['n_splits']}-fold "
                      f"cross-validation", columns, rows,
                 right_aligned={"test acc", "test loss", "val loss", "stopped", "fit time"})
    metric = results["metric"]
    _say(out, (metric, "bold"), f": mean {decimals(results['mean'])}, SD "
              f"{decimals(results['sd'])} ± {decimals(results['sd_err'])}, 95 % CI "
              f"{interval(results['ci95'])} over folds, "
              f"{interval(results.get('ci95_corrected'))} corrected for the folds' shared "
              f"training data.")
    from twinrun.report.headline import cv_interval_notes

    for note in cv_interval_notes(results):
        _say(out, (note, "yellow" if note.startswith("Warning") else "dim"))
    _render_tail(results, out)


# -- compare -----------------------------------------------------------------------------------

def render_compare(results, out=None):
    """A against B: each arm's runs, the tests, and the one-line reading."""
    out = out or console()
    metric = results["metric"]
    columns = ["arm", "study", "runs", "n", f"mean {metric}", "SD"]
    rows = [["A", results["study_a"], results["source_a"], results["n_a"],
             decimals(results["mean_a"]), decimals(results["sd_a"])],
            ["B", results["study_b"], results["source_b"], results["n_b"],
             decimals(results["mean_b"]), decimals(results["sd_b"])]]
    _print_table(out, f"A against B on {metric}", columns, rows,
                 right_aligned={"n", f"mean {metric}", "SD"})
    lines = [
        ("difference B - A", f"{decimals(results['difference'], 5)}, 95 % CI "
                             f"{interval(results['ci95'], 5)} (bootstrap)"),
        ("Welch's t-test", f"p = {_p(results['p_welch'])}"),
        ("permutation test", f"p = {_p(results['p_permutation'])}"
                             + (" (exact)" if results.get("permutation_exact") else "")),
        ("P(A beats B)", f"{decimals(results['p_a_beats_b'], 3)}, 95 % CI "
                         f"{interval(results.get('p_a_beats_b_ci95'), 3)}"),
        ("runs for 80 % power", "" if results["runs_for_power80"] is None else
         f"{results['runs_for_power80']} per arm"),
    ]
    _print_table(out, "Is the difference more than seed noise?", ["test", "result"], lines,
                 show_header=False)
    for warning in results.get("warnings") or []:
        _say(out, ("Warning: ", "yellow"), warning)
    style = "bold green" if results.get("distinguishable") else "bold"
    _say(out, (results["reading"], style))
    if results.get("environment_note"):
        _say(out, (results["environment_note"], "yellow"))


def _p(value):
    if value is None:
        return ""
    return "< 0.001" if value < 0.001 else f"{value:.3g}"


# -- the list ----------------------------------------------------------------------------------

STUDY_STATUS_STYLE = {"finished": "green", "incomplete": "yellow", "running": "cyan"}


def render_studies(studies, title, out=None, among=None, wide=False):
    """The table of `twinrun studies` (see `Store.list_studies`); `among` and `wide` as in
    `twinrun.report.runs.render_runs`."""
    from twinrun.report.runs import _when, shown_ids

    out = out or console()
    columns = ["study id", "when", "kind", "status", "finished", "failed", "planned"]
    ids = shown_ids(out, [s["study_id"] for s in studies], among, wide)
    rows = [[ids[s["study_id"]], _when(s["created_at"]), s["kind"],
             _styled(s["status"], STUDY_STATUS_STYLE.get(s["status"])), s["finished"],
             s["failed"], s["planned"]] for s in studies]
    _print_table(out, title, columns, rows, right_aligned={"finished", "failed", "planned"},
                 wide=wide, drop_order=["when", "kind", "planned", "failed"])


# -- progress ----------------------------------------------------------------------------------

def eta_text(seconds):
    """An ETA for people: `"ETA 1m 05s"`, or `"ETA unknown"` before any run has ended.

    Example:
    >>> eta_text(65.2), eta_text(None)
    ('ETA 1m 05s', 'ETA unknown')
    """
    return "ETA unknown" if seconds is None else f"ETA {duration(seconds)}"


def progress_line(state):
    """One line of progress: runs done, running and failed, with the ETA.

    Example:
    >>> from twinrun.studies.runner import Progress
    >>> progress_line(Progress("cv-0a1b", total=10, done=4, running=2, failed=1, eta_s=30.0))
    'cv-0a1b: 4/10 done, 2 running, 1 failed, ETA 30.0 s'
    """
    return (f"{state.study_id}: {state.done}/{state.total} done, {state.running} running, "
            f"{state.failed} failed, {eta_text(state.eta_s)}")


@contextlib.contextmanager
def study_progress(enabled=True, out=None):
    """A progress display for a running study; yields the `progress` callback of `run_study`.

    On a terminal: a Rich progress bar with runs done, running, failed and the ETA. In a
    pipe: a plain line on stderr each time the counts change, so stdout stays the result.
    Disabled: yields None.
    """
    out = out or Console(file=sys.stderr)
    if not enabled:
        yield None
        return
    if not out.is_terminal:
        last = {"line": None}

        def plain(state):
            counts = (state.done, state.running, state.failed)
            if counts != last["line"]:
                last["line"] = counts
                print(progress_line(state), file=out.file, flush=True)

        yield plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                  MofNCompleteColumn(), TextColumn("{task.fields[status]}", markup=False),
                  console=out,
                  transient=False) as bar:
        task = None

        def rich(state):
            nonlocal task
            if task is None:
                task = bar.add_task(state.study_id, total=state.total, status="")
            bar.update(task, completed=state.done,
                       status=f"{state.running} running, {state.failed} failed, "
                              f"{eta_text(state.eta_s)}")

        yield rich
