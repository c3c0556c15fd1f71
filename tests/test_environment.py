"""The environment fingerprint: what it records, what it costs, and how two of them differ."""

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import requires, skip_unless_ci
from twinrun.environment import NUMERICS_ENV_VARS, environment_diff, fingerprint_environment
from twinrun.errors import BackendError


def test_fingerprint_names_the_cpu_model_cores_and_python_version():
    env = fingerprint_environment()

    assert env["python"]["version"] == platform.python_version()
    assert env["python"]["executable"] == sys.executable
    assert env["cpu"]["logical_cores"] == os.cpu_count()
    assert env["cpu"]["model"]
    assert env["cpu"]["affinity"] == sorted(os.sched_getaffinity(0))
    assert env["os"]["kernel"] == platform.release()
    assert env["packages"]["numpy"] and env["packages"]["twinrun"]


def test_fingerprint_is_json_and_keeps_cpu_flags_sorted():
    env = fingerprint_environment()

    assert json.loads(json.dumps(env)) == env
    assert env["cpu"]["flags"] == sorted(env["cpu"]["flags"])
    assert env["cpu"]["flags"] and len(set(env["cpu"]["flags"])) == len(env["cpu"]["flags"])
    assert env["threads"] is None  # no framework named, no counts given: nothing to record
    assert env["framework"] is None


def test_fingerprint_records_thread_and_determinism_variables(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("XLA_FLAGS", raising=False)

    env = fingerprint_environment()

    assert set(env["env"]) == set(NUMERICS_ENV_VARS)
    assert env["env"]["OMP_NUM_THREADS"] == "1"
    assert env["env"]["XLA_FLAGS"] is None


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_without_a_gpu_the_gpu_fields_are_empty():
    assert fingerprint_environment()["gpu"] == {"devices": [], "driver": None, "cuda": None,
                                                "cudnn": None}


def test_diff_finds_a_changed_thread_variable(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    first = fingerprint_environment()
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    second = fingerprint_environment()

    assert environment_diff([first, second]) == [
        {"key": "env.OMP_NUM_THREADS", "values": ["1", "4"]}
    ]


def test_diff_of_fingerprints_from_two_processes_ignores_pid_and_capture_time():
    code = "import json; from twinrun.environment import fingerprint_environment as f; " \
           "print(json.dumps(f()))"
    envs = [json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                      text=True, check=True, timeout=60).stdout)
            for _ in range(2)]

    assert envs[0]["pid"] != envs[1]["pid"]
    assert environment_diff(envs) == []


def test_diff_flattens_nested_keys_keeps_hostname_and_counts_missing_keys_as_none():
    envs = [
        {"hostname": "a", "cpu": {"model": "X", "flags": ["avx"]}, "pid": 1},
        {"hostname": "b", "cpu": {"model": "X", "flags": ["avx", "avx2"]}, "pid": 2},
        {"hostname": "a", "cpu": {"model": "X", "flags": ["avx"]}, "gpu": {"driver": "550"}},
    ]
    assert environment_diff(envs) == [
        {"key": "cpu.flags", "values": [["avx"], ["avx", "avx2"], ["avx"]]},
        {"key": "gpu.driver", "values": [None, None, "550"]},
        {"key": "hostname", "values": ["a", "b", "a"]},
    ]


def test_fingerprint_without_a_backend_imports_no_framework():
    # Its speed (goal 0.3 s) is measured in bench/run.py's start-up benchmark, not here: a
    # timing on a shared 2-core machine is no test.
    code = textwrap.dedent("""
        import json, sys
        from twinrun.environment import fingerprint_environment
        facts = fingerprint_environment()
        loaded = [m for m in ("tensorflow", "jax", "torch", "keras") if m in sys.modules]
        print(json.dumps({"cores": facts["cpu"]["logical_cores"], "loaded": loaded}))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    assert report["cores"] >= 1


def test_an_unknown_backend_is_refused_by_name():
    with pytest.raises(BackendError, match="Unknown backend 'mxnet'"):
        fingerprint_environment(backend="mxnet")


@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_naming_a_backend_adds_that_frameworks_build_and_devices_only(backend):
    if importlib.util.find_spec(backend) is None:
        skip_unless_ci(f"{backend} is not installed")
    code = textwrap.dedent(f"""
        import json, sys
        from twinrun.environment import fingerprint_environment
        env = fingerprint_environment(backend={backend!r})
        others = [m for m in ("tensorflow", "jax", "torch") if m != {backend!r} and m in sys.modules]
        print(json.dumps({{"framework": env["framework"], "gpu": env["gpu"], "others": others,
                          "threads": env["threads"]}}))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.splitlines()[-1])
    framework = report["framework"]
    assert framework["name"] == backend
    assert framework["version"]
    assert framework["devices"]
    # TensorFlow 2.21 imports jax by itself; twinrun must not import any other framework.
    assert set(report["others"]) <= ({"jax"} if backend == "tensorflow" else set())
    assert set(report["gpu"]) == {"devices", "driver", "cuda", "cudnn"}
    assert set(report["threads"]) == {"intra_op", "inter_op"}
    assert report["threads"]["intra_op"] >= 1


def fingerprint_in_fresh_process(backend, prelude="", threads=None, **env):
    code = textwrap.dedent(f"""
        import json
        {prelude}
        from twinrun.environment import fingerprint_environment
        print(json.dumps(fingerprint_environment(backend={backend!r}, threads={threads!r})))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


@requires("torch")
def test_the_thread_counts_torch_uses_are_recorded_and_a_diff_names_the_intra_op_count():
    # The caller's counts are overruled: with a backend named, the record is what torch uses.
    envs = [fingerprint_in_fresh_process(
        "torch", f"import torch; torch.set_num_threads({n}); torch.set_num_interop_threads(1)",
        threads={"intra_op": 9, "inter_op": 9})
        for n in (2, 1)]
    assert envs[0]["threads"] == {"intra_op": 2, "inter_op": 1}
    assert envs[1]["threads"] == {"intra_op": 1, "inter_op": 1}
    differences = environment_diff(envs)
    assert {"key": "threads.intra_op", "values": [2, 1]} in differences
    assert "threads.inter_op" not in {d["key"] for d in differences}


@requires("jax")
def test_the_size_of_xlas_cpu_pool_is_recorded_with_the_variable_that_sets_it():
    env = fingerprint_in_fresh_process("jax", PJRT_NPROC="1")
    assert env["threads"] == {"intra_op": 1, "inter_op": None}
    assert env["env"]["PJRT_NPROC"] == "1"


def test_the_load_and_the_wait_policy_are_recorded_and_only_the_policy_counts_as_a_difference(
        monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    first = fingerprint_environment()
    assert first["speed"]["env"]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert len(first["speed"]["load_average"]) == 3
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    second = fingerprint_environment()
    second["speed"]["load_average"] = [x + 1.5 for x in first["speed"]["load_average"]]
    assert environment_diff([first, second]) == [
        {"key": "speed.env.OMP_WAIT_POLICY", "values": ["PASSIVE", "ACTIVE"]}]
