"""A PyTorch loop fed by `DataLoader(num_workers=2, shuffle=True)` whose workers augment with NumPy.

Each item gets NumPy noise drawn in the worker process (random augmentation), so a batch's
bits depend on how each worker's NumPy generator was seeded, and its order on the sampler.

    twinrun check -n 2 -- python loader_augment.py                    # identical
    twinrun check -n 2 -- python loader_augment.py --reseed-workers   # identical
    twinrun check -n 2 --no-determinism -- python loader_augment.py --reseed-workers  # diverged
    twinrun variance --runs 2 --vary order -- python loader_augment.py  # the order varies

`--reseed-workers` adds the `worker_init_fn` often suggested in pytorch/pytorch#5059 to give
each worker "fresh" randomness, `np.random.seed()`, which reseeds from the OS and so undoes
torch's own worker seeding. With determinism on, twinrun seeds the worker again after it.
"""

import sys

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import twinrun
import twinrun.torch


class NoisyPoints(Dataset):
    """Fixed points and labels; each item gets fresh NumPy noise (the augmentation)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        noise = np.random.normal(0.0, 0.1, size=self.x.shape[1]).astype(np.float32)
        return torch.from_numpy(self.x[i] + noise), int(self.y[i])


def reseed_from_os(worker_id):
    np.random.seed()  # "different randomness in every worker", and in every run


def main():
    twinrun.deterministic(backend="torch")  # the seed comes from `twinrun check`
    data = np.random.default_rng(0)
    x = data.random((160, 8), dtype=np.float32)
    y = data.integers(0, 3, 160)
    x, y, x_test, y_test = x[:128], y[:128], torch.from_numpy(x[128:]), torch.from_numpy(y[128:])
    init = reseed_from_os if "--reseed-workers" in sys.argv else None
    loader = DataLoader(NoisyPoints(x, y), batch_size=32, num_workers=2, shuffle=True,
                        worker_init_fn=init)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with twinrun.torch.Tracer(model, optimizer) as tracer:
        for epoch in range(2):
            for xb, yb in loader:
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
                loss.backward()
                optimizer.step()
                tracer.step(loss, (xb, yb))
    with torch.no_grad():  # reported to a study (`twinrun variance`); kept nowhere otherwise
        twinrun.log_metrics(test_loss=torch.nn.functional.cross_entropy(model(x_test),
                                                                        y_test).item())


if __name__ == "__main__":
    main()
