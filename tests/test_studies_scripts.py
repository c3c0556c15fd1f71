"""Studies of the user's own script (`twinrun variance ... -- python train.py`), the seeds and
metrics it exchanges with the study (`twinrun.seeds()`, `twinrun.log_metrics()`, the Keras
`Trace`), and `twinrun compare` running two `--set` variants itself.
"""

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import twinrun
from conftest import require, requires_data, run_cli
from twinrun.cli import main
from twinrun.errors import TwinrunError
from twinrun.seeds import derive_seeds, seed_for
from twinrun.store import Store
from twinrun import handoff
from twinrun.handoff import read_records, script_seeds

SCRIPTS = Path(__file__).parent / "scripts"
# A script with no framework: reads only the `init` seed and reports a metric made from it.
INIT_ONLY = ("import twinrun; seeds = twinrun.seeds(); "
             "twinrun.log_metrics(test_accuracy=0.5 + seeds['init'] % 1000 / 10000)")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_cli_error(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.fixture
def study_env(tmp_path, monkeypatch):
    """This process as a study run of a script: its seeds and metrics file in the environment."""
    metrics = tmp_path / "run.metrics.jsonl"
    seeds = script_seeds(3, {"init": 11, "numpy": 12})
    monkeypatch.setenv(handoff.SEEDS_VAR, json.dumps(seeds))
    monkeypatch.setenv(handoff.METRICS_VAR, str(metrics))
    monkeypatch.setattr(handoff, "_logged_reads", set())
    return metrics


# -- the hand-over, in this process ------------------------------------------------------------

def test_seeds_outside_a_study_derive_from_the_checks_seed(monkeypatch):
    monkeypatch.delenv(handoff.SEEDS_VAR, raising=False)
    monkeypatch.setenv("TWINRUN_SEED", "7")
    seeds = twinrun.seeds()
    derived = derive_seeds(7)
    assert seeds["init"] == derived["init"] and seeds["dropout"] == derived["dropout"]
    assert seeds["order"] == derived["shuffle"]
    assert seeds["split"] == seed_for(7, "split")
    assert {"python", "numpy", "backend", "hash", "data"} <= set(seeds)


def test_a_study_runs_seeds_are_handed_over_and_each_read_is_noted_once(study_env):
    seeds = twinrun.seeds()
    assert seeds["init"] == 11
    assert twinrun.seeds().get("order") == derive_seeds(3)["shuffle"]
    assert seeds["init"] == 11  # read again: noted once
    assert twinrun.log_metrics(test_accuracy=0.5, stopped_epoch=3) == \
        {"test_accuracy": 0.5, "stopped_epoch": 3.0}
    metrics, read = read_records(study_env)
    assert metrics == {"test_accuracy": 0.5, "stopped_epoch": 3.0}
    assert read == ["init", "order"]


def test_log_metrics_wins_over_what_fit_reported(study_env):
    handoff.report_fit([{"loss": 0.9, "val_loss": 0.7}, {"loss": 0.5, "val_loss": 0.8}])
    twinrun.log_metrics(loss=0.25)
    metrics, read = read_records(study_env)
    assert metrics == {"loss": 0.25, "val_loss": 0.8, "best_val_loss": 0.7, "stopped_epoch": 2}
    assert read == []


def test_deterministic_takes_the_study_runs_seeds(study_env):
    report = twinrun.deterministic(backend="torch")
    assert report.seed == 0  # TWINRUN_SEED unset: the seeds themselves come from the study
    assert report.seeds["numpy"] == 12 and report.seeds["init"] == 11
    assert report.seeds["shuffle"] == derive_seeds(3)["shuffle"]
    assert read_records(study_env)[1] == []  # deterministic() is not the script reading them


def test_log_metrics_refuses_a_value_that_is_not_a_number(study_env):
    with pytest.raises(TwinrunError, match=r"Expected log_metrics values to be numbers\. "
                                           r"Received: test_accuracy='high'"):
        twinrun.log_metrics(test_accuracy="high")
    assert read_records(study_env) == ({}, [])


def test_twinrun_seeds_stays_the_function_after_the_seeds_module_is_imported_again():
    import importlib

    module = importlib.import_module("twinrun.seeds")
    from twinrun.seeds import DEFAULT_SEED

    assert callable(twinrun.seeds) and not callable(module)
    assert DEFAULT_SEED == 0


# -- bad inputs: one sentence, nothing run -----------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["--set", "epochs=2"], "--set changes the built-in workload"),
    (["--vary", "init,perturb"], "--vary perturb nudges a weight"),
    (["--preset", "quick"], "--preset belongs to the built-in workload"),
    (["--workload", "answer-demo"], "--workload belongs to the built-in workload"),
])
def test_a_script_study_refuses_what_only_the_built_in_workload_has(tmp_path, args, fragment):
    result = invoke("variance", "--runs", 2, "--store", tmp_path / "store", *args, "--",
                    "python", SCRIPTS / "study_torch.py")
    assert_cli_error(result, fragment)
    assert not (tmp_path / "store").exists()


def test_a_script_study_of_a_missing_script_names_it(tmp_path):
    result = invoke("variance", "--runs", 2, "--store", tmp_path / "store", "--", "python",
                    tmp_path / "nowhere.py")
    assert_cli_error(result, "Script not found", "nowhere.py")


@pytest.mark.parametrize("args, fragment", [
    ([], "Give two study ids"),
    (["variance-a"], "Give two study ids"),
    (["variance-a", "variance-b", "--jobs", 2], "--jobs applies when compare runs two"),
    (["variance-a", "variance-b", "--set", "epochs=2"], "--set applies when compare runs two"),
    (["variance-a", "--set-b", "learning_rate=0.003", "--runs", 5], "not both"),
    (["--set-b", "learning_rate=0.003"], "needs --runs N"),
    (["--set-a", "learning_rate=0.003", "--set-b", "learning_rate=0.003", "--runs", 5],
     "the same settings"),
    (["--set", "learning_rate=0.001", "--set-b", "learning_rate=0.001", "--runs", 5],
     "the same settings"),
    (["--set-b", "learning_rate=fast", "--runs", 5], "learning_rate"),
    (["--set-b", "colour=red", "--runs", 5], "colour"),
    (["--set-b", "learning_rate=0.003", "--runs", 1], "at least 2"),
    (["--set-b", "learning_rate=0.003", "--runs", 5, "--metric", "speed"], "speed"),
])
def test_compare_argument_mistakes_are_one_sentence_and_run_nothing(tmp_path, args, fragment):
    result = invoke("compare", "--store", tmp_path / "store", *args)
    assert_cli_error(result, fragment)
    assert not (tmp_path / "store" / "runs.sqlite").exists() or not \
        Store(tmp_path / "store").list_studies()


# -- real script studies -----------------------------------------------------------------------

def test_a_seed_the_script_never_read_is_named(tmp_path):
    completed = run_cli("variance", "--runs", 2, "--vary", "init,order", "--store",
                        tmp_path / "store", "--json", "--", "python", "-c", INIT_ONLY,
                        timeout=300)
    assert completed.returncode == 0, completed.stderr
    results = json.loads(completed.stdout)
    assert results["finished"] == 4 and results["unread_seeds"] == ["order"]
    init, order = results["sources"]["init"], results["sources"]["order"]
    expected = [0.5 + script_seeds(0, {"init": seed})["init"] % 1000 / 10000 for seed in
                (seed_for(0, "study:init:0"), seed_for(0, "study:init:1"))]
    assert init["mean"] == pytest.approx(sum(expected) / 2) and init["effect"] is True
    assert order["effect"] is False and order["sd"] == 0.0
    assert "your script never read the `order` seed" in order["note"].lower()
    assert "init" not in " ".join(filter(None, [init["note"]]))
    with Store(tmp_path / "store") as store:
        runs = [store.get_run(run["run_id"]) for run in store.study_runs(results["study_id"])]
    assert {run["workload"] for run in runs} == {"-c"}
    assert [run["extra"]["seeds_read"] for run in runs] == [["init"]] * 4
    assert all(run["fingerprint"] is None and run["environment"]["cpu"] for run in runs)


@pytest.mark.slow
def test_a_script_study_on_a_local_ray_cluster_records_what_the_local_pool_records(
        tmp_path, one_ray_cluster_at_a_time):
    require("ray")
    records = {}
    for name, options in (("local", ["--jobs", 2]), ("ray", ["--executor", "ray"])):
        completed = run_cli("variance", "--runs", 2, "--vary", "init,order", *options,
                            "--store", tmp_path / name, "--json", "--", "python", "-c",
                            INIT_ONLY, timeout=300)
        assert completed.returncode == 0, completed.stderr
        study_id = json.loads(completed.stdout)["study_id"]
        with Store(tmp_path / name) as store:
            records[name] = {run["study_key"]: (run["metrics"], run["seeds"],
                                                 store.get_run(run["run_id"])["extra"]
                                                 ["seeds_read"])
                             for run in store.study_runs(study_id)}
    assert len(records["local"]) == 4 and records["ray"] == records["local"]


def test_a_script_that_reports_no_metric_fails_each_run_with_the_reason(tmp_path):
    completed = run_cli("variance", "--runs", 2, "--vary", "init", "--store",
                        tmp_path / "store", "--", "python", "-c", "import twinrun",
                        timeout=300)
    assert completed.returncode == 2
    assert "0 of 2 runs finished, 2 failed" in completed.stdout, completed.stdout
    assert "without reporting a metric: call twinrun.log_metrics" in completed.stdout
    errors = [line for line in completed.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: Study variance-")
    assert "has no finished runs yet (2 failed" in errors[0]
    assert "Traceback" not in completed.stdout + completed.stderr


@pytest.mark.slow
def test_a_keras_script_study_varies_init_and_order_and_reads_metrics_from_fit(tmp_path):
    completed = run_cli("variance", "--runs", 2, "--vary", "init,order", "--backend", "torch",
                        "--store", tmp_path / "store", "--json", "--", "python",
                        SCRIPTS / "study_keras.py", timeout=600)
    assert completed.returncode == 0, completed.stderr
    results = json.loads(completed.stdout)
    assert results["finished"] == 4 and results["unread_seeds"] == []
    for source in ("init", "order"):
        line = results["sources"][source]
        assert line["effect"] is True and line["effect_basis"] == "weights fingerprints"
    with Store(tmp_path / "store") as store:
        runs = [store.get_run(run["run_id"]) for run in store.study_runs(results["study_id"])]
    assert len({run["fingerprint"] for run in runs}) == 4
    for run in runs:
        assert run["backend"] == "torch" and run["environment"]["framework"]
        assert run["metrics"]["stopped_epoch"] == 2 and len(run["history"]) == 2
        assert run["metrics"]["best_val_loss"] == min(e["val_loss"] for e in run["history"])
        assert 0.5 < run["metrics"]["test_accuracy"] <= 1.0
        assert sorted(run["extra"]["seeds_read"]) == ["dropout", "init", "order"]


@pytest.mark.slow
def test_a_pytorch_script_study_varies_init_and_order_and_names_the_dropout_it_lacks(tmp_path):
    completed = run_cli("variance", "--runs", 2, "--vary", "init,order,dropout", "--jobs", 2,
                        "--store", tmp_path / "store", "--", sys.executable,
                        SCRIPTS / "study_torch.py", timeout=600)
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "6 of 6 runs finished" in out
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.split() and line.split()[0] in ("init", "order", "dropout")
            and line.split()[1] == "2"}
    assert rows["init"].rstrip().endswith("yes") and rows["order"].rstrip().endswith("yes")
    assert rows["dropout"].rstrip().endswith("no effect here")
    assert "dropout: Your script never read the `dropout` seed" in out


@pytest.mark.slow
@requires_data
def test_compare_runs_two_set_variants_and_compares_them(tmp_path):
    completed = run_cli("compare", "--set", "epochs=1", "--set-b",
                        "learning_rate=0.003", "--runs", 2, "--preset", "tiny", "--jobs", 2,
                        "--backend", "torch", "--threads", 1,
                        "--store", tmp_path / "store", "--json", timeout=900)
    assert completed.returncode == 0, completed.stderr
    results = json.loads(completed.stdout)
    assert [session["finished"] for session in results["sessions"]] == [2, 2]
    assert results["source_a"] == results["source_b"] == "all"
    assert {"difference", "ci95", "p_welch", "p_permutation", "p_a_beats_b",
            "runs_for_power80", "reading"} <= set(results)
    with Store(tmp_path / "store") as store:
        studies = {study["study_id"]: store.get_study(study["study_id"])
                   for study in store.list_studies()}
    settings = {sid: study["definition"]["settings"] for sid, study in studies.items()}
    assert settings[results["study_a"]] == {"epochs": 1}
    assert settings[results["study_b"]] == {"epochs": 1, "learning_rate": 0.003}
