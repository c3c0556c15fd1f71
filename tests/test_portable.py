"""--portable: CPU kernels whose bits travel between x86-64 CPUs, and the self-test that
checks this CPU reproduces the bits twinrun ships (docs/portable.md)."""

import json
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import run_cli
from test_op_localization import assert_names_an_op_of_the_conv_script
from twinrun.determinism import environment_for
from twinrun.determinism.common import IMPOSSIBLE, PORTABLE, cpu_flags, portable_cpu_problem

SCRIPTS = Path(__file__).parent / "scripts"
CONV_SCRIPT = SCRIPTS / "torch_conv.py"
TORCH_PORTABLE = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                  "MKL_CBWR": "COMPATIBLE", "MKL_DYNAMIC": "FALSE"}
# Agreed by an AVX2-only AMD EPYC (Zen 3) and an AVX-512 one (Zen 5), at 1 and 2 threads.
PORTABLE_TRAINED = "9c313a4e8f4d4409"

needs_portable_cpu = pytest.mark.skipif(
    portable_cpu_problem() is not None,
    reason=f"portable bits need an x86-64 CPU with AVX2: {portable_cpu_problem()}")
needs_avx512 = pytest.mark.skipif(
    "avx512f" not in (cpu_flags() or ()),
    reason="ATen picks AVX-512 kernels by itself only on a CPU that has them")


def test_portable_puts_the_torch_settings_into_the_environment_before_start():
    env = environment_for("torch", threads=2, portable=True)
    assert {k: env[k] for k in TORCH_PORTABLE} == TORCH_PORTABLE
    assert env["TWINRUN_PORTABLE"] == "1"
    assert not set(TORCH_PORTABLE) & set(environment_for("torch", threads=2))


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_tensorflow_and_jax_get_no_portable_settings_and_their_reports_say_why(backend):
    from twinrun.determinism import framework_module

    env = environment_for(backend, portable=True)
    assert not set(TORCH_PORTABLE) & set(env)
    control = framework_module(backend).portability()
    assert (control.name, control.state) == (PORTABLE, IMPOSSIBLE)
    assert "not portable" in control.detail and "--rtol" in control.detail


def test_the_cpu_check_names_what_a_cpu_lacks():
    problem = portable_cpu_problem()
    if platform.machine().lower() in ("x86_64", "amd64") and {"avx2", "fma"} <= (cpu_flags() or set()):
        assert problem is None
    else:
        assert problem is not None and ("lacks" in problem or "x86-64" in problem)


def _in_fresh_python(code, env=None):
    full = {k: v for k, v in os.environ.items() if k not in TORCH_PORTABLE}
    full.update(env or {})
    done = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


IN_PROCESS = """
import json, sys, torch, twinrun
if {early}:
    torch.backends.cpu.get_cpu_capability()  # ATen picks its kernels now
report = twinrun.deterministic(0, backend="torch", threads=1, portable=True)
control = next(c for c in report.controls if c.name == "portable CPU kernels")
from twinrun.workloads.portable_probe import run
result = run(1)
print(json.dumps({{"state": control.state, "detail": control.detail,
                  "portable": report.portable, "trained": result["trained"]}}))
"""


@needs_portable_cpu
def test_deterministic_portable_before_the_first_kernel_gives_the_portable_bits():
    result = _in_fresh_python(IN_PROCESS.format(early=False))
    assert result["state"] == "applied" and result["portable"] is True
    # oneDNN and MKL cannot be read back: the control says what it cannot promise.
    assert "only if none ran before this call" in result["detail"]
    assert result["trained"] == PORTABLE_TRAINED


@needs_avx512
def test_deterministic_portable_after_aten_picked_avx512_says_it_is_impossible():
    result = _in_fresh_python(IN_PROCESS.format(early=True))
    assert result["state"] == "impossible"
    assert "AVX512 kernels" in result["detail"] and "before start-up" in result["detail"]
    assert result["trained"] != PORTABLE_TRAINED


@pytest.mark.slow
@needs_portable_cpu
def test_doctor_portable_reproduces_the_shipped_bits_at_1_and_2_threads():
    """The portable self-test, as CI runs it on every machine: the literal is the claim."""
    completed = run_cli("doctor", "--portable", "--json", timeout=600)
    result = json.loads(completed.stdout)
    if result["reproduces"] is None:
        pytest.skip(result["message"])  # another torch version: the literal is for 2.13.0
    assert completed.returncode == 0, result["message"]
    assert [(r["threads"], r["trained"], r["cpu_capability"]) for r in result["runs"]] == [
        (1, PORTABLE_TRAINED, "AVX2"), (2, PORTABLE_TRAINED, "AVX2")]
    assert result["message"].startswith("This CPU reproduces twinrun's portable bits")


def test_doctor_portable_names_the_step_and_tensor_where_bits_part():
    from twinrun.workloads.portable_probe import EXPECTED, first_difference

    steps = [list(s) for s in EXPECTED["steps"]]
    steps[3][2] = "00000000"
    result = {"matmul": EXPECTED["matmul"], "trained": "0" * 16, "steps": steps}
    assert first_difference(result) == {"step": 3, "tensor": "4.weight"}
    assert first_difference(dict(result, matmul="x")) == {"step": -1, "tensor": "matmul"}
    assert first_difference(dict(result, steps=EXPECTED["steps"],
                                 trained=EXPECTED["trained"])) is None


def _reference_header(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("reference.json"))


@pytest.mark.slow
@needs_portable_cpu
def test_a_portable_reference_checks_identical_under_another_parent_cpu_capability(tmp_path):
    """record --portable, then check --against from a shell whose ATEN_CPU_CAPABILITY and
    ONEDNN_MAX_CPU_ISA say otherwise: the reference's settings win, the bits are the same."""
    reference = tmp_path / "ref.twinrun"
    recorded = run_cli("record", "--portable", "--threads", "2", "-o", reference, "--store",
                       tmp_path / "runs", "--", "python", CONV_SCRIPT)
    assert recorded.returncode == 0, recorded.stderr
    header = _reference_header(reference)
    assert header["portable"] == {"variables": TORCH_PORTABLE}
    assert header["environment"]["framework"]["cpu_capability"] == "AVX2"
    checked = run_cli("check", "--against", reference, "--threads", "2", "--json", "--store",
                      tmp_path / "runs", "--", "python", CONV_SCRIPT,
                      env={"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "DEFAULT",
                           "MKL_CBWR": "AUTO"})
    verdict = json.loads(checked.stdout)
    assert (checked.returncode, verdict["verdict"]) == (0, "identical"), checked.stderr
    assert verdict["reference"]["portable"] == {"variables": TORCH_PORTABLE}


@pytest.mark.slow
def test_a_plain_reference_diverges_under_another_cpu_capability_and_says_why(tmp_path):
    reference = tmp_path / "plain.twinrun"
    recorded = run_cli("record", "--threads", "2", "-o", reference, "--store",
                       tmp_path / "runs", "--", "python", CONV_SCRIPT,
                       env={"ATEN_CPU_CAPABILITY": "default"})
    assert recorded.returncode == 0, recorded.stderr
    assert _reference_header(reference)["portable"] is None
    checked = run_cli("check", "--against", reference, "--threads", "2", "--json", "--store",
                      tmp_path / "runs", "--", "python", CONV_SCRIPT,
                      env={"ATEN_CPU_CAPABILITY": "avx2"})
    verdict = json.loads(checked.stdout)
    assert (checked.returncode, verdict["verdict"]) == (1, "diverged")
    assert verdict["first_divergence"]["step"] == 0
    assert any("torch's kernels in use DEFAULT → AVX2" in cause
               for cause in verdict["likely_causes"]), verdict["likely_causes"]
    assert any("not recorded with --portable" in note and "--rtol" in note
               for note in verdict["notes"])
    # The reference's settings are replayed here, so the operation and its line are named.
    localization = verdict["localization"]
    assert localization["replayed"] is True
    assert_names_an_op_of_the_conv_script(localization["op"])


def test_a_study_asked_to_be_portable_keeps_it_and_other_study_ids_do_not_move():
    from twinrun.runconfig import RunConfig
    from twinrun.studies.runner import base_definition

    assert base_definition(RunConfig(backend="torch")) == {
        "workload": "fashion-cnn", "preset": "quick", "backend": "torch", "threads": None}
    assert base_definition(RunConfig(backend="torch", portable=True))["portable"] is True


@pytest.mark.parametrize("command", ["train", "check", "record", "variance", "cv", "compare"])
def test_every_command_that_runs_training_offers_portable(command):
    completed = run_cli(command, "--help")
    assert completed.returncode == 0 and "--portable" in completed.stdout
