"""Where `twinrun.torch.Tracer`'s cost falls in a native PyTorch step: the forward and
backward, the optimizer's step, or the `Tracer.step` call.

The seed CNN of `bench/native_torch_cnn.py` (Adam, batch 64, random images) under
`twinrun.deterministic(threads=2)` trains in blocks of 15 steps, the variants taking turns
block by block (A B C, then C B A, ...):

- `no trace`;
- `every step`: a `Tracer` recording the whole state every step, as twinrun ships it;
- `every step, slots later`, only at commit 1b6fb3e (tried and reverted, docs/performance.md):
  the optimizer's slots hashed by a background thread during the next step's forward and
  backward, joined in the optimizer's step pre-hook (`TWINRUN_LATER_PRIORITY=idle|nice` gave
  that thread `SCHED_IDLE` or nice 19).

Prints each variant's median forward-and-backward, optimizer step, trace call and whole step
(ms); then its cost: the median, over rounds, of its mean step over the same round's untraced
mean, with the quartiles; and the load average.

    OMP_WAIT_POLICY=PASSIVE python bench/torch_trace_phases.py [--rounds 16]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()

    import torch

    import twinrun
    from twinrun.torch import Tracer

    sys.path.insert(0, str(Path(__file__).parent))
    import native_torch_cnn as cnn

    twinrun.deterministic(0, backend="torch", threads=2)
    model, optimizer, x, y = cnn.random_training()
    folder = Path(tempfile.mkdtemp(prefix="twinrun-bench-phases-"))
    tracers = {"every step": Tracer(model, optimizer, path=folder / "a.trace", snapshots=False)}
    if hasattr(tracers["every step"], "_defer"):
        tracers["every step, slots later"] = tracers["every step"]
        tracers["every step"] = Tracer(model, optimizer, path=folder / "b.trace",
                                       snapshots=False)
        tracers["every step"]._defer = False
    variants = ["no trace", *tracers]
    parts = {v: {"forward_backward": [], "optimizer": [], "call": [], "step": []}
             for v in variants}
    loss_function = torch.nn.CrossEntropyLoss()
    block_means = {v: [] for v in variants}
    batch = 0
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for variant in (variants if round_ % 2 == 0 else variants[::-1]):
            steps = []
            for step in range(15):
                rows = slice(64 * (batch % 8), 64 * (batch % 8 + 1))
                batch += 1
                started = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss = loss_function(model(x[rows]), y[rows])
                loss.backward()
                backward = time.perf_counter()
                optimizer.step()
                stepped = time.perf_counter()
                if variant != "no trace":
                    tracers[variant].step(loss, (x[rows], y[rows]))
                traced = time.perf_counter()
                float(loss.detach())  # what a loop logs; also ends the step
                ended = time.perf_counter()
                if round_ and step >= 2:  # the first steps of a block follow another variant
                    steps.append(ended - started)
                    for name, value in zip(parts[variant], (backward - started,
                                                            stepped - backward,
                                                            traced - stepped, ended - started)):
                        parts[variant][name].append(value)
            if round_:
                block_means[variant].append(statistics.mean(steps))
    for tracer in tracers.values():
        tracer.close()
    for variant in variants:
        print(f"{variant:26s}", "  ".join(
            f"{name} {1e3 * statistics.median(values):6.2f}"
            for name, values in parts[variant].items()))
    for variant in variants[1:]:
        costs = [100 * (t / u - 1) for t, u in zip(block_means[variant],
                                                   block_means["no trace"])]
        q = statistics.quantiles(costs, n=4)
        print(f"{variant:26s} cost {statistics.median(costs):+.1f} % "
              f"(quartiles {q[0]:+.1f} to {q[2]:+.1f}, {len(costs)} rounds)")
    print("load average", [round(v, 2) for v in os.getloadavg()])


if __name__ == "__main__":
    main()
