"""The seed CNN in plain PyTorch, trained the way a PyTorch user would write it.

The same network as `twinrun.workloads.fashion_cnn` (Conv32-BN-ReLU, Conv32-BN-ReLU, MaxPool,
Dropout .25, Dense512-BN-ReLU, Dropout .5, Dense10), Adam 1e-3, cross-entropy, batch 64, on
NCHW images. The benchmarks time `train_steps` with and without twinrun's determinism and
`twinrun.torch.Tracer`.
"""

import numpy as np
import torch
from torch import nn

BATCH_SIZE = 64
LEARNING_RATE = 1e-3


class SeedCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(32 * 12 * 12, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(512, 10),  # softmax is inside the cross-entropy loss
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def batches(x, y, seed, epoch=0):
    """Batches of 64 in the order `default_rng([seed, epoch]).permutation(n)` (as twinrun's)."""
    order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(x)))
    order = order.to(x.device)
    for start in range(0, len(x), BATCH_SIZE):
        rows = order[start:start + BATCH_SIZE]
        yield x[rows], y[rows]


def random_data(batches=8, seed=0):
    """Images and labels for `batches` batches of 64 from torch's normal and uniform
    generators: what a step costs does not depend on the pixels."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH_SIZE * batches, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (BATCH_SIZE * batches,), generator=generator)
    return x, y


def train_steps(model, optimizer, batch_iterator, on_step=None, tracer_for_step=None):
    """One optimizer step per batch, then `tracer.step(loss, batch)` when `tracer_for_step(i)`
    returns a `twinrun.torch.Tracer` for step i, then `on_step(loss)`."""
    loss_function = nn.CrossEntropyLoss()
    model.train()
    for i, (bx, by) in enumerate(batch_iterator):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(model(bx), by)
        loss.backward()
        optimizer.step()
        tracer = tracer_for_step(i) if tracer_for_step is not None else None
        if tracer is not None:
            tracer.step(loss, (bx, by))
        if on_step is not None:
            on_step(loss)


def build(seed, device="cpu"):
    """The model and its Adam optimizer, initialised from torch's generator seeded by `seed`."""
    torch.manual_seed(seed)
    model = SeedCNN().to(device)
    return model, torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)


def random_training(seed=0):
    """`build(seed)` and `random_data()`: the model, optimizer, images and labels that the
    one-process benchmarks (`bench/torch_*.py`) train."""
    model, optimizer = build(seed)
    return (model, optimizer, *random_data())


def step_on(model, optimizer, x, y, step):
    """One optimizer step on batch `step % 8` of `random_data()`; returns the loss and the
    batch."""
    part = slice(BATCH_SIZE * (step % 8), BATCH_SIZE * (step % 8 + 1))
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x[part]), y[part])
    loss.backward()
    optimizer.step()
    return loss, (x[part], y[part])
