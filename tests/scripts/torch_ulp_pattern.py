"""A structured change that keeps the per-step words: +1, -1, -1, +1 on the bit patterns of
four weights of one row, planted in one replica after its last step.

Linear 1024 -> 4 trained 5 steps by SGD at learning rate 0 and traced by
`twinrun.torch.Tracer`, so nothing else moves. Replica `--replica` (from `TWINRUN_REPLICA`;
`none`: no replica) then adds +1, -1, -1, +1 to the bit patterns of columns 0, 1, 2, 3 of row 0
of the weight. Columns a, b, c, d with a + d = b + c keep both of the row's linear sums.
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
args = parser.parse_args()

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
        tracer.step(loss, (x, y))
    if os.environ.get("TWINRUN_REPLICA") == args.replica:
        with torch.no_grad():
            model.weight.view(torch.int32)[0, :4] += torch.tensor([1, -1, -1, 1])
print("weight[0, :4] =", model.weight[0, :4].tolist())
