"""A tiny PyTorch training where one replica's Adam second moment is nudged by one ulp.

After optimizer step `--step` (0-based), replica `--replica` (from `TWINRUN_REPLICA`) moves
the first element of the first layer's `exp_avg_sq` to the next float up, before the tracer
records the step. The weights and the loss of that step are untouched.
"""

import argparse
import os

import torch

import twinrun
import twinrun.torch

parser = argparse.ArgumentParser()
parser.add_argument("--step", type=int, default=2)
parser.add_argument("--replica", default="1")
parser.add_argument("--steps", type=int, default=6)
args = parser.parse_args()

twinrun.deterministic(backend="torch")
generator = torch.Generator().manual_seed(0)
x = torch.randn(64, 6, generator=generator)
y = torch.randn(64, 1, generator=generator)
model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
with twinrun.torch.Tracer(model, optimizer, data=(x, y)) as tracer:
    for step in range(args.steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if step == args.step and os.environ.get("TWINRUN_REPLICA") == args.replica:
            with torch.no_grad():
                v = optimizer.state[model[0].weight]["exp_avg_sq"].view(-1)
                v[0] = torch.nextafter(v[0], torch.tensor(float("inf")))
        tracer.step(loss, (x, y))
