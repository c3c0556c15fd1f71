"""`twinrun doctor`: the environment fingerprint and each backend's determinism audit."""

import json
import os

import pytest

from conftest import assert_one_sentence_error, requires, run_cli
from twinrun.backends import KERAS_BACKENDS, is_installed


@pytest.fixture(scope="module")
def doctor_json():
    """`twinrun doctor --json`, run once for this file (an audit is a fresh process per
    backend)."""
    completed = run_cli("doctor", "--json")
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout)


@pytest.mark.slow
def test_doctor_audits_every_installed_backend_in_a_fresh_process(doctor_json):
    report = doctor_json
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


@pytest.mark.slow
def test_doctor_opens_with_one_line_and_cuts_no_control_name_at_80_columns(doctor_json):
    completed = run_cli("doctor", env={"COLUMNS": "80"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    first = completed.stdout.splitlines()[0]
    assert first.startswith("Deterministic here: ") and first.endswith(
        "; portability not checked (doctor --portable tests it).")
    assert "no GPU" in first or "GPU: " in first
    assert "…" not in completed.stdout
    for audit in doctor_json["backends"]:
        for control in audit.get("controls") or []:
            assert control["name"] in completed.stdout
    # Progress, when there is any, is plain lines on stderr; stdout stays the result.
    assert all(line.startswith("doctor: ") for line in completed.stderr.splitlines())
    assert "doctor: " not in completed.stdout


# Audits that misbehave, with the real frameworks: a hang is the real import under a timeout
# far shorter than it takes (importing Keras and a framework takes seconds), and garbage or a
# crash comes from an interpreter hook, a `sitecustomize.py` on PYTHONPATH that Python runs at
# start-up, before any framework, and that acts only in the audit program's processes. It also
# leaves a file named by each audit process's id, so the test can see those processes end.

INSTALLED = [backend for backend in KERAS_BACKENDS if is_installed(backend)]
# A test of the audits needs a framework to audit; under CI=true every framework is installed.
requires_a_framework = requires(*(() if INSTALLED else KERAS_BACKENDS))

AUDIT_HOOK = """
import os, signal, sys
if sys.orig_argv[1:3] == ["-m", "twinrun.programs.audit"]:
    open(os.path.join(os.environ["AUDIT_HOOK_PIDS"], str(os.getpid())), "w").close()
    mode = os.environ["AUDIT_HOOK"]
    if mode == "garbage":
        print("{this is not json", flush=True)
        os._exit(0)
    if mode == "exit":
        print("audit hook: exiting with status 3 on purpose", file=sys.stderr, flush=True)
        os._exit(3)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
"""


def doctor_with_audit_hook(mode, *args, tmp_path, env=None):
    hook, pids = tmp_path / "hook", tmp_path / "pids"
    hook.mkdir(exist_ok=True)
    pids.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(AUDIT_HOOK)
    return run_cli("doctor", *args, env={"PYTHONPATH": str(hook), "AUDIT_HOOK": mode,
                                         "AUDIT_HOOK_PIDS": str(pids), "COLUMNS": "1000",
                                         **(env or {})})


def audits_of(completed):
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Traceback" not in completed.stdout + completed.stderr
    return {a["backend"]: a for a in json.loads(completed.stdout)["backends"]}


def audit_pids(tmp_path):
    return [int(p.name) for p in (tmp_path / "pids").iterdir()]


@requires_a_framework
def test_a_hung_audit_is_one_line_and_its_process_is_ended(tmp_path):
    completed = doctor_with_audit_hook("none", "--json", "--timeout", "0.5", tmp_path=tmp_path)
    audits = audits_of(completed)
    for backend in INSTALLED:
        assert audits[backend]["error"].startswith(
            f"the {backend} audit did not finish within 0.5 s"), audits[backend]
    pids = audit_pids(tmp_path)
    assert len(pids) == len(INSTALLED)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@requires_a_framework
def test_the_audit_timeout_can_come_from_the_environment(tmp_path):
    completed = doctor_with_audit_hook("none", tmp_path=tmp_path,
                                       env={"TWINRUN_AUDIT_TIMEOUT": "0.5"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    for backend in INSTALLED:
        assert any(line.startswith(f"{backend}: the {backend} audit did not finish within 0.5 s")
                   for line in lines), completed.stdout


@requires_a_framework
def test_an_audit_that_prints_no_json_is_one_line(tmp_path):
    audits = audits_of(doctor_with_audit_hook("garbage", "--json", tmp_path=tmp_path))
    for backend in INSTALLED:
        assert audits[backend]["error"] == (f"the {backend} audit printed something that is "
                                            "not a determinism report: '{this is not json'")
    assert len(audit_pids(tmp_path)) == len(INSTALLED)


@requires_a_framework
@pytest.mark.parametrize("mode, how", [
    ("exit", "exited with status 3: audit hook: exiting with status 3 on purpose"),
    ("kill", "was killed by signal 9: no output"),
])
def test_an_audit_that_dies_is_one_line_with_how_and_its_last_words(mode, how, tmp_path):
    audits = audits_of(doctor_with_audit_hook(mode, "--json", tmp_path=tmp_path))
    for backend in INSTALLED:
        assert audits[backend]["error"] == f"the {backend} audit process {how}"
    assert len(audit_pids(tmp_path)) == len(INSTALLED)


@pytest.mark.parametrize("args, env, fragment", [
    (["--timeout", "soon"], {}, "Expected --timeout to be a positive number of seconds"),
    ([], {"TWINRUN_AUDIT_TIMEOUT": "0"}, "Expected TWINRUN_AUDIT_TIMEOUT to be a positive"),
])
def test_a_bad_audit_timeout_is_refused_in_one_sentence(args, env, fragment):
    completed = run_cli("doctor", *args, env=env)
    assert completed.returncode == 2
    assert_one_sentence_error(completed, fragment)
