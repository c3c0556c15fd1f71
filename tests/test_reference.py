"""References and tolerance verdicts: `twinrun record`, `twinrun check --against REF`, `--rtol`.

The trainings are one tiny PyTorch script (scripts/torch_epochs.py: two epochs of three steps)
whose bits depend on the intra-op thread count on this CPU: recorded once with two threads
(module fixture), then checked with one thread and with two.
"""

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_sentence_error, requires, run_cli
from twinrun.errors import TwinrunError
from twinrun.checks.reference import FORMAT_VERSION, read_reference, write_reference
from twinrun.checks.tolerance import Tolerance, judge, percent
from twinrun.trace import Trace, TraceWriter, read_trace

SCRIPTS = Path(__file__).parent / "scripts"
SCRIPT = ["python", str(SCRIPTS / "torch_epochs.py")]


needs_torch = requires("torch")


# -- the file format, without training -----------------------------------------------------------

def small_trace(path, losses=(0.5, 0.25, 0.125), words=7):
    writer = TraceWriter(path)
    writer.header(["layer.weight", "optimizer/layer.weight/exp_avg"], [[2], [2]],
                  backend="torch", environment={"threads": {"intra_op": 2}}, threads="2")
    for step, loss in enumerate(losses):
        writer.step(step, 0, f"{step:032x}", loss, [[1, 2, words + step], [3, 4, 5]])
    # A field that does not fit its column is kept as written, and must come back as such.
    writer.step(len(losses), 0, "NOT-HEX", 1, [[1, 2, 3], [3, 4, 5]])
    np.savez(Path(path).parent / "run.trace.epoch1.npz", v0=np.ones(3, np.float32))
    writer.write({"kind": "epoch", "epoch": 1, "step": 4, "metrics": {"loss": 0.1},
                  "snapshot": "run.trace.epoch1.npz"})
    writer.write({"kind": "end", "steps": len(losses) + 1})
    writer.close()
    return read_trace(path)


def test_a_reference_reads_back_every_step_record_and_snapshot_exactly(tmp_path):
    trace = small_trace(tmp_path / "run.trace")
    identity = {"kind": "command", "command": ["python", "train.py"], "seed": 0}
    write_reference(tmp_path / "ref.twinrun", trace, identity,
                    environment=trace.header["environment"], snapshots=True)
    reference = read_reference(tmp_path / "ref.twinrun")
    assert list(reference.trace.steps) == list(trace.steps)
    assert reference.trace.steps[3]["batch"] == "NOT-HEX" and reference.trace.steps[3]["loss"] == 1
    assert reference.identity == identity
    assert reference.trace.header["threads"] == "2"
    assert reference.trace.header["environment"] == {"threads": {"intra_op": 2}}
    assert reference.snapshots == ["run.trace.epoch1.npz"]
    folder = tmp_path / "check"
    folder.mkdir()
    reference.extract_snapshots(folder)
    assert reference.trace.epochs[0]["snapshot"] == "reference.run.trace.epoch1.npz"
    with np.load(folder / "reference.run.trace.epoch1.npz", allow_pickle=False) as archive:
        assert archive["v0"].tolist() == [1.0, 1.0, 1.0]


def test_a_reference_holds_no_pickle_and_says_what_it_is(tmp_path):
    trace = small_trace(tmp_path / "run.trace")
    path = write_reference(tmp_path / "ref.twinrun", trace, {"kind": "command"},
                           environment={})
    with zipfile.ZipFile(path) as archive:
        header = json.loads(archive.read("reference.json"))
        assert header["format"] == "twinrun-reference"
        assert header["format_version"] == FORMAT_VERSION
        for name in archive.namelist():
            if name.endswith(".npy"):
                # Loading without pickle succeeds only for plain numeric arrays.
                np.load(io.BytesIO(archive.read(name)), allow_pickle=False)
        assert not [n for n in archive.namelist() if n.startswith("snapshots/")]


def test_without_snapshots_a_reference_keeps_no_weights(tmp_path):
    trace = small_trace(tmp_path / "run.trace")
    write_reference(tmp_path / "ref.twinrun", trace, {"kind": "command"}, environment={})
    assert read_reference(tmp_path / "ref.twinrun").snapshots == []


def test_a_file_that_is_not_a_reference_is_refused_in_one_sentence(tmp_path):
    for content in (b"print('hello')\n", b""):
        path = tmp_path / "train.twinrun"
        path.write_bytes(content)
        with pytest.raises(TwinrunError, match="is not a twinrun reference"):
            read_reference(path)
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("reference.json", json.dumps({"format": "something-else"}))
    with pytest.raises(TwinrunError, match="is not a twinrun reference"):
        read_reference(other_zip)


def future_reference(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("reference.json", json.dumps(
            {"format": "twinrun-reference", "format_version": FORMAT_VERSION + 1}))
    return path


def test_tolerance_reports_the_largest_relative_loss_difference_and_judges_every_step(tmp_path):
    a = small_trace(tmp_path / "a" / "run.trace", losses=(0.5, 0.25, 0.125))
    b = small_trace(tmp_path / "b" / "run.trace", losses=(0.5, 0.25 * (1 + 2e-4), 0.125))
    within = judge([a, b], [], Tolerance(rtol=1e-3))
    assert within.within and within.max_loss_difference == pytest.approx(2e-4)
    assert percent(within.max_loss_difference) == "0.0200 %"
    outside = judge([a, b], [], Tolerance(rtol=1e-4))
    assert not outside.within and "step 1" in outside.reasons[0]
    far_weights = [{"epoch": 1, "max_relative_distance": 0.5, "reference_norm": 1.0}]
    assert not judge([a, b], far_weights, Tolerance(rtol=1e-3)).within


# -- the command line: refusals before anything trains --------------------------------------------

def test_check_refuses_a_non_reference_a_future_version_and_a_negative_rtol(tmp_path):
    not_one = tmp_path / "ref.twinrun"
    not_one.write_text("# a training script, not a reference\n")
    assert_one_sentence_error(run_cli("check", "--against", not_one, "--", *SCRIPT),
                              "is not a twinrun reference")
    future = future_reference(tmp_path / "future.twinrun")
    assert_one_sentence_error(run_cli("check", "--against", future, "--", *SCRIPT),
                              f"format version {FORMAT_VERSION + 1}", "upgrade twinrun")
    assert_one_sentence_error(run_cli("check", "--rtol", "-1", "--", *SCRIPT),
                              "--rtol", "at least 0")
    assert_one_sentence_error(run_cli("check", "--rtol", "1e-3", "--atol", "-1e-8", "--",
                                      *SCRIPT), "--atol")


# -- recorded with 2 threads, checked with 1 and with 2 ------------------------------------------

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    path = folder / "ref.twinrun"
    completed = run_cli("record", "-o", path, "--threads", "2", "--snapshots",
                        "--store", folder / "store", "--", *SCRIPT)
    assert completed.returncode == 0, completed.stderr
    return path


def check_against(reference, *args, store):
    completed = run_cli("check", "--against", reference, *args, "--store", store, "--", *SCRIPT)
    assert "Traceback" not in completed.stderr, completed.stderr
    return completed


@pytest.mark.slow
@needs_torch
def test_a_reference_checked_with_other_thread_counts_diverges_and_names_them(reference,
                                                                            tmp_path):
    completed = check_against(reference, "--threads", "1", "--json", store=tmp_path)
    assert completed.returncode == 1, completed.stderr
    verdict = json.loads(completed.stdout)
    assert verdict["verdict"] == "diverged"
    assert verdict["replicas"][0]["label"] == "reference"
    diff = {d["key"]: d["values"] for d in verdict["environment_diff"]}
    assert diff["threads.intra_op"] == [2, 1]
    assert "intra-op threads 2 → 1" in verdict["environment_changes"]
    assert any("Thread counts differ from the recording" in c for c in verdict["likely_causes"])
    assert verdict["first_divergence"]["variables"]
    # Without --rtol no tolerance is judged.
    assert verdict["max_loss_difference"] is None


@pytest.mark.slow
@needs_torch
def test_with_rtol_the_same_check_is_within_tolerance_and_reports_the_max_loss_difference(
        reference, tmp_path):
    completed = check_against(reference, "--threads", "1", "--rtol", "1e-3", store=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "WITHIN TOLERANCE" in completed.stdout
    assert "max loss difference " in completed.stdout and " %" in completed.stdout
    assert "intra-op threads 2 → 1" in completed.stdout
    # lint's finding in the script comes above the verdict.
    text = completed.stdout.replace("\n", " ")
    assert text.index("PYTHONHASHSEED") < text.index("DIVERGED")

    strict = check_against(reference, "--threads", "1", "--rtol", "1e-3", "--strict", "--json",
                           store=tmp_path)
    assert strict.returncode == 1, strict.stderr
    verdict = json.loads(strict.stdout)
    assert verdict["verdict"] == "within_tolerance"
    assert verdict["tolerance"] == {"rtol": 1e-3, "atol": 0.0}
    assert 0 <= verdict["max_loss_difference"] <= 1e-3
    # The reference kept its epoch snapshots: the weights were compared too.
    assert 0 < verdict["max_weight_distance"] <= 1e-3
    assert [f["rule"] for f in verdict["findings"]] == ["hash-seed-in-python"]


@pytest.mark.slow
@needs_torch
def test_the_same_thread_count_as_the_recording_is_identical_and_exits_0(reference, tmp_path):
    completed = check_against(reference, "--threads", "2", "--json", store=tmp_path)
    assert completed.returncode == 0, completed.stderr
    verdict = json.loads(completed.stdout)
    assert verdict["verdict"] == "identical"
    assert verdict["steps_compared"] == 6
    assert verdict["reference"]["path"] == str(reference)


@pytest.mark.slow
@needs_torch
def test_a_reference_of_another_workload_or_command_is_refused_before_training(reference,
                                                                             tmp_path):
    other_arguments = run_cli("check", "--against", reference, "--store", tmp_path, "--",
                              *SCRIPT, "--epochs", "3")
    assert_one_sentence_error(other_arguments, "was recorded from", "torch_epochs.py")
    other_workload = run_cli("check", "--against", reference, "--workload", "answer-demo",
                             "--store", tmp_path)
    assert_one_sentence_error(other_workload, "was recorded from", "answer-demo")
    # Nothing ran: no check was recorded.
    assert not (tmp_path / "checks").exists() or not any((tmp_path / "checks").iterdir())


@pytest.mark.slow
@needs_torch
def test_replicas_with_rtol_train_to_their_end_and_are_within_tolerance(tmp_path):
    completed = run_cli("check", "-n", "2", "--threads", "1,2", "--rtol", "1e-3", "--json",
                        "--store", tmp_path, "--", *SCRIPT)
    assert completed.returncode == 0, completed.stderr
    verdict = json.loads(completed.stdout)
    assert verdict["verdict"] == "within_tolerance"
    # No lockstep stop at the first difference: the tolerance needs every step.
    assert [r["steps"] for r in verdict["replicas"]] == [6, 6]
    assert not any(r["stopped_early"] for r in verdict["replicas"])
    assert 0 < verdict["max_weight_distance"] <= 1e-3  # 1 and 2 threads: bits moved, a little
    refused = run_cli("check", "-n", "2", "--rtol", "1e-3", "--lockstep", "--store", tmp_path,
                      "--", *SCRIPT)
    assert_one_sentence_error(refused, "--lockstep", "--rtol")
