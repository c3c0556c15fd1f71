"""The per-step fingerprint with the weights in the cache and out of it.

During training the trace reads the weights after the step has pushed them out of the cache; a
tight loop (`bench/bench_fingerprint.py`) keeps them in. This times both, the cold case by
reading 64 MB of other memory before each call, next to the floor: one plain NumPy pass over
the same number of bytes.

    KERAS_BACKEND=tensorflow python bench/cold_fingerprint.py   # or jax, torch

Set the thread variables (OMP_NUM_THREADS, TF_NUM_INTRAOP_THREADS, ...) to compare pools.
"""

import time

import numpy as np

REPEATS = 40


def median_ms(function, evict=None):
    function()
    times = []
    for _ in range(REPEATS):
        if evict is not None:
            evict()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main():
    import keras

    from twinrun.fingerprint import tensor_words_for
    from twinrun.workloads.fashion_cnn import build_model

    backend = keras.backend.backend()
    words = tensor_words_for(backend)
    tensors = [v.value for v in build_model({"init": 0, "dropout": 0}).weights]
    values = sum(int(np.prod(v.shape)) for v in tensors)
    junk = np.ones(64_000_000 // 8)
    evict = junk.sum
    plain = np.random.default_rng(0).random(values, dtype=np.float32).view(np.int32)
    print(f"{values * 4 / 1e6:.1f} MB of weights; median of {REPEATS} calls, hot / cold cache:")
    rows = [("NumPy int32 sum (one read)", lambda: plain.sum(dtype=np.int32)),
            ("NumPy copy", plain.copy),
            (f"twinrun fingerprint, {backend}", lambda: words(tensors))]
    for name, function in rows:
        print(f"  {name:<34}{median_ms(function):7.2f} ms {median_ms(function, evict):7.2f} ms")


if __name__ == "__main__":
    main()
