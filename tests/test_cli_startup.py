"""`twinrun --help` and every command's help start without any deep-learning framework."""

import json
import os
import subprocess
import sys

import pytest

from conftest import require

FRAMEWORKS = ("tensorflow", "jax", "torch", "keras")

PROBE = """
import sys
from twinrun.cli import main
try:
    main([{args}], standalone_mode=False)
except SystemExit:
    pass
print("IMPORTED:" + ",".join(sorted(m for m in {frameworks!r} if m in sys.modules)))
"""


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["check", "--help"],
                                  ["runs", "--help"], ["doctor", "--help"], ["data", "--help"]])
def test_help_imports_no_framework(args):
    code = PROBE.format(args=", ".join(repr(a) for a in args), frameworks=FRAMEWORKS)
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "Usage:" in completed.stdout
    assert completed.stdout.strip().splitlines()[-1] == "IMPORTED:"


def test_importing_twinrun_imports_no_framework():
    completed = subprocess.run(
        [sys.executable, "-c",
         "import sys, twinrun, twinrun.checks, twinrun.checks.verdict, twinrun.store, twinrun.launch\n"
         f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))"],
        capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_twinrun_keras_and_twinrun_torch_load_on_first_use_after_a_plain_import_twinrun():
    require("torch")
    code = (
        "import json, sys, twinrun\n"
        f"before = sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)\n"
        "tracer, trace = twinrun.torch.Tracer, twinrun.keras.Trace\n"
        "print(json.dumps({'before': before, 'tracer': tracer.__module__,\n"
        "                  'trace': trace.__module__,\n"
        "                  'has_nonsense': hasattr(twinrun, 'nonsense'),\n"
        "                  'listed': {'keras', 'torch'} <= set(dir(twinrun))}))\n")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=120, env={**os.environ, "KERAS_BACKEND": "torch"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {"before": [], "tracer": "twinrun.torch.tracer",
                      "trace": "twinrun.keras.callback", "has_nonsense": False, "listed": True}


LEFT_OUT = """
import json, sys
from twinrun.programs.frameworks import leave_out_unused_frameworks
leave_out_unused_frameworks({backend!r})
outcome = {{}}
for name in ("jax", "jax.numpy", "jaxlib"):
    try:
        __import__(name)
        outcome[name] = "imported"
    except ImportError as error:  # what Keras' Orbax callback catches
        outcome[name] = type(error).__name__
print(json.dumps(outcome))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "torch", "jax"])
def test_a_workers_process_on_tensorflow_or_torch_cannot_import_jax_and_on_jax_can(backend):
    require("jax")
    completed = subprocess.run([sys.executable, "-c", LEFT_OUT.format(backend=backend)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    expected = "imported" if backend == "jax" else "ModuleNotFoundError"
    assert outcome == dict.fromkeys(("jax", "jax.numpy", "jaxlib"), expected)
