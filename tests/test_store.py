"""The run store: real SQLite files, real processes writing at once, real CLI invocations."""

import functools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from twinrun.cli import main
from twinrun.determinism import environment_for
from twinrun.errors import StoreError
from twinrun.fingerprint import digest_arrays
from twinrun.runconfig import RunConfig
from twinrun.seeds import derive_seeds
from twinrun.store import Store, default_store_path
from twinrun.store.sqlite import SCHEMA_VERSION

TWINRUN = Path(sys.executable).parent / "twinrun"
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


# What a worker records for a run, made by the code that makes it: the determinism report of
# `deterministic()` and the environment fingerprint, in a fresh process the way the launcher
# prepares one (deterministic() seeds this process's generators, so not here), once per session.
PRODUCED = textwrap.dedent("""
    import json, twinrun
    from twinrun.environment import fingerprint_environment
    report = twinrun.deterministic(0, backend="jax")
    print(json.dumps({"determinism": report.to_dict(),
                      "environment": fingerprint_environment(backend="jax")}))
""")


@functools.cache
def produced_records():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINRUN_", "XLA_"))}
    env.update(environment_for("jax", hash_seed=derive_seeds(0)["hash"]))
    completed = subprocess.run([sys.executable, "-c", PRODUCED], env=env, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.splitlines()[-1])


def weights_fingerprint(seed):
    """A fingerprint as the workloads make one: the digest of the model's arrays."""
    return digest_arrays([np.full((2, 3), seed, "float32")])


def start(store, seed=0, **overrides):
    records = produced_records()
    config = RunConfig(workload="answer-demo", backend="jax", seed=int(seed))
    arguments = dict(
        workload="answer-demo",
        backend="jax",
        seed=seed,
        config=config.to_dict(),
        seeds=config.seeds,
        determinism=records["determinism"],
        environment=records["environment"],
    )
    arguments.update(overrides)
    return store.start_run(**arguments)


def finished_run(store, seed=0, epochs=3):
    run_id = start(store, seed)
    for epoch in range(1, epochs + 1):
        store.record_epoch(run_id, epoch, {"loss": 1.0 / epoch, "val_loss": 1.5 / epoch})
    store.finish_run(run_id, fingerprint=weights_fingerprint(seed),
                     metrics={"test_loss": 0.5, "test_accuracy": 0.875},
                     epochs_trained=epochs, wall_time=12.5, extra={"steps_per_epoch": 375})
    return run_id


# -- one process -------------------------------------------------------------------------------


def test_a_finished_run_reads_back_with_everything_that_was_recorded(tmp_path):
    store = Store(tmp_path / "store")
    run_id = finished_run(store, seed=7)

    run = store.get_run(run_id)

    assert RUN_ID.match(run_id)
    assert run["status"] == "finished"
    assert (run["workload"], run["backend"], run["seed"], run["preset"]) == (
        "answer-demo", "jax", 7, "quick")
    assert run["config"] == RunConfig(workload="answer-demo", backend="jax", seed=7).to_dict()
    assert run["seeds"] == derive_seeds(7)
    assert run["determinism"] == produced_records()["determinism"]
    assert run["environment"] == produced_records()["environment"]
    assert run["metrics"] == {"test_loss": 0.5, "test_accuracy": 0.875}
    assert run["test_accuracy"] == 0.875
    assert run["fingerprint"] == weights_fingerprint(7) and len(run["fingerprint"]) == 32
    assert (run["epochs_trained"], run["wall_time"], run["extra"]) == (
        3, 12.5, {"steps_per_epoch": 375})
    assert [epoch["epoch"] for epoch in run["history"]] == [1, 2, 3]
    assert run["history"][1] == {"epoch": 2, "loss": 0.5, "val_loss": 0.75}
    assert (tmp_path / "store" / "runs.sqlite").is_file()


def test_a_new_run_is_running_until_finished_or_failed(tmp_path):
    store = Store(tmp_path)
    running, failing = start(store, 1), start(store, 2)
    store.fail_run(failing, "The replica crashed with signal 9.")

    assert store.get_run(running)["status"] == "running"
    failed = store.get_run(failing)
    assert (failed["status"], failed["error"]) == ("failed", "The replica crashed with signal 9.")
    assert failed["created_at"] <= failed["finished_at"] <= datetime.now(timezone.utc).isoformat()


def test_numpy_scalars_and_arrays_are_stored_as_plain_json(tmp_path):
    store = Store(tmp_path)
    config = RunConfig(workload="answer-demo", backend="jax", seed=3,
                       settings={"learning_rate": np.float32(0.5)})
    run_id = start(store, seed=np.int64(3), config=config.to_dict())
    store.record_epoch(run_id, np.int64(1), {"loss": np.float32(0.25), "per_class": np.arange(3)})
    store.finish_run(run_id, fingerprint="f", metrics={"test_accuracy": np.float64(0.5)},
                     epochs_trained=np.int32(1), wall_time=np.float32(2.0))

    run = store.get_run(run_id)

    assert run["seed"] == 3 and type(run["seed"]) is int
    assert run["config"]["settings"] == {"learning_rate": 0.5}
    assert run["history"] == [{"epoch": 1, "loss": 0.25, "per_class": [0, 1, 2]}]
    assert (run["test_accuracy"], run["epochs_trained"], run["wall_time"]) == (0.5, 1, 2.0)


def test_recording_the_same_epoch_again_replaces_it_instead_of_duplicating(tmp_path):
    store = Store(tmp_path)
    run_id = start(store)
    store.record_epoch(run_id, 1, {"loss": 0.9})
    store.record_epoch(run_id, 2, {"loss": 0.8})
    store.record_epoch(run_id, 2, {"loss": 0.7})  # a retried write

    assert store.get_run(run_id)["history"] == [{"epoch": 1, "loss": 0.9},
                                                {"epoch": 2, "loss": 0.7}]
    assert epoch_rows(tmp_path, run_id) == 2
    assert store.list_runs()[0]["epochs_trained"] == 2  # progress shows while running


def test_writes_to_an_unknown_run_raise_store_error(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(StoreError, match="No run nope in store"):
        store.record_epoch("nope", 1, {"loss": 1.0})
    with pytest.raises(StoreError, match="No run nope in store"):
        store.finish_run("nope", fingerprint="f", metrics={}, epochs_trained=0, wall_time=0.0)
    assert epoch_rows(tmp_path) == 0


def test_list_runs_gives_summaries_newest_first_and_filters_by_column(tmp_path):
    store = Store(tmp_path)
    ids = [start(store, seed, backend=backend)
           for seed, backend in enumerate(["jax", "torch", "jax", "tensorflow"])]

    runs = store.list_runs()

    assert [run["run_id"] for run in runs] == ids[::-1]
    assert set(runs[0]) >= {"run_id", "created_at", "status", "workload", "backend", "seed",
                            "preset", "epochs_trained", "test_accuracy", "fingerprint",
                            "wall_time"}
    assert [run["seed"] for run in store.list_runs(backend="jax")] == [2, 0]
    assert [run["seed"] for run in store.list_runs(limit=2)] == [3, 2]
    assert len(store.list_runs(backend=["torch", "tensorflow"])) == 2
    assert store.count_runs(status="running") == 4
    with pytest.raises(ValueError, match="Expected a filter among"):
        store.list_runs(colour="red")


def test_a_run_is_found_by_a_unique_prefix_and_an_ambiguous_prefix_is_refused(tmp_path):
    store = Store(tmp_path)
    first, second = start(store, 1), start(store, 2)

    assert store.get_run(first[:-1])["run_id"] == first
    common = os.path.commonprefix([first, second])
    with pytest.raises(StoreError, match="matches several runs"):
        store.get_run(common)


def test_an_unknown_run_id_names_the_store_and_how_to_list_runs(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(StoreError) as error:
        store.get_run("ABC")
    assert str(error.value) == f"No run ABC in store {tmp_path}; `twinrun runs` lists them."


def test_a_run_shows_its_artifacts_folder_only_while_it_holds_files(tmp_path):
    store = Store(tmp_path / "store")
    folder = tmp_path / "files"
    run_id = start(store, artifacts=folder)
    assert store.get_run(run_id)["artifacts"] is None  # not there yet
    folder.mkdir()
    (folder / "replica-0.log").write_text("training\n")
    assert store.get_run(run_id)["artifacts"] == str(folder)


def test_a_stopped_run_keeps_its_reason_and_a_finished_run_is_not_overwritten(tmp_path):
    store = Store(tmp_path)
    running, done = start(store), finished_run(store)
    assert store.end_unfinished_run(running, "stopped", "twinrun was stopped by SIGTERM")
    assert not store.end_unfinished_run(done, "failed", "too late")
    stopped = store.get_run(running)
    assert (stopped["status"], stopped["error"]) == ("stopped", "twinrun was stopped by SIGTERM")
    assert stopped["created_at"] <= stopped["finished_at"] <= \
        datetime.now(timezone.utc).isoformat()
    assert store.get_run(done)["status"] == "finished"


OWNED_RUN = textwrap.dedent("""
    import sys
    from twinrun.store import Store
    store = Store(sys.argv[1])
    print(store.start_run(workload="w", backend="torch", seed=0, config={}, seeds={},
                          determinism={}, environment={}), flush=True)
    sys.stdin.read()  # runs until the test ends it
""")


def test_a_running_row_whose_process_died_is_marked_failed_by_the_next_store_opened(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", OWNED_RUN, str(tmp_path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    run_id = owner.stdout.readline().strip()
    assert Store(tmp_path).get_run(run_id)["status"] == "running"  # its owner is alive
    owner.kill()
    owner.wait(timeout=30)

    run = Store(tmp_path).get_run(run_id)
    assert run["status"] == "failed"
    assert "ended without finishing" in run["error"]


VERSION_1_SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL, workload TEXT, backend TEXT, seed INTEGER, preset TEXT, study_id TEXT,
    replica INTEGER, epochs_trained INTEGER, test_accuracy REAL, fingerprint TEXT,
    wall_time REAL, error TEXT, config TEXT, seeds TEXT, determinism TEXT, environment TEXT,
    metrics TEXT, extra TEXT);
CREATE INDEX runs_created_at ON runs (created_at, run_id);
CREATE INDEX runs_study_id ON runs (study_id);
CREATE TABLE epochs (run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL, recorded_at TEXT NOT NULL, metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch));
INSERT INTO runs (run_id, created_at, status, workload, seed)
    VALUES ('20240501-120000-abcdef', '2024-05-01T12:00:00+00:00', 'running', 'fashion-cnn', 3);
INSERT INTO epochs VALUES ('20240501-120000-abcdef', 1, '2024-05-01T12:01:00+00:00', '{"loss": 0.5}');
PRAGMA user_version = 1;
"""


def test_a_version_1_store_is_migrated_and_keeps_its_runs(tmp_path):
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        connection.executescript(VERSION_1_SCHEMA)

    store = Store(tmp_path)

    run = store.get_run("20240501-120000-abcdef")
    assert (run["workload"], run["seed"], run["history"]) == ("fashion-cnn", 3,
                                                              [{"epoch": 1, "loss": 0.5}])
    assert run["status"] == "running"  # no owner recorded: nobody can tell it died
    store.record_check("check-1", kind="workload", label="fashion-cnn", verdict="identical",
                       result="{}", replicas=2)
    assert [c["check_id"] for c in store.list_checks()] == ["check-1"]
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_deleting_a_run_deletes_its_epochs(tmp_path):
    store = Store(tmp_path)
    run_id = finished_run(store)
    store._write(lambda conn: conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)))
    assert epoch_rows(tmp_path) == 0  # ON DELETE CASCADE holds: foreign keys are on


def test_a_check_is_found_by_a_prefix_and_keeps_its_verdict_text_exactly(tmp_path):
    store = Store(tmp_path)
    text = '{"verdict": "diverged", "steps_compared": 3, "loss": NaN}'
    store.record_check("check-20240501-120000-abcdef", kind="command", label="python t.py",
                       verdict="diverged", result=text, replicas=2, steps_compared=3,
                       folder=store.check_dir("check-20240501-120000-abcdef"))
    check = store.get_check("check-20240501")
    assert check["result"] == text
    assert (check["label"], check["replicas"]) == ("python t.py", 2)
    assert check["folder"] == str(tmp_path / "checks" / "check-20240501-120000-abcdef")
    with pytest.raises(StoreError, match="No check check-x in store"):
        store.get_check("check-x")


def epoch_rows(store_dir, run_id=None):
    with sqlite3.connect(Path(store_dir) / "runs.sqlite") as connection:
        if run_id is None:
            return connection.execute("SELECT COUNT(*) FROM epochs").fetchone()[0]
        return connection.execute("SELECT COUNT(*) FROM epochs WHERE run_id = ?",
                                  (run_id,)).fetchone()[0]


def test_the_default_store_is_twinrun_runs_unless_TWINRUN_STORE_is_set(monkeypatch, tmp_path):
    monkeypatch.delenv("TWINRUN_STORE", raising=False)
    assert default_store_path() == Path("twinrun-runs")
    monkeypatch.setenv("TWINRUN_STORE", str(tmp_path / "elsewhere"))
    assert default_store_path() == tmp_path / "elsewhere"
    assert Store().path == tmp_path / "elsewhere"


# -- unusable stores ---------------------------------------------------------------------------


def test_a_store_under_a_regular_file_is_refused_with_the_next_step(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(StoreError, match="Pass --store DIR or set TWINRUN_STORE") as error:
        Store(tmp_path / "afile" / "store")
    assert str(tmp_path / "afile" / "store") in str(error.value)


def test_a_store_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(StoreError, match="it is a file, not a folder"):
        Store(tmp_path / "afile")


def test_a_store_on_a_filesystem_that_refuses_writes_is_refused_even_for_root():
    target = Path("/sys/twinrun-store-test")
    if not Path("/sys").is_dir():
        pytest.skip("needs /sys, which refuses new folders even to root")
    with pytest.raises(StoreError, match=r"Cannot write the run store at /sys/twinrun-store-test"):
        Store(target)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 000 folder anyway")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="permission denied"):
            Store(locked)
    finally:
        locked.chmod(0o700)


def test_a_corrupt_database_is_reported_with_what_to_do(tmp_path):
    (tmp_path / "runs.sqlite").write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(StoreError, match="is corrupt .*move it aside"):
        Store(tmp_path)


def test_reading_a_store_that_does_not_exist_does_not_create_it(tmp_path):
    with pytest.raises(StoreError, match="There is no run store at"):
        Store(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


# -- several processes -------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import json, os, sys, time
    from twinrun.store import Store
    store_dir, go_file, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = Store(store_dir)
    while not os.path.exists(go_file):
        time.sleep(0.001)
    ids = []
    for i in range(runs):
        run_id = store.start_run(workload="w", backend="jax", seed=i, config={}, seeds={},
                                 determinism={}, environment={"pid": os.getpid()})
        for epoch in range(1, 6):
            store.record_epoch(run_id, epoch, {"loss": 1.0 / epoch})
        store.record_epoch(run_id, 5, {"loss": 0.2})  # a retry must not add a row
        store.finish_run(run_id, fingerprint=run_id, metrics={}, epochs_trained=5, wall_time=0.1)
        ids.append(run_id)
    print(json.dumps(ids))
""")


def test_four_processes_writing_at_once_lose_nothing_and_duplicate_nothing(tmp_path):
    store_dir, go_file = tmp_path / "store", tmp_path / "go"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(store_dir), str(go_file), "25"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    time.sleep(0.5)  # let all four import and open the store
    go_file.touch()
    reported = []
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        reported += json.loads(out)

    store = Store(store_dir)
    runs = store.list_runs()
    assert len(reported) == len(set(reported)) == 100
    assert sorted(run["run_id"] for run in runs) == sorted(reported)
    assert epoch_rows(store_dir) == 500
    assert {run["status"] for run in runs} == {"finished"}
    assert {run["epochs_trained"] for run in runs} == {5}


KILLED_WRITER = textwrap.dedent("""
    import sys
    from twinrun.store import Store
    store = Store(sys.argv[1])
    while True:
        run_id = store.start_run(workload="w", backend="torch", seed=0, config={}, seeds={},
                                 determinism={}, environment={})
        for epoch in (1, 2, 3):
            store.record_epoch(run_id, epoch, {"loss": 1.0 / epoch})
        store.finish_run(run_id, fingerprint="f", metrics={}, epochs_trained=3, wall_time=1.0)
        print(run_id, flush=True)
""")


def test_a_writer_killed_mid_write_loses_nothing_it_had_committed(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    committed = [writer.stdout.readline().strip() for _ in range(30)]
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=10)
    # It went on writing while the test read: every id it printed is a finished run.
    committed += writer.stdout.read().split()
    writer.stdout.close()

    store = Store(tmp_path)
    for run_id in committed:
        run = store.get_run(run_id)
        assert run["status"] == "finished"
        assert [epoch["epoch"] for epoch in run["history"]] == [1, 2, 3]
    runs = {run["run_id"]: run for run in store.list_runs(limit=None)}
    assert set(committed) <= set(runs)
    # Besides those, only the run it was writing when killed, unless it died between two runs:
    # finished (and not yet printed), or marked failed by this Store, never left running.
    unprinted = [runs[run_id] for run_id in set(runs) - set(committed)]
    assert len(unprinted) <= 1
    for run in unprinted:
        assert run["status"] in ("finished", "failed"), run
        if run["status"] == "failed":
            assert "ended without finishing" in store.get_run(run["run_id"])["error"]
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert RUN_ID.match(start(store))  # and it still takes writes


# -- the CLI -----------------------------------------------------------------------------------


def test_twinrun_runs_prints_a_plain_table_when_piped(tmp_path):
    store = Store(tmp_path)
    run_id = finished_run(store, seed=5)

    result = CliRunner().invoke(main, ["runs", "--store", str(tmp_path)])

    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[1]
    assert header.split()[:3] == ["run", "id", "when"]
    row = next(line for line in result.output.splitlines() if line.startswith(run_id))
    assert "finished" in row and "answer-demo" in row and "0.875" in row
    assert weights_fingerprint(5)[:16] in row and weights_fingerprint(5) not in row
    # The wall time is from the row's start to its end (the run measured 12.5 s of its own).
    from twinrun.report.formatting import duration
    from twinrun.report.runs import wall_time

    assert duration(wall_time(store.get_run(run_id))) in row and "12.5 s" not in row
    assert "\x1b[" not in result.output and "┃" not in result.output


def test_twinrun_runs_says_how_to_record_a_run_when_the_store_is_empty(tmp_path):
    Store(tmp_path / "fresh").close()
    result = CliRunner().invoke(main, ["runs", "--store", str(tmp_path / "fresh")])
    assert result.exit_code == 0
    assert result.output.strip() == (
        f"No runs in {tmp_path / 'fresh'} yet; `twinrun train` records one.")


def test_twinrun_runs_json_and_limit(tmp_path):
    store = Store(tmp_path)
    ids = [finished_run(store, seed) for seed in range(3)]

    result = CliRunner().invoke(main, ["runs", "--store", str(tmp_path), "--json", "--limit", "2"])

    assert result.exit_code == 0
    assert [run["run_id"] for run in json.loads(result.output)] == ids[::-1][:2]


def test_twinrun_show_renders_every_section_of_a_run(tmp_path):
    store = Store(tmp_path)
    run_id = finished_run(store, seed=9)

    result = CliRunner().invoke(main, ["show", run_id[:-2], "--store", str(tmp_path)])

    assert result.exit_code == 0, result.output
    for section in ("Config", "Seeds", "Determinism", "Environment", "History", "Metrics"):
        assert section in result.output.splitlines()
    lines = result.output.splitlines()
    hash_seed = next(line for line in lines if line.startswith("PYTHONHASHSEED"))
    assert hash_seed.split()[1:3] == ["already", "set"]  # the launcher's PYTHONHASHSEED
    cpu = produced_records()["environment"]["cpu"]["model"]
    assert any(line.split(None, 1) == ["cpu", cpu] for line in lines)
    # One fingerprint length in every table: the short form (`show --json` has it whole).
    assert f"fingerprint  {weights_fingerprint(9)[:16]}" in lines


def test_twinrun_show_prints_a_checked_scripts_determinism_record_as_json(tmp_path):
    # `twinrun check -- script` records its replicas like this (checks/entry.py): the script calls
    # deterministic() itself, so the parent knows only whether determinism was on.
    store = Store(tmp_path)
    run_id = start(store, workload="train.py", backend=None,
                   config={"command": [sys.executable, "train.py"], "replica": 0,
                           "threads": None, "hash_seed": "fixed", "determinism": False,
                           "backends_prepared": ["tensorflow", "jax", "torch"]},
                   determinism={"determinism": False}, environment={})

    result = CliRunner().invoke(main, ["show", run_id, "--store", str(tmp_path)])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    at = lines.index("Determinism")
    assert lines[at + 1:at + 4] == ["{", '  "determinism": false', "}"]
    assert "Environment" not in lines  # nothing recorded, nothing shown


def test_twinrun_show_json_is_the_full_record(tmp_path):
    store = Store(tmp_path)
    run_id = finished_run(store)
    result = CliRunner().invoke(main, ["show", run_id, "--store", str(tmp_path), "--json"])
    assert json.loads(result.output) == json.loads(json.dumps(store.get_run(run_id)))


def test_twinrun_show_of_an_unknown_run_exits_2_with_one_sentence_and_no_traceback(tmp_path):
    finished_run(Store(tmp_path))
    result = subprocess.run([TWINRUN, "show", "ABC", "--store", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: No run ABC in store {tmp_path}; `twinrun runs` lists them."
    assert "Traceback" not in result.stdout + result.stderr


def test_twinrun_runs_on_an_unusable_store_exits_2_without_traceback(tmp_path):
    (tmp_path / "runs.sqlite").write_bytes(b"garbage" * 1000)
    result = subprocess.run([TWINRUN, "runs", "--store", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: The run store database") and "corrupt" in result.stderr
    assert "Traceback" not in result.stderr


def test_twinrun_runs_imports_no_deep_learning_framework(tmp_path):
    finished_run(Store(tmp_path))
    code = textwrap.dedent(f"""
        import sys
        from twinrun.cli import main
        main(["runs", "--store", {str(tmp_path)!r}], standalone_mode=False)
        print(sorted(m for m in ("tensorflow", "jax", "torch", "keras") if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


# -- studies -----------------------------------------------------------------------------------

def begin(store, key, study_id="variance-0123456789", replica=0):
    return store.begin_study_run(study_id, key, replica=replica, workload="fashion-cnn",
                                 backend="jax", seed=0, config={"preset": "quick"},
                                 seeds={"init": 1})


def test_a_study_run_is_recorded_whole_with_its_epochs_environment_and_predictions(tmp_path):
    store = Store(tmp_path)
    store.record_study("variance-0123456789", kind="variance", definition={"runs": 2},
                       planned=2, options={"metric": "test_loss"})
    run_id = begin(store, "init/0")
    predictions = np.array([3, 0, 9, 9], dtype=np.uint8)
    store.finish_study_run(run_id, fingerprint="ab" * 32, metrics={"test_accuracy": 0.75},
                           epochs_trained=2, wall_time=3.5,
                           history=[{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.5}],
                           predictions=predictions.tobytes().hex(),
                           environment={"cpu": {"model": "Test CPU"}},
                           determinism={"controls": []})

    [run] = store.study_runs("variance-0123456789", with_predictions=True)
    assert (run["study_key"], run["status"], run["metrics"]) == ("init/0", "finished",
                                                                 {"test_accuracy": 0.75})
    assert np.frombuffer(run["predictions"], np.uint8).tolist() == [3, 0, 9, 9]
    assert run["environment"] == {"cpu": {"model": "Test CPU"}}
    assert [e["loss"] for e in store.get_run(run_id)["history"]] == [0.9, 0.5]
    assert store.get_study("variance-01")["options"] == {"metric": "test_loss"}
    assert store.finished_study_keys("variance-0123456789") == {"init/0"}


def test_a_finished_study_run_is_never_taken_again_and_a_failed_one_is_replaced(tmp_path):
    store = Store(tmp_path)
    done = begin(store, "init/0")
    store.finish_study_run(done, fingerprint="f", metrics={}, epochs_trained=1, wall_time=1.0)
    failed = begin(store, "init/1", replica=1)
    store.fail_run(failed, "The run's process was killed by SIGKILL without a result.")

    with pytest.raises(StoreError, match="already finished"):
        begin(store, "init/0")
    retry = begin(store, "init/1", replica=1)

    runs = store.study_runs("variance-0123456789")
    assert sorted((r["study_key"], r["status"]) for r in runs) == [("init/0", "finished"),
                                                                  ("init/1", "running")]
    assert retry != failed and retry in {r["run_id"] for r in runs}
    with pytest.raises(StoreError, match="being run by another process"):
        begin(store, "init/1", replica=1)  # this process is alive and owns it


def test_a_study_with_a_different_definition_under_the_same_id_is_refused(tmp_path):
    store = Store(tmp_path)
    store.record_study("cv-0123456789", kind="cv", definition={"folds": 5}, planned=5)
    assert store.record_study("cv-0123456789", kind="cv", definition={"folds": 5},
                              planned=5)["planned"] == 5
    with pytest.raises(StoreError, match="different study"):
        store.record_study("cv-0123456789", kind="cv", definition={"folds": 3}, planned=3)


def test_resuming_an_unknown_study_names_the_store_and_how_to_list_studies(tmp_path):
    with pytest.raises(StoreError, match=r"No study cv-nope in store .*`twinrun studies`"):
        Store(tmp_path).get_study("cv-nope")


STUDY_DRIVER = textwrap.dedent("""
    import json, os, sys, time
    from twinrun.store import Store
    from twinrun.store.studies import StudyRunTaken
    store_dir, go_file, keys = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = Store(store_dir)
    while not os.path.exists(go_file):
        time.sleep(0.001)
    store.record_study("variance-shared", kind="variance", definition={"runs": keys},
                       planned=keys)
    store.set_study_status("variance-shared", "running")
    mine = []
    for i in range(keys):
        try:
            run_id = store.begin_study_run("variance-shared", f"init/{i}", replica=i,
                                           workload="w", backend="jax", seed=0, config={},
                                           seeds={})
        except StudyRunTaken:
            continue
        store.finish_study_run(run_id, fingerprint=f"f{i}", metrics={"test_accuracy": i / 100},
                               epochs_trained=2, wall_time=0.1,
                               history=[{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}],
                               predictions=bytes([i % 10]) * 1000,
                               environment={"pid": os.getpid()})
        mine.append(run_id)
    print(json.dumps(mine))
""")


def test_four_drivers_of_one_study_record_each_planned_run_exactly_once(tmp_path):
    store_dir, go_file = tmp_path / "store", tmp_path / "go"
    drivers = [subprocess.Popen([sys.executable, "-c", STUDY_DRIVER, str(store_dir),
                                 str(go_file), "40"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(4)]
    time.sleep(0.5)
    go_file.touch()
    reported = []
    for driver in drivers:
        out, err = driver.communicate(timeout=120)
        assert driver.returncode == 0, err
        reported += json.loads(out)

    store = Store(store_dir)
    runs = store.study_runs("variance-shared", with_predictions=True)
    assert sorted(r["study_key"] for r in runs) == sorted(f"init/{i}" for i in range(40))
    assert sorted(r["run_id"] for r in runs) == sorted(reported)  # nothing lost, none twice
    assert {r["status"] for r in runs} == {"finished"}
    for run in runs:
        i = int(run["study_key"].split("/")[1])
        assert run["predictions"] == bytes([i % 10]) * 1000
        assert run["fingerprint"] == f"f{i}"
    assert epoch_rows(store_dir) == 80


DEAD_DRIVER = textwrap.dedent("""
    import sys
    from twinrun.store import Store
    store = Store(sys.argv[1])
    store.record_study("cv-dead", kind="cv", definition={"folds": 2}, planned=2)
    store.set_study_status("cv-dead", "running")
    print(store.begin_study_run("cv-dead", "repeat=0,fold=0", replica=0, workload="w",
                                backend="jax", seed=0, config={}, seeds={}), flush=True)
    sys.stdin.read()
""")


def test_a_study_whose_driver_was_killed_is_incomplete_and_its_run_can_be_taken_again(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", DEAD_DRIVER, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    run_id = driver.stdout.readline().strip()
    assert Store(tmp_path).get_study("cv-dead")["status"] == "running"
    driver.kill()
    driver.wait(timeout=30)

    store = Store(tmp_path)
    assert store.get_study("cv-dead")["status"] == "incomplete"
    assert store.get_run(run_id)["status"] == "failed"
    retry = store.begin_study_run("cv-dead", "repeat=0,fold=0", replica=0, workload="w",
                                  backend="jax", seed=0, config={}, seeds={})
    assert [r["run_id"] for r in store.study_runs("cv-dead")] == [retry]


# A store as twinrun wrote it at schema version 3 (the SQL of that version's `_SCHEMA`,
# `_SCHEMA_CHECKS` and `STUDY_SCHEMA`): a check's replicas carried the check's id as their
# `study_id`, and a study that ended well was `complete`.
VERSION_3_SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL, workload TEXT, backend TEXT, seed INTEGER, preset TEXT, study_id TEXT,
    replica INTEGER, epochs_trained INTEGER, test_accuracy REAL, fingerprint TEXT,
    wall_time REAL, error TEXT, config TEXT, seeds TEXT, determinism TEXT, environment TEXT,
    metrics TEXT, extra TEXT, owner TEXT, artifacts TEXT);
CREATE INDEX runs_created_at ON runs (created_at, run_id);
CREATE INDEX runs_study_id ON runs (study_id);
CREATE TABLE epochs (run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL, recorded_at TEXT NOT NULL, metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch));
CREATE INDEX runs_status ON runs (status);
CREATE TABLE checks (check_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, kind TEXT NOT NULL,
    label TEXT NOT NULL, verdict TEXT NOT NULL, replicas INTEGER NOT NULL,
    steps_compared INTEGER, folder TEXT, result TEXT NOT NULL);
CREATE INDEX checks_created_at ON checks (created_at, check_id);
ALTER TABLE runs ADD COLUMN study_key TEXT;
CREATE UNIQUE INDEX runs_study_key ON runs (study_id, study_key) WHERE study_key IS NOT NULL;
CREATE TABLE studies (study_id TEXT PRIMARY KEY, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
    planned INTEGER NOT NULL, definition TEXT NOT NULL, options TEXT, owner TEXT);
CREATE INDEX studies_created_at ON studies (created_at, study_id);
CREATE TABLE predictions (run_id TEXT PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    n_test INTEGER NOT NULL, classes BLOB NOT NULL);
INSERT INTO checks VALUES ('check-20260101-000000-aaaaaa', '2026-01-01T00:00:00+00:00',
    'command', 'python t.py', 'identical', 2, 5, NULL, '{"verdict": "identical"}');
INSERT INTO runs (run_id, created_at, status, workload, study_id, replica)
    VALUES ('20260101-000000-000001', '2026-01-01T00:00:00+00:00', 'finished', 't.py',
            'check-20260101-000000-aaaaaa', 0),
           ('20260101-000000-000002', '2026-01-01T00:00:01+00:00', 'finished', 't.py',
            'check-20260101-000000-aaaaaa', 1),
           ('20260101-000000-000003', '2026-01-01T00:00:02+00:00', 'finished', 'fashion-cnn',
            'variance-0123456789', 0);
UPDATE runs SET study_key = 'init/0' WHERE run_id = '20260101-000000-000003';
INSERT INTO studies VALUES ('variance-0123456789', '2026-01-01T00:00:00+00:00',
    '2026-01-01T00:10:00+00:00', 'variance', 'complete', 1, '{}', NULL, NULL);
PRAGMA user_version = 3;
"""


def _version_3_store(folder):
    with sqlite3.connect(Path(folder) / "runs.sqlite") as connection:
        connection.executescript(VERSION_3_SCHEMA)


def test_a_version_3_store_moves_check_ids_out_of_study_id_and_says_finished(tmp_path):
    _version_3_store(tmp_path)
    store = Store(tmp_path)
    check = "check-20260101-000000-aaaaaa"
    replicas = store.list_runs(check_id=check)
    assert sorted(run["run_id"] for run in replicas) == ["20260101-000000-000001",
                                                         "20260101-000000-000002"]
    assert {(run["study_id"], run["check_id"]) for run in replicas} == {(None, check)}
    assert store.list_runs(study_id=check) == []
    study_run = store.get_run("20260101-000000-000003")
    assert (study_run["study_id"], study_run["check_id"]) == ("variance-0123456789", None)
    assert store.get_study("variance-0123456789")["status"] == "finished"
    assert [s["status"] for s in store.list_studies()] == ["finished"]
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        assert connection.execute("SELECT count(*) FROM runs WHERE study_id LIKE 'check-%'"
                                  ).fetchone()[0] == 0


def test_processes_opening_a_version_3_store_at_once_migrate_it_once(tmp_path):
    _version_3_store(tmp_path)
    code = ("import sys; from twinrun.store import Store\n"
            "runs = Store(sys.argv[1]).list_runs(check_id='check-20260101-000000-aaaaaa')\n"
            "print(len(runs))")
    openers = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(4)]
    outputs = [opener.communicate(timeout=120) for opener in openers]
    assert [(opener.returncode, out.strip()) for opener, (out, _) in zip(openers, outputs)] == \
        [(0, "2")] * 4, [err for _, err in outputs]
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(runs)")]
    assert columns.count("check_id") == 1


def test_a_version_4_store_counts_its_verdicts_epochs_from_1_as_every_output_does(tmp_path):
    # Schema 4 is schema 3 migrated; its diverged check counted the epoch from 0.
    _version_3_store(tmp_path)
    Store(tmp_path).close()
    diverged = {"verdict": "diverged", "steps_compared": 7, "replicas": [{}, {}],
                "first_divergence": {"step": 6, "epoch": 1, "records": ["loss"],
                                     "variables": [], "layer": None, "digest": None},
                "max_loss_difference": 0.125}
    identical = {"verdict": "identical", "steps_compared": 5, "first_divergence": None}
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        connection.execute("INSERT INTO checks VALUES ('check-20260101-000001-bbbbbb', "
                           "'2026-01-01T00:01:00+00:00', 'command', 'python t.py', 'diverged', "
                           "2, 7, NULL, ?)", (json.dumps(diverged),))
        connection.execute("UPDATE checks SET result = ? WHERE verdict = 'identical'",
                           (json.dumps(identical),))
        connection.execute("PRAGMA user_version = 4")
    store = Store(tmp_path)
    migrated = json.loads(store.get_check("check-20260101-000001-bbbbbb")["result"])
    assert migrated == {**diverged, "first_divergence": {**diverged["first_divergence"],
                                                         "epoch": 2}}
    assert json.loads(store.get_check("check-20260101-000000-aaaaaa")["result"]) == identical
    store.close()
    Store(tmp_path).close()  # opened again: migrated once, not twice
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        [(result,)] = connection.execute(
            "SELECT result FROM checks WHERE check_id = 'check-20260101-000001-bbbbbb'")
    assert json.loads(result)["first_divergence"]["epoch"] == 2
