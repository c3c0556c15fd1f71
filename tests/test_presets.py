"""The workload presets: the sizes docs/presets.md and the README state, and every preset usable
from the command line. (Their accuracies are measured in docs/presets.md, not asserted here.)"""

import pytest

from conftest import requires_data
from twinrun import runconfig
from twinrun.workloads import fashion_cnn, fashion_mnist

# What docs/presets.md says: (train images, validation images, steps per epoch, epochs, patience).
DOCUMENTED = {
    "quick": (4_800, 1_200, 75, 10, 20),
    "study": (9_600, 2_400, 150, 6, 2),
    "full": (48_000, 12_000, 750, 200, 20),
    "tiny": (320, 80, 5, 2, 2),
}
TEST_IMAGES = {"quick": 10_000, "study": 10_000, "full": 10_000, "tiny": 1_000}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_each_preset_has_the_documented_sizes_and_schedule(name):
    preset = fashion_cnn.PRESETS[name]
    train, val, steps, epochs, patience = DOCUMENTED[name]
    assert preset.sizes() == {"train": train, "val": val, "steps_per_epoch": steps,
                              "max_steps": steps * epochs}
    assert (preset.epochs, preset.patience) == (epochs, patience)
    assert (preset.test_subset or 10_000) == TEST_IMAGES[name]


def test_the_quick_and_study_presets_train_at_least_750_steps_so_batchnorm_settles():
    for name in ("quick", "study"):
        assert fashion_cnn.PRESETS[name].sizes()["max_steps"] >= 750


def test_every_workload_preset_is_accepted_by_the_run_configuration():
    assert set(runconfig.PRESETS) == set(fashion_cnn.PRESETS)
    for name in fashion_cnn.PRESETS:
        assert runconfig.RunConfig(preset=name).validated().preset == name


@requires_data
@pytest.mark.parametrize("name", ["quick", "study", "tiny"])
def test_the_real_split_has_the_sizes_the_preset_states(name):
    preset = fashion_cnn.PRESETS[name]
    data = fashion_mnist.load()
    splits = fashion_cnn.make_splits(data, preset)
    sizes = preset.sizes()
    assert (len(splits.x_train), len(splits.x_val)) == (sizes["train"], sizes["val"])
    assert len(splits.x_test) == len(splits.labels_test) == TEST_IMAGES[name]
    # stratified: every class has the same share in training, validation and test
    assert set(splits.y_train.sum(axis=0)) == {sizes["train"] // 10}
    assert set(splits.y_val.sum(axis=0)) == {sizes["val"] // 10}
    assert set(splits.y_test.sum(axis=0)) == {TEST_IMAGES[name] // 10}
    assert (splits.y_test.argmax(axis=1) == splits.labels_test).all()


@requires_data
def test_a_larger_validation_set_and_another_subset_give_the_sizes_sizes_states():
    preset = fashion_cnn.PRESETS["study"]
    splits = fashion_cnn.make_splits(fashion_mnist.load(), preset, subset=5000, val_fraction=0.4)
    sizes = preset.sizes(subset=5000, val_fraction=0.4)
    assert (len(splits.x_train), len(splits.x_val)) == (sizes["train"], sizes["val"])
    assert (sizes["train"], sizes["val"]) == (3000, 2000)
    assert set(splits.y_val.sum(axis=0)) == {200}


@requires_data
def test_the_default_split_still_picks_the_images_it_picked_before_studies_existed():
    # The study preset's first validation images, as the two-step split of the arrays chose them.
    from sklearn.model_selection import train_test_split

    data = fashion_mnist.load()
    x, _, y, _ = train_test_split(data.x_train, data.y_train, train_size=12000,
                                  stratify=data.y_train, random_state=42)
    _, x_val, _, _ = train_test_split(x, y, test_size=0.2, stratify=y, random_state=42)
    splits = fashion_cnn.make_splits(data, fashion_cnn.PRESETS["study"])
    assert (splits.x_val[..., 0] * 255).round().astype("uint8").tobytes() == x_val.tobytes()
