"""Studies of the built-in workload through the real driver, on the tiny preset (10 steps a run,
docs/presets.md): every `--vary` source, a crossed design, cross-validation with repeats, and
`compare A B` of two studies the driver recorded. Each study runs once per session; the tests
read what it recorded and check the statistics against the recorded runs.
"""

import json
import math
import statistics

import pytest

from conftest import requires_data, run_cli
from twinrun.store import Store

pytestmark = [pytest.mark.slow, requires_data]

# Two runs at once: one's start-up, data loading and evaluation overlap the other's training
# (docs/performance.md measured 1.34x the throughput with --jobs 2, at two threads a run); one
# thread each so that the two do not share a core mid-step.
TINY = ["--preset", "tiny", "--backend", "torch", "--threads", "1", "--jobs", "2"]
SOURCES = ("init", "order", "dropout", "split", "perturb", "nondeterminism", "all")


def study(store, *args):
    """Run a study command with --json; return its report and its runs by study key."""
    completed = run_cli(*args, *TINY, "--store", store, "--json", timeout=1800)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout)
    with Store(store, create=False) as opened:
        runs = {run["study_key"]: opened.get_run(run["run_id"])
                for run in opened.study_runs(report["study_id"])}
    assert {run["status"] for run in runs.values()} == {"finished"}
    return report, runs


@pytest.fixture(scope="session")
def studies(tmp_path_factory):
    """A variance study of every source, and a cross-validation with repeats (the second arm
    of `compare`), in one store."""
    store = tmp_path_factory.mktemp("driver-studies") / "store"
    every, every_runs = study(store, "variance", "--runs", 2, "--vary", ",".join(SOURCES),
                              "--metric", "test_loss")
    cv, cv_runs = study(store, "cv", "--folds", 2, "--repeats", 2)
    return {"store": store, "every": every, "every_runs": every_runs, "cv": cv,
            "cv_runs": cv_runs}


def runs_of(runs, source):
    return [runs[f"{source}/{index}"] for index in range(2)]


def test_every_source_is_planned_run_and_summarised_from_the_runs_it_recorded(studies):
    report, runs = studies["every"], studies["every_runs"]
    assert (report["planned"], report["finished"], report["failed"]) == (14, 14, 0)
    assert sorted(runs) == sorted(f"{source}/{index}" for source in SOURCES for index in (0, 1))
    assert set(report["sources"]) == set(SOURCES)
    for source in SOURCES:
        losses = [run["metrics"]["test_loss"] for run in runs_of(runs, source)]
        line = report["sources"][source]
        assert line["n"] == 2
        assert math.isclose(line["mean"], statistics.mean(losses))
        assert math.isclose(line["sd"], statistics.stdev(losses), abs_tol=1e-12)
        fingerprints = {run["fingerprint"] for run in runs_of(runs, source)}
        assert line["effect"] is (len(fingerprints) == 2), source


def test_each_source_changes_only_what_it_names(studies):
    runs = studies["every_runs"]

    def varied_seeds(source):
        first, second = (run["seeds"] for run in runs_of(runs, source))
        return {name for name in first if first[name] != second[name]}

    assert varied_seeds("init") == {"init"}
    assert varied_seeds("order") == {"shuffle"}
    assert varied_seeds("dropout") == {"dropout"}
    # split, perturb and nondeterminism keep the study's own seeds, the same in each run.
    unvaried = {tuple(sorted(run["seeds"].items())) for source in
                ("split", "perturb", "nondeterminism") for run in runs_of(runs, source)}
    assert len(unvaried) == 1
    study_seeds = dict(unvaried.pop())
    assert {name for name, seed in runs["order/0"]["seeds"].items()
            if study_seeds[name] != seed} == {"shuffle"}
    assert varied_seeds("all") >= {"init", "shuffle", "dropout", "python", "numpy", "hash"}

    def initial(source):
        return {run["extra"]["initial_fingerprint"] for run in runs_of(runs, source)}

    # Before the first step: only init and perturb (and all) start from other weights.
    assert len(initial("init")) == len(initial("perturb")) == len(initial("all")) == 2
    for source in ("order", "dropout", "split", "nondeterminism"):
        assert len(initial(source)) == 1, source
    for run in runs_of(runs, "perturb"):
        moved = run["extra"]["perturbation"]
        assert (moved["mode"], moved["layer"]) == ("ulp", "conv1")
    assert [run["config"]["split_seed"] is None for run in runs_of(runs, "split")] == [False] * 2
    assert len({run["config"]["split_seed"] for run in runs_of(runs, "split")}) == 2
    determinism = {source: {run["config"]["determinism"] for run in runs_of(runs, source)}
                   for source in SOURCES}
    assert determinism == {source: {source not in ("nondeterminism", "all")}
                           for source in SOURCES}
    # Ten steps are enough for each source that draws numbers to end elsewhere.
    for source in ("init", "order", "dropout", "split", "perturb", "all"):
        assert studies["every"]["sources"][source]["effect"] is True, source


def test_a_source_with_identical_runs_says_no_effect_here(studies):
    # nondeterminism on torch's CPU kernels, at one thread: the same bits both times.
    runs = runs_of(studies["every_runs"], "nondeterminism")
    assert runs[0]["fingerprint"] == runs[1]["fingerprint"]
    line = studies["every"]["sources"]["nondeterminism"]
    assert (line["effect"], line["effect_basis"], line["sd"]) == (
        False, "weights fingerprints", 0.0)
    assert line["note"].startswith("No effect here: all 2 runs ended with identical weights")
    shown = run_cli("resume", studies["every"]["study_id"], "--store", studies["store"])
    assert shown.returncode == 0, shown.stderr[-3000:]
    row = next(line for line in shown.stdout.splitlines() if line.startswith("nondeterminism"))
    assert row.rstrip().endswith("no effect here"), shown.stdout


def test_compare_of_two_recorded_studies_is_the_difference_of_their_runs(studies):
    # A: the variance study's `all` runs; B: every run of the cross-validation (the metrics
    # differ, so compare is told which one to read).
    every, cv = studies["every"]["study_id"], studies["cv"]["study_id"]
    refused = run_cli("compare", every, cv, "--store", studies["store"])
    assert refused.returncode == 2 and "different metrics" in refused.stderr, refused.stderr
    completed = run_cli("compare", every, cv, "--metric", "test_loss", "--store",
                        studies["store"], "--json")
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout)
    a = [run["metrics"]["test_loss"] for run in runs_of(studies["every_runs"], "all")]
    b = [run["metrics"]["test_loss"] for run in studies["cv_runs"].values()]
    assert (report["study_a"], report["study_b"]) == (every, cv)
    assert math.isclose(report["difference"], statistics.mean(b) - statistics.mean(a))
    assert report["ci95"][0] <= report["difference"] <= report["ci95"][1]
    assert 0 <= report["p_welch"] <= 1 and 0 <= report["p_permutation"] <= 1
    assert every in report["reading"] and cv in report["reading"]


def test_a_crossed_study_of_init_and_a_dropout_that_drops_nothing(tmp_path):
    # With dropout 0, the dropout seed changes no bit: the grid's columns are equal, so the
    # whole variance is init's, and for two levels it is (u - v)**2 / 2 exactly.
    report, runs = study(tmp_path / "store", "variance", "--runs", 2, "--vary", "init,dropout",
                         "--design", "crossed", "--set", "dropout=0", "--metric", "test_loss")
    assert report["design"] == "crossed" and len(runs) == 4
    by_level = {}
    for run in runs.values():
        by_level.setdefault(run["seeds"]["init"], set()).add(run["fingerprint"])
    assert [len(fingerprints) for fingerprints in by_level.values()] == [1, 1]
    u, v = ({run["metrics"]["test_loss"] for run in runs.values()
             if run["seeds"]["init"] == seed}.pop() for seed in by_level)
    components = report["anova"]["components"]
    assert set(components) == {"init", "dropout", "init:dropout + residual"}
    assert math.isclose(components["init"]["variance"], (u - v) ** 2 / 2, rel_tol=1e-9)
    assert components["dropout"]["variance"] <= 1e-12 * components["init"]["variance"]
    assert components["init:dropout + residual"]["variance"] <= \
        1e-12 * components["init"]["variance"]
    assert report["sources"]["crossed"]["n"] == 4


def test_cv_with_repeats_runs_every_fold_of_each_assignment(studies):
    report, runs = studies["cv"], studies["cv_runs"]
    folds = {key: run["config"]["fold"] for key, run in runs.items()}
    assert sorted(folds) == ["repeat=0,fold=0", "repeat=0,fold=1", "repeat=1,fold=0",
                             "repeat=1,fold=1"]
    assert {fold["n_splits"] for fold in folds.values()} == {2}
    assert len({fold["random_state"] for fold in folds.values()}) == 2  # two assignments
    for run in runs.values():
        # Each fold of 2 holds out half of the tiny preset's 400 images.
        assert (run["extra"]["steps_per_epoch"], run["epochs_trained"]) == (4, 2)
    accuracy = [runs[key]["metrics"]["test_accuracy"] for key in sorted(runs)]
    assert report["finished"] == 4
    assert math.isclose(report["mean"], statistics.mean(accuracy))
    assert math.isclose(report["sd"], statistics.stdev(accuracy), abs_tol=1e-12)
    assert sorted(report["folds"]) == pytest.approx(sorted(accuracy))
