"""One run seed, one documented derivation per source of randomness."""

import pytest

from twinrun.errors import TwinrunError
from twinrun.seeds import SOURCES, derive_seeds, seed_for


def test_derived_seeds_are_stable_and_documented():
    # The derivation is part of the record: changing it would change every stored run.
    import hashlib

    digest = hashlib.sha256(b"twinrun:7:init").digest()
    assert seed_for(7, "init") == int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


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
def test_a_seed_that_is_not_a_non_negative_integer_is_refused(bad):
    with pytest.raises(TwinrunError, match="non-negative integer"):
        derive_seeds(bad)


def test_an_unknown_source_is_refused_by_name():
    with pytest.raises(TwinrunError, match="Unknown source of randomness 'weights'"):
        derive_seeds(7, {"weights": 1})
