"""A tiny PyTorch training that writes when each of its steps began and ended.

    python step_clock.py CLOCK_PREFIX [--steps N]

Writes `CLOCK_PREFIX-<replica>.json`: `[[begin, end], ...]` per step, in `time.monotonic()`
seconds (one clock for every process on the machine), so a test can see which replicas
computed at the same time. Each step also sleeps 30 ms, so two replicas let go together would
overlap for certain.
"""

import json
import os
import sys
import time

import torch

import twinrun

prefix, steps = sys.argv[1], int(sys.argv[sys.argv.index("--steps") + 1]) \
    if "--steps" in sys.argv else 8
twinrun.deterministic(backend="torch")
model = torch.nn.Linear(16, 4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.ones(8, 16), torch.zeros(8, dtype=torch.long)
clock = []
with twinrun.torch.Tracer(model, optimizer) as tracer:
    for step in range(steps):
        begin = time.monotonic()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        time.sleep(0.03)
        clock.append([begin, time.monotonic()])
        tracer.step(loss, (x, y))  # under lockstep, waits here for the launcher's go
with open(f"{prefix}-{os.environ.get('TWINRUN_REPLICA', 'alone')}.json", "w") as out:
    json.dump(clock, out)
