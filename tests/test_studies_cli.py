"""Studies from the command line without training: bad inputs, and the statistics of studies
recorded in a real store (runs written as a driver writes them, with hand-picked metrics so that
every statistic has a known value), read back, rendered and printed as JSON.

The same commands on studies the real driver ran (every source, a crossed design, `compare A B`,
"no effect here", cv with repeats) are in test_studies_driver.py.
"""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import assert_one_sentence_error, requires_data, run_cli
from twinrun.cli import main
from twinrun.runconfig import RunConfig
from twinrun.store import Store
from twinrun.studies.plan import plan_cv, plan_variance
from twinrun.studies.runner import base_definition

BASE = base_definition(RunConfig(workload="fashion-cnn", preset="quick", backend="jax"))
VARIANCE_KEYS = {"n", "mean", "sd", "sd_err", "ci95", "share", "disagreement", "floor_sd",
                 "effect"}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_cli_error(result, *fragments):
    """CliRunner's view of the error contract: exit 2, one Error: sentence, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def record(store, plan, value, *, fingerprint=None, predictions=None, failed=(),
           environment=None):
    """Write `plan`'s runs as the study driver does: `value(run)` is each run's metrics."""
    store.record_study(plan.study_id, kind=plan.kind, definition=plan.definition,
                       planned=len(plan.runs), options={"metric": "test_accuracy"})
    for run in plan.runs:
        run_id = store.begin_study_run(plan.study_id, run.key, replica=run.position,
                                       workload="fashion-cnn", backend="jax", seed=run.seed,
                                       config={"preset": "quick"}, seeds=run.seeds)
        if run.key in failed:
            store.fail_run(run_id, "The run's process was killed by SIGKILL [red]x[/red].")
            continue
        store.finish_study_run(
            run_id, metrics=value(run), epochs_trained=3, wall_time=10.0 + run.position,
            fingerprint=fingerprint(run) if fingerprint else f"fp-{run.key}",
            predictions=predictions(run) if predictions else None,
            environment=environment(run) if environment else {"cpu": {"model": "Test CPU"}})
    store.set_study_status(plan.study_id, "incomplete" if failed else "finished")


def accuracy(run):
    # A value that differs per run and per source, fixed so the test can recompute it.
    level = next(iter(run.levels.values()))
    spread = {"init": 0.004, "order": 0.002, "nondeterminism": 0.0, "all": 0.006}
    return {"test_accuracy": 0.85 + spread.get(run.source, 0.001) * (level - 1.5),
            "test_loss": 0.40 - 0.01 * level, "best_val_loss": 0.38, "stopped_epoch": 3}


def predicted(run):
    rng = np.random.default_rng(run.position)
    return rng.integers(0, 10, size=50, dtype=np.uint8).tobytes().hex()


# -- bad inputs --------------------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["variance", "--runs", "1"], "Expected --runs to be at least 2"),
    (["variance", "--runs", "3", "--vary", "init,luck"], "Unknown source 'luck'"),
    (["variance", "--runs", "3", "--set", "momentum=0.9"], "Unknown --set key 'momentum'"),
    (["variance", "--runs", "3", "--set", "epochs=two"], "Expected --set epochs to be an integer"),
    (["variance", "--runs", "3", "--metric", "f1"], "Unknown --metric 'f1'"),
    (["variance", "--runs", "3", "--jobs", "2", "--executor", "ray"],
     "--jobs sizes the local pool"),
    (["variance", "--runs", "3", "--gpus-per-run", "0.5"],
     "--gpus-per-run is an option of --executor ray"),
    (["variance", "--runs", "3", "--jobs", "0"], "Expected --jobs to be a positive integer"),
    (["variance", "--runs", "3", "--executor", "ray", "--gpus-per-run", "1.5"], "fraction below 1"),
    (["cv", "--folds", "1"], "Expected --folds to be at least 2"),
])
def test_a_bad_study_command_is_refused_with_one_sentence_before_anything_runs(tmp_path, args,
                                                                               fragment):
    result = invoke(*args, "--store", tmp_path / "store")
    assert_cli_error(result, fragment)
    assert not (tmp_path / "store").exists() or not Store(tmp_path / "store").list_studies()


@requires_data
def test_more_folds_than_the_smallest_class_has_images_is_refused(tmp_path):
    # --set subset=100 draws 10 images of each class: 20 folds would leave folds without one.
    result = invoke("cv", "--folds", "20", "--set", "subset=100", "--store", tmp_path)
    assert_cli_error(result, "has only 10 images", "--folds 20")
    assert Store(tmp_path).list_studies() == []


def test_an_unreachable_ray_address_fails_with_one_sentence(tmp_path):
    completed = run_cli("variance", "--runs", "2", "--vary", "init", "--executor", "ray",
                        "--address", "127.0.0.1:1", "--store", tmp_path, timeout=60)
    assert_one_sentence_error(completed, "Could not reach a Ray cluster at 127.0.0.1:1")
    assert Store(tmp_path).list_studies() == []


def test_resuming_a_study_that_does_not_exist_is_one_sentence(tmp_path):
    Store(tmp_path)
    assert_cli_error(invoke("resume", "variance-0000000000", "--store", tmp_path),
                     "No study variance-0000000000", "twinrun studies")


def test_comparing_studies_of_different_metrics_is_refused(tmp_path):
    store = Store(tmp_path)
    a = plan_variance(3, "init", base=BASE)
    b = plan_variance(3, "init", seed=1, base=BASE)
    record(store, a, accuracy)
    record(store, b, accuracy)
    store.record_study(b.study_id, kind="variance", definition=b.definition, planned=3,
                       options={"metric": "test_loss"})

    assert_cli_error(invoke("compare", a.study_id, b.study_id, "--store", tmp_path),
                     "different metrics")
    # Naming the metric compares both on it.
    assert invoke("compare", a.study_id, b.study_id, "--metric", "test_loss", "--store",
                  tmp_path).exit_code == 0


# -- the statistics of recorded studies --------------------------------------------------------

def test_variance_json_has_each_source_as_the_issue_shapes_it_from_finished_runs_only(tmp_path):
    store = Store(tmp_path)
    plan = plan_variance(4, "init,order,nondeterminism,all", base=BASE)
    same = {"nondeterminism": "fp-same"}
    record(store, plan, accuracy, predictions=predicted, failed={"order/3"},
           fingerprint=lambda run: same.get(run.source, f"fp-{run.key}"))

    # The failed run is run again, and fails again at once: there is no data where it looks.
    result = invoke("resume", plan.study_id, "--store", tmp_path, "--json", "--data-dir",
                    tmp_path / "no-data")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)

    assert report["study_id"] == plan.study_id
    assert (report["planned"], report["finished"], report["failed"]) == (16, 15, 1)
    assert report["session"]["ran"] == 1 and report["session"]["failed"] == 1  # retried, failed
    assert set(report["sources"]) == {"init", "order", "nondeterminism", "all"}
    for line in report["sources"].values():
        assert VARIANCE_KEYS <= set(line)
    values = {s: [accuracy(r)["test_accuracy"] for r in plan.runs_of(s)]
              for s in ("init", "all")}
    values["order"] = [accuracy(r)["test_accuracy"] for r in plan.runs_of("order")][:3]
    for source in ("init", "order", "all"):
        line = report["sources"][source]
        assert line["n"] == len(values[source])
        assert math.isclose(line["mean"], np.mean(values[source]))
        assert math.isclose(line["sd"], np.std(values[source], ddof=1))
        assert line["effect"] is True
    assert math.isclose(report["sources"]["init"]["share"],
                        np.var(values["init"], ddof=1) / np.var(values["all"], ddof=1))
    assert report["sources"]["nondeterminism"]["effect"] is False
    assert "No effect here" in report["sources"]["nondeterminism"]["note"]
    assert 0 < report["sources"]["init"]["disagreement"] < 1


def test_resume_reruns_a_failed_run_and_records_its_error_without_stopping_the_study(tmp_path):
    store = Store(tmp_path)
    plan = plan_variance(3, "init", base=BASE)
    record(store, plan, accuracy, failed={"init/1"})

    # The resumed run fails again (no data where it looks), is recorded, and the study reports
    # the two finished runs.
    result = invoke("resume", plan.study_id, "--store", tmp_path, "--data-dir",
                    tmp_path / "no-data", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["finished"], report["failed"], report["sources"]["init"]["n"]) == (2, 1, 2)
    [failure] = report["failures"]
    assert failure["key"] == "init/1" and "no-data" in failure["error"]
    rows = store.study_runs(plan.study_id)
    assert sorted(r["study_key"] for r in rows) == ["init/0", "init/1", "init/2"]


def test_cv_json_is_shaped_like_cross_validate(tmp_path):
    store = Store(tmp_path)
    plan = plan_cv(4, base=BASE)
    record(store, plan, lambda run: {"test_accuracy": 0.8 + 0.01 * run.levels["fold"],
                                     "test_loss": 0.5, "best_val_loss": 0.45,
                                     "stopped_epoch": 4})

    result = invoke("resume", plan.study_id, "--store", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    folds = [0.80, 0.81, 0.82, 0.83]
    assert report["study_id"] == plan.study_id
    assert np.allclose(report["folds"], folds)
    assert math.isclose(report["mean"], np.mean(folds))
    assert math.isclose(report["sd"], np.std(folds, ddof=1))
    assert report["ci95"][0] < np.mean(folds) < report["ci95"][1]
    assert np.allclose(report["cross_validate"]["test_accuracy"], folds)
    assert report["cross_validate"]["fit_time"] == [10.0, 11.0, 12.0, 13.0]


def test_compare_json_and_reading_say_which_study_is_better(tmp_path):
    store = Store(tmp_path)
    a = plan_variance(6, "all", base=BASE, settings={"learning_rate": 0.001})
    b = plan_variance(6, "all", base=BASE, settings={"learning_rate": 0.0003})
    record(store, a, lambda run: {"test_accuracy": 0.85 + 0.001 * run.position})
    record(store, b, lambda run: {"test_accuracy": 0.87 + 0.001 * run.position})

    result = invoke("compare", a.study_id, b.study_id, "--store", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for key in ("difference", "ci95", "p_welch", "p_permutation", "p_a_beats_b",
                "runs_for_power80", "reading"):
        assert key in report
    assert math.isclose(report["difference"], 0.02)
    assert report["p_a_beats_b"] == 0.0
    assert report["reading"].startswith(f"{b.study_id} beats {a.study_id} by 2.0")

    piped = invoke("compare", a.study_id, b.study_id, "--store", tmp_path)
    assert report["reading"] in piped.output


def test_a_study_varying_several_sources_without_all_cannot_be_an_arm(tmp_path):
    store = Store(tmp_path)
    a = plan_variance(2, "init,order", base=BASE)
    record(store, a, accuracy)
    assert_cli_error(invoke("compare", a.study_id, a.study_id, "--store", tmp_path),
                     "no single set of runs")


def test_variance_table_is_plain_when_piped_and_prints_stored_text_literally(tmp_path):
    store = Store(tmp_path)
    plan = plan_variance(3, "init", base=BASE)
    record(store, plan, accuracy, failed={"init/2"})

    result = invoke("resume", plan.study_id, "--store", tmp_path, "--data-dir",
                    tmp_path / "no-[bold]data")
    assert result.exit_code == 0, result.output
    assert "┃" not in result.output and "│" not in result.output
    assert "test_accuracy by source of randomness" in result.output
    assert "no-[bold]data" in result.output  # the error of the failed retry, as text
    assert "2 of 3 runs finished" in result.output
    line = next(line for line in result.output.splitlines() if line.startswith("init "))
    assert line.split()[1] == "2"  # n: the finished runs only


def test_runs_from_different_hardware_are_named_in_the_study(tmp_path):
    store = Store(tmp_path)
    plan = plan_variance(2, "init", base=BASE)
    cpus = ["AMD EPYC", "Intel Xeon"]
    record(store, plan, accuracy,
           environment=lambda run: {"cpu": {"model": cpus[run.position]},
                                    "env": {"PYTHONHASHSEED": str(run.position)}})

    report = json.loads(invoke("resume", plan.study_id, "--store", tmp_path, "--json").output)
    assert "cpu.model" in report["environment_note"]
    assert "PYTHONHASHSEED" not in report["environment_note"]  # varied on purpose


def test_twinrun_studies_lists_each_study_with_its_counts(tmp_path):
    store = Store(tmp_path)
    plan = plan_cv(2, base=BASE)
    record(store, plan, accuracy, failed={"repeat=0,fold=1"})

    listed = json.loads(invoke("studies", "--store", tmp_path, "--json").output)
    assert [(s["study_id"], s["finished"], s["failed"], s["status"]) for s in listed] == [
        (plan.study_id, 1, 1, "incomplete")]
    assert plan.study_id in invoke("studies", "--store", tmp_path).output


def test_a_crossed_study_splits_its_variance_into_both_sources_and_their_interaction(tmp_path):
    store = Store(tmp_path)
    plan = plan_variance(3, "init,order", design="crossed", base=BASE)
    # init moves the metric by 0.01 per level, order by 0.002: init's component dominates.
    record(store, plan, lambda run: {"test_accuracy": 0.85 + 0.01 * run.levels["init"]
                                     + 0.002 * run.levels["order"]
                                     + 0.0005 * ((run.position * 7) % 3)})

    report = json.loads(invoke("resume", plan.study_id, "--store", tmp_path, "--json").output)
    components = report["anova"]["components"]
    assert set(components) == {"init", "order", "init:order + residual"}
    assert components["init"]["variance"] > components["order"]["variance"] > 0
    assert report["sources"]["crossed"]["n"] == 9
    assert "Crossed design" in invoke("resume", plan.study_id, "--store", tmp_path).output
