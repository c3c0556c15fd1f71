"""Bad inputs a new user tries: each gets one sentence and a non-zero exit, never a traceback."""

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import (TWINRUN, assert_one_sentence_error, fashion_mnist_dir, requires_data,
                      run_cli)


def test_unknown_backend(store):
    completed = run_cli("train", "--backend", "theano", "--store", store)
    assert_one_sentence_error(completed, "Unknown backend 'theano'", "tensorflow, jax, torch")


def test_negative_seed(store):
    completed = run_cli("train", "--seed", "-1", "--store", store)
    assert_one_sentence_error(completed, "an integer from 0 to 2**63 - 1", "seed=-1")


def test_unknown_preset(store):
    completed = run_cli("train", "--preset", "huge", "--store", store)
    assert_one_sentence_error(completed, "Unknown preset 'huge'")


def test_zero_epochs(store):
    completed = run_cli("train", "--epochs", "0", "--store", store)
    assert_one_sentence_error(completed, "--epochs", "positive integer")


def test_missing_data_names_the_folder_and_the_missing_files(tmp_path, store):
    empty = tmp_path / "empty"
    empty.mkdir()
    completed = run_cli("train", "--data-dir", empty, "--store", store)
    assert_one_sentence_error(completed, str(empty), "train-images-idx3-ubyte")


@requires_data
def test_corrupt_data_names_the_file_and_both_hashes(tmp_path, store):
    data = tmp_path / "data"
    shutil.copytree(fashion_mnist_dir(), data)
    labels = data / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    labels.write_bytes(gzip.compress(bytes(raw)))
    completed = run_cli("train", "--data-dir", data, "--store", store)
    assert_one_sentence_error(completed, "train-labels-idx1-ubyte",
                              "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9")


def test_a_store_under_a_regular_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    completed = run_cli("train", "--store", blocker / "runs")
    assert_one_sentence_error(completed, str(blocker))


def test_a_store_where_nothing_may_be_written_is_refused():
    # /proc refuses new entries even to root.
    completed = run_cli("train", "--store", "/proc/twinrun-store")
    assert_one_sentence_error(completed, "/proc/twinrun-store")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_output_to_a_full_device_is_one_sentence_not_a_bug_report(tmp_path):
    # /dev/full refuses every write with ENOSPC, as a full disk does.
    script = tmp_path / "train.py"
    script.write_text("import random\nrandom.shuffle([1, 2, 3])\n")
    with open("/dev/full", "w") as full:
        completed = subprocess.run([TWINRUN, "lint", str(script)], stdout=full,
                                   stderr=subprocess.PIPE, text=True, timeout=120)
    completed.stdout = ""
    assert_one_sentence_error(completed, "No space left on the device", "free some space")
    assert "bug in twinrun" not in completed.stderr


def test_show_an_unknown_run(store):
    from twinrun.store import Store

    Store(store).close()
    completed = run_cli("show", "no-such-run", "--store", store)
    assert_one_sentence_error(completed, "no-such-run")


@pytest.mark.parametrize("args, fragment", [
    (["check", "-n", "1"], "at least 2"),
    (["check", "--threads", "1,2,3"], "one per replica"),
    (["check", "--hash-seed", "sometimes"], "--hash-seed"),
    (["check", "--", "python", "no_such_script.py"], "Script not found: no_such_script.py"),
    (["check", "--", "no-such-program-xyz"], "Command not found: no-such-program-xyz"),
    (["check", "--workload", "mnist"], "Unknown workload 'mnist'"),
])
def test_check_refuses_bad_input_in_one_sentence(args, fragment, store):
    completed = run_cli(*args, "--store", store) if "--" not in args else run_cli(
        *args[:args.index("--")], "--store", store, *args[args.index("--"):])
    assert completed.returncode == 2
    assert_one_sentence_error(completed, fragment)


def test_check_names_its_replicas_at_a_time_jobs_as_the_studies_do(store):
    shown = run_cli("check", "--help")
    assert "--jobs INTEGER" in shown.stdout
    assert "--parallel" not in shown.stdout
    for option in ("--jobs", "--parallel"):  # --parallel: the old name, still read
        completed = run_cli("check", "--store", store, "--lockstep", option, "1", "--",
                            "python", "tests/scripts/torch_tiny.py")
        assert_one_sentence_error(completed, "Lockstep runs every replica at once, so --jobs 1 "
                                             "cannot hold for -n 2; drop --jobs, or pass "
                                             "--no-lockstep")
    completed = run_cli("check", "--store", store, "--jobs", "0", "--", "python", "x.py")
    assert_one_sentence_error(completed, "Expected --jobs to be at least 1. Received: 0.")
    assert not (store / "checks").exists()
