"""Fingerprints: identical words in every framework for identical bits, and any bit flip seen.

Every framework test uses the real framework on real arrays and skips when it is not installed.
"""

import subprocess
import sys

import numpy as np
import pytest

from conftest import require

from twinrun.fingerprint import digest_arrays, tensor_words_for, words_to_hex
from twinrun.fingerprint import numpy as reference
from twinrun.fingerprint.common import (
    COLUMN_KEY, FMIX_MULTIPLIERS, ROW_KEY_P, ROW_KEY_S, ROW_LENGTH, WORDS_PER_TENSOR)

FRAMEWORKS = ("tensorflow", "jax", "torch")
MASK = 0xFFFFFFFF


def scheme_as_written(array):
    """The scheme of `twinrun.fingerprint.common`, step by step, in Python integers."""
    array = np.ascontiguousarray(array)
    raw, size = array.tobytes(), array.dtype.itemsize
    if size in (1, 2):
        stream = [int.from_bytes(raw[i:i + size], "little", signed=True) & MASK
                  for i in range(0, len(raw), size)]
    else:
        stream = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]

    def fmix32(h):
        h ^= h >> 16
        h = h * FMIX_MULTIPLIERS[0] & MASK
        h ^= h >> 13
        h = h * FMIX_MULTIPLIERS[1] & MASK
        return h ^ h >> 16

    keys = [(2 * c + 1 + 4 * fmix32((c + 1) * COLUMN_KEY & MASK)) & MASK
            for c in range(ROW_LENGTH)]
    w1 = w2 = 0
    for r in range(0, -(-len(stream) // ROW_LENGTH)):
        row = stream[r * ROW_LENGTH:(r + 1) * ROW_LENGTH]
        row_sum = sum(row) & MASK
        weighted_sum = sum(x * keys[c] for c, x in enumerate(row)) & MASK
        w1 += fmix32((row_sum + (r + 1) * ROW_KEY_S) & MASK)
        w2 += fmix32((weighted_sum + (r + 1) * ROW_KEY_P) & MASK)
    return [array.size & MASK, w1 & MASK, w2 & MASK]


def special_floats():
    bits = np.array([0x00000000, 0x80000000, 0x7FC00000, 0x7FC00001, 0xFFC00000, 0x7F800000,
                     0xFF800000, 0x00000001, 0x807FFFFF, 0x3F800000, 0x3F800001], np.uint32)
    return bits.view(np.float32)


def reference_arrays():
    """Arrays whose word streams fill several rows, end mid-row, or are tiny."""
    rng = np.random.default_rng(7)
    arrays = {
        "float32 matrix (3 rows, last partial)": rng.standard_normal((37, 61)).astype(np.float32),
        "float32 special values": special_floats(),
        "float32 scalar": np.float32(-2.5),
        "float32 empty": np.zeros((0, 3), np.float32),
        "float16": rng.standard_normal((3, 700)).astype(np.float16),
        "int32 extremes": np.array([-2**31, 2**31 - 1, -1, 0, 1], np.int32),
        "int32 random": rng.integers(-2**31, 2**31, 2100, dtype=np.int64).astype(np.int32),
        "bool": rng.random(1500) > 0.5,
        "uint8": rng.integers(0, 256, (30, 40), dtype=np.uint8),
        "uint16": rng.integers(0, 2**16, 1100, dtype=np.uint16),
        "uint32": rng.integers(0, 2**32, 1100, dtype=np.uint32),
        "complex64": (rng.standard_normal(600) + 1j * rng.standard_normal(600)).astype("c8"),
        "int8": rng.integers(-128, 128, 50, dtype=np.int8),
        "float64": rng.standard_normal((5, 300)),
        "int64": rng.integers(-2**63, 2**63 - 1, 700, dtype=np.int64),
    }
    try:
        import ml_dtypes
    except ImportError:
        return arrays
    arrays["bfloat16"] = rng.standard_normal(1300).astype(ml_dtypes.bfloat16)
    return arrays


ARRAYS = reference_arrays()
NAMES = list(ARRAYS)
EXPECTED = reference.tensor_words([ARRAYS[name] for name in NAMES])


def to_framework(framework, array):
    """The same bits as a tensor of `framework` (None for 64-bit numbers in 32-bit JAX)."""
    if framework == "tensorflow":
        import tensorflow as tf

        return tf.constant(array)
    if framework == "jax":
        import jax.numpy as jnp

        return None if array.dtype.kind in "iuf" and array.itemsize == 8 else jnp.asarray(array)
    import torch

    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(array))


def framework_words(framework, arrays):
    require(framework)
    return tensor_words_for(framework)([to_framework(framework, a) for a in arrays])


def flipped(array, index, bit):
    """A copy of `array` with one bit of one element flipped."""
    flat = np.array(array).reshape(-1)
    words = flat.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[flat.itemsize])
    words[index] ^= words.dtype.type(1) << words.dtype.type(bit)
    return flat.reshape(np.shape(array))


# The reference and the scheme ---------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_reference_follows_the_scheme_as_written(name):
    assert reference.tensor_words([ARRAYS[name]])[0].tolist() == scheme_as_written(ARRAYS[name])


def test_words_are_uint32_rows_one_per_tensor():
    words = reference.tensor_words([np.ones(3), np.zeros(4, np.float32)])
    assert words.dtype == np.uint32 and words.shape == (2, WORDS_PER_TENSOR)
    assert reference.tensor_words([]).shape == (0, WORDS_PER_TENSOR)


def test_words_depend_on_bits_not_on_memory_layout():
    matrix = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    big_endian = np.float32([1.5, -2.0]).astype(">f4")
    words = reference.tensor_words([matrix.T, np.ascontiguousarray(matrix.T), big_endian,
                                    np.float32([1.5, -2.0])])
    assert (words[0] == words[1]).all() and (words[2] == words[3]).all()


# Pinned words: a change of the format cannot pass silently ----------------------------------

def pinned_arrays():
    """Fixed tensors (no random numbers): exact values, the 3-row case, 1- and 2-byte types."""
    return [np.arange(5, dtype=np.float32), np.float32([-0.0, 1.5, np.inf]),
            (np.arange(3000, dtype=np.float32) * 0.5 - 700.0).reshape(30, 100),
            np.float16([1.0, -2.5, 65504.0]), np.int32([-2**31, -1, 0, 7]),
            np.array([True, False, True]), np.uint8([0, 255, 128, 1])]


# Written down once from the reference implementation (scheme 2); every trace ever recorded
# holds words like these, so changing them means a new scheme (`common.SCHEME`, kept in each
# trace's header) and a new reference format version.
PINNED_WORDS = [[5, 3019330266, 1379802147], [3, 1678624112, 4261969236],
                [3000, 4018256360, 2028261461], [3, 241608626, 1125726652],
                [4, 1777172617, 2241859682], [3, 3024231355, 2506610543],
                [4, 2178391905, 3071680723]]


@pytest.mark.parametrize("framework", ("numpy",) + FRAMEWORKS)
def test_fixed_tensors_give_the_pinned_words_in_every_framework(framework):
    if framework == "numpy":
        words = reference.tensor_words(pinned_arrays())
    else:
        words = framework_words(framework, pinned_arrays())
    assert words.tolist() == PINNED_WORDS


# Every framework gives the reference's words -------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_framework_gives_the_reference_words_for_every_dtype_and_shape(framework):
    require(framework)
    tensors = [to_framework(framework, ARRAYS[name]) for name in NAMES]
    kept = [i for i, t in enumerate(tensors) if t is not None]
    words = tensor_words_for(framework)([tensors[i] for i in kept])
    for row, i in enumerate(kept):
        assert words[row].tolist() == EXPECTED[i].tolist(), NAMES[i]


def test_jax_gives_the_reference_words_for_64_bit_arrays_with_x64_enabled():
    require("jax")
    code = (
        "import jax; jax.config.update('jax_enable_x64', True)\n"
        "import numpy as np, jax.numpy as jnp\n"
        "from twinrun.fingerprint import jax as f, numpy as ref\n"
        "rng = np.random.default_rng(3)\n"
        "arrays = [rng.standard_normal((5, 300)), rng.integers(-2**63, 2**63 - 1, 700),\n"
        "          np.float64(-0.0), (rng.standard_normal(9) + 1j).astype(np.complex128)]\n"
        "words = f.tensor_words([jnp.asarray(a) for a in arrays])\n"
        "assert (words == ref.tensor_words(arrays)).all()\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_jax_refuses_64_bit_host_arrays_it_would_silently_narrow():
    fingerprint_jax = require("twinrun.fingerprint.jax")
    with pytest.raises(TypeError, match="jax_enable_x64"):
        fingerprint_jax.tensor_words([np.zeros(3)])


def test_torch_fingerprints_parameters_without_recording_gradients():
    torch = require("torch")
    layer = torch.nn.Linear(300, 7)
    words = tensor_words_for("torch")(list(layer.parameters()))
    host = [p.detach().numpy() for p in layer.parameters()]
    assert (words == reference.tensor_words(host)).all()
    assert all(p.grad is None for p in layer.parameters())
    transposed = layer.weight.T  # not contiguous: words follow C order, like numpy's
    assert (tensor_words_for("torch")([transposed]) == reference.tensor_words([host[0].T])).all()


def test_tensorflow_traces_once_and_reads_variables_current_values():
    tf = require("tensorflow")
    from twinrun.fingerprint import tensorflow as fingerprint_tf

    variables = [tf.Variable(np.float32(np.arange(3000))), tf.Variable(np.int32([1, 2]))]
    before = fingerprint_tf.tensor_words(variables)
    variables[0].assign_add(tf.ones(3000))
    after = fingerprint_tf.tensor_words(variables)
    others = [tf.Variable(v.numpy()) for v in variables]  # same signature, other variables
    assert (fingerprint_tf.tensor_words(others) == after).all()
    assert (after == reference.tensor_words([v.numpy() for v in variables])).all()
    assert before[0, 0] == after[0, 0] and (before[0, 1:] != after[0, 1:]).all()
    assert fingerprint_tf._function_for(variables).function.experimental_get_tracing_count() == 1


def test_tensorflow_without_xla_gives_the_same_words(monkeypatch):
    require("tensorflow")
    from twinrun.fingerprint import tensorflow as fingerprint_tf

    monkeypatch.setattr(fingerprint_tf, "JIT_COMPILE", False)
    names = [n for n in NAMES if ARRAYS[n].dtype.itemsize <= 4]
    words = framework_words("tensorflow", [ARRAYS[n] for n in names])
    assert (words == EXPECTED[[NAMES.index(n) for n in names]]).all()


def test_keras_variables_are_fingerprinted_as_their_values():
    keras = require("keras")
    backend = keras.backend.backend()
    if backend not in FRAMEWORKS:
        pytest.skip(f"Keras runs on {backend}")
    variable = keras.Variable(np.arange(2000, dtype=np.float32).reshape(40, 50))
    words = tensor_words_for(backend)([variable])
    assert (words == reference.tensor_words([np.arange(2000, dtype=np.float32)])).all()


# Any change is seen ---------------------------------------------------------------------------

@pytest.mark.parametrize("framework", ("numpy",) + FRAMEWORKS)
def test_any_single_bit_flip_changes_both_words(framework):
    rng = np.random.default_rng(11)
    original = ARRAYS["float32 matrix (3 rows, last partial)"]
    flips = [(0, 0), (original.size - 1, 31), (1024, 0), (1023, 22)]
    flips += [(int(rng.integers(original.size)), int(rng.integers(32))) for _ in range(12)]
    arrays = [original] + [flipped(original, i, bit) for i, bit in flips]
    words = (reference.tensor_words(arrays) if framework == "numpy"
             else framework_words(framework, arrays))
    assert (words[1:, 1:] != words[0, 1:]).all()


@pytest.mark.parametrize("name,bit", [("float16", 0), ("float16", 15), ("bool", 0),
                                      ("int8", 7), ("int64", 63), ("int64", 0),
                                      ("float64", 0), ("float32 scalar", 0)])
def test_single_bit_flips_of_every_width_change_both_words(name, bit):
    for index in (0, ARRAYS[name].size - 1):
        words = reference.tensor_words([ARRAYS[name], flipped(ARRAYS[name], index, bit)])
        assert (words[0, 1:] != words[1, 1:]).all()


def test_negative_zero_nan_payloads_and_last_mantissa_bit_are_told_apart():
    values = [np.float32([0.0]), np.float32([-0.0]), np.uint32([0x7FC00000]).view(np.float32),
              np.uint32([0x7FC00001]).view(np.float32), np.float32([1.0]),
              np.float32([np.nextafter(np.float32(1), np.float32(2))])]
    words = reference.tensor_words(values)
    assert len({tuple(w) for w in words.tolist()}) == len(values)


@pytest.mark.parametrize("framework", ("numpy",) + FRAMEWORKS)
def test_swapping_two_elements_is_seen_within_a_row_and_across_rows(framework):
    original = ARRAYS["float32 matrix (3 rows, last partial)"].reshape(-1)
    arrays = [original]
    for i, j in [(0, 1), (5, 900), (10, 1500), (3, 2200), (1100, 1101)]:
        swapped = original.copy()
        swapped[[i, j]] = swapped[[j, i]]
        arrays.append(swapped)
    rows = original[:2048].reshape(2, ROW_LENGTH)
    arrays.append(np.concatenate([rows[::-1].reshape(-1), original[2048:]]))
    words = (reference.tensor_words(arrays) if framework == "numpy"
             else framework_words(framework, arrays))
    assert len({tuple(w) for w in words.tolist()}) == len(arrays)


def test_swapping_whole_values_like_zero_and_two_is_seen():
    # Linear position-weighted sums miss these: the words differ in high bits only.
    values = np.zeros(3000, np.float32)
    values[[7, 2500]] = 2.0
    moved = values.copy()
    moved[[7, 8]] = moved[[8, 7]]
    across = values.copy()
    across[[7, 1031]] = across[[1031, 7]]
    words = reference.tensor_words([values, moved, across])
    assert len({tuple(w) for w in words.tolist()}) == 3


# Host digests and helpers --------------------------------------------------------------------

def test_host_digest_is_equal_for_equal_bits_and_differs_for_any_change():
    a = np.arange(10, dtype=np.float32)
    assert digest_arrays([a, a[:3]]) == digest_arrays([a.copy(), np.arange(3, dtype=np.float32)])
    assert digest_arrays([a]) != digest_arrays([flipped(a, 9, 0)])
    assert digest_arrays([a]) != digest_arrays([a.view(np.int32)])  # same bytes, other dtype
    assert digest_arrays([a]) != digest_arrays([a.reshape(2, 5)])  # same bytes, other shape
    assert digest_arrays([a[:4], a[4:]]) != digest_arrays([a[:5], a[5:]])
    assert digest_arrays([a.astype(">f4")]) == digest_arrays([a])
    assert len(digest_arrays([])) == 32


def test_words_to_hex_is_short_stable_and_tells_words_apart():
    words = reference.tensor_words([np.float32([1.0]), np.float32([2.0])])
    assert words_to_hex(words) == words_to_hex(words.copy())
    assert len(words_to_hex(words)) == 16
    assert words_to_hex(words) != words_to_hex(words[::-1])


def test_unknown_backend_and_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match="Expected `backend` to be one of"):
        tensor_words_for("mxnet")
    with pytest.raises(TypeError, match="Expected `tensors` to be a list or tuple"):
        reference.tensor_words(np.zeros(3))
    with pytest.raises(TypeError, match="Received: dtype="):
        reference.tensor_words([np.array(["text"])])


def test_importing_the_package_imports_no_framework():
    code = ("import sys, twinrun.fingerprint, twinrun.fingerprint.numpy\n"
            "loaded = [m for m in ('tensorflow', 'jax', 'torch', 'keras') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# The blind spot, as written in `twinrun.fingerprint.common` ------------------------------------

def planted(array, columns, changes, row=0):
    """A copy of a float32 array with `changes` added to the bit patterns of words
    `row * ROW_LENGTH + column`."""
    copy = np.array(array, np.float32).reshape(-1)
    bits = copy.view(np.int32)
    for column, change in zip(columns, changes):
        index = row * ROW_LENGTH + column
        bits[index] = np.int32((int(bits[index]) + change + 2**31) % 2**32 - 2**31)
    return copy.reshape(np.shape(array))


@pytest.mark.parametrize("framework", ("numpy",) + FRAMEWORKS)
def test_plus_minus_minus_plus_one_ulp_with_a_plus_d_equal_b_plus_c_changes_the_words(framework):
    original = ARRAYS["float32 matrix (3 rows, last partial)"]
    arrays = [original]
    for row, columns in ((0, (0, 1, 2, 3)), (1, (10, 20, 30, 40)), (0, (100, 300, 500, 700)),
                         (2, (0, 5, 7, 12))):
        arrays.append(planted(original, columns, (1, -1, -1, 1), row))
    words = (reference.tensor_words(arrays) if framework == "numpy"
             else framework_words(framework, arrays))
    assert len({tuple(w[1:]) for w in words.tolist()}) == len(arrays)


def test_the_documented_blind_spot_two_sign_flips_in_one_row_is_missed_by_the_words():
    original = ARRAYS["float32 matrix (3 rows, last partial)"]
    negated = original.copy().reshape(-1)
    negated[[3, 700]] *= -1
    words = reference.tensor_words([original, negated])
    assert words[0].tolist() == words[1].tolist()
    # ... and seen by the exact digest at the next epoch's end or the run's end.
    assert digest_arrays([original]) != digest_arrays([negated])
