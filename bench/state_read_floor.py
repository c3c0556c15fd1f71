"""How fast this machine can read a state the size of the seed CNN's, against what the torch
tracer's words of that state take: the floor under any every-step trace that reads the whole
state.

1. One contiguous buffer of the state's size (28.5 MB), pushed out of the caches first (by
   writing a 96 MB buffer), hashed with xxh3-64 on one thread, and in two halves on two
   threads: the memory bus's speed for this job.
2. The same hash of a 2 MB buffer just read (in the cache): the hashing's own speed.
3. `twinrun.fingerprint.exact.TensorWords` of native PyTorch's real state
   (`bench/native_torch_cnn.py`, Adam, after real optimizer steps, so the state is as cold as a
   tracer finds it), on one thread and shared among two (a tensor's xxh3 is one sequential
   stream, so the three 9.4 MB tensors split two to one).

Medians; the variants of 3 take turns step by step. Run it as twinrun runs torch:

    OMP_WAIT_POLICY=PASSIVE python bench/state_read_floor.py
"""

import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xxhash

STATE_BYTES = 28_500_000


def cold_read(state, evict, pool, threads):
    evict += 1  # writes 96 MB: the state leaves the caches
    started = time.perf_counter()
    if threads == 1:
        xxhash.xxh3_64_intdigest(state)
    else:
        half = len(state) // 2
        other = pool.submit(xxhash.xxh3_64_intdigest, state[half:])
        xxhash.xxh3_64_intdigest(state[:half])
        other.result()
    return time.perf_counter() - started


def main():
    import torch

    import twinrun
    from twinrun.fingerprint.exact import TensorWords

    sys.path.insert(0, str(Path(__file__).parent))
    import native_torch_cnn as cnn

    state = np.random.default_rng(0).integers(0, 255, STATE_BYTES, dtype=np.uint8)
    evict = np.ones(96_000_000, np.uint8)
    pool = ThreadPoolExecutor(1)
    for threads in (1, 2):
        seconds = statistics.median(cold_read(state, evict, pool, threads) for _ in range(15))
        print(f"cold buffer, xxh3 on {threads} thread{'s' if threads > 1 else ''}: "
              f"{1e3 * seconds:.2f} ms ({STATE_BYTES / seconds / 1e9:.1f} GB/s)")
    small = state[:2_000_000].copy()
    timings = []
    for _ in range(50):
        xxhash.xxh3_64_intdigest(small)
        started = time.perf_counter()
        xxhash.xxh3_64_intdigest(small)
        timings.append(time.perf_counter() - started)
    print(f"2 MB in the cache, xxh3 on 1 thread: "
          f"{len(small) / statistics.median(timings) / 1e9:.1f} GB/s")

    twinrun.deterministic(0, backend="torch", threads=2)
    model, optimizer, x, y = cnn.random_training()
    alone, shared = TensorWords(), TensorWords()
    alone.PARALLEL_BYTES = float("inf")  # the calling thread alone
    times = {"1 thread": [], f"shared among {torch.get_num_threads()}": []}
    nbytes = 0
    for step in range(82):
        cnn.step_on(model, optimizer, x, y, step)
        tensors = (list(model.parameters()) + list(model.buffers())
                   + [t for s in optimizer.state.values() for t in s.values()])
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        name = list(times)[step % 2]
        started = time.perf_counter()
        (alone if step % 2 == 0 else shared)(tensors)
        if step >= 2:
            times[name].append(time.perf_counter() - started)
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"TensorWords of the seed CNN's state ({nbytes / 1e6:.1f} MB), {name}: "
              f"{1e3 * seconds:.2f} ms ({nbytes / seconds / 1e9:.1f} GB/s)")
    print("load average", [round(v, 2) for v in os.getloadavg()])


if __name__ == "__main__":
    main()
