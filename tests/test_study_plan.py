"""A study's plan: each source varies only its own randomness, and the study id is stable."""

import hashlib
import json

import pytest

from twinrun.errors import TwinrunError
from twinrun.seeds import derive_seeds, seed_for
from twinrun.studies.plan import (STUDY_SOURCES, parse_sources, plan_cv, plan_variance,
                                  run_settings, study_id, validate_runs, varied_seed)
from twinrun.workloads.settings import SETTINGS, parse_settings, validate_settings

BASE_SEED = 7


def assert_one_sentence(error, *fragments):
    message = str(error.value)
    assert "\n" not in message and message[0].isupper() and message.endswith("."), message
    for fragment in fragments:
        assert fragment in message, message


def changed_seeds(run):
    base = derive_seeds(run.seed)
    return {name for name, value in run.seeds.items() if value != base[name]}


@pytest.mark.parametrize("source, derived", [("init", "init"), ("order", "shuffle"),
                                             ("dropout", "dropout")])
def test_a_seeded_source_changes_only_its_derived_seed_and_differs_between_runs(source, derived):
    runs = plan_variance(4, source, seed=BASE_SEED).runs_of(source)
    assert [changed_seeds(run) for run in runs] == [{derived}] * 4
    assert len({run.seeds[derived] for run in runs}) == 4
    assert all(run.determinism and run.split_seed is None and run.perturb_seed is None
               for run in runs)


def test_split_keeps_every_seed_and_draws_a_new_split_per_run():
    runs = plan_variance(5, "split", seed=BASE_SEED).runs_of("split")
    assert all(changed_seeds(run) == set() and run.determinism for run in runs)
    assert len({run.split_seed for run in runs}) == 5
    assert [run.split_seed for run in runs] == [varied_seed(BASE_SEED, "split", i)
                                                for i in range(5)]
    assert {run.perturb_seed for run in runs} == {None}


def test_perturb_keeps_every_seed_and_carries_its_own_perturbation_seed():
    runs = plan_variance(5, "perturb", seed=BASE_SEED).runs_of("perturb")
    assert all(changed_seeds(run) == set() and run.split_seed is None for run in runs)
    assert len({run.perturb_seed for run in runs}) == 5
    assert all(run.determinism for run in runs)


def test_nondeterminism_keeps_every_seed_and_turns_determinism_off():
    runs = plan_variance(3, "nondeterminism", seed=BASE_SEED).runs_of("nondeterminism")
    assert all(changed_seeds(run) == set() for run in runs)
    assert {run.determinism for run in runs} == {False}
    assert {run.split_seed for run in runs} == {None}


def test_all_varies_every_seed_and_the_split_with_determinism_off():
    runs = plan_variance(3, "all", seed=BASE_SEED).runs_of("all")
    base = derive_seeds(BASE_SEED)
    for index, run in enumerate(runs):
        assert changed_seeds(run) == set(base)
        assert run.split_seed == seed_for(varied_seed(BASE_SEED, "all", index), "split")
        assert run.determinism is False
    for name in base:
        assert len({run.seeds[name] for run in runs}) == 3
    assert len({run.split_seed for run in runs}) == 3


def test_the_varied_seed_is_the_documented_hash_of_the_base_seed():
    digest = hashlib.sha256(f"twinrun:{BASE_SEED}:study:init:3".encode()).digest()
    assert varied_seed(BASE_SEED, "init", 3) == int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
    assert run_settings("init", 3, BASE_SEED)["seed_overrides"] == {
        "init": varied_seed(BASE_SEED, "init", 3)}


def test_runs_have_unique_keys_and_positions_in_plan_order():
    plan = plan_variance(3, "init,order,all", seed=BASE_SEED)
    assert [run.key for run in plan.runs] == [
        f"{s}/{i}" for s in ("init", "order", "all") for i in range(3)]
    assert [run.position for run in plan.runs] == list(range(9))
    done = {"init/0", "order/2"}
    assert [run.key for run in plan.missing(done)] == [
        run.key for run in plan.runs if run.key not in done]


def test_a_crossed_design_runs_every_cell_once_with_the_one_source_seeds():
    crossed = plan_variance(3, "order,init", design="crossed", seed=BASE_SEED)
    single = plan_variance(3, "init,order", seed=BASE_SEED)
    assert len(crossed.runs) == 9
    assert sorted((r.levels["init"], r.levels["order"]) for r in crossed.runs) == [
        (i, j) for i in range(3) for j in range(3)]
    for run in crossed.runs:
        assert changed_seeds(run) == {"init", "shuffle"}
        init_run = single.runs_of("init")[run.levels["init"]]
        order_run = single.runs_of("order")[run.levels["order"]]
        assert run.seeds["init"] == init_run.seeds["init"]
        assert run.seeds["shuffle"] == order_run.seeds["shuffle"]


def test_a_crossed_design_can_cross_split_with_init():
    runs = plan_variance(2, "init,split", design="crossed", seed=BASE_SEED).runs
    assert len({(run.seeds["init"], run.split_seed) for run in runs}) == 4


@pytest.mark.parametrize("vary", ["init", "init,order,dropout", "init,all", "order,nondeterminism"])
def test_a_crossed_design_needs_exactly_two_sources_with_seeds(vary):
    with pytest.raises(TwinrunError) as error:
        plan_variance(3, vary, design="crossed")
    assert_one_sentence(error, "crossed design needs exactly two sources", vary)


def test_an_unknown_design_is_refused():
    with pytest.raises(TwinrunError) as error:
        plan_variance(3, "init", design="nested")
    assert_one_sentence(error, "Unknown --design 'nested'", "crossed")


def test_the_same_definition_gives_the_same_study_id_and_any_change_a_new_one():
    plan = plan_variance(8, "order,init", seed=1, settings={"epochs": 3},
                         base={"workload": "fashion-cnn", "preset": "quick"})
    again = plan_variance(8, "init,order", seed=1, settings={"epochs": 3},
                          base={"preset": "quick", "workload": "fashion-cnn"})
    assert plan.study_id == again.study_id and plan.study_id.startswith("variance-")
    others = [plan_variance(9, "init,order", seed=1, settings={"epochs": 3},
                            base={"workload": "fashion-cnn", "preset": "quick"}),
              plan_variance(8, "init,order", seed=2, settings={"epochs": 3},
                            base={"workload": "fashion-cnn", "preset": "quick"}),
              plan_variance(8, "init,order", seed=1, settings={"epochs": 4},
                            base={"workload": "fashion-cnn", "preset": "quick"}),
              plan_variance(8, "init,order", seed=1, settings={"epochs": 3},
                            base={"workload": "fashion-cnn", "preset": "full"}),
              plan_variance(8, "init,order", seed=1, design="crossed", settings={"epochs": 3},
                            base={"workload": "fashion-cnn", "preset": "quick"})]
    assert len({plan.study_id} | {other.study_id for other in others}) == 6


def test_the_study_id_is_a_hash_of_the_canonical_json():
    definition = {"kind": "cv", "folds": 5, "settings": {"epochs": 2}}
    canonical = '{"folds":5,"kind":"cv","settings":{"epochs":2}}'
    assert study_id(definition) == "cv-" + hashlib.sha256(canonical.encode()).hexdigest()[:10]


def test_a_plan_is_plain_json_data():
    plan = plan_variance(2, "init,split,perturb,all", settings={"perturb": 1e-8})
    text = json.dumps(plan.to_dict())
    assert json.loads(text)["study_id"] == plan.study_id
    assert all(run.settings == {"perturb": 1e-8} for run in plan.runs)


def test_sources_come_back_in_the_vocabulary_order_without_repeats():
    assert parse_sources(" all,Order,init,order ") == ("init", "order", "all")
    assert parse_sources(list(STUDY_SOURCES)) == STUDY_SOURCES


@pytest.mark.parametrize("vary, shown", [("init,weights", "'weights'"), (",", "nothing")])
def test_an_unknown_source_is_refused_with_the_valid_ones(vary, shown):
    with pytest.raises(TwinrunError) as error:
        plan_variance(4, vary)
    assert_one_sentence(error, f"Unknown source {shown}",
                        "init, order, dropout, split, perturb, nondeterminism, all")


@pytest.mark.parametrize("runs", [1, 0, -3, "8", 2.0, True])
def test_fewer_than_two_runs_or_a_non_integer_is_refused(runs):
    with pytest.raises(TwinrunError) as error:
        validate_runs(runs)
    assert_one_sentence(error, "Expected --runs to be at least 2", f"runs={runs!r}")


def test_perturb_size_needs_the_perturb_source():
    with pytest.raises(TwinrunError) as error:
        plan_variance(3, "init", settings={"perturb": 1e-8})
    assert_one_sentence(error, "--vary perturb")


def test_a_cross_validation_plan_splits_repeat_zero_with_the_seed_itself():
    plan = plan_cv(3, repeats=2, seed=BASE_SEED)
    assert [run.key for run in plan.runs] == [
        f"repeat={r},fold={f}" for r in range(2) for f in range(3)]
    assert [run.fold["index"] for run in plan.runs] == [0, 1, 2, 0, 1, 2]
    states = [run.fold["random_state"] for run in plan.runs]
    assert states[:3] == [BASE_SEED] * 3
    assert len(set(states[3:])) == 1 and states[3] != BASE_SEED
    assert all(changed_seeds(run) == set() and run.fold["n_splits"] == 3 for run in plan.runs)
    assert plan.study_id.startswith("cv-") and plan.study_id != plan_cv(3, seed=BASE_SEED).study_id


@pytest.mark.parametrize("folds", [1, 0, "5"])
def test_a_cross_validation_with_fewer_than_two_folds_is_refused(folds):
    with pytest.raises(TwinrunError) as error:
        plan_cv(folds)
    assert_one_sentence(error, "Expected --folds to be at least 2")


def test_a_cross_validation_needs_at_least_one_repeat():
    with pytest.raises(TwinrunError) as error:
        plan_cv(5, repeats=0)
    assert_one_sentence(error, "Expected --repeats to be a positive integer")


def test_settings_are_parsed_to_their_types_and_sorted():
    assert parse_settings(["val_fraction=0.4", "batch_size=128", "learning_rate=3e-4",
                           "dropout=0", "patience=0", "subset=6000", "epochs=3",
                           "perturb=1e-8"]) == {
        "batch_size": 128, "dropout": 0.0, "epochs": 3, "learning_rate": 3e-4,
        "patience": 0, "perturb": 1e-8, "subset": 6000, "val_fraction": 0.4}
    assert parse_settings([]) == {}
    assert set(SETTINGS) >= {"learning_rate", "batch_size", "dropout", "epochs", "patience",
                             "subset", "val_fraction"}


def test_an_unknown_set_key_is_refused_with_the_known_ones():
    with pytest.raises(TwinrunError) as error:
        parse_settings(["lr=0.1"])
    assert_one_sentence(error, "Unknown --set key 'lr'", "learning_rate", "val_fraction")


@pytest.mark.parametrize("text, expected", [
    ("epochs=3.5", "Expected --set epochs to be an integer at least 1"),
    ("batch_size=big", "Expected --set batch_size to be an integer"),
    ("learning_rate=fast", "Expected --set learning_rate to be a number above 0"),
    ("learning_rate=0", "Expected --set learning_rate to be a number above 0 and at most 1"),
    ("val_fraction=1", "Expected --set val_fraction to be a number above 0 and below 1"),
    ("dropout=nan", "Expected --set dropout to be a number at least 0 and below 1"),
    ("patience=-1", "Expected --set patience to be an integer at least 0"),
    ("subset=50", "Expected --set subset to be an integer at least 100 and at most 60000"),
])
def test_a_set_value_of_the_wrong_type_or_out_of_range_is_refused(text, expected):
    with pytest.raises(TwinrunError) as error:
        parse_settings([text])
    assert_one_sentence(error, expected, f"Received: {text.split('=')[0]}=")


@pytest.mark.parametrize("text", ["epochs", "=3", ""])
def test_a_set_without_key_and_value_is_refused(text):
    with pytest.raises(TwinrunError) as error:
        parse_settings([text])
    assert_one_sentence(error, "Expected --set to be key=value")


def test_a_set_key_given_twice_with_different_values_is_refused():
    with pytest.raises(TwinrunError) as error:
        parse_settings(["epochs=3", "epochs=4"])
    assert_one_sentence(error, "epochs is given twice (3 and 4)")
    assert parse_settings(["epochs=3", "epochs=3"]) == {"epochs": 3}


@pytest.mark.parametrize("settings", [{"epochs": True}, {"epochs": 2.0}, {"dropout": "0.1"},
                                      {"colour": 1}])
def test_stored_settings_of_the_wrong_type_are_refused(settings):
    with pytest.raises(TwinrunError):
        validate_settings(settings)
