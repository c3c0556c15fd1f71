"""The comparing parent holds traces as arrays and compares them as they grow.

A full-preset check has 150,000 steps of ~50-75 tensors per replica: as Python dicts that is
gigabytes in the parent, packed it is ~100 MB, and a streaming comparison frees every step it
found equal. These tests read and compare real trace files with the real reader.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from twinrun.checks.causes import loss_growth
from twinrun.checks.verdict import Comparison, compare_step, first_divergence
from twinrun.errors import TwinrunError
from twinrun.trace import TraceReader, TraceWriter, read_trace


def write_trace(path, steps, tensors=3, change=None):
    """A synthetic trace of `steps` steps; `change(step, record)` may edit a record."""
    rng = np.random.default_rng(0)
    writer = TraceWriter(path)
    writer.header([f"w{i}" for i in range(tensors)], [[4]] * tensors)
    for step in range(steps):
        record = {"step": step, "epoch": step // 10, "batch": f"{step:032x}",
                  "loss": 1.0 / (step + 1),
                  "words": rng.integers(0, 2**32, (tensors, 3)).tolist()}
        if change is not None:
            change(step, record)
        writer.step(record.pop("step"), record.pop("epoch"), record.pop("batch"),
                    record.pop("loss"), record.pop("words"), **record)
    writer.write({"kind": "end", "steps": steps})
    writer.close()


def test_every_step_record_reads_back_exactly_as_written(tmp_path):
    path = tmp_path / "odd.trace"
    rows = [
        {"step": 0, "epoch": 0, "batch": "ab" * 16, "loss": 0.1 + 0.2, "variables": [[1, 2, 3]],
         "loss_running_mean": 0.5, "names": ["w"], "shapes": [[1]]},
        {"step": 1, "epoch": None, "batch": None, "loss": None, "variables": [[4, 5, 6]]},
        # Fields that fit no column are kept as written: an int loss, upper-case hex, words
        # outside uint32 or in rows of different lengths, an extra field.
        {"step": 2, "epoch": 0, "batch": "AB" * 16, "loss": 1, "variables": [[1, 2], [3]],
         "note": "[/x]"},
        {"step": 3, "epoch": 0, "batch": "xyz", "loss": -0.0, "variables": [[-1, 2**33, 0]]},
        {"step": 4, "epoch": 1, "batch": "00" * 16, "loss": float("inf"), "variables": []},
    ]
    writer = TraceWriter(path)
    writer.header(["w"])
    for row in rows:
        row = dict(row)
        writer.step(row.pop("step"), row.pop("epoch"), row.pop("batch"), row.pop("loss"),
                    row.pop("variables"), **row)
    writer.close()
    on_disk = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    trace = read_trace(path)
    assert len(trace.steps) == len(on_disk)
    assert [json.dumps(r, sort_keys=True) for r in trace.steps] == \
        [json.dumps(r, sort_keys=True) for r in on_disk]
    assert repr(trace.steps[3]["loss"]) == "-0.0"
    assert trace.steps[-1]["step"] == 4
    assert trace.steps.words(0).dtype == np.uint32 and trace.steps.words(0).shape == (1, 3)


READ_AND_MEASURE = """
import json, sys
from twinrun.trace import read_trace

def rss_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

before = rss_kib("VmRSS:")
trace = read_trace(sys.argv[1])
print(json.dumps({"steps": len(trace.steps), "growth_mb": (rss_kib("VmRSS:") - before) / 1024,
                  "peak_growth_mb": (rss_kib("VmHWM:") - before) / 1024,
                  "packed_mb": trace.steps.nbytes() / 2**20}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_20000_step_trace_is_held_as_arrays_not_python_objects(tmp_path):
    # 20,000 steps of 52 tensors (the seed CNN with Adam's slots): 3.1 million words, 12 MB
    # as uint32 and well over 150 MB as Python lists of ints.
    path = tmp_path / "long.trace"
    write_trace(path, 20_000, tensors=52)
    done = subprocess.run([sys.executable, "-c", READ_AND_MEASURE, str(path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout)
    assert measured["steps"] == 20_000
    assert measured["packed_mb"] < 30
    assert measured["growth_mb"] < 60, measured
    assert measured["peak_growth_mb"] < 80, measured


def test_the_packed_comparison_finds_the_same_first_difference_as_comparing_records(tmp_path):
    plants = {
        "a word": lambda r: r["words"][1].__setitem__(2, r["words"][1][2] ^ 1),
        "the sign of a zero loss": lambda r: r.update(loss=-0.0),
        "the batch": lambda r: r.update(batch="f" * 32),
        "a missing loss": lambda r: r.update(loss=None),
        "a loss written as an int": lambda r: r.update(loss=1),
        "the number of tensors": lambda r: r.update(words=r["words"][:2]),
    }
    for name, plant in plants.items():
        for at in (0, 5, 2999):
            reference, other = tmp_path / f"{name}-{at}-0.trace", tmp_path / f"{name}-{at}-1.trace"
            zero_loss = (lambda s, r: r.update(loss=0.0) if s == at else None)
            write_trace(reference, 3000, change=zero_loss)
            write_trace(other, 3000, change=lambda s, r: (zero_loss(s, r),
                                                          plant(r) if s == at else None))
            traces = [read_trace(reference), read_trace(other)]
            divergence = first_divergence(traces)
            assert getattr(divergence, "step", None) == at, (name, at)
            expected = compare_step([traces[0].steps[at], traces[1].steps[at]],
                                    traces[0].names_at(at))
            assert divergence.records == expected.records, name
            assert divergence.variables == expected.variables, name


def test_identical_traces_are_compared_on_every_step_and_have_no_divergence(tmp_path):
    write_trace(tmp_path / "a.trace", 3000)
    write_trace(tmp_path / "b.trace", 3000)
    traces = [read_trace(tmp_path / "a.trace"), read_trace(tmp_path / "b.trace")]
    comparison = Comparison(traces)
    assert comparison.advance(final=True) is None
    assert comparison.agreed == 3000
    assert first_divergence(traces) is None


def test_a_streaming_comparison_frees_compared_words_and_keeps_the_divergent_step(tmp_path):
    write_trace(tmp_path / "a.trace", 3000)
    write_trace(tmp_path / "b.trace", 3000,
                change=lambda s, r: r["words"][0].__setitem__(0, 7) if s == 2500 else None)
    readers = [TraceReader(tmp_path / "a.trace"), TraceReader(tmp_path / "b.trace")]
    for reader in readers:
        reader.advance()
    comparison = Comparison([r.trace for r in readers])
    divergence = comparison.advance()
    assert divergence.step == 2500 and divergence.variables == ["w0"]
    assert [r.trace.steps.released for r in readers] == [2500, 2500]
    assert readers[0].trace.steps[0]["variables"] is None  # compared equal, freed
    # the final fingerprint stays, as written
    last = json.loads((tmp_path / "b.trace").read_text().splitlines()[-2])
    assert (last["step"], readers[1].trace.steps[-1]["variables"]) == (2999, last["variables"])
    # The verdict's own comparison goes on from there and finds the same step.
    again = first_divergence([r.trace for r in readers])
    assert (again.step, again.variables) == (2500, ["w0"])


def test_a_replica_run_later_is_compared_against_replica_0_while_it_grows(tmp_path):
    write_trace(tmp_path / "a.trace", 2000)
    write_trace(tmp_path / "b.trace", 2000)
    lines = (tmp_path / "b.trace").read_text().splitlines(keepends=True)
    growing = tmp_path / "growing.trace"
    reference = TraceReader(tmp_path / "a.trace")
    reference.advance()
    reader = TraceReader(growing)
    comparison = Comparison([reference.trace, reader.trace])
    with open(growing, "w") as handle:
        handle.writelines(lines[:1001])  # the header and 1,000 steps
    reader.advance()
    assert comparison.advance() is None
    assert comparison.agreed == 1000
    assert reader.trace.steps.released == 999  # all but its last step so far
    with open(growing, "a") as handle:
        handle.writelines(lines[1001:])
    reader.advance()
    assert comparison.advance() is None and comparison.agreed == 2000


def test_traces_that_agree_but_differ_in_length_are_an_error(tmp_path):
    write_trace(tmp_path / "a.trace", 100)
    write_trace(tmp_path / "b.trace", 98)
    with pytest.raises(TwinrunError, match="different lengths"):
        first_divergence([read_trace(tmp_path / "a.trace"), read_trace(tmp_path / "b.trace")])


def test_loss_growth_lists_the_first_steps_and_then_a_curve_to_the_end(tmp_path):
    write_trace(tmp_path / "a.trace", 20_000)
    write_trace(tmp_path / "b.trace", 20_000,
                change=lambda s, r: r.update(loss=r["loss"] * 1.5))
    growth = loss_growth([read_trace(tmp_path / "a.trace"), read_trace(tmp_path / "b.trace")], 0)
    steps = [g["step"] for g in growth]
    assert steps[:1000] == list(range(1000))
    assert steps[-1] == 19_999 and len(steps) <= 2001 and steps == sorted(set(steps))
    assert growth[0]["max_abs_loss_diff"] == pytest.approx(0.5)
    assert growth[3]["max_rel_loss_diff"] == pytest.approx(0.5)


def test_a_comparison_of_traces_of_different_lengths_can_be_taken_up_again(tmp_path):
    # Streaming first, as `run_replicas` does, then the verdict's own comparison.
    write_trace(tmp_path / "a.trace", 6)
    write_trace(tmp_path / "b.trace", 4)
    traces = [read_trace(tmp_path / "a.trace"), read_trace(tmp_path / "b.trace")]
    assert Comparison(traces).advance() is None
    with pytest.raises(TwinrunError, match="different lengths"):
        first_divergence(traces)


def test_replicas_that_differ_keep_no_words_after_the_difference_but_their_last(tmp_path):
    write_trace(tmp_path / "a.trace", 3000, tensors=30)
    write_trace(tmp_path / "b.trace", 3000, tensors=30,
                change=lambda s, r: r["words"][2].__setitem__(1, 0) if s == 10 else None)
    lines = (tmp_path / "b.trace").read_text().splitlines(keepends=True)
    reference, growing = TraceReader(tmp_path / "a.trace"), TraceReader(tmp_path / "grow.trace")
    reference.advance()
    comparison = Comparison([reference.trace, growing.trace])
    with open(tmp_path / "grow.trace", "w") as handle:
        handle.writelines(lines[:101])  # the header and 100 steps
    growing.advance()
    assert comparison.advance().step == 10
    with open(tmp_path / "grow.trace", "a") as handle:
        handle.writelines(lines[101:])
    growing.advance()
    # Both replicas keep the divergent step's words and their last step's (the final
    # fingerprints), none of the thousands after the difference.
    for steps, source in ((growing.trace.steps, lines),
                          (reference.trace.steps,
                           (tmp_path / "a.trace").read_text().splitlines(keepends=True))):
        assert steps.words(10).tolist() == json.loads(source[11])["variables"]  # step 10
        assert steps.words(11) is None and steps.words(2000) is None
        assert steps[-1]["variables"] == json.loads(source[-2])["variables"]
        assert steps.nbytes() < 3000 * 30 * 3 * 4 / 3
    divergence = first_divergence([reference.trace, growing.trace])
    assert (divergence.step, divergence.variables) == (10, ["w2"])
