"""A PyTorch script, without twinrun, with two pitfalls only a run shows: the model is built
before the seed is set, and the data order is drawn from NumPy's global generator."""

import numpy as np
import torch

model = torch.nn.Linear(4, 1)  # weights drawn before the seed below
torch.manual_seed(0)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.linspace(0, 1, 32).reshape(8, 4), torch.zeros(8, 1)
order = np.random.permutation(8)
for start in range(0, 8, 4):
    rows = torch.from_numpy(order[start:start + 4])
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(model(x[rows]), y[rows]).backward()
    optimizer.step()
