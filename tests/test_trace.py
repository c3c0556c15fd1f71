"""The trace file: append-only JSON lines that survive a kill and load without pickle."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import require

from twinrun.trace import TraceReader, TraceWriter, read_trace

WRITER = """
import sys, time
from twinrun.trace import TraceWriter
writer = TraceWriter(sys.argv[1])
writer.header(["w"], [[1]])
step = 0
while True:
    writer.step(step, 0, "b", 0.5, [[1, 2, 3]])
    step += 1
    if step == 50:
        print("ready", flush=True)
    time.sleep(0.001)
"""


def test_a_trace_written_by_a_killed_process_keeps_every_flushed_step(tmp_path):
    path = tmp_path / "killed.trace"
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    trace = read_trace(path)
    assert trace.variables == ["w"]
    assert len(trace.steps) >= 50
    assert [s["step"] for s in trace.steps] == list(range(len(trace.steps)))
    assert not trace.finished


def test_a_torn_last_line_is_ignored_and_completed_lines_are_read(tmp_path):
    path = tmp_path / "torn.trace"
    writer = TraceWriter(path)
    writer.header(["w"])
    writer.step(0, 0, None, 1.0, [[1, 2, 3]])
    writer.close()
    with open(path, "a") as handle:
        handle.write('{"kind": "step", "step": 1, "epo')
    trace = read_trace(path)
    assert len(trace.steps) == 1


def test_the_reader_returns_only_new_records_and_waits_for_a_line_to_complete(tmp_path):
    path = tmp_path / "live.trace"
    reader = TraceReader(path)
    assert reader.poll() == []  # not created yet
    writer = TraceWriter(path)
    writer.header(["w"])
    assert [r["kind"] for r in reader.poll()] == ["header"]
    with open(path, "a") as handle:
        handle.write(json.dumps({"kind": "step", "step": 0})[:10])
    assert reader.poll() == []
    with open(path, "a") as handle:
        handle.write(json.dumps({"kind": "step", "step": 0})[10:] + "\n")
    assert [r["step"] for r in reader.poll()] == [0]


def test_losses_round_trip_bit_for_bit(tmp_path):
    path = tmp_path / "loss.trace"
    writer = TraceWriter(path)
    writer.header([])
    values = [0.1 + 0.2, 1e-308, -0.0, float("inf"), 2.220446049250313e-16]
    for i, value in enumerate(values):
        writer.step(i, 0, None, value, [])
    writer.close()
    assert [repr(s["loss"]) for s in read_trace(path).steps] == [repr(v) for v in values]


IN_STEP = """
import json, sys
import numpy as np
import keras
import twinrun
from twinrun.keras import Trace
from twinrun.trace import read_trace

def fit(path, in_step):
    twinrun.deterministic(3, backend="tensorflow")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3000),
                              keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    x, y = rng.random((96, 8), np.float32), rng.random((96, 2), np.float32)
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
              callbacks=[Trace(path, snapshots=False, in_step=in_step)])
    return [s["variables"] for s in read_trace(path).steps], "train_step" in vars(model)

inside, left_wrapped = fit(sys.argv[1] + ".in", True)
after, _ = fit(sys.argv[1] + ".after", False)
print(json.dumps({"inside": inside, "after": after, "left_wrapped": left_wrapped}))
"""


def test_the_tensorflow_fingerprint_inside_the_step_gives_each_steps_words(tmp_path):
    require("tensorflow")
    require("keras")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", IN_STEP, str(tmp_path / "run.trace")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Six steps, every one different from the one before: words read before the optimizer's
    # update (one step late) would not match the after-step words.
    assert len(result["inside"]) == 6
    assert all(a != b for a, b in zip(result["inside"], result["inside"][1:]))
    assert result["inside"] == result["after"]
    assert result["left_wrapped"] is False


def test_a_step_that_renames_the_tensors_holds_for_itself_and_later_steps(tmp_path):
    from twinrun.checks.verdict import first_divergence

    def write(path, nudged):
        writer = TraceWriter(path)
        writer.header(["w"], [[1]])
        writer.step(0, 0, None, 1.0, [[1, 2, 3]], names=["w", "optimizer/w/exp_avg_sq"],
                    shapes=[[1], [1]])
        writer.step(1, 0, None, 0.5, [[1, 2, 4], [1, 5, 9 if nudged else 6]])
        writer.close()
        return read_trace(path)

    traces = [write(tmp_path / "a.trace", False), write(tmp_path / "b.trace", True)]
    assert traces[0].header["format"] == 2
    assert traces[0].names_at(0) == ["w", "optimizer/w/exp_avg_sq"]
    assert traces[0].variables == ["w", "optimizer/w/exp_avg_sq"]
    divergence = first_divergence(traces)
    assert (divergence.step, divergence.records) == (1, ["variables"])
    assert divergence.variables == ["optimizer/w/exp_avg_sq"]


def test_the_loss_compared_is_the_batch_loss_not_the_running_mean(tmp_path):
    from twinrun.checks.verdict import compare_step

    row = {"step": 0, "epoch": 0, "batch": None, "loss": 0.25, "loss_running_mean": 0.5,
           "variables": [[1, 2, 3]]}
    assert compare_step([row, dict(row, loss_running_mean=0.75)], ["w"]) is None
    assert compare_step([row, dict(row, loss=0.5)], ["w"]).records == ["loss"]
