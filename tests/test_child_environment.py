"""One child environment: every entry point that starts a fresh process gives it the same
variables for the same settings, built by `twinrun.launch.child_environment`.

Each test calls the function the entry point itself calls to build its child's environment:
a built-in workload's run (`twinrun train`, `check --workload`, a study's run), a replica of
`twinrun check -- python ...`, a run of a study of a script, and the doctor's audit.
"""

import json
import math

import pytest

from twinrun.audit import audit_environment
from twinrun.checks.entry import command_replica_environment, verdict_json
from twinrun.checks.verdict import Divergence, Verdict
from twinrun.executors.script import ScriptConfig
from twinrun.launch import run_environment
from twinrun.runconfig import RunConfig
from twinrun.seeds import derive_seeds

# What each entry point hands its own program on top: where the trace and metrics go, the
# replica's number, the seeds as a script reads them. Everything else must be equal.
HANDED_OVER = {"TWINRUN_TRACE", "TWINRUN_REPLICA", "TWINRUN_SEED", "TWINRUN_SEEDS",
               "TWINRUN_METRICS"}


def environments(tmp_path, *, determinism=True, hash_seed="fixed"):
    """`{entry point: environment}` for backend torch, seed 7, 2 threads."""
    workload = RunConfig(backend="torch", seed=7, threads=2, determinism=determinism,
                         record=False).validated()
    found = {
        "workload run": run_environment(workload, hash_seed=hash_seed),
        "script check": command_replica_environment(
            0, tmp_path / "replica-0.trace", backend="torch", seed=7, threads=2,
            determinism=determinism, hash_seed=hash_seed),
    }
    if hash_seed == "fixed":  # a study and the audit have no --hash-seed: it is fixed
        found["script study"] = ScriptConfig(
            command=["python", "train.py"], cwd=str(tmp_path), seed=7, backend="torch",
            threads=2, determinism=determinism).environment(tmp_path / "m.jsonl",
                                                            tmp_path / "run.trace")
        if determinism:  # the audit always runs with determinism on
            found["doctor's audit"] = audit_environment("torch", seed=7, threads=2)
    return {name: {k: v for k, v in env.items() if k not in HANDED_OVER}
            for name, env in found.items()}


def test_the_four_entry_points_give_the_same_environment_for_the_same_settings(tmp_path):
    found = environments(tmp_path)
    assert sorted(found) == ["doctor's audit", "script check", "script study", "workload run"]
    first = found["workload run"]
    for name, env in found.items():
        assert env == first, name
    assert first["PYTHONHASHSEED"] == str(derive_seeds(7)["hash"])
    assert first["KERAS_BACKEND"] == "torch"
    assert first["TWINRUN_THREADS"] == "2"
    assert first["TWINRUN_DETERMINISM"] == "1"


def test_no_determinism_keeps_the_hash_seed_fixed_in_every_entry_point(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    found = environments(tmp_path, determinism=False)
    assert sorted(found) == ["script check", "script study", "workload run"]
    for name, env in found.items():
        assert env == found["workload run"], name
        assert env["PYTHONHASHSEED"] == str(derive_seeds(7)["hash"]), name
        assert env["TWINRUN_DETERMINISM"] == "0", name


def test_a_random_hash_seed_removes_pythonhashseed_even_when_the_caller_has_one(
        tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONHASHSEED", "123")
    found = environments(tmp_path, hash_seed="random")
    assert sorted(found) == ["script check", "workload run"]
    assert found["script check"] == found["workload run"]
    assert "PYTHONHASHSEED" not in found["workload run"]
    assert "PYTHONHASHSEED" not in found["workload run"]["TWINRUN_PRESET_VARIABLES"].split(",")


def test_a_check_verdict_as_json_holds_no_nan(tmp_path):
    verdict = Verdict(verdict="diverged", steps_compared=3,
                      replicas=[{"label": "replica 0", "final_loss": float("nan")},
                                {"label": "replica 1", "final_loss": float("inf")}],
                      first_divergence=Divergence(step=2, epoch=1, records=["loss"]),
                      max_loss_difference=math.nan)

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    parsed = json.loads(verdict_json(verdict), parse_constant=refuse)
    assert [r["final_loss"] for r in parsed["replicas"]] == [None, None]
    assert parsed["max_loss_difference"] is None
    assert parsed["first_divergence"]["step"] == 2


@pytest.mark.parametrize("mode", ["sometimes", ""])
def test_an_unknown_hash_seed_mode_is_refused_in_one_sentence(tmp_path, mode):
    from twinrun.errors import TwinrunError

    with pytest.raises(TwinrunError, match=r"^Expected --hash-seed to be one of fixed, "
                                           r"random\. Received: "):
        command_replica_environment(0, tmp_path / "t", backend="torch", seed=0,
                                    hash_seed=mode)
