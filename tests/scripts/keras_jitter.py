"""A Keras model with a custom layer that adds tiny noise from os.urandom from a known step on.

Before step `--start` every replica computes the same bits; from then on the `Jitter` layer's
output differs between processes although its input does not.
"""

import argparse
import os

import keras
import numpy as np

import twinrun
import twinrun.keras

parser = argparse.ArgumentParser()
parser.add_argument("--start", type=int, default=3)
parser.add_argument("--steps", type=int, default=8)
args = parser.parse_args()


class Jitter(keras.layers.Layer):
    """Adds noise drawn from os.urandom (so different in every process) from step `start` on.

    The step counter is a non-trainable variable and the noise a per-process constant, so the
    layer behaves the same eagerly and inside compiled TensorFlow/JAX functions.
    """

    def __init__(self, start, **kwargs):
        super().__init__(**kwargs)
        self.start = start

    def build(self, input_shape):
        self.steps = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     name="steps")
        words = np.frombuffer(os.urandom(4 * input_shape[-1]), dtype=np.uint32)
        self.noise = (words.astype(np.float32) / 2**32 * 1e-6)

    def call(self, x, training=False):
        if not training:
            return x
        self.steps.assign(self.steps + 1.0)
        on = keras.ops.cast(self.steps > self.start, x.dtype)
        return x + on * keras.ops.convert_to_tensor(self.noise, dtype=x.dtype)


twinrun.deterministic(backend=keras.backend.backend())
rng = np.random.default_rng(0)
x = rng.random((64 * args.steps, 20), dtype=np.float32)
y = rng.random((64 * args.steps, 1), dtype=np.float32)
model = keras.Sequential([
    keras.Input((20,)),
    keras.layers.Dense(16, activation="relu", name="hidden",
                       kernel_initializer=keras.initializers.GlorotUniform(seed=1)),
    Jitter(args.start, name="jitter"),
    keras.layers.Dense(1, name="out", kernel_initializer=keras.initializers.GlorotUniform(seed=2)),
])
model.compile(optimizer="sgd", loss="mse")
model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0,
          callbacks=[twinrun.keras.Trace(data=(x, y))])
