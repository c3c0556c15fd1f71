"""Which rows each training batch of `twinrun.workloads.batches.shuffled_batches` held, in a
Keras `fit` of 3 epochs on the backend in KERAS_BACKEND; prints them as JSON.

Row i of the data is the number i, so a batch shows its rows. `--shuffle` passes fit's own
`shuffle=True`, which the dataset must refuse.
"""

import json
import sys

import keras
import numpy as np

from twinrun.workloads.batches import shuffled_batches

SEED = 5
x = np.arange(22, dtype=np.float32).reshape(22, 1)
y = np.zeros((22, 1), np.float32)
batches = shuffled_batches(x, y, 4, SEED)
seen = []


class Rows(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        batches.record_fingerprints = True

    def on_train_batch_end(self, batch, logs=None):
        seen.append(batches.batch_fingerprints.popleft())


model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
try:
    model.fit(batches, epochs=3, verbose=0, callbacks=[Rows()],
              shuffle="--shuffle" in sys.argv)
except Exception as error:  # noqa: BLE001 - the test reads the message
    print(json.dumps({"error": str(error)}))
    sys.exit(0)
print(json.dumps({"fingerprints": seen}))
