"""The harness benchmark's baseline: the seed workload written by hand with `model.fit`.

What a Keras user writes without twinrun, with the settings of
`twinrun train --preset quick --no-determinism`: the same 6,000-image stratified subset and 80/20
split (`random_state=42`), the same CNN and initialiser seeds, Adam 1e-3, batch 64, early
stopping on `val_loss` (patience 20, best weights restored), then test loss, accuracy and the
per-class report. Seeds by hand (`keras.utils.set_random_seed`) and shuffles with `fit`.

    KERAS_BACKEND=tensorflow python bench/handwritten_fit.py --epochs 3

Prints one JSON line with the end time of every epoch (seconds since the process started).
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras
    from keras import layers
    from sklearn.metrics import classification_report
    from sklearn.model_selection import train_test_split

    # The IDX files themselves; keras.datasets would download the same ones.
    from twinrun.workloads.fashion_mnist import load

    keras.utils.set_random_seed(args.seed)
    data = load()
    x, _, y, _ = train_test_split(data.x_train, data.y_train, train_size=6000,
                                  stratify=data.y_train, random_state=42)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, stratify=y,
                                                      random_state=42)

    def images(a):
        return (a.astype(np.float32) / 255.0)[..., None]

    def one_hot(a):
        return keras.utils.to_categorical(a, 10)

    def glorot(k):
        return keras.initializers.GlorotUniform(seed=args.seed + k)

    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, (3, 3), kernel_initializer=glorot(0)),
        layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.Conv2D(32, (3, 3), kernel_initializer=glorot(1)),
        layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Dropout(0.25, seed=args.seed),
        layers.Flatten(),
        layers.Dense(512, kernel_initializer=glorot(2)),
        layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.Dropout(0.5, seed=args.seed + 1),
        layers.Dense(10, activation="softmax", kernel_initializer=glorot(3)),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss="categorical_crossentropy", metrics=["accuracy"])

    epoch_ends = []

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epoch_ends.append(time.perf_counter() - STARTED)

    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=20,
                                            restore_best_weights=True)
    model.fit(images(x_train), one_hot(y_train), validation_data=(images(x_val), one_hot(y_val)),
              batch_size=64, epochs=args.epochs, shuffle=True, verbose=0,
              callbacks=[stopper, EpochClock()])
    # One pass over the test set, as twinrun's evaluation does (the same work to compare):
    # loss, accuracy and the per-class report from the predicted probabilities.
    probabilities = model.predict(images(data.x_test), batch_size=64, verbose=0)
    picked = probabilities[np.arange(len(data.y_test)), data.y_test.astype(np.int64)]
    loss = np.mean(-np.log(np.clip(picked.astype(np.float64), 1e-7, 1 - 1e-7)))
    predicted = np.argmax(probabilities, axis=1)
    accuracy = np.mean(predicted == data.y_test)
    classification_report(data.y_test, predicted, output_dict=True, zero_division=0)
    print(json.dumps({"epoch_ends_s": epoch_ends, "steps_per_epoch": -(-len(x_train) // 64),
                      "test_loss": float(loss), "test_accuracy": float(accuracy)}))


if __name__ == "__main__":
    main()
