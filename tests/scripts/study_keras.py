"""A Keras training for `twinrun variance -- python study_keras.py` on any Keras backend (the
tests use torch): init, order and dropout each from their own `twinrun.seeds()` entry.

`twinrun.keras.Trace()` in `fit` reports fit's last epoch (and `best_val_loss`,
`stopped_epoch`) to the study; the test accuracy comes from `twinrun.log_metrics`.
"""

import keras
import numpy as np

import twinrun

twinrun.deterministic()
seeds = twinrun.seeds()
data = np.random.default_rng(1234)  # the data stay the same in every run
x = data.normal(size=(512, 10)).astype("float32")
y = (x[:, :3].sum(axis=1) + 0.5 * data.normal(size=512) > 0).astype("int32")
x_test, y_test, x, y = x[:128], y[:128], x[128:], y[128:]

class Batches(keras.utils.PyDataset):
    """Batches in an order of our own (fit's shuffle uses each backend's global generator)."""

    def __init__(self, x, y, seed):
        super().__init__()
        self.x, self.y, self.rng = x, y, np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self):
        return -(-len(self.x) // 32)

    def __getitem__(self, i):
        rows = self.order[32 * i:32 * (i + 1)]
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.x))


model = keras.Sequential([
    keras.Input((10,)),
    keras.layers.Dense(16, activation="relu",
                       kernel_initializer=keras.initializers.GlorotUniform(seeds["init"])),
    keras.layers.Dropout(0.3, seed=seeds["dropout"]),
    keras.layers.Dense(2, activation="softmax",
                       kernel_initializer=keras.initializers.GlorotUniform(seeds["init"] + 1)),
])
model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
model.fit(Batches(x[96:], y[96:], seeds["order"]), validation_data=(x[:96], y[:96]), epochs=2,
          verbose=0, callbacks=[twinrun.keras.Trace()])
test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
twinrun.log_metrics(test_accuracy=test_accuracy, test_loss=test_loss)
