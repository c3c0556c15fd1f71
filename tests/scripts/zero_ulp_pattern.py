"""`torch_ulp_pattern.py` with no twinrun in it: `twinrun check` traces it through its hooks.

Replica `--replica` adds +1, -1, -1, +1 to the bit patterns of columns 0, 1, 2, 3 of row 0 of
the weight after the last optimizer step (SGD at learning rate 0: nothing else moves).
"""

import argparse
import os

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--replica", default="1")
parser.add_argument("--steps", type=int, default=5)
args = parser.parse_args()

generator = torch.Generator().manual_seed(0)
x = torch.randn(8, 1024, generator=generator)
y = torch.randn(8, 4, generator=generator)
model = torch.nn.Linear(1024, 4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
for step in range(args.steps):
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
if os.environ.get("TWINRUN_REPLICA") == args.replica:
    with torch.no_grad():
        model.weight.view(torch.int32)[0, :4] += torch.tensor([1, -1, -1, 1])
print("weight[0, :4] =", model.weight[0, :4].tolist())
