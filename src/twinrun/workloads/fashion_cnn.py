"""The seed's workload: the Fashion-MNIST CNN from the question, trained exactly as asked.

Conv2D(32, 3x3)-BN-ReLU, Conv2D(32, 3x3)-BN-ReLU, MaxPool 2x2, Dropout .25, Flatten,
Dense 512-BN-ReLU, Dropout .5, Dense 10 softmax; Glorot-uniform init; categorical
cross-entropy; Adam 1e-3; batch 64; a stratified 80/20 train/validation split of the 60k
training images with `random_state=42`; early stopping on `val_loss` (patience 20, best weights
restored); up to 200 epochs; then accuracy, per-class precision/recall/F1 and the confusion
matrix on the 10k test images.

A study run changes what its `RunConfig` asks (`twinrun.workloads.options`): the split's
`random_state` (`split_seed`), one cross-validation fold (`fold`), a one-ulp change of one
first-layer weight (`perturb_seed`), and the `--set` settings learning_rate, batch_size,
dropout (the dense layer's rate, the conv layer's half of it), epochs, patience, subset and
val_fraction. The model's architecture is the seed's whatever is set.

Keras is imported inside the functions: the backend must be chosen (KERAS_BACKEND) before
the first `import keras`, which the launcher does in a fresh process.
"""

import math
from dataclasses import dataclass

import numpy as np

from twinrun.fingerprint import digest_arrays
from twinrun.workloads.batches import shuffled_batches
from twinrun.workloads.options import (BATCH_SIZE, DROPOUT, LEARNING_RATE, SPLIT_RANDOM_STATE,
                                       VAL_FRACTION, training_options, validate_supported)
from twinrun.workloads.variations import (layer_seed, perturb_first_layer, subset_indices,
                                          training_indices)

TRAIN_IMAGES = 60_000


@dataclass(frozen=True)
class Preset:
    """How much of the seed's training one run does; the model and its training stay the same.

    Arguments:
        name: the preset's name, as `--preset` takes it.
        epochs: the most epochs (early stopping on `val_loss` may end the run sooner).
        patience: epochs without a better `val_loss` before early stopping.
        train_subset: a stratified subset of the 60k training images, or None for all.
        test_subset: a stratified subset of the 10k test images (kept in test-set order), or
            None for all of them.

    Example:
    >>> PRESETS["quick"].sizes()
    {'train': 4800, 'val': 1200, 'steps_per_epoch': 75, 'max_steps': 750}
    """

    name: str
    epochs: int
    patience: int
    train_subset: int | None
    test_subset: int | None = None

    def sizes(self, *, subset=None, val_fraction=VAL_FRACTION, batch_size=BATCH_SIZE):
        """Training and validation images, steps per epoch and the most steps of a run.

        Arguments:
            subset, val_fraction, batch_size: a run's `--set` values, if it has them.

        The same arithmetic as `make_splits`: scikit-learn puts ceil(val_fraction * images)
        of the images in the validation set.
        """
        images = subset or self.train_subset or TRAIN_IMAGES
        val = math.ceil(val_fraction * images)
        steps = math.ceil((images - val) / batch_size)
        return {"train": images - val, "val": val, "steps_per_epoch": steps,
                "max_steps": steps * self.epochs}


# Keras evaluates BatchNorm in inference mode, with moving statistics (momentum 0.99) that start
# at mean 0 / variance 1 while this CNN's pre-BN activations have a variance of a few hundredths:
# until about 600 steps the test accuracy stays far below the training accuracy (150 steps: 0.14).
# Each preset but `tiny` therefore trains at least 750 steps; docs/presets.md has the measurements.
PRESETS = {
    # The seed's run exactly: 48,000 / 12,000 images, 750 steps per epoch.
    "full": Preset("full", epochs=200, patience=20, train_subset=None),
    # `make run` and the tests: 75 steps per epoch, 750 steps, 0.85-0.87 test accuracy, about
    # 53 s per run on 2 quiet cores. A test that needs fewer steps passes `--epochs`.
    "quick": Preset("quick", epochs=10, patience=20, train_subset=6000),
    # The variance studies: 9,600 / 2,400 images, 150 steps per epoch, 900 steps, 0.875-0.886,
    # about 60 s per run on 2 quiet cores. Patience 2 so that early stopping can act within 6
    # epochs (in the runs measured, the validation loss still fell at the last one).
    "study": Preset("study", epochs=6, patience=2, train_subset=12000),
    # The tests' workload: the same model and training on 400 images (320 / 80), 5 steps per
    # epoch, 10 steps, tested on 1,000 images. It proves the machinery (fresh processes, traces,
    # stores, studies), not the model, so it is exempt from the 750 steps above. The test
    # subset matters: evaluating (and predicting) all 10,000 test images took longer than the
    # 10 steps of training, TensorFlow compile included.
    "tiny": Preset("tiny", epochs=2, patience=2, train_subset=400, test_subset=1000),
}


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_test: np.ndarray


def make_splits(data, preset, *, subset=None, val_fraction=VAL_FRACTION,
                split_seed=SPLIT_RANDOM_STATE, fold=None):
    """Scale to [0, 1], one-hot the labels and split the training images (see
    `twinrun.workloads.variations.training_indices`).

    Arguments:
        data: the loaded Fashion-MNIST.
        preset: a `Preset`; its `train_subset` is used unless `subset` is given.
        subset: a stratified subset of the 60k training images (`--set subset`).
        val_fraction: the share held out for validation, stratified (the seed's 0.2).
        split_seed: the split's `random_state` (the seed's 42).
        fold: `{"n_splits", "index", "random_state"}` to validate on one fold of a stratified
            k-fold instead.

    With the defaults this is the seed's split: the quick and study presets first draw a
    stratified subset (`random_state=42`), then 80/20 stratified with `random_state=42`.

    Example:

        splits = make_splits(fashion_mnist.load(), PRESETS["study"], val_fraction=0.4)
        len(splits.x_val)  # 4800
    """
    train, val = training_indices(
        data.y_train, subset=preset.train_subset if subset is None else subset,
        val_fraction=val_fraction, split_seed=split_seed, fold=fold)
    test = np.sort(subset_indices(data.y_test, preset.test_subset))
    return Splits(
        x_train=_images(data.x_train[train]), y_train=_one_hot(data.y_train[train]),
        x_val=_images(data.x_train[val]), y_val=_one_hot(data.y_train[val]),
        x_test=_images(data.x_test[test]), y_test=_one_hot(data.y_test[test]),
        labels_test=data.y_test[test].astype(np.int64),
    )


def _images(x):
    return (x.astype(np.float32) / 255.0)[..., None]


def _one_hot(y):
    return np.eye(10, dtype=np.float32)[y]


def build_model(seeds, *, learning_rate=LEARNING_RATE, dropout=DROPOUT):
    """The seed CNN with every initialiser and dropout layer seeded from `seeds`.

    Arguments:
        seeds: `{source: seed}` with at least `init` and `dropout` (see `twinrun.seeds`).
        learning_rate: Adam's learning rate (the seed's 1e-3).
        dropout: the dense dropout layer's rate (the seed's 0.5); the conv dropout layer gets
            half of it (the seed's 0.25).

    Layer k's initialiser gets `seeds["init"] + k` and dropout layer k `seeds["dropout"] + k`
    (modulo 2**31, see `layer_seed`), so the sources can be varied one at a time.

    Example:

        model = build_model({"init": 0, "dropout": 0})
        model.get_layer("dropout1").rate  # 0.25
    """
    import keras
    from keras import layers

    def glorot(k):
        return keras.initializers.GlorotUniform(seed=layer_seed(seeds["init"], k))

    def dropout_layer(k, rate, name):
        return layers.Dropout(rate, seed=layer_seed(seeds["dropout"], k), name=name)

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, (3, 3), kernel_initializer=glorot(0), name="conv1"),
            layers.BatchNormalization(name="bn1"),
            layers.Activation("relu", name="relu1"),
            layers.Conv2D(32, (3, 3), kernel_initializer=glorot(1), name="conv2"),
            layers.BatchNormalization(name="bn2"),
            layers.Activation("relu", name="relu2"),
            layers.MaxPooling2D((2, 2), name="pool"),
            dropout_layer(0, dropout / 2, "dropout1"),
            layers.Flatten(name="flatten"),
            layers.Dense(512, kernel_initializer=glorot(2), name="dense1"),
            layers.BatchNormalization(name="bn3"),
            layers.Activation("relu", name="relu3"),
            dropout_layer(1, dropout, "dropout2"),
            layers.Dense(10, activation="softmax", kernel_initializer=glorot(3), name="dense2"),
        ],
        name="fashion_cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def evaluate(model, splits, *, predictions=False):
    """Test loss and accuracy, per-class accuracy, precision/recall/F1, the confusion matrix.

    Arguments:
        model: the trained model.
        splits: the run's `Splits` (only the test set is used).
        predictions: also return `predictions`, the predicted class of every test image as one
            byte each, in test-set order, written as hex text (see `predictions_hex`).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    # One forward pass over the test set, in the training's batch size: the loss and every
    # other figure come from its probabilities. (`model.evaluate` and then `model.predict` ran
    # the 10,000 images through the model twice: on a slow CPU, more than a quick epoch's 75
    # steps took; docs/performance.md.)
    probabilities = model.predict(splits.x_test, batch_size=BATCH_SIZE, verbose=0)
    predicted = np.argmax(probabilities, axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        splits.labels_test, predicted, labels=list(range(10)), zero_division=0)
    result = {
        "test_loss": cross_entropy(probabilities, splits.labels_test),
        "test_accuracy": float(np.mean(predicted == splits.labels_test)),
        # A class's accuracy is the share of its test images predicted as it: its recall.
        "class_accuracy": [float(v) for v in recall],
        "per_class": {
            "precision": [float(v) for v in precision],
            "recall": [float(v) for v in recall],
            "f1": [float(v) for v in f1],
            "support": [int(v) for v in support],
        },
        "confusion_matrix": confusion_matrix(splits.labels_test, predicted,
                                             labels=list(range(10))).tolist(),
    }
    if predictions:
        result["predictions"] = predictions_hex(predicted)
    return result


def cross_entropy(probabilities, labels):
    """The model's loss on the test set from its predicted probabilities: Keras'
    `categorical_crossentropy` of the one-hot labels (each row scaled to sum 1, then clipped to
    [1e-7, 1 - 1e-7] as Keras clips it), averaged over the images in float64.

    Example:
    >>> probabilities = np.array([[0.5, 0.5], [0.9, 0.1]], dtype=np.float32)
    >>> round(cross_entropy(probabilities, np.array([0, 0])), 6)  # -(log 0.5 + log 0.9) / 2
    0.399254
    """
    epsilon = 1e-7  # keras.config.epsilon(), the clip of Keras' cross-entropy
    rows = np.asarray(probabilities, dtype=np.float64)
    rows = rows / rows.sum(axis=1, keepdims=True)
    picked = np.clip(rows[np.arange(len(labels)), labels], epsilon, 1.0 - epsilon)
    return float(np.mean(-np.log(picked)))


def predictions_hex(predicted):
    """Predicted classes as hex text, one byte (two hex digits) per image.

    JSON has no bytes; hex is unambiguous where base64 is not (`"AAAA"` is valid as both),
    and `bytes.fromhex` reads it back: 10,000 test images are 20,000 characters.

    Example:
    >>> predictions_hex(np.array([3, 0, 9]))
    '030009'
    """
    return np.asarray(predicted).astype(np.uint8).tobytes().hex()


def weights_fingerprint(model):
    """Bit-exact digest of every model variable, trainable or not (BatchNorm statistics too)."""
    return digest_arrays([np.asarray(v.numpy()) for v in model.weights])


def options_of(config):
    """The run's `TrainingOptions`: its preset, then `--epochs`/`--patience`, then `--set`."""
    preset = PRESETS[config.preset]
    return training_options(config, epochs=preset.epochs, patience=preset.patience,
                            subset=preset.train_subset, dropout=DROPOUT)


def max_epochs(config):
    """The most epochs a run of `config` may train (for a progress display)."""
    return options_of(config).epochs


def max_steps(config):
    """About the most optimizer steps a run of `config` takes (for a progress display; a
    cross-validation fold trains on a slightly different number of images)."""
    options = options_of(config)
    return PRESETS[config.preset].sizes(
        subset=options.subset, val_fraction=options.val_fraction,
        batch_size=options.batch_size)["steps_per_epoch"] * options.epochs


def train(config, data, callbacks=(), on_dataset=None):
    """Train the seed CNN under `config` on the loaded Fashion-MNIST `data`.

    Arguments:
        config: a validated `RunConfig`: its preset, epochs, patience, seeds, `split_seed`,
            `fold`, `perturb_seed`, `settings` and `predictions` are used.
        data: a `twinrun.workloads.fashion_mnist.FashionMNIST`.
        callbacks: extra Keras callbacks (progress display, store, trace).
        on_dataset: optional function called with the training PyDataset before `fit`.

    Returns a dict with `history`, `epochs_trained`, `stopped_epoch` (the last epoch trained:
    where early stopping stopped, or the last of the schedule), `early_stopped`, `best_epoch`,
    `best_val_loss` and `best_val_accuracy` (on the validation set, or the held-out fold),
    test metrics (see `evaluate`), `perturbation` (what `perturb_first_layer` changed, or
    None), `options` (what the run trained with), and the weights' `initial_fingerprint`
    (after any perturbation, before training) and final `fingerprint`.
    """
    import keras

    options = options_of(config)
    seeds = config.seeds
    splits = make_splits(data, PRESETS[config.preset], subset=options.subset,
                         val_fraction=options.val_fraction, split_seed=options.split_seed,
                         fold=options.fold)
    model = build_model(seeds, learning_rate=options.learning_rate, dropout=options.dropout)
    perturbation = None
    if options.perturb_seed is not None:
        perturbation = perturb_first_layer(model, options.perturb_seed, options.perturb_noise)
    initial_fingerprint = weights_fingerprint(model)
    batches = shuffled_batches(splits.x_train, splits.y_train, options.batch_size,
                               seeds["shuffle"])
    if on_dataset is not None:
        on_dataset(batches)
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=options.patience,
                                            restore_best_weights=True)
    history = model.fit(
        batches, validation_data=(splits.x_val, splits.y_val), validation_batch_size=BATCH_SIZE,
        epochs=options.epochs, callbacks=[stopper, *callbacks], verbose=0,
        shuffle=False,  # the batches come in twinrun's order already
    )
    val_losses = history.history["val_loss"]
    # EarlyStopping keeps the first of equal minima and restores its weights: the same epoch.
    best = int(np.argmin(val_losses))
    result = {
        "model": model,
        "history": _history_rows(history.history),
        "epochs_trained": len(val_losses),
        "stopped_epoch": len(val_losses),
        "early_stopped": stopper.stopped_epoch > 0,
        "best_epoch": best + 1,
        "best_val_loss": float(val_losses[best]),
        "best_val_accuracy": float(history.history["val_accuracy"][best]),
        "steps_per_epoch": len(batches),
        "train_size": len(splits.x_train),
        "val_size": len(splits.x_val),
        "options": options.to_dict(),
        "perturbation": perturbation,
        "initial_fingerprint": initial_fingerprint,
    }
    result.update(evaluate(model, splits, predictions=config.predictions))
    result["fingerprint"] = weights_fingerprint(model)
    return result


def _history_rows(history):
    names = sorted(history)
    count = len(history[names[0]]) if names else 0
    return [{"epoch": i + 1, **{n: float(history[n][i]) for n in names}} for i in range(count)]


def load_data(config):
    """The real Fashion-MNIST files (verified), from wherever `config.data_dir` or the search
    order finds them. Refuses first, in one sentence, what the run asks and cannot have."""
    from twinrun.workloads import fashion_mnist

    validate_supported(config)
    return fashion_mnist.load(config.data_dir)
