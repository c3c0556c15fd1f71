"""Operation-level localisation for PyTorch (plain and Keras on torch): the first ATen
operation whose output differs, its module and the user's line that called it."""

import json
from pathlib import Path

import pytest

from conftest import run_cli

SCRIPTS = Path(__file__).parent / "scripts"
CONV_SCRIPT = SCRIPTS / "torch_conv.py"


def assert_names_an_op_of_the_conv_script(op):
    assert op["op"].startswith("aten::"), op
    assert (Path(op["file"]).name, op["line"]) == ("torch_conv.py", 19), op
    assert op["code"] == "logits = model(images)"
    assert op["phase"] in ("forward", "backward") and op["module"] in ("0", "4", "6"), op


@pytest.mark.slow
def test_check_at_1_and_2_threads_names_the_aten_operation_and_the_script_line(tmp_path):
    checked = run_cli("check", "--threads", "1,2", "--json", "--store", tmp_path / "runs",
                      "--", "python", CONV_SCRIPT)
    verdict = json.loads(checked.stdout)
    assert (checked.returncode, verdict["verdict"]) == (1, "diverged"), checked.stderr
    assert_names_an_op_of_the_conv_script(verdict["localization"]["op"])
    assert "The first operation to differ is aten::" in verdict["localization"]["note"]


@pytest.mark.slow
def test_keras_on_torch_names_the_operation_inside_the_users_layer(tmp_path):
    """A layer that adds noise from an unseeded generator: the op is named in that layer, at
    the line of its call()."""
    script = SCRIPTS / "zero_keras.py"
    checked = run_cli("check", "--backend", "torch", "--json", "--store", tmp_path / "runs",
                      "--", "python", script, "--noise")
    verdict = json.loads(checked.stdout)
    assert (checked.returncode, verdict["verdict"]) == (1, "diverged"), checked.stderr
    op = verdict["localization"]["op"]
    line = next(i for i, text in enumerate(script.read_text().splitlines(), 1)
                if "convert_to_tensor(self.noise)" in text)
    assert (op["module"], op["phase"], Path(op["file"]).name, op["line"]) == (
        "noise", "forward", "zero_keras.py", line)
    assert op["op"].startswith("aten::")


def test_the_op_recorder_names_each_aten_op_its_module_and_the_calling_line():
    import torch

    from twinrun.torch.ops import OpRecorder

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(),
                                torch.nn.Linear(8, 2))
    names = {id(m): name or "root" for name, m in model.named_modules()}
    recorder = OpRecorder(names)
    recorder.arm(True)
    try:
        loss = model(torch.ones(2, 1, 4, 4)).sum()  # the forward line
        loss.backward()
    finally:
        recorder.arm(False)
    records = recorder.take()
    line = next(i for i, text in enumerate(Path(__file__).read_text().splitlines(), 1)
                if text.strip().startswith("loss = model(torch.ones"))
    conv = next(r for r in records if r["op"] == "aten::convolution")
    assert (conv["phase"], conv["module"], Path(conv["file"]).name, conv["line"]) == (
        "forward", "0", "test_op_localization.py", line)
    backward = next(r for r in records if r["op"] == "aten::convolution_backward")
    # A backward op is placed at the forward line that made its autograd node.
    assert (backward["phase"], backward["module"], backward["line"]) == ("backward", "0", line)
    linear_grad = [r for r in records if r["phase"] == "backward" and r["module"] == "2"]
    assert linear_grad and all(len(r["output"]) == 16 for r in linear_grad)
    assert not torch.is_anomaly_enabled()  # disarmed: as it was


def test_the_first_differing_op_is_found_in_call_order():
    from twinrun.checks.localize import describe_op, first_op

    same = {"op": "aten::convolution", "phase": "forward", "module": "0", "output": "a",
            "file": "/x/train.py", "line": 7, "code": "y = model(x)"}
    other = dict(same, op="aten::mm", module="2", output="b")
    assert first_op([{"ops": [same, other]}, {"ops": [same, dict(other, output="c")]}]) == {
        "op": "aten::mm", "phase": "forward", "module": "2", "file": "/x/train.py",
        "line": 7, "code": "y = model(x)", "index": 1}
    assert first_op([{"ops": [same]}, {"ops": [same]}]) is None
    assert first_op([{"forward": []}, {"forward": []}]) is None  # TensorFlow, JAX: no ops
    assert describe_op(dict(same, index=0)) == (
        "The first operation to differ is aten::convolution (forward, in layer 0), called at "
        "train.py:7: y = model(x).")
