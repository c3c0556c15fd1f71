"""Fingerprint scheme 3: where the training state lies in host memory (torch on a CPU), each
tensor's step words are an exact hash of its bytes, which sees the changes scheme 2's row sums
miss; words of two schemes are never compared, and a replay writes its reference's scheme."""

import json
import os

import numpy as np
import pytest

from conftest import require, run_cli
from test_exact_digests import PLANTED, W
from test_training_state import SCRIPTS
from twinrun.checks.reference import read_reference
from twinrun.errors import TwinrunError
from twinrun.fingerprint import SCHEME_VARIABLE, exact, trace_words_for
from twinrun.fingerprint import numpy as rows
from twinrun.trace import Trace


def test_scheme_2s_blind_spot_is_seen_by_the_exact_words():
    # An even number of sign flips in one row: scheme 2's sums always miss it ...
    two_flips = W.copy()
    two_flips[[1, 2]] *= -1
    assert (rows.tensor_words([two_flips]) == rows.tensor_words([W])).all()
    # ... scheme 3 sees it, the +1, -1, -1, +1 ulp pattern, and the same bytes under another
    # dtype or shape.
    base = exact.tensor_words([W])[0].tolist()
    for changed in (two_flips, PLANTED, W.view(np.int32), W.reshape(2, 4)):
        assert exact.tensor_words([changed])[0].tolist()[1:] != base[1:], changed
    assert exact.tensor_words([W.copy()])[0].tolist() == base


def test_torch_tensors_and_numpy_arrays_of_the_same_bits_have_the_same_words():
    torch = require("torch")
    tensors = [torch.arange(12, dtype=torch.float32).reshape(3, 4),
               torch.tensor(3.0),  # 0-d, as Adam's step counter
               torch.zeros(0, 5),
               torch.tensor([True, False, True]),
               torch.arange(6, dtype=torch.int64),
               torch.arange(6, dtype=torch.float16)]
    transposed = torch.arange(12, dtype=torch.float32).reshape(3, 4).T  # not contiguous
    expected = exact.tensor_words([t.numpy() for t in tensors] + [transposed.numpy()])
    assert (exact.tensor_words(tensors + [transposed]) == expected).all()
    cached = exact.TensorWords()
    assert (cached(tensors + [transposed]) == expected).all()
    assert (cached(tensors + [transposed]) == expected).all()  # from the cached views
    # In place (an optimizer step) and a new storage (`param.data = ...`) are both seen.
    tensors[0].add_(1)
    assert (cached(tensors)[0] == exact.tensor_words([tensors[0].numpy()])[0]).all()
    assert (cached(tensors)[0] != expected[0]).any()
    parameter = torch.nn.Parameter(torch.zeros(4))
    before = cached([parameter])[0].tolist()
    parameter.data = torch.ones(4)
    assert cached([parameter])[0].tolist() == exact.tensor_words([torch.ones(4)])[0].tolist()
    assert cached([parameter])[0].tolist() != before


def test_a_large_state_is_hashed_on_the_steps_threads_to_the_same_words(monkeypatch):
    torch = require("torch")
    threads = torch.get_num_threads()
    generator = torch.Generator().manual_seed(0)
    # 9 MB in all, above the sharing threshold; small tensors and a non-contiguous one among
    # them, in an order the largest-first sharing does not keep.
    tensors = [torch.randn(size, generator=generator)
               for size in [(3,), (1_200_000,), (64, 3, 3), (700_000,), (5,), (350_000,)]]
    tensors.append(torch.randn(40, 30, generator=generator).T)
    expected = exact.tensor_words([t.numpy() for t in tensors])
    try:
        # With OpenMP's idle threads spinning for the cores, the calling thread alone.
        monkeypatch.setenv("OMP_WAIT_POLICY", "active")
        torch.set_num_threads(2)
        alone = exact.TensorWords()
        assert (alone(tensors) == expected).all() and alone._pool is None
        monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # as twinrun starts torch processes
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            shared = exact.TensorWords()
            assert (shared(tensors) == expected).all(), count
            helpers = 0 if shared._pool is None else shared._pool[2] - 1
            assert helpers == min(count, len(os.sched_getaffinity(0))) - 1
        tensors[3][123_456] += 1.0  # hashed by a helper thread when there is one
        changed = shared(tensors)
        assert (changed[3] != expected[3]).any()
        assert (np.delete(changed, 3, axis=0) == np.delete(expected, 3, axis=0)).all()
    finally:
        torch.set_num_threads(threads)


def test_the_scheme_follows_the_device_unless_the_environment_says(monkeypatch):
    torch = require("torch")
    state = [torch.zeros(3)]
    assert trace_words_for("torch", state)[1] == 3
    assert trace_words_for("numpy", [np.zeros(3)])[1] == 2
    monkeypatch.setenv(SCHEME_VARIABLE, "2")
    words, scheme = trace_words_for("torch", state)
    assert scheme == 2
    expected = rows.tensor_words([np.arange(4.0, dtype=np.float32)])
    assert words([torch.arange(4.0)]).tolist() == expected.tolist()
    monkeypatch.setenv(SCHEME_VARIABLE, "7")
    with pytest.raises(TwinrunError, match="TWINRUN_FINGERPRINT_SCHEME='7' is not"):
        trace_words_for("torch", state)


def test_traces_of_two_schemes_are_refused_not_compared(tmp_path):
    from twinrun.checks.verdict import first_divergence

    traces = []
    for name, scheme in (("a", 2), ("b", 3)):
        trace = Trace(tmp_path / name)
        trace.header = {"kind": "header", "fingerprint_scheme": scheme}
        trace.steps.append({"kind": "step", "step": 0, "epoch": 0, "batch": None, "loss": 0.5,
                            "variables": [[1, 2, 3]]})
        traces.append(trace)
    with pytest.raises(TwinrunError, match=r"different fingerprint schemes \(2 and 3\)"):
        first_divergence(traces)


@pytest.mark.slow
def test_the_planted_pattern_before_the_last_step_is_named_by_that_steps_words(store):
    require("torch")
    completed = run_cli("check", "-n", "2", "--json", "--store", store, "--", "python",
                        SCRIPTS / "torch_ulp_pattern.py", "--before-last-step")
    assert completed.returncode == 1, completed.stderr[-3000:]
    divergence = json.loads(completed.stdout)["first_divergence"]
    assert (divergence["step"], divergence["records"], divergence["variables"]) == \
        (4, ["variables"], ["weight"])


@pytest.mark.slow
def test_a_scheme_2_reference_is_replayed_with_scheme_2_words(tmp_path):
    require("torch")
    script = ["python", SCRIPTS / "torch_ulp_pattern.py", "--replica", "none"]
    reference = tmp_path / "ref.twinrun"
    recorded = run_cli("record", "-o", reference, "--store", tmp_path / "store", "--", *script,
                       env={SCHEME_VARIABLE: "2"})
    assert recorded.returncode == 0, recorded.stderr[-3000:]
    assert read_reference(reference).fingerprint_scheme == 2
    completed = run_cli("check", "--against", reference, "--json", "--store",
                        tmp_path / "store", "--", *script)
    assert completed.returncode == 0, completed.stderr[-3000:]
    verdict = json.loads(completed.stdout)
    assert (verdict["verdict"], verdict["steps_compared"]) == ("identical", 5)
