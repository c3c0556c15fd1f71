"""A plain PyTorch loop that never imports twinrun and seeds nothing.

`--shuffle` plants an unseeded shuffle; `--noise` plants a layer that adds noise from an
unseeded generator; `--optimizers 2` trains a second model with its own optimizer afterwards.
"""

import argparse
import os

import numpy as np
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--shuffle", action="store_true")
parser.add_argument("--noise", action="store_true")
parser.add_argument("--optimizers", type=int, default=1)
args = parser.parse_args()


class Noise(torch.nn.Module):
    """Adds noise from a generator seeded from the OS: new in every process."""

    def __init__(self):
        super().__init__()
        self.generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))

    def forward(self, inputs):
        return inputs + 1e-3 * torch.randn(inputs.shape, generator=self.generator)


x = torch.linspace(-1, 1, 128 * 8).reshape(128, 8)
y = (x.sum(dim=1) > 0).long()
order = np.arange(len(x))
if args.shuffle:
    order = np.random.default_rng(int.from_bytes(os.urandom(4), "little")).permutation(len(x))

for phase in range(args.optimizers):
    layers = [torch.nn.Linear(8, 16), torch.nn.ReLU()]
    if args.noise:
        layers.append(Noise())
    layers += [torch.nn.Dropout(0.25), torch.nn.Linear(16, 2)]
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(2):
        for start in range(0, len(x), 32):
            rows = torch.from_numpy(order[start:start + 32])
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
            loss.backward()
            optimizer.step()
print("trained")
