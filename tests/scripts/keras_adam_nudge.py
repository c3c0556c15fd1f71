"""A tiny Keras training where one replica's Adam second moment is nudged by one ulp.

After optimizer step `--step` (0-based), replica `--replica` (from `TWINRUN_REPLICA`) moves
the first element of the first Dense layer's kernel velocity (Adam's `v`) to the next float
up. The weights and the loss of that step are untouched: only the optimizer's state differs,
so a trace that fingerprints only the model would see the difference a step later.
"""

import argparse
import os

import keras
import numpy as np

import twinrun
import twinrun.keras

parser = argparse.ArgumentParser()
parser.add_argument("--step", type=int, default=2)
parser.add_argument("--replica", default="1")
parser.add_argument("--steps", type=int, default=6)
args = parser.parse_args()


class NudgeVelocity(keras.callbacks.Callback):
    """Runs before the trace's callback, so the trace of step `--step` sees the nudge."""

    def __init__(self):
        super().__init__()
        self.step = 0

    def on_train_batch_end(self, batch, logs=None):
        if self.step == args.step and os.environ.get("TWINRUN_REPLICA") == args.replica:
            # `self.model` syncs Keras' JAX training state into the variables first.
            slot = next(v for v in self.model.optimizer.variables
                        if v.path.endswith("hidden_kernel_velocity"))
            value = np.array(keras.ops.convert_to_numpy(slot))
            value.flat[0] = np.nextafter(value.flat[0], np.float32(np.inf))
            slot.assign(value)
        self.step += 1


twinrun.deterministic(backend=keras.backend.backend())
rng = np.random.default_rng(0)
x = rng.random((16 * args.steps, 6), dtype=np.float32)
y = rng.random((16 * args.steps, 1), dtype=np.float32)
model = keras.Sequential([
    keras.Input((6,)),
    keras.layers.Dense(8, activation="relu", name="hidden",
                       kernel_initializer=keras.initializers.GlorotUniform(seed=1)),
    keras.layers.Dense(1, name="out", kernel_initializer=keras.initializers.GlorotUniform(seed=2)),
])
model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
# in_step=False: on TensorFlow the in-step fingerprint is taken inside the step, before a
# callback could nudge anything.
model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
          callbacks=[NudgeVelocity(), twinrun.keras.Trace(data=(x, y), in_step=False)])
