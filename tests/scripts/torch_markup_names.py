"""A tiny PyTorch training whose layer and variable names look like Rich markup and terminal codes.

`twinrun check -n 2 -- python torch_markup_names.py --tag "[/x]"` must print these names
literally (control characters escaped) and exit with the verdict's status. Arguments:
    --tag TEXT          ignored; only there so the check's label holds untrusted text
    --diverge           replica 1's layer "[/x]" adds a tiny offset from step 1 on, so the
                        replicas diverge there and the verdict names layer and variables
    --diverge-from S    the first step (counted from 0) the offset is added (default 1)
    --steps N           optimizer steps (default 3)
    --epoch-steps K     end an epoch (with a weights snapshot) after every K steps
"""

import argparse
import os

import torch

import twinrun
import twinrun.torch

LAYER = "[/x]"              # a closing tag with no opening one: a Rich MarkupError if parsed
VARIABLE = "[red]x"         # would turn the rest of a line red if parsed
CONTROL = "\x1b[2J"         # would clear the terminal if printed raw

parser = argparse.ArgumentParser()
parser.add_argument("--tag", default="")
parser.add_argument("--diverge", action="store_true")
parser.add_argument("--diverge-from", type=int, default=1)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--epoch-steps", type=int, default=0)
args = parser.parse_args()
replica = os.environ.get("TWINRUN_REPLICA")


class Offset(torch.nn.Module):
    """A linear layer (a leaf, so localisation can name it) that, in the diverging variant,
    shifts replica 1's output a little."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(8, 8) / 8)
        self.step = 0

    def forward(self, x):
        out = x @ self.weight
        if args.diverge and replica == "1" and self.step >= args.diverge_from:
            out = out + 1e-3
        return out


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.add_module(LAYER, Offset())
        self.add_module(CONTROL, torch.nn.Linear(8, 4))
        self.register_parameter(VARIABLE, torch.nn.Parameter(torch.ones(4)))

    def forward(self, x):
        hidden = torch.relu(getattr(self, LAYER)(x))
        return getattr(self, CONTROL)(hidden) * getattr(self, VARIABLE)


twinrun.deterministic(backend="torch")  # seed from `twinrun check`
generator = torch.Generator().manual_seed(0)
x = torch.randn(32, 8, generator=generator)
y = torch.randint(0, 4, (32,), generator=generator)
model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
with twinrun.torch.Tracer(model, optimizer) as tracer:
    for step in range(args.steps):
        getattr(model, LAYER).step = step
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        tracer.step(loss, (x, y))
        if args.epoch_steps and (step + 1) % args.epoch_steps == 0:
            tracer.epoch_end({"loss": loss.item()})
