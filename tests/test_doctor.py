"""`twinrun doctor`: the environment fingerprint and each backend's determinism audit."""

import json
import os
from pathlib import Path

import pytest

from conftest import assert_one_sentence_error, run_cli
from twinrun.backends import KERAS_BACKENDS, is_installed


@pytest.mark.slow
def test_doctor_audits_every_installed_backend_in_a_fresh_process():
    completed = run_cli("doctor", "--json")
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    assert report["environment"]["python"]["version"].startswith("3.")
    audits = {a["backend"]: a for a in report["backends"]}
    assert set(audits) == set(KERAS_BACKENDS)
    for backend in KERAS_BACKENDS:
        if not is_installed(backend):
            assert audits[backend]["error"] == "not installed"
            continue
        states = {c["name"]: c["state"] for c in audits[backend]["controls"]}
        assert states["PYTHONHASHSEED"] == "already set"
        assert "impossible" not in states.values(), audits[backend]


# A framework probe that misbehaves: a stand-in `keras` module, first on PYTHONPATH, makes each
# audit process hang, print something that is not JSON, or crash on import.

FAKE_KERAS = Path(__file__).parent / "fake_keras"
INSTALLED = [backend for backend in KERAS_BACKENDS if is_installed(backend)]


def doctor_with_fake_keras(mode, *args, tmp_path, env=None):
    pids = tmp_path / "pids"
    pids.mkdir(exist_ok=True)
    return run_cli("doctor", *args, env={"PYTHONPATH": str(FAKE_KERAS), "FAKE_KERAS": mode,
                                         "FAKE_KERAS_PIDS": str(pids), "COLUMNS": "1000",
                                         **(env or {})})


def audits_of(completed):
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Traceback" not in completed.stdout + completed.stderr
    return {a["backend"]: a for a in json.loads(completed.stdout)["backends"]}


@pytest.mark.skipif(not INSTALLED, reason="no deep-learning framework installed")
def test_a_hung_audit_is_one_line_and_its_process_is_ended(tmp_path):
    completed = doctor_with_fake_keras("hang", "--json", "--timeout", "2", tmp_path=tmp_path)
    audits = audits_of(completed)
    for backend in INSTALLED:
        assert audits[backend]["error"].startswith(
            f"the {backend} audit did not finish within 2 s"), audits[backend]
    pids = [int(p.name) for p in (tmp_path / "pids").iterdir()]
    assert len(pids) == len(INSTALLED)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.skipif(not INSTALLED, reason="no deep-learning framework installed")
def test_the_audit_timeout_can_come_from_the_environment(tmp_path):
    completed = doctor_with_fake_keras("hang", tmp_path=tmp_path,
                                       env={"TWINRUN_AUDIT_TIMEOUT": "1.5"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    for backend in INSTALLED:
        assert any(line.startswith(f"{backend}: the {backend} audit did not finish within 1.5 s")
                   for line in lines), completed.stdout


@pytest.mark.skipif(not INSTALLED, reason="no deep-learning framework installed")
def test_an_audit_that_prints_no_json_is_one_line(tmp_path):
    audits = audits_of(doctor_with_fake_keras("garbage", "--json", tmp_path=tmp_path))
    for backend in INSTALLED:
        assert audits[backend]["error"] == (f"the {backend} audit printed something that is "
                                            "not a determinism report: '{this is not json'")


@pytest.mark.skipif(not INSTALLED, reason="no deep-learning framework installed")
def test_an_audit_that_crashes_is_one_line_with_its_last_words(tmp_path):
    audits = audits_of(doctor_with_fake_keras("crash", "--json", tmp_path=tmp_path))
    for backend in INSTALLED:
        assert audits[backend]["error"] == (f"the {backend} audit process exited with status 1: "
                                            "RuntimeError: fake keras crashed on import")


@pytest.mark.parametrize("args, env, fragment", [
    (["--timeout", "soon"], {}, "Expected --timeout to be a positive number of seconds"),
    ([], {"TWINRUN_AUDIT_TIMEOUT": "0"}, "Expected TWINRUN_AUDIT_TIMEOUT to be a positive"),
])
def test_a_bad_audit_timeout_is_refused_in_one_sentence(args, env, fragment):
    completed = run_cli("doctor", *args, env=env)
    assert completed.returncode == 2
    assert_one_sentence_error(completed, fragment)
