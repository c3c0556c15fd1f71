"""`twinrun report`: the page, Markdown and JSON of a stored record, without a browser.

The records here are written through the real store API (no training), with names that are
HTML; the browser tests (test_report_browser.py) render real trainings' records in Chromium.
"""

import html
import json
import re

import numpy as np
import pytest

from conftest import assert_one_sentence_error, requires_data, run_cli
from twinrun.report.html import render_html
from twinrun.report.html.page import escape
from twinrun.report.html.svg import heatmap, line_chart, thin
from twinrun.report.markdown import render_markdown
from twinrun.report.records import load_report
from twinrun.store import Store
from twinrun.studies.plan import plan_cv, plan_variance

SCRIPT_TAG = "<script>alert(1)</script>"
ATTRIBUTE_BREAK = '"><img src=x onerror=alert(1)>'


def record_hostile_run(store_path):
    """A finished run whose every user-supplied string is HTML; returns its id."""
    with Store(store_path) as store:
        run_id = store.start_run(
            workload=SCRIPT_TAG, backend="torch", seed=0,
            config={"preset": SCRIPT_TAG, "script": ATTRIBUTE_BREAK},
            seeds={SCRIPT_TAG: 1},
            determinism={"backend": "torch", "controls": [
                {"name": SCRIPT_TAG, "state": ATTRIBUTE_BREAK, "detail": ATTRIBUTE_BREAK}]},
            environment={"hostname": SCRIPT_TAG, "env": {"KERAS_BACKEND": ATTRIBUTE_BREAK}})
        for epoch in (1, 2, 3):
            store.record_epoch(run_id, epoch, {"loss": 1.0 / epoch, "val_loss": 1.2 / epoch,
                                               "accuracy": 0.5 + epoch / 10,
                                               "val_accuracy": 0.45 + epoch / 10,
                                               SCRIPT_TAG: float(epoch)})
        store.finish_run(run_id, fingerprint=ATTRIBUTE_BREAK, epochs_trained=3, wall_time=1.0,
                         metrics={"test_accuracy": 0.75, "best_epoch": 2,
                                  "confusion_matrix": [[3, 1], [1, 3]],
                                  "class_names": [SCRIPT_TAG, ATTRIBUTE_BREAK],
                                  "per_class": {"precision": [0.75, 0.75],
                                                "recall": [0.75, 0.75], "f1": [0.75, 0.75]},
                                  ATTRIBUTE_BREAK: 1})
    return run_id


@pytest.fixture
def hostile_run(tmp_path):
    store_path = tmp_path / "store"
    return store_path, record_hostile_run(store_path)


def test_escape_turns_every_markup_character_into_an_entity():
    assert escape(ATTRIBUTE_BREAK) == "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
    assert escape(SCRIPT_TAG) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escape("it's") == "it&#x27;s"


def test_a_run_page_shows_html_names_as_text_and_holds_no_markup_of_its_own_from_them(hostile_run):
    store_path, run_id = hostile_run
    with Store(store_path, create=False) as store:
        page = render_html(load_report(store, run_id))
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "http://" not in page and "https://" not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert html.unescape(csp).startswith("default-src 'none';")  # no script, nothing fetched
    assert '<meta name="viewport"' in page


def test_a_run_page_draws_learning_curves_with_both_marks_and_a_confusion_heatmap(hostile_run):
    store_path, run_id = hostile_run
    with Store(store_path, create=False) as store:
        page = render_html(load_report(store, run_id))
    assert page.count("<svg") == 4  # loss, accuracy, the run's own metric, the confusion matrix
    assert "stopped after epoch 3" in page and "restored best: epoch 2" in page
    assert page.count('<rect class="data"') == 4  # one cell per count of the 2x2 matrix


def test_markdown_escapes_html_and_markdown_in_user_strings(hostile_run):
    store_path, run_id = hostile_run
    with Store(store_path, create=False) as store:
        text = render_markdown(load_report(store, run_id))
    assert "<script" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "best epoch (restored) | 2" in text


def test_the_cli_writes_each_format_and_json_holds_the_stored_record(hostile_run, tmp_path):
    store_path, run_id = hostile_run
    for fmt in ("html", "md", "json"):
        out = tmp_path / f"report.{fmt}"
        completed = run_cli("report", run_id[:12], "--store", store_path, "-o", out)
        assert completed.returncode == 0, completed.stderr
        assert f"Wrote the {fmt} report of {run_id}" in completed.stdout
        text = out.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["kind"] == "run" and data["best_epoch"] == 2 and data["last_epoch"] == 3
    assert data["run"]["workload"] == SCRIPT_TAG
    assert [e["loss"] for e in data["run"]["history"]] == [1.0, 0.5, 1.0 / 3]


def test_without_output_html_goes_to_a_file_named_after_the_record_and_md_to_stdout(hostile_run,
                                                                                  tmp_path):
    store_path, run_id = hostile_run
    completed = run_cli("report", run_id, "--store", store_path, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / f"{run_id}.html").read_text().startswith("<!DOCTYPE html>")
    completed = run_cli("report", run_id, "--store", store_path, "--format", "md", cwd=tmp_path)
    assert completed.stdout.startswith(f"# Run {run_id}")


def test_an_unknown_id_a_missing_store_and_an_unwritable_file_are_one_sentence_errors(
        hostile_run, tmp_path):
    store_path, run_id = hostile_run
    assert_one_sentence_error(run_cli("report", "nope", "--store", store_path), "No run nope")
    assert_one_sentence_error(run_cli("report", "check-nope", "--store", store_path),
                              "No check check-nope")
    assert_one_sentence_error(run_cli("report", run_id, "--store", tmp_path / "none"),
                              "There is no run store")
    assert_one_sentence_error(
        run_cli("report", run_id, "--store", store_path, "-o", tmp_path / "no" / "x.html"),
        "Cannot write the report")
    unknown_format = run_cli("report", run_id, "--store", store_path, "--format", "pdf")
    assert unknown_format.returncode == 2 and "Traceback" not in unknown_format.stderr
    assert "'pdf' is not one of 'html', 'md', 'json'" in unknown_format.stderr


def test_thinning_keeps_the_extremes_of_a_long_curve():
    ys = [0.0] * 100_000
    ys[31_337] = 5.0
    ys[77_777] = -5.0
    kept = thin(range(len(ys)), ys, max_points=500)
    assert len(kept) <= 500
    assert (31_337, 5.0) in kept and (77_777, -5.0) in kept


def test_a_log_scale_chart_leaves_out_zeros_and_an_empty_chart_says_so():
    chart = line_chart([("d", [0, 1, 2], [0.0, 1e-6, 1e-2])], title="t", x_label="x",
                       y_label="y", log_y=True)
    points = re.search(r'<polyline class="data" points="([^"]+)"', chart).group(1).split()
    assert len(points) == 2
    assert "1e-6" in chart and "1e-2" in chart
    empty = line_chart([("d", [0, 1], [0.0, -1.0])], title="t", x_label="x", y_label="y",
                       log_y=True)
    assert "no values to plot" in empty and 'class="data"' not in empty


def test_heatmap_labels_are_escaped():
    chart = heatmap([[1]], title=SCRIPT_TAG, row_labels=[ATTRIBUTE_BREAK],
                    column_labels=[SCRIPT_TAG])
    assert "<script" not in chart and "<img" not in chart


def test_a_full_preset_sized_check_page_stays_under_two_megabytes():
    # The size of `twinrun check --preset full` (150,000 steps, 2 replicas, loss growth at
    # its 2,000-row cap, 60 epochs), with the shapes the store and the traces give.
    steps = 150_000
    losses = [{"replica": r, "steps": list(range(steps)),
               "loss": [2.3 / (1 + s / 5000) + 0.01 * ((s * 7919 + r) % 13) for s in range(steps)]}
              for r in (0, 1)]
    verdict = {
        "verdict": "diverged", "steps_compared": steps,
        "replicas": [{"label": f"replica {r}", "steps": steps, "stopped_early": False,
                      "fingerprint": "ab" * 8, "final_loss": 0.3, "metrics": {"loss": 0.3},
                      "run_id": f"run-{r}"} for r in (0, 1)],
        "first_divergence": {"step": 137, "epoch": 0, "records": ["variables"],
                             "variables": [f"layer_{i}/kernel" for i in range(400)],
                             "layer": {"name": "conv2d_1", "class": "Conv2D", "index": 2}},
        "loss_growth": [{"step": 137 + i, "max_abs_loss_diff": 1e-7 * (1 + i),
                         "max_rel_loss_diff": 1e-7} for i in range(2000)],
        "weight_distance": [{"epoch": e, "max_relative_distance": 1e-4 * e} for e in range(1, 61)],
        "environment_diff": [{"key": f"env.K{i}", "values": ["a" * 50, "b" * 50]}
                             for i in range(50)],
        "likely_causes": ["x"], "notes": ["y"], "localization": None}
    report = {"kind": "check", "verdict": verdict, "replica_losses": losses,
              "check": {"check_id": "check-x", "label": "fashion-cnn", "kind": "workload",
                        "created_at": "2026-01-01T00:00:00+00:00", "folder": None}}
    page = render_html(report)
    assert len(page.encode("utf-8")) < 2_000_000
    assert page.count("<svg") == 3
    assert "and 200 more" in page  # 400 differing tensors: the first 200 are named


# -- studies -----------------------------------------------------------------------------------

N_TEST = 10_000  # Fashion-MNIST's test images: each run keeps one byte per image


def record_study(store_path, runs=10, sources="init,order,dropout,split,all", failed=()):
    """A variance study of the built-in workload written as its driver writes it (no training),
    with predictions of every test image and HTML in the stored error and definition."""
    from test_studies_cli import BASE, record

    plan = plan_variance(runs, sources, base={**BASE, "label": SCRIPT_TAG})
    spread = {"init": 0.004, "order": 0.002, "all": 0.006}

    def metrics(run):
        level = next(iter(run.levels.values()))
        return {"test_accuracy": 0.85 + spread.get(run.source, 0.001) * (level - runs / 2),
                "test_loss": 0.4, "best_val_loss": 0.38, "stopped_epoch": 3}

    def predictions(run):
        return np.random.default_rng(run.position).integers(0, 10, N_TEST, np.uint8).tobytes()

    with Store(store_path) as store:
        record(store, plan, metrics, predictions=predictions, failed=failed)
        for run in store.study_runs(plan.study_id):
            if run["study_key"] in failed:
                store.fail_run(run["run_id"], ATTRIBUTE_BREAK)
    return plan


def record_cv(store_path, folds=5, offset=0.0):
    from test_studies_cli import BASE, record

    plan = plan_cv(folds, base=BASE)
    with Store(store_path) as store:
        record(store, plan, lambda run: {"test_accuracy": 0.86 + offset + 0.002 * run.position,
                                         "test_loss": 0.4, "best_val_loss": 0.38,
                                         "stopped_epoch": 3})
    return plan


def drawn(page):
    """For each <svg> of a page: how many drawn values (`class="data"`) it holds."""
    return [svg.count('class="data"') + svg.count('class="bar data"')
            for svg in page.split("<svg")[1:]]


@requires_data  # the independent-errors floor needs the test labels
def test_a_fifty_run_study_page_draws_every_plot_stays_small_and_shows_stored_text_as_text(
        tmp_path):
    plan = record_study(tmp_path, failed=("order/3",))
    with Store(tmp_path, create=False) as store:
        page = render_html(load_report(store, plan.study_id))
    assert len(page.encode("utf-8")) < 2_000_000
    for heading in ("Distributions by source", "Variance by source", "Prediction disagreement",
                    "Statistics", "Notes", "Runs"):
        assert f"<h2>{heading}</h2>" in page
    # strips (one dot per finished run), share of all, SD against the floor, disagreement
    assert drawn(page) == [49, 5, 5, 5]
    assert "independent-errors floor" in page and "share of the all-sources variance" in page
    assert "<script" not in page and "<img" not in page
    assert escape(SCRIPT_TAG) in page and escape(ATTRIBUTE_BREAK) in page
    assert "http://" not in page and "https://" not in page


def test_a_cv_page_has_its_fold_table_and_a_strip_of_the_folds_with_their_ci(tmp_path):
    plan = record_cv(tmp_path)
    with Store(tmp_path, create=False) as store:
        report = load_report(store, plan.study_id[:6])
        page = render_html(report)
    assert report["kind"] == "study" and report["results"]["n_splits"] == 5
    assert drawn(page) == [5] and 'class="interval"' in page
    table = page.split("<h2>Fold table</h2>")[1].split("</table>")[0]
    assert table.count("<tr>") == 6 and "repeat=0,fold=4" in table and "0.868" in table
    text = render_markdown(report)
    assert "## Folds" in text and "| repeat=0,fold=4 | 0.868 |" in text


def test_report_against_a_second_study_gives_the_compare_verdict_with_its_ci(tmp_path):
    a, b = record_cv(tmp_path), record_cv(tmp_path, folds=4, offset=0.01)
    out = tmp_path / "compare.html"
    completed = run_cli("report", a.study_id, "--against", b.study_id, "--store", tmp_path,
                        "-o", out)
    assert completed.returncode == 0, completed.stderr
    assert f"Wrote the html report of {a.study_id}-vs-{b.study_id}" in completed.stdout
    page = out.read_text(encoding="utf-8")
    assert f"{b.study_id} beats {a.study_id}" in page
    assert drawn(page) == [9, 1]  # both arms' runs; the difference with its CI
    data = json.loads(run_cli("report", a.study_id, "--against", b.study_id, "--store",
                              tmp_path, "--format", "json", "-o", "-").stdout)
    assert data["kind"] == "compare" and data["compare"]["ci95"][0] > 0
    assert [len(arm["runs"]) for arm in data["arms"]] == [5, 4]
    assert_one_sentence_error(run_cli("report", a.study_id, "--against", "nope", "--store",
                                      tmp_path), "No study nope")


def test_report_option_writes_a_studys_page_or_prints_the_command_that_makes_it(tmp_path):
    plan = record_cv(tmp_path / "store")
    hint = run_cli("resume", plan.study_id, "--store", tmp_path / "store")
    assert hint.returncode == 0, hint.stderr
    assert hint.stdout.rstrip().splitlines()[-1] == (
        f"Report: twinrun report {plan.study_id} --store {tmp_path / 'store'} "
        f"-o {plan.study_id}.html")
    written = run_cli("resume", plan.study_id, "--store", tmp_path / "store", "--json",
                      "--report", tmp_path / "cv.md")
    assert written.returncode == 0, written.stderr
    assert json.loads(written.stdout)["study_id"] == plan.study_id  # stdout stays one object
    assert f"Wrote the md report of {plan.study_id}" in written.stderr
    assert (tmp_path / "cv.md").read_text().startswith(f"# Study {plan.study_id}")
    assert_one_sentence_error(run_cli("resume", plan.study_id, "--store", tmp_path / "store",
                                      "--report", tmp_path / "no" / "cv.html"),
                              "does not exist")
