"""A tiny seed-CNN training through twinrun's batches; prints its bits as one JSON object.

`{"batches": [each step's batch fingerprint], "weights": final weights fingerprint,
"minor_faults": this process's minor page faults during training}`: 640 random images, 2
epochs of 10 steps, under `twinrun.deterministic(0)` on the backend KERAS_BACKEND names.
"""

import json
import resource

import numpy as np

import twinrun

report = twinrun.deterministic(0)

import keras  # noqa: E402  (after deterministic(), as the README shows)

from twinrun.workloads import fashion_cnn  # noqa: E402
from twinrun.workloads.batches import shuffled_batches  # noqa: E402

rng = np.random.default_rng(1)
x = rng.random((640, 28, 28, 1), dtype=np.float32)
y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 640)]
model = fashion_cnn.build_model(report.seeds)
batches = shuffled_batches(x, y, 64, report.seeds["shuffle"])
fingerprints = []


class Collect(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        # Not before: TensorFlow's adapter reads two batches for their shapes when fit starts.
        batches.record_fingerprints = True

    def on_train_batch_end(self, batch, logs=None):
        fingerprints.append(batches.batch_fingerprints.popleft())


faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
model.fit(batches, epochs=2, verbose=0, callbacks=[Collect()], shuffle=False)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"batches": fingerprints, "weights": fashion_cnn.weights_fingerprint(model),
                  "minor_faults": faults}))
