"""The sampled trace (`twinrun check --trace-every K`): the batch and the loss every step, the
whole state every K-th step, and a divergence still placed at its exact step and tensor by a
rerun that traces every step since the last sampled one."""

import json

import pytest

from conftest import assert_one_sentence_error, require, run_cli
from test_training_state import SCRIPTS
from twinrun.checks.localize import last_whole_state_step
from twinrun.errors import TwinrunError
from twinrun.trace import read_trace
from twinrun.trace.recording import StateSchedule


def test_a_schedule_samples_every_kth_step_and_a_dense_window():
    assert [s for s in range(10) if StateSchedule().due(s)] == list(range(10))
    assert [s for s in range(12) if StateSchedule(4).due(s)] == [3, 7, 11]
    assert [s for s in range(12) if StateSchedule(4, dense=(4, 6)).due(s)] == [3, 4, 5, 6, 7, 11]
    for every in (0, -2, 1.5, True, "4"):
        with pytest.raises(TwinrunError, match="positive integer"):
            StateSchedule(every)


def test_the_last_whole_state_step_before_a_divergence():
    # Sampled every 4 steps: steps 3, 7, 11, ... hold the whole state.
    assert [last_whole_state_step(step, 4) for step in (0, 3, 4, 6, 7, 8, 12)] == \
        [-1, -1, 3, 3, 3, 7, 11]
    assert last_whole_state_step(5, 1) == 4


def test_a_sampled_torch_tracer_records_the_state_only_on_sampled_steps(tmp_path):
    torch = require("torch")
    from twinrun.torch import Tracer

    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Tracer(model, optimizer, path=tmp_path / "run.trace", trace_every=4) as tracer:
        for _ in range(9):
            optimizer.zero_grad()
            loss = model(torch.ones(2, 3)).sum()
            loss.backward()
            optimizer.step()
            tracer.step(loss, torch.ones(2, 3))
    trace = read_trace(tmp_path / "run.trace")
    assert trace.header["state_every"] == 4
    assert [bool(s["variables"]) for s in trace.steps] == [s in (3, 7) for s in range(9)]
    assert all(s["loss"] is not None and s["batch"] is not None for s in trace.steps)
    # The run's end is digested exactly whatever the sampling.
    assert [d["at"] for d in trace.digests] == ["end"]


def test_a_bad_trace_every_is_refused_in_one_sentence(tmp_path):
    for value in ("0", "-3", "often"):
        assert_one_sentence_error(
            run_cli("check", "--trace-every", value, "--store", tmp_path / "store", "--",
                    "python", SCRIPTS / "torch_sampled_nudge.py"), "--trace-every")


@pytest.mark.slow
def test_sampled_mode_places_a_divergence_between_two_sampled_steps_at_its_step_and_tensor(
        store):
    completed = run_cli("check", "-n", "2", "--json", "--trace-every", "4", "--store", store,
                        "--", "python", SCRIPTS / "torch_sampled_nudge.py", "--step", "5")
    assert completed.returncode == 1, completed.stderr[-3000:]
    verdict = json.loads(completed.stdout)
    divergence = verdict["first_divergence"]
    # Replica 1's weight was nudged after step 5; steps 3 and 7 are the sampled ones.
    assert (divergence["step"], divergence["records"], divergence["variables"]) == \
        (5, ["variables"], ["0.weight"])
    assert any("placed it exactly: step 5, in 0.weight" in note for note in verdict["notes"])
    folder = next((store / "checks").iterdir())
    sampled = read_trace(folder / "replica-1.trace")
    # The sampled trace alone saw it at step 6, by the loss: step 5 kept no state words.
    assert sampled.steps[5]["variables"] == [] and sampled.steps[3]["variables"]
    dense = read_trace(folder / "replica-1.dense.trace")
    assert dense.header["state_dense"] == [4, 6]
    assert [bool(s["variables"]) for s in dense.steps[:7]] == [False, False, False, True,
                                                               True, True, True]
    # Localisation reran step 5 with its whole state, as an every-step check does.
    assert verdict["localization"]["step"] == 5 and verdict["localization"]["race"] is False
