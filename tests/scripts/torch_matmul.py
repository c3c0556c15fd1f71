"""A plain PyTorch training whose matrix products are large enough to be split across threads.

`twinrun check --threads 1,2` runs it with a different intra-op thread count per replica.
Extra arguments make misbehaving replicas for the launcher's error paths:
    --fail-replica R    replica R exits with status 3 after two steps
    --hang-replica R    replica R sleeps forever after two steps
    --short-replica R   replica R trains two steps fewer
    --steps N           optimizer steps (default 6)
"""

import argparse
import os
import sys
import time

import torch

import twinrun
import twinrun.torch

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=6)
parser.add_argument("--fail-replica")
parser.add_argument("--hang-replica")
parser.add_argument("--short-replica")
args = parser.parse_args()
replica = os.environ.get("TWINRUN_REPLICA")

twinrun.deterministic(backend="torch")  # seed and threads from `twinrun check`
generator = torch.Generator().manual_seed(0)
x = torch.randn(256, 1024, generator=generator)
y = torch.randint(0, 10, (256,), generator=generator)
model = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                            torch.nn.Linear(1024, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
steps = args.steps - (2 if replica == args.short_replica else 0)
with twinrun.torch.Tracer(model, optimizer) as tracer:
    for step in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        tracer.step(loss, (x, y))
        if step == 1 and replica == args.fail_replica:
            print("boom: replica failed on purpose", file=sys.stderr)
            sys.exit(3)
        if step == 1 and replica == args.hang_replica:
            time.sleep(3600)
