"""The trace covers the whole training state: optimizer slots and counters, random generator
states, and the batch's own loss; and the tracers stay out of the way outside `twinrun check`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import require, run_cli
from twinrun.fingerprint import exact
from twinrun.fingerprint import numpy as reference
from twinrun.trace import read_trace

SCRIPTS = Path(__file__).parent / "scripts"


def plain_env(**extra):
    """The environment of a user's own `python train.py`: no twinrun launcher around it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINRUN_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


# Outside `twinrun check` -----------------------------------------------------------------------

def test_a_torch_script_with_a_tracer_runs_as_a_plain_script_and_says_so_once(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPTS / "torch_adam_nudge.py"), "--steps", "3"],
                          env=plain_env(), cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    notes = [line for line in done.stderr.splitlines() if "records nothing" in line]
    assert len(notes) == 1 and notes[0].startswith("twinrun: ")
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no trace, no snapshot


def test_a_keras_script_with_trace_runs_as_a_plain_script_and_says_so_once(tmp_path):
    require("jax")
    require("keras")
    done = subprocess.run([sys.executable, str(SCRIPTS / "keras_adam_nudge.py"), "--steps", "3"],
                          env=plain_env(KERAS_BACKEND="jax"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    notes = [line for line in done.stderr.splitlines() if "records nothing" in line]
    assert len(notes) == 1 and notes[0].startswith("twinrun: ")
    assert list(tmp_path.iterdir()) == []


# PyTorch --------------------------------------------------------------------------------------

def test_the_torch_trace_fingerprints_adams_state_and_the_rng_from_the_first_step(tmp_path):
    torch = require("torch")
    from twinrun.torch import Tracer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5),
                                torch.nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    expected = []
    with Tracer(model, optimizer, path=tmp_path / "run.trace", snapshots=False) as tracer:
        for _ in range(3):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            tracer.step(loss, (x, y))
            state = optimizer.state[model[0].weight]
            # On a CPU the torch trace's words are scheme 3's: each tensor's bytes hashed.
            expected.append({"loss": loss.item(), "words": exact.tensor_words(
                [state["exp_avg_sq"].numpy(), state["step"].numpy(),
                 torch.get_rng_state().numpy()]).tolist()})
    trace = read_trace(tmp_path / "run.trace")
    assert trace.header["fingerprint_scheme"] == 3
    # Adam creates its state at its first step: step 0's record names it.
    assert "optimizer/0.weight/exp_avg_sq" not in trace.header["variables"]
    names = trace.names_at(0)
    assert {"optimizer/0.weight/exp_avg", "optimizer/0.weight/exp_avg_sq",
            "optimizer/0.weight/step", "optimizer/group0/hyperparameters",
            "rng/torch_cpu"} <= set(names)
    rows = [names.index(n) for n in ("optimizer/0.weight/exp_avg_sq", "optimizer/0.weight/step",
                                     "rng/torch_cpu")]
    for step, want in zip(trace.steps, expected):
        assert step["loss"] == want["loss"]
        assert [step["variables"][i] for i in rows] == want["words"]
    assert "names" not in trace.steps[1]  # unchanged since step 0
    steps_words = [s["variables"][rows[1]] for s in trace.steps]
    assert len({tuple(w) for w in steps_words}) == 3  # the step counter moves every step


# Keras ----------------------------------------------------------------------------------------

KERAS_STATE = """
import json, sys
import numpy as np
import keras
import twinrun
from twinrun.keras import Trace
from twinrun.keras.state import training_state
from twinrun.fingerprint import exact
from twinrun.fingerprint import numpy as reference
from twinrun.trace import read_trace

twinrun.deterministic(3, backend=keras.backend.backend())
model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, name="hidden"),
                          keras.layers.Dropout(0.5, name="drop"), keras.layers.Dense(1)])
model.compile(keras.optimizers.Adam(1e-2), "mse")
rng = np.random.default_rng(0)
x, y = rng.random((64, 6), np.float32), rng.random((64, 1), np.float32)
synced = []

class Synced(keras.callbacks.Callback):
    # After the trace: `self.model` syncs the JAX state into the variables, which the trace
    # itself never does.
    def on_train_batch_end(self, batch, logs=None):
        state = training_state(self.model)
        synced.append(reference.tensor_words(
            [np.asarray(keras.ops.convert_to_numpy(v)) for _, v in state]).tolist())

model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
          callbacks=[Trace(sys.argv[1], snapshots=False), Synced()])
trace = read_trace(sys.argv[1])
print(json.dumps({"names": trace.names_at(0), "steps": list(trace.steps), "synced": synced,
                  "tracker": [v.path for v in model._loss_tracker.variables]}))
"""


@pytest.fixture(scope="module", params=["jax", "tensorflow"])
def keras_run(request, tmp_path_factory):
    """One traced Keras `fit` per backend, shared by the tests below."""
    backend = request.param
    require(backend)
    require("keras")
    path = tmp_path_factory.mktemp(backend) / "run.trace"
    done = subprocess.run([sys.executable, "-c", KERAS_STATE, str(path)],
                          env=plain_env(KERAS_BACKEND=backend), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_keras_trace_reads_the_optimizer_and_generator_state_of_every_step(keras_run):
    names = keras_run["names"]
    assert "optimizer/adam/iteration" in names
    assert "optimizer/adam/sequential_hidden_kernel_velocity" in names
    assert "rng/drop/seed_generator" in names
    # The trace's words (from the JAX training state, or from inside TensorFlow's compiled
    # step) are those of the variables' values after each step.
    assert [s["variables"] for s in keras_run["steps"]] == keras_run["synced"]
    # The tracker that gave the batch loss is left as Keras made it.
    assert keras_run["tracker"] == ["loss/total", "loss/count"]


def test_the_keras_batch_loss_is_exact_and_the_running_mean_is_kept_beside_it(keras_run):
    steps = keras_run["steps"]
    assert len(steps) == 8
    # Keras' running mean is total / count with total += 16 * loss (exact: a power of two),
    # in float32: the recorded batch losses rebuild it bit for bit, epoch by epoch.
    for epoch in (0, 1):
        total, count = np.float32(0), np.float32(0)
        for step in [s for s in steps if s["epoch"] == epoch]:
            total = np.float32(total + np.float32(16) * np.float32(step["loss"]))
            count = np.float32(count + 16)
            assert step["loss_running_mean"] == float(np.float32(total / count))
    assert any(s["loss"] != s["loss_running_mean"] for s in steps)


# A divergence planted in Adam's second moment ------------------------------------------------

def check_json(store, *args, env=None):
    completed = run_cli("check", "--json", "--store", store, *args, env=env)
    assert completed.returncode == 1, completed.stderr[-3000:]
    return json.loads(completed.stdout)


def assert_reported_in_the_slot(verdict, slot):
    divergence = verdict["first_divergence"]
    assert (divergence["step"], divergence["records"]) == (2, ["variables"])
    assert divergence["variables"] == [slot]
    assert verdict["localization"]["where"] == "optimizer"
    assert verdict["localization"]["state"] == [slot]
    assert slot in verdict["localization"]["note"]


@pytest.mark.slow
def test_a_one_ulp_change_of_torch_adams_second_moment_is_reported_at_its_step_and_slot(store):
    verdict = check_json(store, "--", "python", SCRIPTS / "torch_adam_nudge.py", "--step", "2")
    assert_reported_in_the_slot(verdict, "optimizer/0.weight/exp_avg_sq")


@pytest.mark.slow
def test_a_one_ulp_change_of_keras_adams_second_moment_is_reported_at_its_step_and_slot(store):
    require("jax")
    verdict = check_json(store, "--", "python", SCRIPTS / "keras_adam_nudge.py", "--step", "2",
                         env={"KERAS_BACKEND": "jax"})
    assert_reported_in_the_slot(verdict, "optimizer/adam/sequential_hidden_kernel_velocity")
