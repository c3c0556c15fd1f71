"""`torch_ulp_pattern.py` in Keras: +1, -1, -1, +1 on the bit patterns of four weights of one
row, planted in one replica after its last step.

Dense 1024 -> 4 trained 5 steps by SGD at learning rate 0 and traced by `twinrun.keras.Trace`.
When training ends, before the trace's own `on_train_end` digests the state, replica
`--replica` adds +1, -1, -1, +1 to the bit patterns of kernel[0, 0:4], the columns 0, 1, 2, 3
of the kernel's first row of words.
"""

import argparse
import os

import keras
import numpy as np

import twinrun
import twinrun.keras

parser = argparse.ArgumentParser()
parser.add_argument("--replica", default="1")
parser.add_argument("--steps", type=int, default=5)
args = parser.parse_args()


class PlantPattern(keras.callbacks.Callback):
    """Listed before the trace's callback, so its `on_train_end` runs first."""

    def on_train_end(self, logs=None):
        if os.environ.get("TWINRUN_REPLICA") == args.replica:
            kernel = self.model.layers[0].kernel
            value = np.array(keras.ops.convert_to_numpy(kernel))
            value.view(np.int32)[0, :4] += np.array([1, -1, -1, 1], np.int32)
            kernel.assign(value)


twinrun.deterministic(backend=keras.backend.backend())
rng = np.random.default_rng(0)
x = rng.random((8 * args.steps, 1024), dtype=np.float32)
y = rng.random((8 * args.steps, 4), dtype=np.float32)
model = keras.Sequential([
    keras.Input((1024,)),
    keras.layers.Dense(4, name="dense",
                       kernel_initializer=keras.initializers.GlorotUniform(seed=1)),
])
model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
          callbacks=[PlantPattern(), twinrun.keras.Trace(data=(x, y))])
