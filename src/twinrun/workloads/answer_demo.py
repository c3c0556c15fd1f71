"""The answer's minimal experiment: random inputs, one epoch, a table of loss/acc/val_loss/val_acc.

30,000 random 28x28x1 inputs with random multi-hot labels (10 classes, each on with
probability 1/2), a small he_uniform-initialised CNN with sigmoid outputs and binary
cross-entropy, Adam, batch 64, one epoch, validated on 6,000 more random inputs. There is
nothing to learn; the point is that replicas should agree to the last bit, and where they do
not (a GPU without determinism), how far apart they end up.

Of what a study sets, it honours the seeds and determinism, `perturb_seed` (and `--set
perturb`: the answer's own noise experiment, on its first conv layer) and the settings
learning_rate, batch_size and epochs. It refuses, in one sentence, what it has nothing for:
dropout, patience, subset, val_fraction, split_seed, fold and test predictions (see
`twinrun.workloads.options.validate_supported`).
"""

import math
from dataclasses import replace

import numpy as np

from twinrun.fingerprint import digest_arrays
from twinrun.workloads.batches import shuffled_batches
from twinrun.workloads.options import LEARNING_RATE, validate_supported, training_options
from twinrun.workloads.variations import layer_seed, perturb_first_layer

TRAIN_SIZE = 30_000
VAL_SIZE = 6_000
BATCH_SIZE = 64
EPOCHS = 1


def load_data(config):
    """Random inputs in [0, 1) and random multi-hot labels, drawn from the run's `data` seed.

    Refuses first, in one sentence, what the run asks and this workload cannot honour.
    """
    validate_supported(config)
    rng = np.random.default_rng(config.seeds["data"])
    total = TRAIN_SIZE + VAL_SIZE
    x = rng.random((total, 28, 28, 1), dtype=np.float32)
    y = (rng.random((total, 10)) < 0.5).astype(np.float32)
    return {"x_train": x[:TRAIN_SIZE], "y_train": y[:TRAIN_SIZE],
            "x_val": x[TRAIN_SIZE:], "y_val": y[TRAIN_SIZE:]}


def build_model(seeds, *, learning_rate=LEARNING_RATE):
    """The answer's small CNN, initialiser k seeded with `seeds["init"] + k` (modulo 2**31)."""
    import keras
    from keras import layers

    def he(k):
        return keras.initializers.HeUniform(seed=layer_seed(seeds["init"], k))

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(16, (3, 3), activation="relu", kernel_initializer=he(0), name="conv"),
            layers.MaxPooling2D((2, 2), name="pool"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", kernel_initializer=he(1), name="dense"),
            layers.Dense(10, activation="sigmoid", kernel_initializer=he(2), name="out"),
        ],
        name="answer_demo",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                  metrics=["binary_accuracy"])
    return model


def options_of(config):
    """The run's `TrainingOptions` (one epoch unless `--epochs` or `--set epochs` says more)."""
    options = training_options(config, epochs=EPOCHS, patience=None, dropout=None)
    # It has no split: say so in the run's record rather than show the CNN's defaults.
    return replace(options, val_fraction=None, split_seed=None)


def max_epochs(config):
    """The most epochs a run of `config` trains (for a progress display)."""
    return options_of(config).epochs


def max_steps(config):
    """The optimizer steps a run of `config` takes (for a progress display)."""
    options = options_of(config)
    return math.ceil(TRAIN_SIZE / options.batch_size) * options.epochs


def train(config, data, callbacks=(), on_dataset=None):
    """The answer's experiment; returns the same result shape as fashion-cnn.

    Arguments:
        config: a validated `RunConfig` (seeds, `perturb_seed`, and the settings
            learning_rate, batch_size, epochs and perturb are used).
        data: what `load_data` returned.
        callbacks: extra Keras callbacks.
        on_dataset: optional function called with the training PyDataset before `fit`.
    """
    options = options_of(config)
    seeds = config.seeds
    model = build_model(seeds, learning_rate=options.learning_rate)
    perturbation = None
    if options.perturb_seed is not None:
        perturbation = perturb_first_layer(model, options.perturb_seed, options.perturb_noise)
    initial_fingerprint = _fingerprint(model)
    batches = shuffled_batches(data["x_train"], data["y_train"], options.batch_size,
                               seeds["shuffle"])
    if on_dataset is not None:
        on_dataset(batches)
    history = model.fit(batches, validation_data=(data["x_val"], data["y_val"]),
                        validation_batch_size=BATCH_SIZE, epochs=options.epochs,
                        callbacks=list(callbacks), verbose=0, shuffle=False)
    last = {name: float(values[-1]) for name, values in history.history.items()}
    rows = [{"epoch": i + 1, **{n: float(v[i]) for n, v in history.history.items()}}
            for i in range(len(history.history["loss"]))]
    val_losses = history.history["val_loss"]
    best = int(np.argmin(val_losses))
    return {
        "model": model,
        "history": rows,
        "epochs_trained": len(rows),
        "stopped_epoch": len(rows),  # no early stopping: the last epoch of the schedule
        "early_stopped": False,
        "best_epoch": best + 1,
        "best_val_loss": float(val_losses[best]),
        "best_val_accuracy": float(history.history["val_binary_accuracy"][best]),
        "steps_per_epoch": len(batches),
        "train_size": TRAIN_SIZE,
        "val_size": VAL_SIZE,
        "options": options.to_dict(),
        "perturbation": perturbation,
        "initial_fingerprint": initial_fingerprint,
        # The answer's table, with Keras' names mapped to the answer's.
        "loss": last["loss"], "acc": last["binary_accuracy"],
        "val_loss": last["val_loss"], "val_acc": last["val_binary_accuracy"],
        "test_loss": last["val_loss"], "test_accuracy": last["val_binary_accuracy"],
        "fingerprint": _fingerprint(model),
    }


def _fingerprint(model):
    return digest_arrays([np.asarray(v.numpy()) for v in model.weights])
