"""The verdict is the exit status: 0 identical, 1 diverged, 2 only when the check could not
give a verdict.

What a check needs beyond training (the MLflow tracking store, the report's folder) is checked
before any replica starts; what fails after the verdict (writing the report, the export) is a
`Warning:` and leaves the verdict's status alone. Signals end any command with one sentence,
and a closed stdout ends it quietly. The trainings are five SGD steps of a Linear layer
(tests/scripts/torch_tiny.py).
"""

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import TWINRUN, assert_one_sentence_error, require, run_cli
from twinrun.store import Store

TINY = Path(__file__).parent / "scripts" / "torch_tiny.py"


def closed_port():
    """A local TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def needs_mlflow():
    """MLflow, which `make setup` installs (the `test` extra); under CI a skip would hide it."""
    require("mlflow")
    require("sqlalchemy")


def logged(stderr):
    """The log files the warnings on stderr name."""
    return [Path(path) for path in re.findall(r"The log of this failure is (\S+)\.$", stderr,
                                              flags=re.MULTILINE)]


# -- checked before any replica starts -----------------------------------------------------------

def test_an_unreachable_mlflow_server_is_refused_before_any_replica_starts(tmp_path):
    port = closed_port()
    store = tmp_path / "store"
    completed = run_cli("check", "--store", store, "--mlflow", f"http://127.0.0.1:{port}",
                        "--", "python", TINY, cwd=tmp_path)
    assert_one_sentence_error(completed)
    assert completed.stderr == (
        f"Error: Cannot reach the MLflow tracking server http://127.0.0.1:{port} (connection "
        f"refused); start it, or pass another --mlflow URI.\n")
    assert not store.exists()  # no replica ran, and none was recorded


def test_mlflow_database_in_a_missing_folder_is_refused_for_train_too(tmp_path):
    store = tmp_path / "store"
    completed = run_cli("train", "--store", store, "--mlflow",
                        f"sqlite:///{tmp_path / 'no-such-folder' / 'mlflow.db'}", cwd=tmp_path)
    assert_one_sentence_error(completed)
    assert completed.stderr == (
        f"Error: Cannot create the MLflow database {tmp_path / 'no-such-folder' / 'mlflow.db'}: "
        f"its folder {tmp_path / 'no-such-folder'} does not exist; create the folder, or pass "
        f"another --mlflow URI.\n")
    assert not store.exists()


def test_a_report_path_under_a_regular_file_is_refused_before_any_replica_starts(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder\n")
    store = tmp_path / "store"
    completed = run_cli("check", "--store", store, "--report", blocker / "check.html", "--",
                        "python", TINY, cwd=tmp_path)
    assert_one_sentence_error(completed)
    assert completed.stderr == (
        f"Error: --report {blocker / 'check.html'}: {blocker} is a file, not a folder, so "
        f"nothing can be written under it; give a file in an existing folder.\n")
    assert not store.exists()


def test_a_report_path_under_a_regular_file_is_refused_by_variance_too(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder\n")
    completed = run_cli("variance", "--store", tmp_path / "store", "--report",
                        blocker / "deeper" / "study.html", "--runs", "2", "--", "python", TINY,
                        cwd=tmp_path)
    assert_one_sentence_error(completed, f"{blocker} is a file, not a folder")
    assert not (tmp_path / "store").exists()


# -- failures after the verdict -----------------------------------------------------------------

def test_a_report_that_fails_after_an_identical_verdict_is_a_warning_and_exit_0(tmp_path):
    # Replica 0 replaces the report's folder with a file while it trains: the folder was fine
    # when the check started, and writing the page after the verdict fails for real.
    folder = tmp_path / "out"
    folder.mkdir()
    store = tmp_path / "store"
    completed = run_cli("check", "--store", store, "--report", folder / "check.html", "--",
                        "python", TINY, "--replace-folder", folder, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "IDENTICAL" in completed.stdout
    with Store(store, create=False) as opened:
        [check] = opened.list_checks()
    assert check["verdict"] == "identical"
    assert completed.stderr.splitlines()[0] == (
        f"Warning: {check['check_id']} is recorded, but its report was not written: Cannot "
        f"write the report to {folder / 'check.html'}: not a directory; give a writable file "
        f"instead. The log of this failure is {logged(completed.stderr)[0]}.")
    assert len(completed.stderr.splitlines()) == 1
    assert "Cannot write the report" in logged(completed.stderr)[0].read_text()


def test_a_report_and_an_export_that_fail_after_a_divergence_keep_exit_1(tmp_path):
    needs_mlflow()
    folder = tmp_path / "out"
    folder.mkdir()
    store = tmp_path / "store"
    process = subprocess.Popen(
        [TWINRUN, "check", "--store", str(store), "--no-localize",
         "--report", str(folder / "check.html"), "--mlflow", f"sqlite:///{folder / 'mlflow.db'}",
         "--", "python", str(TINY), "--replace-folder", str(folder), "--diverge"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # `twinrun check | head -0`: the verdict's status must survive it
    stderr = process.stderr.read()
    assert process.wait(timeout=900) == 1, stderr
    lines = stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("Warning: ") for line in lines), stderr
    assert "its report was not written" in lines[0]
    assert [path.exists() for path in logged(stderr)] == [True, True]
    assert lines[1] == (
        f"Warning: Cannot create the MLflow database {folder / 'mlflow.db'}: its folder {folder} "
        f"is a file; create the folder, or pass another --mlflow URI. The log of this failure "
        f"is {logged(stderr)[1]}.")
    with Store(store, create=False) as opened:
        assert [check["verdict"] for check in opened.list_checks()] == ["diverged"]


# -- signals and closed pipes ---------------------------------------------------------------------

def _default_signals():
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("signum, status, sentence", [
    (signal.SIGTERM, 2, "Error: twinrun was stopped by SIGTERM; nothing more was run.\n"),
    (signal.SIGHUP, 2, "Error: twinrun was stopped by SIGHUP; nothing more was run.\n"),
    (signal.SIGINT, 130, "Error: Interrupted; nothing more was run.\n"),
], ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_outside_the_replicas_ends_the_command_with_one_sentence(signum, status,
                                                                         sentence, tmp_path):
    # A server that accepts and never answers holds `check` in its MLflow check, before any
    # replica: the signal arrives once the connection is made.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(300)
        store = tmp_path / "store"
        process = subprocess.Popen(
            [TWINRUN, "check", "--store", str(store), "--mlflow",
             f"http://127.0.0.1:{server.getsockname()[1]}", "--", "python", str(TINY)],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"},
            # As from a terminal: a signal this pytest process ignores (something earlier in
            # the suite leaves SIGINT ignored) would be ignored by the child too, rightly.
            preexec_fn=_default_signals)
        connection, _ = server.accept()
        with connection:
            # Wait for the request itself: then `check` is past connecting, waiting on the
            # answer, and the signal cannot land in the middle of setting up the socket.
            connection.settimeout(60)
            connection.recv(1)
            process.send_signal(signum)
            stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == status, (process.returncode, stderr)
    assert stderr == sentence
    assert stdout == ""
    assert not store.exists()


@pytest.mark.parametrize("args", [["runs"], ["checks"], ["runs", "--json"]],
                         ids=lambda args: " ".join(args))
def test_a_closed_stdout_ends_a_listing_quietly(args, tmp_path):
    with Store(tmp_path / "store") as store:
        for seed in range(3):
            store.start_run(workload="w", backend="torch", seed=seed, config={}, seeds={},
                            determinism={}, environment={})
        store.record_check("check-20261201-120000-abcdef", kind="command", label="python t.py",
                           verdict="identical", result="{}", replicas=2, steps_compared=5)
    process = subprocess.Popen([TWINRUN, *args, "--store", str(tmp_path / "store")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone before the first line
    stderr = process.stderr.read()
    # Status 1, as Click and Rich end on a closed pipe; never 141 or 2 with "failed
    # unexpectedly".
    assert process.wait(timeout=300) == 1
    assert stderr == ""


def test_against_needs_at_least_one_run_and_starts_none_for_0(tmp_path):
    store = tmp_path / "store"
    recorded = run_cli("record", "-o", tmp_path / "ref.twinrun", "--store", store, "--",
                       "python", TINY, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    with Store(store, create=False) as opened:
        before = (opened.list_runs(), opened.list_checks())
    completed = run_cli("check", "--against", tmp_path / "ref.twinrun", "-n", "0", "--store",
                        store, "--", "python", TINY, cwd=tmp_path)
    assert_one_sentence_error(completed)
    assert completed.stderr == "Error: Expected -n to be at least 1. Received: n=0.\n"
    with Store(store, create=False) as opened:
        assert (opened.list_runs(), opened.list_checks()) == before  # nothing ran
