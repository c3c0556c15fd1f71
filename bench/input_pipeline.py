"""Where the harness benchmark's epoch-time gap comes from: twinrun's batches against arrays.

`twinrun train` feeds `model.fit` a `keras.utils.PyDataset` of seeded batches
(`twinrun.workloads.batches.shuffled_batches`, one Python call per batch); a hand-written script
passes NumPy arrays with `shuffle=True`. This times both, and twinrun's progress callback, in
one process, alternating epochs: arrays, PyDataset, PyDataset + progress callback, ...

    KERAS_BACKEND=tensorflow python bench/input_pipeline.py [--rounds 4]
"""

import argparse
import json
import statistics
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    import keras

    from twinrun.progress import progress_callback
    from twinrun.workloads import fashion_cnn, fashion_mnist
    from twinrun.workloads.batches import shuffled_batches

    splits = fashion_cnn.make_splits(fashion_mnist.load(), fashion_cnn.PRESETS["quick"])
    model = fashion_cnn.build_model({"init": 0, "dropout": 0})
    batches = shuffled_batches(splits.x_train, splits.y_train, fashion_cnn.BATCH_SIZE, 0)
    steps = len(batches)

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.started

    variants = {
        "arrays, shuffle=True": lambda clock: model.fit(
            splits.x_train, splits.y_train, batch_size=64, shuffle=True, epochs=1, verbose=0,
            callbacks=[clock]),
        "twinrun PyDataset": lambda clock: model.fit(
            batches, epochs=1, verbose=0, callbacks=[clock]),
        "twinrun PyDataset + progress callback": lambda clock: model.fit(
            batches, epochs=1, verbose=0,
            callbacks=[progress_callback(1, steps, enabled=False), clock]),
    }
    for fit in variants.values():  # warm-up: trace and compile every path once
        fit(EpochClock())
    times = {name: [] for name in variants}
    for r in range(args.rounds):
        for name in (variants if r % 2 == 0 else reversed(list(variants))):
            clock = EpochClock()
            variants[name](clock)
            times[name].append(1e3 * clock.seconds / steps)
    baseline = times["arrays, shuffle=True"]
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, baseline)]
        print(f"{name:<40} {statistics.median(values):6.1f} ms/step  "
              f"ratio to arrays {statistics.median(ratios):.3f}  {[round(v, 1) for v in values]}")
    print(json.dumps({"steps_per_epoch": steps, "ms_per_step": times}))


if __name__ == "__main__":
    main()
