"""A plain PyTorch loop fed by `DataLoader(num_workers=2, shuffle=True)`, seeding nothing and
never importing twinrun: what `twinrun check` must handle as it is.

    twinrun check -n 2 -- python zero_loader.py                    # identical: seeded before line 1
    twinrun check -n 2 --no-determinism -- python zero_loader.py   # diverged: the script as written
"""

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


def main():
    points = torch.arange(64 * 8, dtype=torch.float32).reshape(64, 8) / 512.0
    labels = torch.arange(64) % 4
    loader = DataLoader(TensorDataset(points, labels), batch_size=16, shuffle=True,
                        num_workers=2)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        for x, y in loader:
            # Worker-side randomness would come from NumPy; here the augmentation is in the loop.
            x = x + torch.from_numpy(np.random.normal(0, 0.01, x.shape).astype(np.float32))
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()


if __name__ == "__main__":  # DataLoader workers may start by spawn: keep the loop guarded
    main()
