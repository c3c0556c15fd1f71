"""The answer's minimal experiment: random inputs, one epoch, a table of loss/acc/val_loss/val_acc.

30,000 random 28x28x1 inputs with random multi-hot labels (10 classes, each on with
probability 1/2), a small he_uniform-initialised CNN with sigmoid outputs and binary
cross-entropy, Adam, batch 64, one epoch, validated on 6,000 more random inputs. There is
nothing to learn; the point is that replicas should agree to the last bit, and where they do
not (a GPU without determinism), how far apart they end up.
"""

import numpy as np

from twinrun.fingerprint import digest_arrays
from twinrun.workloads.batches import shuffled_batches

TRAIN_SIZE = 30_000
VAL_SIZE = 6_000
BATCH_SIZE = 64
EPOCHS = 1


def load_data(config):
    """Random inputs in [0, 1) and random multi-hot labels, drawn from the run's `data` seed."""
    rng = np.random.default_rng(config.seeds["data"])
    total = TRAIN_SIZE + VAL_SIZE
    x = rng.random((total, 28, 28, 1), dtype=np.float32)
    y = (rng.random((total, 10)) < 0.5).astype(np.float32)
    return {"x_train": x[:TRAIN_SIZE], "y_train": y[:TRAIN_SIZE],
            "x_val": x[TRAIN_SIZE:], "y_val": y[TRAIN_SIZE:]}


def build_model(seeds):
    import keras
    from keras import layers

    def he(k):
        return keras.initializers.HeUniform(seed=seeds["init"] + k)

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
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
                  metrics=["binary_accuracy"])
    return model


def train(config, data, callbacks=(), on_dataset=None):
    """One epoch of the answer's experiment; returns the same result shape as fashion-cnn."""
    seeds = config.seeds
    model = build_model(seeds)
    batches = shuffled_batches(data["x_train"], data["y_train"], BATCH_SIZE, seeds["shuffle"])
    if on_dataset is not None:
        on_dataset(batches)
    epochs = config.epochs or EPOCHS
    history = model.fit(batches, validation_data=(data["x_val"], data["y_val"]),
                        validation_batch_size=BATCH_SIZE, epochs=epochs,
                        callbacks=list(callbacks), verbose=0)
    last = {name: float(values[-1]) for name, values in history.history.items()}
    rows = [{"epoch": i + 1, **{n: float(v[i]) for n, v in history.history.items()}}
            for i in range(len(history.history["loss"]))]
    val_losses = history.history["val_loss"]
    best = int(np.argmin(val_losses))
    return {
        "model": model,
        "history": rows,
        "epochs_trained": len(rows),
        "best_epoch": best + 1,
        "best_val_loss": float(val_losses[best]),
        "steps_per_epoch": len(batches),
        "train_size": TRAIN_SIZE,
        "val_size": VAL_SIZE,
        # The answer's table, with Keras' names mapped to the answer's.
        "loss": last["loss"], "acc": last["binary_accuracy"],
        "val_loss": last["val_loss"], "val_acc": last["val_binary_accuracy"],
        "test_loss": last["val_loss"], "test_accuracy": last["val_binary_accuracy"],
        "fingerprint": digest_arrays([np.asarray(v.numpy()) for v in model.weights]),
    }
