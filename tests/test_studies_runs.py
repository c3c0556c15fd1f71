"""Studies that train for real, in fresh processes: a driver killed with SIGKILL and resumed,
and the same study on a real local Ray cluster recording what the local pool records.

One small study serves every test (two one-epoch runs of the tiny preset):
the session fixture runs it, kills its driver mid-study, and resumes it.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TWINRUN, require, requires_data, run_cli
from twinrun.store import Store

pytestmark = [pytest.mark.slow, requires_data]

# On torch: a tiny run's fresh process took 8-9 s against 11-12 s on TensorFlow on the slow
# Zen 3 box (docs/performance.md); what is tested is the driver, on any backend.
STUDY = ["variance", "--runs", "2", "--vary", "init", "--preset", "tiny", "--set", "epochs=1",
         "--backend", "torch"]
COMPARED_METRICS = ("test_accuracy", "test_loss", "best_val_loss", "stopped_epoch")


def _children(pid):
    """Pids of the processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def _wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture(scope="session")
def resumed_study(tmp_path_factory):
    """Run STUDY with --jobs 1, SIGKILL its driver while the second run trains, resume it."""
    store_dir = tmp_path_factory.mktemp("killed-study")
    env = dict(os.environ)
    env.pop("KERAS_BACKEND", None)
    driver = subprocess.Popen([TWINRUN, *STUDY, "--jobs", "1", "--store", str(store_dir),
                               "--json"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)

    def second_run_training():
        if driver.poll() is not None:
            raise AssertionError(f"the driver ended early with {driver.returncode}")
        if not (store_dir / "runs.sqlite").exists():
            return None
        with Store(store_dir) as store:
            studies = store.list_studies()
            runs = store.study_runs(studies[0]["study_id"]) if studies else []
        states = {run["study_key"]: run for run in runs}
        if states.get("init/0", {}).get("status") == "finished" and \
                states.get("init/1", {}).get("status") == "running":
            workers = _children(driver.pid)
            return (studies[0]["study_id"], states, workers) if workers else None
        return None

    study_id, before, workers = _wait_for(second_run_training, 600, "the second run to start")
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    # The kernel kills the driver's worker with it (PR_SET_PDEATHSIG): nothing trains orphaned.
    _wait_for(lambda: not any(_alive(pid) for pid in workers), 30, "the worker to end")
    with Store(store_dir) as store:
        after_kill = {run["study_key"]: run for run in store.study_runs(study_id)}

    resumed = run_cli("resume", study_id, "--jobs", "1", "--store", store_dir, "--json")
    assert resumed.returncode == 0, resumed.stderr
    return {"store": store_dir, "study_id": study_id, "before": before,
            "after_kill": after_kill, "report": json.loads(resumed.stdout)}


def _records(store_dir, study_id):
    with Store(store_dir) as store:
        runs = store.study_runs(study_id, with_predictions=True)
        history = {run["study_key"]: store.get_run(run["run_id"])["history"] for run in runs}
    return {run["study_key"]: {**run, "history": history[run["study_key"]]} for run in runs}


def test_a_driver_killed_mid_study_resumes_to_every_planned_run_exactly_once(resumed_study):
    store_dir, study_id = resumed_study["store"], resumed_study["study_id"]
    before, after_kill = resumed_study["before"], resumed_study["after_kill"]
    # Killed: the finished run kept, the interrupted one marked failed by the next opener.
    assert after_kill["init/0"]["run_id"] == before["init/0"]["run_id"]
    assert after_kill["init/0"]["status"] == "finished"
    assert after_kill["init/1"]["status"] == "failed"

    report = resumed_study["report"]
    session = report["session"]
    assert (session["already_done"], session["ran"], session["failed"]) == (1, 1, 0)
    records = _records(store_dir, study_id)
    assert sorted(records) == ["init/0", "init/1"]  # one row per planned run
    assert {run["status"] for run in records.values()} == {"finished"}
    assert records["init/0"]["run_id"] == before["init/0"]["run_id"]
    assert records["init/1"]["run_id"] != before["init/1"]["run_id"]
    with Store(store_dir) as store:
        assert store.count_runs(study_id=study_id) == 2
        assert store.get_study(study_id)["status"] == "finished"
    for run in records.values():
        assert len(run["predictions"]) == 1_000  # one byte per test image of the tiny preset
        assert [epoch["epoch"] for epoch in run["history"]] == [1]
        assert run["environment"]["packages"]
    assert report["sources"]["init"]["n"] == 2
    assert report["sources"]["init"]["effect"] is True  # two init seeds, two models


def test_running_the_same_study_command_again_runs_nothing(resumed_study):
    again = run_cli(*STUDY, "--jobs", "1", "--store", resumed_study["store"], "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["study_id"] == resumed_study["study_id"]
    assert (report["session"]["ran"], report["session"]["already_done"]) == (0, 2)


def test_a_study_on_a_local_ray_cluster_records_what_the_local_pool_records(
        resumed_study, tmp_path, one_ray_cluster_at_a_time):
    require("ray")
    ray_run = run_cli(*STUDY, "--executor", "ray", "--cpus-per-run", "1", "--store", tmp_path,
                      "--json")
    assert ray_run.returncode == 0, ray_run.stderr
    report = json.loads(ray_run.stdout)
    study_id = resumed_study["study_id"]
    assert report["study_id"] == study_id  # the same plan, so the same study

    local = _records(resumed_study["store"], study_id)
    on_ray = _records(tmp_path, study_id)
    assert sorted(on_ray) == sorted(local)
    for key in local:
        assert on_ray[key]["fingerprint"] == local[key]["fingerprint"], key
        for metric in COMPARED_METRICS:
            assert on_ray[key]["metrics"].get(metric) == local[key]["metrics"].get(metric)
        assert on_ray[key]["predictions"] == local[key]["predictions"]
        assert on_ray[key]["history"] == local[key]["history"]
        assert on_ray[key]["seeds"] == local[key]["seeds"]
        # Recorded by this driver from the task's result: its environment came back with it.
        assert on_ray[key]["environment"]["cpu"] == local[key]["environment"]["cpu"]
        assert on_ray[key]["environment"]["threads"] == local[key]["environment"]["threads"]
    assert report["environment_note"] is None
