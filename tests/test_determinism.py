"""`twinrun.deterministic()` on each backend, in fresh processes, as a user would call it."""

import json
import os
import subprocess
import sys

import pytest

from twinrun.backends import is_installed


def run_python(code, backend, **env):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("PYTHONHASHSEED", "XLA_FLAGS", "TWINRUN_SEED", "TWINRUN_THREADS")}
    full_env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **env)
    completed = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True,
                               text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def states(report):
    return {c["name"]: c["state"] for c in report["controls"]}


BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(not is_installed(b), reason=f"{b} missing"))
            for b in ("tensorflow", "jax", "torch")]

EFFECT = {
    "tensorflow": "from tensorflow.python.framework import config; effect = config.is_op_determinism_enabled()",
    "torch": "import torch; effect = torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1",
    "jax": "effect = '--xla_gpu_deterministic_ops=true' in os.environ['XLA_FLAGS']",
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic_turns_on_each_frameworks_switches_and_reports_them(backend):
    code = (
        "import json, os, keras, twinrun\n"
        "report = twinrun.deterministic(7, threads=1)\n"
        f"{EFFECT[backend]}\n"
        "print(json.dumps(dict(report.to_dict(), effect=bool(effect))))\n")
    report = run_python(code, backend, PYTHONHASHSEED="123")
    assert report["backend"] == backend
    assert report["effect"] is True
    assert states(report)["PYTHONHASHSEED"] == "already set"
    assert "impossible" not in states(report).values(), report["controls"]
    assert all(c["state"] in ("applied", "already set", "not needed") for c in report["controls"])


def test_a_hash_seed_missing_at_start_up_is_reported_impossible_by_name():
    report = run_python("import json, keras, twinrun\n"
                        "print(json.dumps(twinrun.deterministic(7).to_dict()))", "torch")
    control = next(c for c in report["controls"] if c["name"] == "PYTHONHASHSEED")
    assert control["state"] == "impossible"
    assert "not set when this interpreter started" in control["detail"]


def test_a_hash_seed_set_after_start_up_is_reported_impossible():
    report = run_python("import json, os, keras, twinrun\n"
                        "os.environ['PYTHONHASHSEED'] = '5'\n"
                        "print(json.dumps(twinrun.deterministic(7).to_dict()))", "torch")
    control = next(c for c in report["controls"] if c["name"] == "PYTHONHASHSEED")
    assert control["state"] == "impossible"
    assert "after this interpreter started" in control["detail"]


@pytest.mark.skipif(not is_installed("jax"), reason="jax missing")
def test_xla_flags_after_the_jax_backend_started_are_reported_impossible():
    report = run_python("import json, jax, twinrun\n"
                        "jax.devices()\n"
                        "print(json.dumps(twinrun.deterministic(7, backend='jax').to_dict()))",
                        "jax")
    assert states(report)["XLA --xla_gpu_deterministic_ops"] == "impossible"


@pytest.mark.skipif(not is_installed("tensorflow"), reason="tensorflow missing")
def test_tensorflow_thread_pools_after_its_runtime_started_are_reported_impossible():
    report = run_python("import json, tensorflow as tf, twinrun\n"
                        "tf.constant(1.0) + 1.0\n"
                        "print(json.dumps(twinrun.deterministic(7, backend='tensorflow', "
                        "threads=1).to_dict()))", "tensorflow")
    assert states(report)["TensorFlow thread pools"] == "impossible"


def test_the_seed_comes_from_twinrun_check_when_not_given():
    report = run_python("import json, keras, twinrun\n"
                        "print(json.dumps(twinrun.deterministic().to_dict()))", "torch",
                        TWINRUN_SEED="11")
    assert report["seed"] == 11


# OpenMP's wait policy: a speed setting for torch, which must not change any bit ----------------

def test_torch_processes_get_a_passive_openmp_wait_policy_unless_the_user_chose_one(monkeypatch):
    from twinrun.determinism import environment_for

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert environment_for("torch")["OMP_WAIT_POLICY"] == "PASSIVE"
    assert environment_for("torch", enabled=False)["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in environment_for("tensorflow")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert "OMP_WAIT_POLICY" not in environment_for("torch")


MATMUL = """
import hashlib, torch
torch.set_num_threads(2)
g = torch.Generator().manual_seed(0)
a, b = torch.randn(16384, 64, generator=g), torch.randn(16384, 64, generator=g)
# A long inner dimension and a small result: the threads split the sum itself, as in a
# weight gradient, so the thread count changes the bits.
print(hashlib.sha256((a.T @ b).numpy().tobytes()).hexdigest())
"""


@pytest.mark.skipif(not is_installed("torch"), reason="torch is not installed")
def test_the_openmp_wait_policy_leaves_torch_results_bit_identical():
    digests = {}
    for policy in ("ACTIVE", "PASSIVE"):
        env = dict(os.environ, OMP_WAIT_POLICY=policy, OMP_NUM_THREADS="2")
        done = subprocess.run([sys.executable, "-c", MATMUL], env=env, capture_output=True,
                              text=True, timeout=120, check=True)
        digests[policy] = done.stdout.strip()
    # The same product with one thread sums in another order, so the comparison can fail.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-c", MATMUL.replace("(2)", "(1)")], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    assert len(digests["ACTIVE"]) == 64
    assert digests["ACTIVE"] == digests["PASSIVE"]
    assert one != digests["ACTIVE"]
