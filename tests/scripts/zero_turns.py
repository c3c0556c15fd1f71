"""Two PyTorch models whose optimizers take turns every step (as a GAN's do), without twinrun."""

import torch

first, second = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
first_optimizer = torch.optim.SGD(first.parameters(), lr=0.1)
second_optimizer = torch.optim.Adam(second.parameters(), lr=0.1)
x = torch.linspace(0, 1, 32).reshape(8, 4)
for step in range(3):
    first_optimizer.zero_grad()
    first(x).pow(2).mean().backward()
    first_optimizer.step()
    second_optimizer.zero_grad()
    second(x).pow(2).mean().backward()
    second_optimizer.step()
