"""The pytest plugin: `@pytest.mark.reproducible` runs a test in fresh processes via twinrun.check."""

import os
import subprocess
import sys
from textwrap import dedent

import pytest

from twinrun.checks.verdict import Divergence, Verdict
from twinrun.report.summary import verdict_summary


@pytest.mark.slow
@pytest.mark.reproducible(n=2, seed=7)
def test_a_tiny_torch_training_repeats_bit_for_bit_in_fresh_processes():
    # Runs in two fresh processes, not here: the plugin compares what their tracers recorded.
    import torch

    import twinrun
    import twinrun.torch

    twinrun.deterministic(backend="torch")  # the marker's seed, in each process
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.2),
                                torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    with twinrun.torch.Tracer(model, optimizer) as tracer:
        for start in range(0, 64, 16):
            xb, yb = x[start:start + 16], y[start:start + 16]
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            optimizer.step()
            tracer.step(loss, (xb, yb))


MARKED_TESTS = '''
import pytest


@pytest.mark.reproducible(n=2, seed=3, localize=False)
def test_unseeded_batches():
    import numpy as np
    import torch

    import twinrun
    import twinrun.torch

    twinrun.deterministic(backend="torch")
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rng = np.random.default_rng()  # no seed: each process draws other batches
    with twinrun.torch.Tracer(model, optimizer) as tracer:
        for _ in range(3):
            x = torch.from_numpy(rng.random((8, 4), dtype=np.float32))
            optimizer.zero_grad()
            loss = model(x).square().mean()
            loss.backward()
            optimizer.step()
            tracer.step(loss, x)


@pytest.mark.reproducible
def test_with_a_fixture(tmp_path):
    pass
'''


@pytest.mark.slow
def test_a_marked_test_that_diverges_fails_with_the_verdict_in_one_line(tmp_path):
    (tmp_path / "test_marked.py").write_text(dedent(MARKED_TESTS))
    # A fresh pytest finds the plugin only through the installed `pytest11` entry point.
    env = dict(os.environ, TWINRUN_STORE=str(tmp_path / "store"))
    env.pop("PYTEST_ADDOPTS", None)
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "test_marked.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = completed.stdout
    assert completed.returncode == 1, out + completed.stderr
    assert "2 failed" in out, out
    summary = next(line for line in out.splitlines()
                   if line.startswith("test_unseeded_batches diverged"))
    assert summary.startswith("test_unseeded_batches diverged at step 0 (epoch 1): batch"), out
    assert "asks for tmp_path" in out, out
    assert "Traceback" not in out, out


def test_the_plugin_is_registered_through_the_pytest11_entry_point():
    from importlib.metadata import entry_points

    plugins = {entry.name: entry.value for entry in entry_points(group="pytest11")}
    assert plugins.get("twinrun") == "twinrun.pytest_plugin"


def test_the_reproducible_marker_is_declared(pytestconfig):
    assert any(line.startswith("reproducible(") for line in pytestconfig.getini("markers"))


def test_the_one_line_summary_names_the_step_the_records_the_variables_and_the_layer():
    verdict = Verdict(
        verdict="diverged", steps_compared=5, replicas=[{}, {}],
        first_divergence=Divergence(step=4, epoch=1, records=["variables"],
                                    variables=["a", "b", "c", "d"],
                                    layer={"name": "noisy", "class": "Noise"}))
    assert verdict_summary(verdict, label="test_x") == (
        "test_x diverged at step 4 (epoch 1): variables differ; "
        "first variables to differ: a, b, c and 1 more; localised to layer noisy")
    assert "\n" not in verdict_summary(verdict)
