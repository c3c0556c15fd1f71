"""`twinrun train`: the seed CNN trained in fresh processes, recorded in the store."""

import json
import re

import pytest

from conftest import requires_data, run_cli

pytestmark = [pytest.mark.slow, requires_data]


def train(backend, seed, store, *extra):
    # Two of the quick preset's epochs (150 steps): enough to tell seeds apart.
    completed = run_cli("train", "--backend", backend, "--preset", "quick", "--epochs", "2",
                        "--seed", seed, "--store", store, "--json", *extra)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_two_fresh_processes_with_seed_7_give_the_same_fingerprint_and_seed_8_another(
        backend, store):
    first, other = train(backend, 7, store), train(backend, 8, store)
    assert other["fingerprint"] != first["fingerprint"]
    if backend == "tensorflow":
        # A second fresh process with seed 7: the same bits. On JAX and torch the quick check
        # of every backend (test_check.py) already runs two fresh processes and compares them
        # step by step, so one backend here keeps `train`'s own record honest at less cost.
        second = train(backend, 7, store)
        assert first["fingerprint"] == second["fingerprint"]
        assert first["test_loss"] == second["test_loss"]
    for result in (first, other):
        assert result["backend"] == backend
        assert result["epochs_trained"] == 2
        # Two epochs leave BatchNorm's statistics unsettled, so the accuracy itself may be low;
        # what must hold is that it is the accuracy of the test set's confusion matrix.
        matrix = result["confusion_matrix"]
        assert [sum(row) for row in matrix] == [1000] * 10  # Fashion-MNIST's test set
        correct = sum(matrix[i][i] for i in range(10))
        assert result["test_accuracy"] == correct / 10_000
        assert result["per_class"]["recall"] == [matrix[i][i] / 1000 for i in range(10)]

    listed = json.loads(run_cli("runs", "--store", store, "--json").stdout)
    recorded = {r["run_id"]: r for r in listed}
    assert {first["run_id"], other["run_id"]} <= set(recorded)
    assert recorded[first["run_id"]]["fingerprint"] == first["fingerprint"]
    assert recorded[first["run_id"]]["status"] == "finished"

    shown = json.loads(run_cli("show", first["run_id"], "--store", store, "--json").stdout)
    assert [row["epoch"] for row in shown["history"]] == [1, 2]
    assert shown["history"][1]["loss"] < shown["history"][0]["loss"]  # it trained
    assert shown["metrics"]["confusion_matrix"] == first["confusion_matrix"]
    assert set(shown["seeds"]) >= {"init", "dropout", "shuffle", "hash"}
    states = {c["name"]: c["state"] for c in shown["determinism"]["controls"]}
    assert states["PYTHONHASHSEED"] == "already set"
    assert "impossible" not in states.values()
    assert shown["environment"]["cpu"]["logical_cores"] >= 1


@pytest.mark.parametrize("backend", ["tensorflow"])
def test_a_short_run_prints_the_fingerprint_and_test_accuracy_for_a_person(backend, store):
    completed = run_cli("train", "--backend", backend, "--epochs", "1", "--store", store)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "epoch 1/1" in completed.stdout

    def printed(name, value):
        match = re.search(rf"^{name} +({value}) *$", completed.stdout, re.MULTILINE)
        assert match, completed.stdout
        return match.group(1)

    run_id = printed("run", r"\S+")
    shown = json.loads(run_cli("show", run_id, "--store", store, "--json").stdout)
    assert printed("fingerprint", "[0-9a-f]{32}") == shown["fingerprint"]
    assert printed("test accuracy", r"[0-9.]+") == f"{shown['test_accuracy']:.4f}"
    assert printed("seed", r"\d+") == "0" == str(shown["seed"])


def test_sigterm_to_train_stops_its_run_and_marks_it_stopped(store):
    import os
    import signal
    import sqlite3
    import subprocess
    import time
    from pathlib import Path

    from conftest import TWINRUN

    def running_row():
        try:
            with sqlite3.connect(Path(store) / "runs.sqlite") as connection:
                return connection.execute(
                    "SELECT run_id, owner FROM runs WHERE status = 'running'").fetchone()
        except sqlite3.Error:
            return None

    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    train = subprocess.Popen([TWINRUN, "train", "--backend", "torch", "--preset", "full",
                              "--store", str(store), "--json"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while (row := running_row()) is None:
        assert train.poll() is None and time.monotonic() < deadline, train.stderr.read()
        time.sleep(0.1)
    run_id, owner = row
    assert int(owner.split(":")[-2]) == train.pid  # the launcher answers for the row
    children = Path(f"/proc/{train.pid}/task/{train.pid}/children").read_text().split()
    worker = int(children[0])

    train.send_signal(signal.SIGTERM)
    out, err = train.communicate(timeout=120)

    assert train.returncode == 2, err
    assert err.startswith("Error: twinrun was stopped by SIGTERM;"), err
    with sqlite3.connect(Path(store) / "runs.sqlite") as connection:
        status, error = connection.execute("SELECT status, error FROM runs WHERE run_id = ?",
                                           (run_id,)).fetchone()
    assert (status, error) == ("stopped", "twinrun was stopped by SIGTERM")
    assert not Path(f"/proc/{worker}").exists() or \
        Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
