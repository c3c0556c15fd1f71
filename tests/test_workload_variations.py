"""What a study run changes in the built-in workloads: the split, the folds, the subset, the
settings, the per-layer seeds and the first-layer perturbation; and what a run reports back.

Most tests need no training: the index functions run on labels alone, and the perturbation on a
model built (not trained) in a fresh Keras process. One slow test trains a tiny configuration.
"""

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold, train_test_split

from conftest import requires_data
from twinrun.errors import TwinrunError
from twinrun.runconfig import RunConfig
from twinrun.workloads import variations
from twinrun.workloads.options import training_options

# 6,000 labels, 600 per class, in a scrambled order like the real training set's.
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 600))


def fold_of(index, n_splits=5, random_state=3):
    return {"n_splits": n_splits, "index": index, "random_state": random_state}


# -- which images train and which validate --------------------------------------------------------

def test_the_default_split_is_the_seeds_stratified_80_20_split_with_random_state_42():
    train, val = variations.training_indices(LABELS)
    expected_train, expected_val = train_test_split(
        np.arange(LABELS.size), test_size=0.2, stratify=LABELS, random_state=42)
    assert np.array_equal(train, expected_train) and np.array_equal(val, expected_val)


def test_the_subset_then_split_picks_the_same_images_as_the_seeds_two_step_split():
    # Before studies, make_splits split the arrays themselves; the indices must pick the same
    # images in the same order, or every recorded fingerprint would change.
    x = np.arange(LABELS.size) * 7
    x_sub, _, y_sub, _ = train_test_split(x, LABELS, train_size=1200, stratify=LABELS,
                                          random_state=42)
    x_train, x_val, _, _ = train_test_split(x_sub, y_sub, test_size=0.2, stratify=y_sub,
                                            random_state=42)
    train, val = variations.training_indices(LABELS, subset=1200)
    assert np.array_equal(x[train], x_train) and np.array_equal(x[val], x_val)


def test_val_fraction_0_4_holds_out_40_percent_of_each_class():
    train, val = variations.training_indices(LABELS, subset=2000, val_fraction=0.4)
    assert (len(train), len(val)) == (1200, 800)
    assert np.bincount(LABELS[val]).tolist() == [80] * 10
    assert not set(train) & set(val)


def test_another_split_seed_validates_on_other_images_of_the_same_subset():
    first = variations.training_indices(LABELS, subset=1200, split_seed=42)
    second = variations.training_indices(LABELS, subset=1200, split_seed=7)
    assert set(np.concatenate(first)) == set(np.concatenate(second))  # the same 1,200 images
    assert set(first[1]) != set(second[1])
    assert np.bincount(LABELS[second[1]]).tolist() == [24] * 10


def test_the_subset_is_stratified_and_a_subset_of_every_image_keeps_them_all():
    chosen = variations.subset_indices(LABELS, 500)
    assert np.bincount(LABELS[chosen]).tolist() == [50] * 10
    assert np.array_equal(variations.subset_indices(LABELS, LABELS.size), np.arange(LABELS.size))


def test_the_folds_are_stratified_k_fold_and_together_validate_on_every_image_once():
    pool = variations.subset_indices(LABELS, 1000)
    expected = list(StratifiedKFold(n_splits=5, shuffle=True, random_state=3)
                    .split(pool, LABELS[pool]))
    held_out = []
    for index in range(5):
        train, val = variations.training_indices(LABELS, subset=1000, fold=fold_of(index))
        assert np.array_equal(val, pool[expected[index][1]])
        assert np.array_equal(train, pool[expected[index][0]])
        assert np.bincount(LABELS[val]).tolist() == [20] * 10
        held_out.extend(val.tolist())
    assert sorted(held_out) == sorted(pool.tolist())


def test_a_fold_random_state_changes_the_folds():
    _, first = variations.training_indices(LABELS, subset=1000, fold=fold_of(0, random_state=1))
    _, second = variations.training_indices(LABELS, subset=1000, fold=fold_of(0, random_state=2))
    assert set(first) != set(second)


def test_more_folds_than_the_smallest_class_has_images_is_refused_in_one_sentence():
    labels = np.repeat(np.arange(10), 10)
    with pytest.raises(TwinrunError, match="has only 10 images") as error:
        variations.training_indices(labels, fold=fold_of(0, n_splits=11))
    assert str(error.value).count(". ") == 0 and str(error.value).endswith(".")


def test_a_val_fraction_that_leaves_a_class_without_validation_images_is_refused():
    with pytest.raises(TwinrunError, match="val_fraction=0.05 of 100 images holds out 5"):
        variations.training_indices(LABELS, subset=100, val_fraction=0.05)


def test_layer_seeds_wrap_below_2_31_so_keras_on_torch_takes_them():
    assert variations.layer_seed(2**31 - 1, 0) == 2**31 - 1
    assert variations.layer_seed(2**31 - 1, 1) == 0
    assert variations.layer_seed(5, 3) == 8


# -- the perturbation ---------------------------------------------------------------------------

def test_one_ulp_moves_the_weight_the_perturb_seed_picks_to_the_next_float_above():
    kernel = np.random.default_rng(1).uniform(-0.1, 0.1, (3, 3, 1, 32)).astype(np.float32)
    new, record = variations.perturbed_kernel(kernel, 2024)
    index = int(np.random.default_rng(2024).integers(kernel.size))
    changed = np.flatnonzero(new.reshape(-1) != kernel.reshape(-1))
    assert changed.tolist() == [index] == [record["index"]]
    assert new.reshape(-1)[index] == np.nextafter(kernel.reshape(-1)[index], np.float32(np.inf))
    assert new.reshape(-1)[index] > kernel.reshape(-1)[index]
    assert record["position"] == list(np.unravel_index(index, kernel.shape))
    assert new.dtype == np.float32


def test_noise_changes_half_of_the_weights_by_at_most_its_size_and_no_other():
    kernel = np.random.default_rng(1).uniform(-0.1, 0.1, (3, 3, 1, 32)).astype(np.float32)
    new, record = variations.perturbed_kernel(kernel, 5, noise=1e-3)
    chosen = np.array(record["indices"])
    assert chosen.size == kernel.size // 2 == len(set(chosen.tolist()))
    delta = new.reshape(-1).astype(np.float64) - kernel.reshape(-1)
    untouched = np.setdiff1d(np.arange(kernel.size), chosen)
    assert not delta[untouched].any()
    assert np.abs(delta[chosen]).max() <= 1e-3 + 1e-7
    assert record["changed"] == np.count_nonzero(delta) > 0


def test_the_same_perturb_seed_picks_the_same_weight_and_another_seed_usually_another():
    kernel = np.zeros((3, 3, 1, 32), dtype=np.float32)
    picks = [variations.perturbed_kernel(kernel, seed)[1]["index"] for seed in range(20)]
    assert picks[3] == variations.perturbed_kernel(kernel, 3)[1]["index"]
    assert len(set(picks)) > 10


# -- settings ----------------------------------------------------------------------------------

def test_settings_override_the_preset_and_dropout_sets_the_dense_rate_and_half_for_conv():
    config = RunConfig(settings={"learning_rate": 3e-4, "batch_size": 128, "dropout": 0.3,
                                 "epochs": 4, "patience": 1, "subset": 2000,
                                 "val_fraction": 0.4}, split_seed=9).validated()
    options = training_options(config, epochs=10, patience=20, subset=6000)
    assert (options.learning_rate, options.batch_size, options.epochs, options.patience,
            options.subset, options.val_fraction, options.split_seed) == (
        3e-4, 128, 4, 1, 2000, 0.4, 9)
    assert options.dropout_rates == (0.15, 0.3)


def test_without_settings_a_run_trains_exactly_as_the_seed():
    options = training_options(RunConfig().validated(), epochs=10, patience=20, subset=6000)
    assert (options.learning_rate, options.batch_size, options.dropout_rates,
            options.val_fraction, options.split_seed, options.perturb_seed) == (
        1e-3, 64, (0.25, 0.5), 0.2, 42, None)


@pytest.mark.parametrize("fields, fragment", [
    ({"workload": "answer-demo", "settings": {"dropout": 0.2}}, "cannot honour dropout"),
    ({"workload": "answer-demo", "settings": {"val_fraction": 0.4}}, "cannot honour val_fraction"),
    ({"workload": "answer-demo", "predictions": True}, "cannot honour predictions"),
    ({"workload": "answer-demo", "fold": fold_of(0)}, "cannot honour fold"),
    ({"fold": fold_of(0), "settings": {"val_fraction": 0.4}}, "holds out its fold"),
    ({"fold": fold_of(0), "split_seed": 3}, "split_seed has nothing to set"),
    ({"epochs": 3, "settings": {"epochs": 5}}, "--epochs 3 and --set epochs=5 disagree"),
])
def test_what_a_workload_cannot_honour_is_refused_in_the_parent_in_one_sentence(fields,
                                                                                 fragment):
    with pytest.raises(TwinrunError, match=fragment) as error:
        RunConfig(**fields).validated()
    message = str(error.value)
    assert message.endswith(".") and "\n" not in message


def test_the_answer_demo_takes_the_learning_rate_batch_size_epochs_and_perturbation():
    config = RunConfig(workload="answer-demo", perturb_seed=4,
                       settings={"learning_rate": 0.01, "batch_size": 32, "epochs": 2,
                                 "perturb": 1e-8}).validated()
    from twinrun.workloads import answer_demo

    options = answer_demo.options_of(config)
    assert (options.learning_rate, options.batch_size, options.epochs, options.perturb_noise,
            options.perturb_seed) == (0.01, 32, 2, 1e-8, 4)


# -- on a real Keras model, built in a fresh process -----------------------------------------

BUILD_AND_PERTURB = textwrap.dedent("""
    import json, sys
    import numpy as np
    from twinrun.workloads import answer_demo, fashion_cnn, variations

    seeds = {"init": 2**31 - 2, "dropout": 2**31 - 1}  # both wrap past 2**31 - 1
    plain, moved = fashion_cnn.build_model(seeds), fashion_cnn.build_model(seeds)
    record = variations.perturb_first_layer(moved, 77)
    differing = {}
    for a, b in zip(plain.weights, moved.weights):
        x, y = np.asarray(a.numpy()), np.asarray(b.numpy())
        where = np.flatnonzero(x.reshape(-1) != y.reshape(-1))
        if where.size:
            differing[a.path] = [[int(i), float(x.reshape(-1)[i]), float(y.reshape(-1)[i]),
                                  float(np.nextafter(x.reshape(-1)[i], np.float32(np.inf)))]
                                 for i in where]
    noisy = fashion_cnn.build_model(seeds)
    noise = variations.perturb_first_layer(noisy, 77, noise=1e-8)
    demo = answer_demo.build_model(seeds)
    print(json.dumps({
        "record": record, "differing": differing,
        "noise_changed": noise["changed"], "noise_count": len(noise["indices"]),
        "noise_layer": noise["layer"],
        "demo_layer": variations.perturb_first_layer(demo, 1)["layer"],
        "rates": [fashion_cnn.build_model(seeds, dropout=0.3).get_layer(n).rate
                  for n in ("dropout1", "dropout2")],
        "seed_rates": [plain.get_layer(n).rate for n in ("dropout1", "dropout2")],
    }))
""")


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_perturbing_a_built_model_moves_exactly_one_conv1_weight_by_one_ulp(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    completed = subprocess.run([sys.executable, "-c", BUILD_AND_PERTURB], env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    record = report["record"]
    assert list(report["differing"]) == ["fashion_cnn/conv1/kernel"]
    [[index, before, after, next_up]] = report["differing"]["fashion_cnn/conv1/kernel"]
    assert (index, before, after) == (record["index"], record["before"], record["after"])
    assert after == next_up != before
    assert record["layer"] == "conv1" and record["mode"] == "ulp"
    # 1e-8 is about one ulp of these weights: half of the 288 get noise, most change bits.
    assert report["noise_count"] == 144 and 0 < report["noise_changed"] <= 144
    assert report["noise_layer"] == "conv1" and report["demo_layer"] == "conv"
    assert report["rates"] == pytest.approx([0.15, 0.3])
    assert report["seed_rates"] == [0.25, 0.5]


# -- one real run of each kind ----------------------------------------------------------------

FINGERPRINT_AT_STEP_0 = textwrap.dedent("""
    import json, sys
    import numpy as np
    from twinrun.workloads import fashion_cnn

    seeds, index = json.loads(sys.argv[1]), int(sys.argv[2])
    model = fashion_cnn.build_model(seeds)
    plain = fashion_cnn.weights_fingerprint(model)
    kernel = np.asarray(model.get_layer("conv1").kernel.numpy())
    flat = kernel.reshape(-1).copy()
    flat[index] = np.nextafter(flat[index], np.float32(np.inf))
    model.get_layer("conv1").kernel.assign(flat.reshape(kernel.shape))
    print(json.dumps({"plain": plain, "one_ulp": fashion_cnn.weights_fingerprint(model)}))
""")


@pytest.mark.slow
@requires_data
def test_a_fold_run_and_its_one_ulp_twin_differ_at_step_0_in_that_weight_alone_and_then_more(
        tmp_path):
    from twinrun.launch import run_in_fresh_process
    from twinrun.store import Store
    from twinrun.workloads import fashion_cnn, fashion_mnist

    # Both runs: fold 1 of a 4-fold CV over 1,200 images, one epoch, with --set values; the
    # twin also moves one conv1 weight by one ulp before training.
    def run(**fields):
        config = RunConfig(backend="torch", preset="tiny", seed=3, store=str(tmp_path / "s"),
                           fold={"n_splits": 4, "index": 1, "random_state": 0},
                           settings={"subset": 1200, "epochs": 1, "learning_rate": 2e-3,
                                     "batch_size": 96, "dropout": 0.2},
                           predictions=True, **fields).validated()
        return config, run_in_fresh_process(config, show_progress=False, timeout=600)

    config, plain = run()
    _, moved = run(perturb_seed=2024)
    record = moved["perturbation"]
    assert plain["perturbation"] is None
    assert record["mode"] == "ulp" and record["layer"] == "conv1"
    assert record["after"] == float(np.nextafter(np.float32(record["before"]), np.float32(np.inf)))

    # At step 0 the twin held the unperturbed model with exactly that one weight moved one ulp
    # up, and nothing else: rebuild both and compare their fingerprints.
    step0 = subprocess.run(
        [sys.executable, "-c", FINGERPRINT_AT_STEP_0, json.dumps(config.seeds),
         str(record["index"])], env={**os.environ, "KERAS_BACKEND": "torch"},
        capture_output=True, text=True, timeout=300)
    assert step0.returncode == 0, step0.stderr[-3000:]
    expected = json.loads(step0.stdout.strip().splitlines()[-1])
    assert plain["initial_fingerprint"] == expected["plain"]
    assert moved["initial_fingerprint"] == expected["one_ulp"]

    # Summers & Dinneen: one bit of one weight is enough to end elsewhere. If these runs ever
    # end identical, this CPU absorbed the change; that is a finding, reported as such.
    assert moved["fingerprint"] != plain["fingerprint"], (
        "no effect: a one-ulp change of conv1 ended with the same weights on this machine")

    # The tiny preset tests on a stratified 1,000 of the test images.
    labels = fashion_cnn.make_splits(fashion_mnist.load(), fashion_cnn.PRESETS["tiny"]).labels_test
    for result in (plain, moved):
        # The held-out fold validates (early stopping, best_val_*); the rest trains.
        assert (result["train_size"], result["val_size"]) == (900, 300)
        assert result["steps_per_epoch"] == math.ceil(900 / 96)
        assert result["options"]["dropout"] == 0.2 and result["options"]["learning_rate"] == 2e-3
        assert result["stopped_epoch"] == result["epochs_trained"] == result["best_epoch"] == 1
        assert result["best_val_loss"] == result["history"][0]["val_loss"]
        assert result["best_val_accuracy"] == result["history"][0]["val_accuracy"]
        assert math.isfinite(result["test_loss"])
        predicted = np.frombuffer(bytes.fromhex(result["predictions"]), dtype=np.uint8)
        assert predicted.size == 1_000
        assert np.mean(predicted == labels) == pytest.approx(result["test_accuracy"])
        per_class = [np.mean(predicted[labels == c] == c) for c in range(10)]
        assert result["class_accuracy"] == pytest.approx(per_class)

    with Store(tmp_path / "s") as store:
        stored = store.get_run(moved["run_id"])["metrics"]
    assert stored["perturbation"] == record and stored["predictions"] == moved["predictions"]
    assert {"test_accuracy", "test_loss", "best_val_loss", "stopped_epoch",
            "class_accuracy"} <= set(stored)
