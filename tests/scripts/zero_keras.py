"""A Keras `model.fit` script that never imports twinrun and seeds nothing (any backend).

`--shuffle` plants an unseeded shuffle (a new order every process); `--noise` plants a layer
that adds noise from an unseeded generator. `--fits 2` trains a second model after the first.
"""

import argparse
import os

import keras
import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--shuffle", action="store_true")
parser.add_argument("--noise", action="store_true")
parser.add_argument("--fits", type=int, default=1)
args = parser.parse_args()

x = np.linspace(-1, 1, 128 * 8, dtype="float32").reshape(128, 8)
y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
if args.shuffle:
    order = np.random.default_rng(int.from_bytes(os.urandom(4), "little")).permutation(len(x))
    x, y = x[order], y[order]


class Noise(keras.layers.Layer):
    """Adds a per-process constant drawn from an unseeded generator."""

    def build(self, input_shape):
        rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
        self.noise = rng.normal(0, 1e-3, input_shape[-1]).astype("float32")

    def call(self, inputs):
        return inputs + keras.ops.convert_to_tensor(self.noise)


for fit in range(args.fits):
    layers = [keras.Input((8,)), keras.layers.Dense(8, activation="relu", name="hidden")]
    if args.noise:
        layers.append(Noise(name="noise"))
    layers += [keras.layers.Dropout(0.25), keras.layers.Dense(1, name="out")]
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
print("trained")
