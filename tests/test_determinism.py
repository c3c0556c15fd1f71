"""`twinrun.deterministic()` on each backend, in fresh processes, as a user would call it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import requires, run_cli, skip_unless_ci
from twinrun.backends import is_installed


SCRIPTS = Path(__file__).parent / "scripts"
LAUNCHER_VARIABLES = ("PYTHONHASHSEED", "XLA_FLAGS", "PJRT_NPROC", "NPROC", "OMP_NUM_THREADS",
                      "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TWINRUN_SEED",
                      "TWINRUN_THREADS", "TWINRUN_TRACE", "TWINRUN_PRESET_VARIABLES")


def clean_environment(backend, **env):
    """This environment without what `twinrun check` would set, as a plain `python` run has."""
    full_env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    full_env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **env)
    return full_env


def run_python(code, backend, with_stderr=False, **env):
    completed = subprocess.run([sys.executable, "-c", code], env=clean_environment(backend, **env),
                               capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    return (report, completed.stderr) if with_stderr else report


def states(report):
    return {c["name"]: c["state"] for c in report["controls"]}


BACKENDS = [pytest.param(b, marks=requires(b))
            for b in ("tensorflow", "jax", "torch")]

EFFECT = {
    "tensorflow": "import tensorflow as tf; from tensorflow.python.framework import config; "
                  "effect = config.is_op_determinism_enabled() and "
                  "tf.config.threading.get_intra_op_parallelism_threads() == 1 and "
                  "tf.config.threading.get_inter_op_parallelism_threads() == 1",
    "torch": "import torch; effect = torch.are_deterministic_algorithms_enabled() and "
             "torch.get_num_threads() == 1 and torch.get_num_interop_threads() == 1",
    # XLA reads the GPU flag only on a GPU; the pool's outcome shows on any CPU: after a
    # matrix product, XLA's CPU pool (threads named tf_XLAEigen) has the one thread asked for.
    "jax": "import jax.numpy as jnp\n"
           "(jnp.ones((512, 512)) @ jnp.ones((512, 512))).block_until_ready()\n"
           "pool = sum(open(f'/proc/self/task/{t}/comm').read().strip() == 'tf_XLAEigen'\n"
           "           for t in os.listdir('/proc/self/task'))\n"
           "effect = '--xla_gpu_deterministic_ops=true' in os.environ['XLA_FLAGS'] and pool == 1",
}

THREAD_CONTROL = {"tensorflow": "TensorFlow thread pools", "torch": "torch thread pools",
                  "jax": "XLA CPU thread pool"}

# The framework's own thread count, read in a fresh process before deterministic() runs.
DEFAULT_INTRA_OP = {
    "tensorflow": "import os; default = len(os.sched_getaffinity(0))",
    "torch": "import torch; default = torch.get_num_threads()",
    "jax": "import os; default = len(os.sched_getaffinity(0))",
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
    assert report["threads"]["intra_op"] == 1
    assert states(report)["PYTHONHASHSEED"] == "already set"
    assert states(report)[THREAD_CONTROL[backend]] == "applied"
    assert "impossible" not in states(report).values(), report["controls"]
    assert all(c["state"] in ("applied", "already set", "not needed") for c in report["controls"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_threads_the_pools_are_pinned_at_the_frameworks_default_and_recorded(backend):
    code = (
        f"import json, keras, twinrun\n{DEFAULT_INTRA_OP[backend]}\n"
        "report = twinrun.deterministic(7)\n"
        "print(json.dumps(dict(report.to_dict(), default=default)))\n")
    report = run_python(code, backend, PYTHONHASHSEED="123")
    control = next(c for c in report["controls"] if c["name"] == THREAD_CONTROL[backend])
    assert control["state"] == "applied"
    assert "default" in control["detail"] and "bits depend on" in control["detail"]
    assert report["threads"]["intra_op"] == report["default"]
    assert f"{report['default']} intra-op" in control["detail"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_asked_thread_count_holds_with_determinism_off(backend):
    # A study's `all` runs turn determinism off; `--threads 1` must still mean one thread.
    from twinrun.determinism import environment_for

    env = environment_for(backend, threads=1, determinism=False)
    assert env["OMP_NUM_THREADS"] == "1"
    code = ("import json, keras, twinrun\n"
            "report = twinrun.deterministic(7, threads=1, determinism=False)\n"
            "print(json.dumps(report.to_dict()))\n")
    report = run_python(code, backend, PYTHONHASHSEED="123",
                        **{k: v for k, v in env.items()
                           if k not in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")})
    assert report["threads"]["intra_op"] == 1
    control = next(c for c in report["controls"] if c["name"] == THREAD_CONTROL[backend])
    # "already set": the launcher's variables sized the pool before the framework started.
    assert control["state"] in ("applied", "already set"), control
    assert states(report).get("torch.use_deterministic_algorithms", "off") == "off"


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


def not_pinned(report, name):
    control = next(c for c in report["controls"] if c["name"] == name)
    assert control["state"] == "impossible", control
    assert control["detail"].startswith("not pinned: bits may depend on the thread count")
    return control


@requires("tensorflow")
def test_tensorflow_pools_that_already_started_are_fixed_at_their_size_or_reported_not_pinned():
    # One more thread than TensorFlow's default, so the asked size differs on every machine.
    reports = run_python("import json, os, tensorflow as tf, twinrun\n"
                         "tf.constant(1.0) + 1.0\n"
                         "default = twinrun.deterministic(7, backend='tensorflow').to_dict()\n"
                         "threads = len(os.sched_getaffinity(0)) + 1\n"
                         "other = twinrun.deterministic(7, backend='tensorflow', threads=threads)\n"
                         "print(json.dumps([default, other.to_dict()]))", "tensorflow")
    control = next(c for c in reports[0]["controls"] if c["name"] == "TensorFlow thread pools")
    assert control["state"] == "already set"
    assert "fixed when TensorFlow's runtime started" in control["detail"]
    not_pinned(reports[1], "TensorFlow thread pools")


@requires("torch")
def test_a_torch_inter_op_pool_already_sized_otherwise_is_reported_not_pinned():
    report = run_python("import json, torch, twinrun\n"
                        "torch.set_num_interop_threads(1)\n"
                        "print(json.dumps(twinrun.deterministic(7, backend='torch', threads=2)"
                        ".to_dict()))", "torch")
    control = not_pinned(report, "torch thread pools")
    assert "inter-op" in control["detail"]
    assert report["threads"] == {"intra_op": 2, "inter_op": 1}


@requires("jax")
def test_xla_flags_and_pool_after_the_jax_backend_started_are_reported_impossible():
    report = run_python("import json, jax, twinrun\n"
                        "jax.devices()\n"
                        "print(json.dumps(twinrun.deterministic(7, backend='jax').to_dict()))",
                        "jax")
    assert states(report)["XLA --xla_gpu_deterministic_ops"] == "impossible"
    not_pinned(report, "XLA CPU thread pool")


@requires("jax")
@pytest.mark.parametrize("threads", [1, 2])
def test_pjrt_nproc_sizes_the_xla_cpu_pool_that_deterministic_pins(threads):
    # The experiment behind determinism/jax.py: XLA's CPU pool has PJRT_NPROC threads
    # (named tf_XLAEigen), and the environment the launcher prepares sets it.
    from twinrun.determinism import environment_for

    env = environment_for("jax", threads=threads)
    assert env["PJRT_NPROC"] == str(threads)
    report = run_python(
        "import json, os, jax.numpy as jnp, twinrun\n"
        "report = twinrun.deterministic(7, backend='jax')\n"
        "(jnp.ones((512, 512)) @ jnp.ones((512, 512))).block_until_ready()\n"
        "pool = sum(open(f'/proc/self/task/{t}/comm').read().strip() == 'tf_XLAEigen'\n"
        "           for t in os.listdir('/proc/self/task'))\n"
        "print(json.dumps(dict(report.to_dict(), pool=pool)))", "jax",
        PJRT_NPROC=env["PJRT_NPROC"])
    assert report["pool"] == threads
    assert report["threads"]["intra_op"] == threads
    assert states(report)["XLA CPU thread pool"] == "already set"


def test_the_seed_comes_from_twinrun_check_when_not_given():
    report, stderr = run_python("import json, twinrun\n"
                                "print(json.dumps(twinrun.deterministic(backend='torch')"
                                ".to_dict()))", "torch", with_stderr=True, TWINRUN_SEED="11")
    assert report["seed"] == 11
    assert "default seed" not in stderr


def test_without_a_seed_outside_check_the_default_seed_is_used_and_said_once():
    report, stderr = run_python("import json, twinrun\n"
                                "print(json.dumps(twinrun.deterministic(backend='torch')"
                                ".to_dict()))", "torch", with_stderr=True)
    assert report["seed"] == 0
    said = [line for line in stderr.splitlines() if "default seed" in line]
    assert said == ["twinrun: deterministic() was called without a seed outside `twinrun check`, "
                    "so it uses the default seed 0 (pass a seed to choose another)."]


@pytest.mark.parametrize("script, backend", [("readme_torch.py", "torch"),
                                             ("readme_keras.py", "torch")])
def test_a_script_written_as_the_readme_shows_runs_as_a_plain_python_script(script, backend):
    if not is_installed(backend):
        skip_unless_ci(f"{backend} is not installed")
    completed = subprocess.run([sys.executable, str(SCRIPTS / script)],
                               env=clean_environment(backend), capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    assert "uses the default seed 0" in completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["seed"] == 0
    assert result["steps"] > 0


@pytest.mark.slow
@requires("torch")
def test_the_same_readme_script_under_check_takes_the_checks_seed_and_is_identical(tmp_path):
    completed = run_cli("check", "--json", "--seed", "5", "--store", tmp_path / "store",
                        "--", "python", str(SCRIPTS / "readme_torch.py"),
                        env={"KERAS_BACKEND": "torch"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    verdict = json.loads(completed.stdout)
    assert verdict["verdict"] == "identical"
    assert verdict["steps_compared"] == 8
    assert "default seed" not in completed.stderr


def test_a_seed_from_the_launcher_that_is_no_integer_is_refused_in_one_sentence(monkeypatch):
    from twinrun.determinism import deterministic
    from twinrun.errors import TwinrunError

    monkeypatch.setenv("TWINRUN_SEED", "seven")
    with pytest.raises(TwinrunError, match=r"^Expected the environment variable TWINRUN_SEED "
                                           r"to be an integer\. Received: TWINRUN_SEED='seven'\.$"):
        deterministic(backend="torch")


@pytest.mark.parametrize("seeds, fragment", [({"numpy": 2**32}, "'numpy' seed"),
                                             ({"init": -1}, "'init' seed"),
                                             ({"weights": 1}, "Unknown source")])
def test_seeds_a_framework_cannot_take_are_refused_before_anything_is_seeded(seeds, fragment):
    from twinrun.determinism import deterministic
    from twinrun.errors import TwinrunError

    with pytest.raises(TwinrunError, match=fragment):
        deterministic(7, backend="torch", seeds=seeds)


# OpenMP's wait policy: a speed setting for torch, which must not change any bit ----------------

def test_torch_processes_get_a_passive_openmp_wait_policy_unless_the_user_chose_one(monkeypatch):
    from twinrun.determinism import environment_for

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert environment_for("torch")["OMP_WAIT_POLICY"] == "PASSIVE"
    assert environment_for("torch", determinism=False)["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in environment_for("tensorflow")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert "OMP_WAIT_POLICY" not in environment_for("torch")


def thread_digests(**env):
    """Digests of a few reductions with 1 and 2 threads, in a fresh process (scripts/)."""
    done = subprocess.run([sys.executable, str(SCRIPTS / "thread_digests.py")],
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=180, check=True)
    return json.loads(done.stdout)


@requires("torch")
def test_the_openmp_wait_policy_leaves_torch_results_bit_identical():
    active = thread_digests(OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="2")
    passive = thread_digests(OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="2")
    # Only the cases whose bits depend on the thread count on this CPU can show that the
    # policy changes nothing: a changed split of their work would change their bits.
    sensitive = [case for case, digests in active.items() if digests["1"] != digests["2"]]
    if not sensitive:
        pytest.skip("on this CPU no tried reduction gives other bits with 1 than with 2 threads")
    assert active == passive


# glibc's allocator settings: a speed setting for every fresh process, which must not change a bit

def test_jax_and_tensorflow_processes_get_one_malloc_arena_that_never_unmaps_unless_chosen(
        monkeypatch):
    from twinrun.determinism import environment_for

    for name in [n for n in os.environ if n.startswith("MALLOC_")] + ["GLIBC_TUNABLES"]:
        monkeypatch.delenv(name, raising=False)
    for backend in ("jax", "tensorflow"):
        for determinism in (True, False):
            env = environment_for(backend, determinism=determinism)
            assert (env["MALLOC_ARENA_MAX"], env["MALLOC_MMAP_MAX_"]) == ("1", "0")
            assert int(env["MALLOC_TRIM_THRESHOLD_"]) >= 2**40
    # torch: one arena cost it more CPU time than its page faults did (docs/performance.md).
    assert not [n for n in environment_for("torch") if n.startswith("MALLOC_")]
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")  # any choice of the user's keeps all of them out
    for backend in ("jax", "tensorflow"):
        assert not [n for n in environment_for(backend) if n.startswith("MALLOC_")]
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    for backend in ("jax", "tensorflow"):
        assert not [n for n in environment_for(backend) if n.startswith("MALLOC_")]


def tiny_training(backend, allocator):
    """Batch fingerprints, weights fingerprint and page faults of `scripts/allocator_training.py`
    in a fresh process, with or without twinrun's allocator settings."""
    from twinrun.determinism.common import allocator_environment

    env = {k: v for k, v in clean_environment(backend).items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    if allocator:
        env.update(allocator_environment(env))
    done = subprocess.run([sys.executable, str(SCRIPTS / "allocator_training.py")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_the_allocator_settings_leave_batches_and_weights_bit_identical(backend):
    # JAX's and TensorFlow's processes get the settings (the test above), so that is where
    # they must change no bit.
    plain = tiny_training(backend, allocator=False)
    settled = tiny_training(backend, allocator=True)
    assert len(plain["batches"]) == 20 and len(set(plain["batches"])) == 20
    assert settled["batches"] == plain["batches"]
    assert settled["weights"] == plain["weights"]
