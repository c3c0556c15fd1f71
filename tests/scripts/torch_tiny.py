"""Five SGD steps of a Linear(8, 2) layer, traced by the hooks (it never imports twinrun): the
cheapest real training a check can run, for the tests of what happens around the replicas.

    --diverge             replica 1 nudges the weights after its third step: the check diverges
    --replace-folder DIR  replica 0 replaces the folder DIR with a regular file before training,
                          so that writing anything under DIR fails after the verdict
"""

import argparse
import os
import shutil
from pathlib import Path

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--diverge", action="store_true")
parser.add_argument("--replace-folder")
args = parser.parse_args()
replica = os.environ.get("TWINRUN_REPLICA")

if args.replace_folder and replica == "0":
    folder = Path(args.replace_folder)
    shutil.rmtree(folder)
    folder.write_text("a regular file where the report's folder was\n")

x = torch.linspace(-1, 1, 40 * 8).reshape(40, 8)
y = (x.sum(dim=1) > 0).long()
torch.manual_seed(0)
model = torch.nn.Linear(8, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(5):
    rows = slice(8 * step, 8 * step + 8)
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
    loss.backward()
    optimizer.step()
    if args.diverge and replica == "1" and step == 2:
        with torch.no_grad():
            model.weight[0, 0] += 1e-3
print("trained")
