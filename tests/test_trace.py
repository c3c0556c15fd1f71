"""The trace file: append-only JSON lines that survive a kill and load without pickle."""

import json
import os
import signal
import subprocess
import sys
import time

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
