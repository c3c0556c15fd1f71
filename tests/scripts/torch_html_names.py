"""A tiny PyTorch training whose names are HTML, for the report tests; replica 1 diverges.

`twinrun check -n 2 --no-lockstep -- python torch_html_names.py --tag '"><img src=x onerror=alert(1)>'`
gives a stored DIVERGED check whose label, layer and variable names would run script if a report
pasted them into its page raw. Arguments:
    --tag TEXT          ignored; only there so the check's label holds untrusted text
    --diverge-from S    the first step (counted from 0) at which replica 1's layer adds a tiny
                        offset to its output (default 8)
    --steps N           optimizer steps (default 40)
    --epoch-steps K     end an epoch (with a weights snapshot) after every K steps (default 10)
"""

import argparse
import os

import torch

import twinrun
import twinrun.torch

LAYER = "<script>alert(1)</script>"     # localisation names this layer
VARIABLE = "<b>bold</b>"                # a parameter name that is markup

parser = argparse.ArgumentParser()
parser.add_argument("--tag", default="")
parser.add_argument("--diverge-from", type=int, default=8)
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--epoch-steps", type=int, default=10)
args = parser.parse_args()
replica = os.environ.get("TWINRUN_REPLICA")


class Offset(torch.nn.Module):
    """A linear layer (a leaf, so localisation can name it) that shifts replica 1's output by
    1e-4 from step `--diverge-from` on."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(16, 16) / 4)
        self.step = 0

    def forward(self, x):
        out = x @ self.weight
        if replica == "1" and self.step >= args.diverge_from:
            out = out + 1e-4
        return out


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.add_module(LAYER, Offset())
        self.add_module("head", torch.nn.Linear(16, 4))
        self.register_parameter(VARIABLE, torch.nn.Parameter(torch.ones(4)))

    def forward(self, x):
        hidden = torch.relu(getattr(self, LAYER)(x))
        return self.head(hidden) * getattr(self, VARIABLE)


twinrun.deterministic(backend="torch")  # seed from `twinrun check`
generator = torch.Generator().manual_seed(0)
x = torch.randn(256, 16, generator=generator)
y = torch.randint(0, 4, (256,), generator=generator)
model = Net()
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
with twinrun.torch.Tracer(model, optimizer) as tracer:
    for step in range(args.steps):
        getattr(model, LAYER).step = step
        batch = slice((step % 8) * 32, (step % 8 + 1) * 32)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
        tracer.step(loss, (x[batch], y[batch]))
        if args.epoch_steps and (step + 1) % args.epoch_steps == 0:
            tracer.epoch_end({"loss": loss.item()})
