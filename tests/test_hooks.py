"""Zero-change checks: scripts that never import twinrun, checked as they are (`twinrun.hooks`,
`twinrun.programs.hooked`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_one_sentence_error, run_cli
from twinrun.hooks import findings, trace_phases
from twinrun.trace import read_trace

SCRIPTS = Path(__file__).parent / "scripts"
KERAS_BACKENDS = ("tensorflow", "jax", "torch")


def check(script, *args, store, backend=None, options=()):
    env = {"KERAS_BACKEND": backend} if backend else None
    completed = run_cli("check", "--json", "--store", store, *options, "--", "python",
                        SCRIPTS / script, *args, env=env)
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    return json.loads(completed.stdout)


def hooked(*target, tmp_path, env=None):
    """Run `python -m twinrun.programs.hooked TARGET` as a replica would, with its trace in
    tmp_path."""
    full_env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    full_env.update(TWINRUN_TRACE=str(tmp_path / "run.trace"), TWINRUN_SEED="3", **(env or {}))
    return subprocess.run([sys.executable, "-m", "twinrun.programs.hooked", *map(str, target)],
                          env=full_env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)


# -- the program that runs the script --------------------------------------------------------

def test_the_script_sees_the_argv_path_and_file_plain_python_gives_it(tmp_path):
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "show.py").write_text(
        "import json, sys\n"
        "print(json.dumps([sys.argv, sys.path[0], __file__, __name__,\n"
        "                  sys.modules['__main__'].__file__]))\n")
    plain = subprocess.run([sys.executable, "sub/show.py", "--epochs", "2"], cwd=tmp_path,
                           capture_output=True, text=True, check=True)
    completed = hooked("sub/show.py", "--epochs", "2", tmp_path=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == json.loads(plain.stdout)


def test_a_crash_in_the_script_prints_the_traceback_plain_python_prints(tmp_path):
    (tmp_path / "crash.py").write_text("def train():\n    raise ValueError('no data')\n"
                                       "train()\n")
    plain = subprocess.run([sys.executable, "crash.py"], cwd=tmp_path, capture_output=True,
                           text=True)
    completed = hooked("crash.py", tmp_path=tmp_path)
    assert completed.returncode == plain.returncode == 1
    assert completed.stderr == plain.stderr
    assert "twinrun" not in completed.stderr


def test_code_and_modules_run_with_the_argv_python_gives_them(tmp_path):
    completed = hooked("-c", "import sys; print(sys.argv, repr(sys.path[0]))", "a",
                       tmp_path=tmp_path)
    assert completed.stdout.strip() == "['-c', 'a'] ''"
    (tmp_path / "mod.py").write_text("import sys\nprint(__name__, sys.argv[1:])\n")
    completed = hooked("-m", "mod", "b", tmp_path=tmp_path)
    assert completed.stdout.strip() == "__main__ ['b']", completed.stderr


def test_a_script_without_frameworks_imports_none(tmp_path):
    completed = hooked("-c", "import sys; print(sorted(m for m in ('torch', 'tensorflow', "
                       "'jax', 'keras') if m in sys.modules))", tmp_path=tmp_path)
    assert completed.stdout.strip() == "[]", completed.stderr


def test_a_script_with_no_training_twinrun_can_see_is_pointed_at_the_explicit_api(tmp_path,
                                                                                   store):
    script = tmp_path / "optax_like.py"
    script.write_text("import numpy as np\nw = np.zeros(3)\nfor _ in range(3):\n"
                      "    w -= 0.1 * np.ones(3)\n")
    completed = run_cli("check", "--store", store, "--", "python", script)
    assert_one_sentence_error(completed, "wrote no trace", "JAX/optax",
                              "twinrun.keras.Trace()", "twinrun.torch.Tracer")


# -- dynamic findings -----------------------------------------------------------------------

@pytest.mark.slow
def test_a_model_built_before_its_seed_and_a_global_shuffle_are_found_with_their_lines(
        tmp_path):
    completed = hooked(SCRIPTS / "zero_pitfalls.py", tmp_path=tmp_path)
    assert completed.returncode == 0, completed.stderr
    found = {(f["rule"], f["line"]) for f in findings(tmp_path / "run.trace")}
    assert ("seeded-after-use", 8) in found
    assert ("global-generator-draw", 11) in found
    assert all(f["file"].endswith("zero_pitfalls.py") for f in findings(tmp_path / "run.trace"))
    assert len(read_trace(tmp_path / "run.trace").steps) == 2


@pytest.mark.slow
def test_a_script_that_traces_itself_is_traced_once(tmp_path):
    completed = hooked(SCRIPTS / "readme_torch.py", tmp_path=tmp_path)
    assert completed.returncode == 0, completed.stderr
    trace = read_trace(tmp_path / "run.trace")
    assert len(trace.steps) == 8 and [s["step"] for s in trace.steps] == list(range(8))
    assert trace_phases(tmp_path / "run.trace") == []  # the script's own Tracer wrote it


# -- unmodified scripts under `twinrun check` ------------------------------------------------

@pytest.fixture(scope="module")
def checks_store(tmp_path_factory):
    return tmp_path_factory.mktemp("hooks-store")


@pytest.mark.slow
@pytest.mark.parametrize("backend", KERAS_BACKENDS)
def test_an_unmodified_keras_fit_script_with_two_fits_is_identical_on_every_backend(
        backend, checks_store):
    # The script seeds nothing: on TensorFlow, op determinism without a seed would crash.
    verdict = check("zero_keras.py", "--fits", "2", store=checks_store, backend=backend)
    assert verdict["verdict"] == "identical", verdict
    assert verdict["steps_compared"] == 16
    assert any("2 phases" in note and "fit 2 (model" in note for note in verdict["notes"])
    assert [f["rule"] for f in verdict["findings"] if f.get("source") == "hooks"] == [
        "framework-unseeded"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", KERAS_BACKENDS)
def test_an_unseeded_shuffle_in_a_keras_script_diverges_at_step_0_at_the_batch(
        backend, checks_store):
    verdict = check("zero_keras.py", "--shuffle", store=checks_store, backend=backend)
    assert verdict["verdict"] == "diverged"
    assert verdict["first_divergence"]["step"] == 0
    assert "batch" in verdict["first_divergence"]["records"]


@pytest.mark.slow
def test_a_noisy_layer_in_a_keras_script_is_localised_to_that_layer(checks_store):
    # One backend keeps the file short: the hooks only start the phase's probe at its first
    # step, and Keras' Trace localises the same way on every backend (tests/test_check.py).
    verdict = check("zero_keras.py", "--noise", store=checks_store, backend="torch")
    assert verdict["verdict"] == "diverged"
    assert "batch" not in verdict["first_divergence"]["records"]
    assert verdict["first_divergence"]["layer"]["name"] == "noise"


@pytest.mark.slow
def test_an_unmodified_torch_loop_with_two_optimizers_is_identical(checks_store):
    verdict = check("zero_torch.py", "--optimizers", "2", store=checks_store)
    assert verdict["verdict"] == "identical", verdict
    assert verdict["steps_compared"] == 16
    assert any("optimizer 2 (Adam of Sequential) from step 8" in note
               for note in verdict["notes"])


@pytest.mark.slow
def test_an_unseeded_shuffle_in_a_torch_loop_diverges_at_step_0_at_the_batch(checks_store):
    verdict = check("zero_torch.py", "--shuffle", store=checks_store)
    assert verdict["first_divergence"]["step"] == 0
    assert "batch" in verdict["first_divergence"]["records"]


@pytest.mark.slow
def test_a_noisy_module_in_a_torch_loop_is_localised_to_that_module(checks_store):
    verdict = check("zero_torch.py", "--noise", store=checks_store)
    assert verdict["verdict"] == "diverged"
    assert verdict["first_divergence"]["layer"]["class"] == "Noise"


@pytest.mark.slow
def test_no_determinism_runs_the_script_as_written_so_an_unseeded_one_diverges(checks_store):
    verdict = check("zero_torch.py", store=checks_store, options=["--no-determinism"])
    assert verdict["verdict"] == "diverged"
    assert verdict["first_divergence"]["step"] == 0


@pytest.mark.slow
def test_optimizers_taking_turns_are_traced_step_by_step_and_said_to(checks_store):
    verdict = check("zero_turns.py", store=checks_store)
    assert verdict["verdict"] == "identical"
    assert verdict["steps_compared"] == 6
    assert any("took turns (optimizer 1 (SGD of Linear), optimizer 2 (Adam of Linear))" in note
               for note in verdict["notes"])
