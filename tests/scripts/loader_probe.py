"""Digests of what a `DataLoader` hands out, under several settings, in one process.

    python loader_probe.py '[{"determinism": true, "draws": 5}, ...]'

Each setting calls `twinrun.deterministic(3, determinism=...)` (which seeds everything again),
draws `draws` numbers from torch's global generator (as a model's initialisers would), makes a
`DataLoader(num_workers=2, shuffle=True)` whose workers add NumPy noise, and reads an epoch.
Optional keys: `shuffle` (the `shuffle` seed, as a study varying `order` passes it),
`reseed` (a worker_init_fn that reseeds NumPy from the OS), `generator` (a seed for a
generator passed by the user), `in_order` (passed to the loader). Prints one JSON line: per
setting the digest of the batches, the loader's `in_order`, and whether it has a generator.
"""

import hashlib
import json
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import twinrun


class Noisy(Dataset):
    def __len__(self):
        return 24

    def __getitem__(self, i):
        return torch.tensor([i + np.random.normal()], dtype=torch.float64)


def reseed_from_os(worker_id):
    np.random.seed()


def probe(setting):
    seeds = {"shuffle": setting["shuffle"]} if "shuffle" in setting else None
    twinrun.deterministic(3, backend="torch", determinism=setting.get("determinism", True),
                          seeds=seeds)
    torch.rand(setting.get("draws", 0))
    options = {}
    if "generator" in setting:
        options["generator"] = torch.Generator().manual_seed(setting["generator"])
    if "in_order" in setting:
        options["in_order"] = setting["in_order"]
    loader = DataLoader(Noisy(), batch_size=4, num_workers=2, shuffle=True,
                        worker_init_fn=reseed_from_os if setting.get("reseed") else None,
                        **options)
    digest = hashlib.sha256()
    for batch in loader:
        digest.update(batch.numpy().tobytes())
    return {"digest": digest.hexdigest()[:16], "in_order": getattr(loader, "in_order", None),
            "has_generator": loader.generator is not None}


if __name__ == "__main__":
    print(json.dumps([probe(setting) for setting in json.loads(sys.argv[1])]))
