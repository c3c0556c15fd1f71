"""`twinrun train`: the seed CNN trained in fresh processes, recorded in the store."""

import json

import pytest

from conftest import requires_data, run_cli

pytestmark = [pytest.mark.slow, requires_data]


def train(backend, seed, store, *extra):
    completed = run_cli("train", "--backend", backend, "--preset", "quick", "--seed", seed,
                        "--store", store, "--json", *extra)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_two_fresh_processes_with_seed_7_give_the_same_fingerprint_and_seed_8_another(
        backend, store):
    first, second, other = (train(backend, 7, store), train(backend, 7, store),
                            train(backend, 8, store))
    assert first["fingerprint"] == second["fingerprint"]
    assert other["fingerprint"] != first["fingerprint"]
    assert first["test_loss"] == second["test_loss"]
    for result in (first, second, other):
        assert result["backend"] == backend
        assert result["epochs_trained"] == 2
        assert 0.0 <= result["test_accuracy"] <= 1.0
        assert len(result["confusion_matrix"]) == 10
        assert sum(map(sum, result["confusion_matrix"])) == 10_000

    listed = json.loads(run_cli("runs", "--store", store, "--json").stdout)
    recorded = {r["run_id"]: r for r in listed}
    assert {first["run_id"], second["run_id"], other["run_id"]} <= set(recorded)
    assert recorded[first["run_id"]]["fingerprint"] == first["fingerprint"]
    assert recorded[first["run_id"]]["status"] == "finished"

    shown = json.loads(run_cli("show", first["run_id"], "--store", store, "--json").stdout)
    assert [row["epoch"] for row in shown["history"]] == [1, 2]
    assert set(shown["seeds"]) >= {"init", "dropout", "shuffle", "hash"}
    states = {c["name"]: c["state"] for c in shown["determinism"]["controls"]}
    assert states["PYTHONHASHSEED"] == "already set"
    assert "impossible" not in states.values()
    assert shown["environment"]["cpu"]["logical_cores"] >= 1


@pytest.mark.parametrize("backend", ["tensorflow"])
def test_a_short_run_prints_the_fingerprint_and_test_accuracy_for_a_person(backend, store):
    completed = run_cli("train", "--backend", backend, "--epochs", "1", "--store", store)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "fingerprint" in completed.stdout
    assert "test accuracy" in completed.stdout
    assert "epoch 1/1" in completed.stdout
