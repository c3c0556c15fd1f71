"""A user script that shuffles with an unseeded NumPy generator: a new order every run."""

import numpy as np
import torch

import twinrun
import twinrun.torch

twinrun.deterministic(backend="torch")  # the seed comes from `twinrun check`
rng = np.random.default_rng(0)
x = rng.random((512, 16), dtype=np.float32)
y = rng.integers(0, 10, 512)
order = np.random.default_rng().permutation(512)  # no seed: OS entropy

model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
with twinrun.torch.Tracer(model, optimizer, data=(x, y)) as tracer:
    for start in range(0, 512, 64):
        rows = order[start:start + 64]
        xb, yb = torch.from_numpy(x[rows]), torch.from_numpy(y[rows])
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        tracer.step(loss, (xb, yb))
