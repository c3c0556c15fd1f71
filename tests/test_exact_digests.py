"""`identical` is exact: besides every step's words, each replica's whole training state is
digested exactly (xxh3-128) at every epoch's end and at its end, and every digest must agree.

The planted change is the per-step words' structured blind spot as it was: +1, -1, -1, +1 on
the bit patterns of columns 0, 1, 2, 3 of one row of one weight (a + d = b + c), which keeps
both linear sums of that row.
"""

import json

import numpy as np
import pytest

from conftest import require, run_cli
from test_training_state import SCRIPTS
from twinrun.checks.verdict import EXACT_DIGEST, first_divergence
from twinrun.trace import Trace, read_trace
from twinrun.trace.digests import first_digest_difference, state_digest_record


def step_record(step, words):
    return {"kind": "step", "step": step, "epoch": 0, "batch": None, "loss": 0.5,
            "variables": words}


def trace_with(path, words, digests):
    trace = Trace(path)
    for step in range(3):
        trace.steps.append(step_record(step, words))
    for after, at, arrays in digests:
        record = state_digest_record(at, ["w", "b"], arrays)
        trace.digests.append(dict(record, after=after))
    return trace


W, B = np.arange(8, dtype=np.float32), np.zeros(2, np.float32)
PLANTED = W.copy()
PLANTED.view(np.int32)[:4] += np.array([1, -1, -1, 1], np.int32)


# The records and their comparison ------------------------------------------------------------

def test_a_digest_record_names_each_tensor_and_changes_with_any_bit():
    record = state_digest_record("end", ["w", "b"], [W, B])
    assert record["names"] == ["w", "b"] and len(record["tensors"]) == 2
    assert all(len(d) == 32 for d in record["tensors"] + [record["digest"]])
    changed = state_digest_record("end", ["w", "b"], [PLANTED, B])
    assert changed["tensors"][0] != record["tensors"][0]
    assert changed["tensors"][1] == record["tensors"][1]
    assert changed["digest"] != record["digest"]
    # The same bits under another dtype or shape are another state.
    assert state_digest_record("end", ["w", "b"], [W.view(np.int32), B])["digest"] != \
        record["digest"]
    assert state_digest_record("end", ["w", "b"], [W.reshape(2, 4), B])["digest"] != \
        record["digest"]


def test_equal_words_with_a_differing_end_digest_is_a_divergence_after_the_last_step(tmp_path):
    words = [[8, 1, 2], [2, 3, 4]]
    a = trace_with(tmp_path / "a", words, [(3, "epoch 1", [W, B]), (3, "end", [W, B])])
    b = trace_with(tmp_path / "b", words, [(3, "epoch 1", [W, B]), (3, "end", [PLANTED, B])])
    divergence = first_divergence([a, b])
    assert (divergence.step, divergence.records, divergence.variables) == (2, [EXACT_DIGEST],
                                                                            ["w"])
    assert divergence.digest["at"] == "end" and divergence.digest["after_step"] == 2
    assert divergence.digest["digests"][0] != divergence.digest["digests"][1]
    # (A comparison frees the words it found equal: each comparison gets fresh traces.)
    a, same = (trace_with(tmp_path / name, words, [(3, "epoch 1", [W, B]), (3, "end", [W, B])])
               for name in "ac")
    assert first_divergence([a, same]) is None


def test_an_earlier_digest_wins_over_a_later_word_difference_and_not_the_other_way(tmp_path):
    a = trace_with(tmp_path / "a", [[8, 1, 2]], [(1, "epoch 1", [W, B])])
    b = trace_with(tmp_path / "b", [[8, 1, 2]], [(1, "epoch 1", [PLANTED, B])])
    b.steps = type(b.steps)()
    for step, last in ((0, 2), (1, 2), (2, 9)):
        b.steps.append(step_record(step, [[8, 1, last]]))
    divergence = first_divergence([a, b])
    assert (divergence.step, divergence.records) == (0, [EXACT_DIGEST])
    assert divergence.digest["at"] == "epoch 1"
    # A word difference at or before the digest's step is the first divergence.
    a = trace_with(tmp_path / "a", [[8, 1, 2]], [(1, "epoch 1", [W, B])])
    c = trace_with(tmp_path / "c", [[8, 1, 7]], [(1, "epoch 1", [PLANTED, B])])
    assert first_divergence([a, c]).records == ["variables"]


def test_a_point_one_replica_lacks_is_not_compared(tmp_path):
    a = trace_with(tmp_path / "a", [[8, 1, 2]], [(3, "end", [W, B])])
    b = trace_with(tmp_path / "b", [[8, 1, 2]], [])
    assert first_digest_difference([a, b]) is None


# What the tracers write ------------------------------------------------------------------------

def test_the_torch_tracer_digests_the_whole_state_at_each_epoch_and_at_its_end(tmp_path):
    torch = require("torch")
    from twinrun.torch import Tracer

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    x, y = torch.ones(4, 3), torch.zeros(4, 2)
    with Tracer(model, optimizer, path=tmp_path / "run.trace", snapshots=False) as tracer:
        for epoch in range(2):
            for _ in range(2):
                optimizer.zero_grad()
                torch.nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
                tracer.step()
            tracer.epoch_end()
    trace = read_trace(tmp_path / "run.trace")
    assert [(d["after"], d["at"]) for d in trace.digests] == [(2, "epoch 1"), (4, "epoch 2"),
                                                               (4, "end")]
    end = trace.digests[-1]
    assert end["names"] == trace.variables
    assert "optimizer/weight/exp_avg_sq" in end["names"] and "rng/torch_cpu" in end["names"]
    expected = state_digest_record(
        "end", ["weight", "bias"], [model.weight.detach().numpy(), model.bias.detach().numpy()])
    assert end["tensors"][:2] == expected["tensors"]
    # Nothing changed between the last epoch's end and the run's end.
    assert end["digest"] == trace.digests[1]["digest"]


def test_a_reference_keeps_the_digests(tmp_path):
    torch = require("torch")
    from twinrun.checks.reference import read_reference, write_reference
    from twinrun.torch import Tracer

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Tracer(model, optimizer, path=tmp_path / "run.trace", snapshots=False) as tracer:
        optimizer.zero_grad()
        model(torch.ones(1, 2)).sum().backward()
        optimizer.step()
        tracer.step()
    trace = read_trace(tmp_path / "run.trace")
    write_reference(tmp_path / "ref.twinrun", trace, {"kind": "command"}, environment={})
    kept = read_reference(tmp_path / "ref.twinrun").trace.digests
    assert kept == trace.digests and [d["at"] for d in kept] == ["end"]


# Through `twinrun check` -------------------------------------------------------------------------

def check(store, script, *args, env=None):
    completed = run_cli("check", "-n", "2", "--json", "--store", store, "--", "python",
                        SCRIPTS / script, *args, env=env)
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    return completed.returncode, json.loads(completed.stdout)


def assert_named_by_the_exact_digest(verdict, tensor):
    divergence = verdict["first_divergence"]
    assert verdict["verdict"] == "diverged"
    assert (divergence["step"], divergence["records"]) == (4, [EXACT_DIGEST])
    assert divergence["variables"] == [tensor]
    assert divergence["digest"]["after_step"] == 4
    digests = divergence["digest"]["digests"]
    assert len(digests) == 2 and digests[0] != digests[1]
    # Each replica's fingerprint is its final exact digest: they differ, as the weights do.
    assert [r["fingerprint"] for r in verdict["replicas"]] == digests


@pytest.mark.slow
def test_the_planted_pattern_after_the_last_torch_step_is_diverged_by_the_exact_digest(store):
    code, verdict = check(store, "torch_ulp_pattern.py")
    assert code == 1
    assert_named_by_the_exact_digest(verdict, "weight")
    assert verdict["first_divergence"]["digest"]["at"] == "end"


@pytest.mark.slow
def test_the_planted_pattern_is_diverged_through_the_zero_change_hooks(store):
    completed = run_cli("check", "-n", "2", "--store", store, "--", "python",
                        SCRIPTS / "zero_ulp_pattern.py", env={"COLUMNS": "200"})
    assert completed.returncode == 1, completed.stderr[-3000:]
    text = completed.stdout
    assert "DIVERGED at step 4 (epoch 1): the exact digest of the whole " \
           "state at the run's end differs" in text
    assert "first variables to differ: weight\n" in text
    digests = text.split("exact digests: ")[1].split("\n")[0].split(" vs ")
    assert len(digests) == 2 and digests[0] != digests[1] and len(digests[0]) == 32


@pytest.mark.slow
def test_the_same_seeded_script_without_the_plant_is_still_identical(store):
    code, verdict = check(store, "torch_ulp_pattern.py", "--replica", "none")
    assert (code, verdict["verdict"], verdict["steps_compared"]) == (0, "identical", 5)
    fingerprints = [r["fingerprint"] for r in verdict["replicas"]]
    assert fingerprints[0] == fingerprints[1] and len(fingerprints[0]) == 32


@pytest.mark.slow
def test_the_planted_pattern_after_the_last_keras_step_is_diverged_by_the_exact_digest(store):
    require("jax")
    code, verdict = check(store, "keras_ulp_pattern.py", env={"KERAS_BACKEND": "jax"})
    assert code == 1
    assert_named_by_the_exact_digest(verdict, "sequential/dense/kernel")
