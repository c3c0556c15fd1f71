"""What `twinrun.torch.Tracer` costs a native PyTorch step, in each mode, in one training.

The seed CNN of `bench/native_torch_cnn.py` (Adam, batch 64, random images: the trace's cost
does not depend on the pixels) trains in blocks of `--steps` steps, the variants taking turns
block by block (A B C D, then D C B A, ...), so a drift in the machine's speed falls on all of
them alike:

- `no trace`;
- `every step`: `Tracer.step` with the whole state's words every step (on a CPU, scheme 3:
  each tensor's bytes hashed in place, `twinrun.fingerprint.exact`; shared among the step's
  threads under `OMP_WAIT_POLICY=PASSIVE`, as in the torch processes twinrun starts);
- `every step, scheme 3 on one thread`: the same words hashed by the calling thread alone
  (what the tracer does without `PASSIVE`, and did everywhere before 2026-12-02, 20:00 UTC);
- `every step, scheme 2 words`: the row-sum words of `twinrun.fingerprint.torch` on one
  thread (what the tracer computed on a CPU before scheme 3);
- `every step, scheme 2 on the step's threads`: the same words computed with the training's
  own intra-op threads (what the tracer did before that);
- `sampled`: a `Tracer(trace_every=K)`, the whole state every K-th step, batch and loss every
  step.

Each variant's cost is given two ways: its mean step time over the no-trace mean (wall time,
and this process's CPU time, `time.process_time`), and the mean time of the `Tracer.step`
call itself over the no-trace step (`trace_*_percent`: wall, and the calling thread's CPU time,
`time.thread_time`), which a loaded machine disturbs far less than a difference of two step
times. Prints one JSON line with the machine's load average before and after.

    python bench/torch_trace_modes.py [--rounds 6] [--steps 5] [--every 16]
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
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5, help="steps per block")
    parser.add_argument("--every", type=int, default=16, help="K of the sampled variant")
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import native_torch_cnn as cnn
    from twinrun.fingerprint import torch as fingerprint_torch
    from twinrun.torch import Tracer

    load_before = os.getloadavg()
    model, optimizer, x, y = cnn.random_training()
    folder = Path(tempfile.mkdtemp(prefix="twinrun-bench-modes-"))
    every = Tracer(model, optimizer, path=folder / "every.trace", snapshots=False)
    alone = Tracer(model, optimizer, path=folder / "alone.trace", snapshots=False)
    alone._words.PARALLEL_BYTES = float("inf")  # never shared: the calling thread alone
    rows = Tracer(model, optimizer, path=folder / "rows.trace", snapshots=False)
    rows._words = fingerprint_torch.tensor_words  # scheme 2, on one thread
    threaded = Tracer(model, optimizer, path=folder / "threaded.trace", snapshots=False)
    threaded._words = fingerprint_torch._words_now  # scheme 2 on the step's own threads
    sampled = Tracer(model, optimizer, path=folder / "sampled.trace", snapshots=False,
                     trace_every=args.every)
    variants = {"no trace": None, "every step": every,
                "every step, scheme 3 on one thread": alone, "every step, scheme 2 words": rows,
                "every step, scheme 2 on the step's threads": threaded,
                f"sampled (every {args.every})": sampled}
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    trace_wall = {name: [] for name in variants}
    trace_cpu = {name: [] for name in variants}
    order = list(variants)
    batch = 0
    for _ in range(3):  # warm-up: first allocations, the fingerprint plans
        for tracer in (every, alone, rows, threaded, sampled):
            tracer.step(*cnn.step_on(model, optimizer, x, y, 0))
    for round_ in range(args.rounds):
        for name in (order if round_ % 2 == 0 else order[::-1]):
            tracer = variants[name]
            for _ in range(args.steps):
                started, started_cpu = time.perf_counter(), time.process_time()
                loss, data = cnn.step_on(model, optimizer, x, y, batch)
                batch += 1
                if tracer is not None:
                    traced, traced_cpu = time.perf_counter(), time.thread_time()
                    tracer.step(loss, data)
                    trace_wall[name].append(time.perf_counter() - traced)
                    trace_cpu[name].append(time.thread_time() - traced_cpu)
                float(loss.detach())  # what a loop logs; also ends the step
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - started_cpu)
    for tracer in (every, alone, rows, threaded, sampled):
        tracer.close()
    base_wall, base_cpu = statistics.mean(wall["no trace"]), statistics.mean(cpu["no trace"])
    result = {
        "threads": torch.get_num_threads(), "rounds": args.rounds, "steps": args.steps,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "variants": {name: {
            "wall_ms": round(1e3 * statistics.mean(wall[name]), 1),
            "cpu_ms": round(1e3 * statistics.mean(cpu[name]), 1),
            "wall_cost_percent": round(100 * (statistics.mean(wall[name]) / base_wall - 1), 1),
            "cpu_cost_percent": round(100 * (statistics.mean(cpu[name]) / base_cpu - 1), 1),
            "trace_wall_percent": round(100 * statistics.mean(trace_wall[name] or [0])
                                        / base_wall, 2),
            "trace_cpu_percent": round(100 * statistics.mean(trace_cpu[name] or [0])
                                       / base_cpu, 2),
        } for name in variants},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
