"""A tiny PyTorch training where one replica's weight is nudged between two sampled steps.

After optimizer step `--step` (0-based), before the tracer records it, replica `--replica`
(from `TWINRUN_REPLICA`) adds 1e-3 to the first element of the first layer's weight. The loss
of that step is untouched; every later loss differs. Under `twinrun check --trace-every K`
the step's own words are recorded only if it is a sampled step.
"""

import argparse
import os

import torch

import twinrun
import twinrun.torch

parser = argparse.ArgumentParser()
parser.add_argument("--step", type=int, default=5)
parser.add_argument("--replica", default="1")
parser.add_argument("--steps", type=int, default=12)
args = parser.parse_args()

twinrun.deterministic(backend="torch")
generator = torch.Generator().manual_seed(0)
x = torch.randn(64, 6, generator=generator)
y = torch.randn(64, 1, generator=generator)
model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
with twinrun.torch.Tracer(model, optimizer, data=(x, y)) as tracer:
    for step in range(args.steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if step == args.step and os.environ.get("TWINRUN_REPLICA") == args.replica:
            with torch.no_grad():
                model[0].weight.view(-1)[0] += 1e-3
        tracer.step(loss, (x, y))
