"""Where a traced step's time goes: `twinrun.keras.Trace`'s per-step work, part by part, inside
a real `fit` of the seed CNN (batch 64, real Fashion-MNIST, 160 steps).

    KERAS_BACKEND=tensorflow python bench/trace_parts.py
    KERAS_BACKEND=torch python bench/trace_parts.py

Prints the median milliseconds per step (steps 20+) of: reading the variables, their fingerprint,
converting the loss, writing the trace line; and the median step time, for scale. The
fingerprint here is slower than in `bench/bench_fingerprint.py`'s tight loop because training
has pushed the weights out of the cache by the time the trace reads them
(`bench/cold_fingerprint.py` measures that alone).
"""

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def seed_cnn_training(steps):
    """Under `twinrun.deterministic(0)` on Keras' backend: the seed CNN and twinrun's seeded
    batches of 64 over the first `steps` * 64 real Fashion-MNIST training images."""
    import keras

    import twinrun
    from twinrun.workloads import fashion_cnn
    from twinrun.workloads.batches import shuffled_batches
    from twinrun.workloads.fashion_mnist import load

    report = twinrun.deterministic(0, backend=keras.backend.backend())
    data = load()
    rows = fashion_cnn.BATCH_SIZE * steps
    x = (data.x_train[:rows].astype(np.float32) / 255.0)[..., None]
    y = keras.utils.to_categorical(data.y_train[:rows], 10)
    model = fashion_cnn.build_model(report.seeds)
    return model, shuffled_batches(x, y, fashion_cnn.BATCH_SIZE, report.seeds["shuffle"])


def main():
    import keras

    from twinrun.keras import Trace

    model, batches = seed_cnn_training(160)
    parts = {name: [] for name in ("read variables", "fingerprint", "loss", "write line",
                                   "trace in all")}

    class TimedTrace(Trace):
        # The same work as Trace.on_train_batch_end, with a clock between the parts.
        def on_train_batch_end(self, batch, logs=None):
            t0 = time.perf_counter()
            loss = (logs or {}).get("loss")
            fingerprints = self.batches.batch_fingerprints
            batch_fp = fingerprints.popleft() if fingerprints else None
            values = self._current_values()
            t1 = time.perf_counter()
            words = self._words(values)
            t2 = time.perf_counter()
            loss = float(loss)
            t3 = time.perf_counter()
            self.writer.step(self.step, self.epoch, batch_fp, loss, words.tolist())
            t4 = time.perf_counter()
            self.step += 1
            for name, a, b in zip(parts, (t0, t1, t2, t3, t0), (t1, t2, t3, t4, t4)):
                parts[name].append(1e3 * (b - a))

    stamps = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as workdir:
        trace = TimedTrace(Path(workdir) / "run.trace", batches=batches, snapshots=False)
        model.fit(batches, epochs=1, verbose=0, callbacks=[trace, Clock()], shuffle=False)
    print(f"Keras on {keras.backend.backend()}, median of steps 20-{len(stamps)}:")
    for name, values in parts.items():
        print(f"  {name:<16}{statistics.median(values[20:]):8.3f} ms")
    print(f"  {'step':<16}{1e3 * statistics.median(np.diff(stamps[20:])):8.1f} ms")


if __name__ == "__main__":
    main()
