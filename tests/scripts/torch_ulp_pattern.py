"""A structured change that fingerprint scheme 2's step words miss: +1, -1, -1, +1 on the bit patterns of
four weights of one row, planted in one replica after its last step.

Linear 1024 -> 4 trained 5 steps by SGD at learning rate 0 and traced by
`twinrun.torch.Tracer`, so nothing else moves. Replica `--replica` (from `TWINRUN_REPLICA`;
`none`: no replica) then adds +1, -1, -1, +1 to the bit patterns of columns 0, 1, 2, 3 of row 0
of the weight. Columns a, b, c, d with a + d = b + c keep both of the row's linear sums.
With `--before-last-step` the pattern is planted before the last step's record, where the step
words of the trace see it.
`zero_ulp_pattern.py` is the same without a tracer, for the hooks.
"""

import argparse
import os

import torch

import twinrun
import twinrun.torch

parser = argparse.ArgumentParser()
parser.add_argument("--replica", default="1")
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--before-last-step", action="store_true",
                    help="plant the pattern before the last step is traced, not after it")
args = parser.parse_args()


def plant():
    if os.environ.get("TWINRUN_REPLICA") == args.replica:
        with torch.no_grad():
            model.weight.view(torch.int32)[0, :4] += torch.tensor([1, -1, -1, 1])



twinrun.deterministic(backend="torch")
generator = torch.Generator().manual_seed(0)
x = torch.randn(8, 1024, generator=generator)
y = torch.randn(8, 4, generator=generator)
model = torch.nn.Linear(1024, 4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
with twinrun.torch.Tracer(model, optimizer, data=(x, y)) as tracer:
    for step in range(args.steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if args.before_last_step and step == args.steps - 1:
            plant()
        tracer.step(loss, (x, y))
    if not args.before_last_step:
        plant()
print("weight[0, :4] =", model.weight[0, :4].tolist())
