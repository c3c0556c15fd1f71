"""The README's Keras example as a user writes it: `import twinrun`, no seed, no path.

Runs as a plain `python readme_keras.py` (the default seed; the trace records nothing and says
so) and under `twinrun check -- python readme_keras.py`, on any Keras backend. Prints one JSON
line: the seed used, the steps taken and the last loss.
"""

import json

import keras
import numpy as np

import twinrun

report = twinrun.deterministic()  # under `twinrun check` the seed comes from --seed
x = np.random.rand(256, 20).astype("float32")
y = np.random.randint(0, 3, size=256)
model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(3, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
history = model.fit(x, y, batch_size=32, epochs=1, verbose=0,
                    callbacks=[twinrun.keras.Trace(data=(x, y))])
steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
print(json.dumps({"seed": report.seed, "steps": steps, "loss": history.history["loss"][-1]}))
