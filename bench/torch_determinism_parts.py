"""What `torch.use_deterministic_algorithms(True)` costs a native PyTorch step on a CPU, and
how much of it is the filling of uninitialized memory, in one training.

On a CPU, deterministic algorithms change few kernels; what they also switch on, by default,
is `torch.utils.deterministic.fill_uninitialized_memory`: every `torch.empty`/`empty_like`/
`empty_strided` (and `resize_`) fills its new memory with NaN (or the largest integer), so that
a program that reads memory it never wrote still gives the same bits. This benchmark trains the
seed CNN of `bench/native_torch_cnn.py` (Adam, batch 64, random images) in blocks of `--steps`
steps, the variants taking turns block by block (A B C, then C B A, ...):

- `framework default`: deterministic algorithms off;
- `deterministic, fill on`: `use_deterministic_algorithms(True)` as twinrun sets it (the fill
  is torch's default);
- `deterministic, fill off`: the same with `fill_uninitialized_memory = False`.

Both switches are read by each op as it runs, so they can change between steps. Prints one JSON
line: each variant's mean wall and CPU time per step (`time.process_time`) and its cost over
the framework default, with the load average before and after.

    python bench/torch_determinism_parts.py [--rounds 8] [--steps 10]
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="steps per block")
    args = parser.parse_args()

    import torch
    import torch.utils.deterministic

    sys.path.insert(0, str(Path(__file__).parent))
    import native_torch_cnn as cnn

    load_before = os.getloadavg()
    model, optimizer, x, y = cnn.random_training()
    variants = {"framework default": (False, True), "deterministic, fill on": (True, True),
                "deterministic, fill off": (True, False)}
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}

    def step(batch):
        loss, _ = cnn.step_on(model, optimizer, x, y, batch)
        float(loss.detach())

    for name, (deterministic, fill) in variants.items():  # warm-up, every variant
        torch.use_deterministic_algorithms(deterministic)
        torch.utils.deterministic.fill_uninitialized_memory = fill
        for _ in range(3):
            step(0)
    order = list(variants)
    batch = 0
    for round_ in range(args.rounds):
        for name in (order if round_ % 2 == 0 else order[::-1]):
            deterministic, fill = variants[name]
            torch.use_deterministic_algorithms(deterministic)
            torch.utils.deterministic.fill_uninitialized_memory = fill
            for _ in range(args.steps):
                started, started_cpu = time.perf_counter(), time.process_time()
                step(batch)
                batch += 1
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - started_cpu)
    base_wall = statistics.mean(wall["framework default"])
    base_cpu = statistics.mean(cpu["framework default"])
    print(json.dumps({
        "threads": torch.get_num_threads(), "rounds": args.rounds, "steps": args.steps,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "variants": {name: {
            "wall_ms": round(1e3 * statistics.mean(wall[name]), 1),
            "cpu_ms": round(1e3 * statistics.mean(cpu[name]), 1),
            "wall_cost_percent": round(100 * (statistics.mean(wall[name]) / base_wall - 1), 1),
            "cpu_cost_percent": round(100 * (statistics.mean(cpu[name]) / base_cpu - 1), 1),
        } for name in variants},
    }))


if __name__ == "__main__":
    main()
