"""What `twinrun.keras.Trace`'s own per-step work takes inside a real `fit`: the median time of its
`on_train_batch_end` (and `on_train_batch_begin`) over steps 20+ of one epoch of the seed CNN
(batch 64, real Fashion-MNIST, 120 steps).

On TensorFlow the words are computed inside the compiled step, so what the callback does after
it is reading them, reading the batch's loss, and writing the trace line; with `--trace-every K`
most steps read only the loss.

    KERAS_BACKEND=tensorflow python bench/keras_callback_time.py [--trace-every 1]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace-every", type=int, default=1)
    args = parser.parse_args()

    import keras

    from twinrun.keras import Trace

    sys.path.insert(0, str(Path(__file__).parent))
    from trace_parts import seed_cnn_training

    model, batches = seed_cnn_training(120)
    times = {"on_train_batch_begin": [], "on_train_batch_end": []}

    class Timed(Trace):
        def on_train_batch_begin(self, batch, logs=None):
            started = time.perf_counter()
            super().on_train_batch_begin(batch, logs)
            times["on_train_batch_begin"].append(time.perf_counter() - started)

        def on_train_batch_end(self, batch, logs=None):
            started = time.perf_counter()
            super().on_train_batch_end(batch, logs)
            times["on_train_batch_end"].append(time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as workdir:
        trace = Timed(Path(workdir) / "run.trace", batches=batches, snapshots=False,
                      trace_every=args.trace_every)
        model.fit(batches, epochs=1, verbose=0, callbacks=[trace], shuffle=False)
    print(f"Keras on {keras.backend.backend()}, trace every {args.trace_every}, "
          f"median of steps 20-{len(times['on_train_batch_end'])}:")
    for name, values in times.items():
        print(f"  {name:<22}{1e3 * statistics.median(values[20:]):7.3f} ms")


if __name__ == "__main__":
    main()
