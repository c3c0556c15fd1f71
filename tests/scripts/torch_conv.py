"""A plain PyTorch CNN loop that never imports twinrun: its bits move with the CPU's vector
instructions (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) and with the thread count, through the
convolution (on an AMD EPYC 1- and 2-thread matrix products agree, convolutions do not)."""

import numpy as np
import torch

torch.manual_seed(0)
rng = np.random.default_rng(0)
images = torch.from_numpy(rng.standard_normal((64, 1, 28, 28)).astype("float32"))
labels = torch.from_numpy(rng.integers(0, 10, 64))

model = torch.nn.Sequential(
    torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
    torch.nn.Linear(32 * 13 * 13, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for step in range(4):
    optimizer.zero_grad()
    logits = model(images)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    optimizer.step()
print("trained")
