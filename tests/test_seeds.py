"""One run seed, one documented derivation per source of randomness."""

import os
import subprocess
import sys

import pytest

from conftest import require

from twinrun.errors import TwinrunError
from twinrun.runconfig import RunConfig
from twinrun.seeds import SOURCE_SEED_LIMIT, SOURCES, derive_seeds, seed_for


def test_derived_seeds_are_the_pinned_values_of_the_documented_derivation():
    # The derivation is part of the record: changing it would change every stored run, so the
    # seeds of run seed 7 are pinned as literals, computed once when the derivation was fixed.
    assert derive_seeds(7) == {
        "python": 296899861, "numpy": 331761165, "backend": 297029688, "init": 797082685,
        "dropout": 832725937, "shuffle": 1814070065, "hash": 642148691, "data": 512764827}
    assert seed_for(0, "init") == 1197982415
    assert seed_for(2**63 - 1, "init") == 1743976927


def test_every_source_gets_its_own_seed_and_neighbouring_runs_share_none():
    seven, eight = derive_seeds(7), derive_seeds(8)
    assert set(seven) == set(SOURCES)
    assert len(set(seven.values())) == len(SOURCES)
    assert not set(seven.values()) & set(eight.values())
    assert all(0 <= v < 2**31 for v in seven.values())


def test_an_override_changes_only_its_source():
    base = derive_seeds(7)
    varied = derive_seeds(7, {"shuffle": 123})
    assert varied["shuffle"] == 123
    assert {k: v for k, v in varied.items() if k != "shuffle"} == {
        k: v for k, v in base.items() if k != "shuffle"}


@pytest.mark.parametrize("bad", [-1, 1.5, "7", True, 2**63])
def test_a_run_seed_that_is_not_an_integer_from_0_to_2_63_is_refused(bad):
    with pytest.raises(TwinrunError, match=r"integer from 0 to 2\*\*63 - 1"):
        derive_seeds(bad)


def test_the_largest_run_seed_is_accepted_and_still_derives_31_bit_seeds():
    assert all(0 <= v < 2**31 for v in derive_seeds(2**63 - 1).values())


@pytest.mark.parametrize("bad", [-1, 2**31, 2**32, 1.5, True])
def test_an_override_no_framework_could_take_is_refused_up_front_in_one_sentence(bad):
    config = RunConfig(workload="answer-demo", backend="torch", seed_overrides={"shuffle": bad})
    with pytest.raises(TwinrunError) as raised:
        config.validated()
    message = str(raised.value)
    assert message.startswith("Expected the 'shuffle' seed to be an integer from 0 to 2**31 - 1")
    assert f"shuffle={bad!r}" in message
    assert "\n" not in message


def test_the_largest_override_goes_into_numpy_and_keras_on_torch_and_one_more_would_not():
    # The 31-bit bound is not caution: Keras on the torch backend converts a seed to int32.
    require("torch")
    largest = SOURCE_SEED_LIMIT - 1
    assert RunConfig(seed_overrides={"init": largest}).validated().seeds["init"] == largest
    code = (
        "import sys, numpy, keras\n"
        "numpy.random.seed(int(sys.argv[1]))\n"
        "keras.layers.Dropout(0.5, seed=int(sys.argv[1]))(numpy.ones((2, 2)), training=True)\n")
    env = dict(os.environ, KERAS_BACKEND="torch")
    fits = subprocess.run([sys.executable, "-c", code, str(largest)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert fits.returncode == 0, fits.stderr[-2000:]
    too_big = subprocess.run([sys.executable, "-c", code, str(largest + 1)], env=env,
                             capture_output=True, text=True, timeout=120)
    assert too_big.returncode != 0
    assert "int32" in too_big.stderr


def test_an_unknown_source_is_refused_by_name():
    with pytest.raises(TwinrunError, match="Unknown source of randomness 'weights'"):
        derive_seeds(7, {"weights": 1})
