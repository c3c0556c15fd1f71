"""How long the native PyTorch tracer's whole-state words take alone, on one thread and shared
among the training's threads (`twinrun.fingerprint.exact.TensorWords`).

The seed CNN of `bench/native_torch_cnn.py` (Adam, batch 64, random images) trains `--steps`
steps; after each optimizer step the words of the whole state (28.5 MB: weights, Adam's moments,
the generator) are computed twice, by two `TensorWords`, one kept to the calling thread, in an
order that alternates step by step. Prints the median wall and calling-thread CPU
milliseconds of each, the state's size and the implied read speed, and the machine's load
average, as one JSON line. The sharing happens only under `OMP_WAIT_POLICY=PASSIVE` (as in
the torch processes twinrun starts); without it both rows are the one-thread path.

    OMP_WAIT_POLICY=PASSIVE python bench/torch_words_threads.py [--steps 60]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import native_torch_cnn as cnn
    from twinrun.fingerprint.exact import TensorWords
    from twinrun.torch import Tracer

    load_before = os.getloadavg()
    model, optimizer, x, y = cnn.random_training()
    folder = Path(tempfile.mkdtemp(prefix="twinrun-bench-words-"))
    tracer = Tracer(model, optimizer, path=folder / "run.trace", snapshots=False)  # its state
    shared, alone = TensorWords(), TensorWords()
    alone.PARALLEL_BYTES = float("inf")
    times = {"shared": ([], []), "one thread": ([], [])}
    nbytes = 0
    for step in range(args.warmup + args.steps):
        cnn.step_on(model, optimizer, x, y, step)
        _, tensors = tracer._state()
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        order = [("shared", shared), ("one thread", alone)]
        for name, words in (order if step % 2 == 0 else order[::-1]):
            wall, cpu = time.perf_counter(), time.thread_time()
            words(tensors)
            if step >= args.warmup:
                times[name][0].append(time.perf_counter() - wall)
                times[name][1].append(time.thread_time() - cpu)
    result = {
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "state_mb": round(nbytes / 1e6, 1), "steps": args.steps,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "shared_threads": shared._pool[2] if shared._pool else 1,
    }
    for name, (wall, cpu) in times.items():
        result[name] = {"wall_ms": round(1e3 * statistics.median(wall), 2),
                        "cpu_ms": round(1e3 * statistics.median(cpu), 2),
                        "gb_per_s": round(nbytes / statistics.median(wall) / 1e9, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
