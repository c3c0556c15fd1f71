"""`twinrun doctor`: the environment fingerprint and each backend's determinism audit."""

import json

import pytest

from conftest import run_cli
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
