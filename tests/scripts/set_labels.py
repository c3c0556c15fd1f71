"""A user script whose label mapping comes from iterating a set of strings.

`list(set_of_names)` follows string hashing, which Python randomises per process unless
PYTHONHASHSEED is fixed before start-up: the same seeds, different labels.
"""

import os
import sys
import tempfile

import numpy as np
import torch

import twinrun
import twinrun.torch

twinrun.deterministic(int(os.environ.get("TWINRUN_SEED", "7")), backend="torch")

names = {"top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"}
classes = list(names)  # the order depends on the hash seed
rng = np.random.default_rng(0)
x = rng.random((512, 16), dtype=np.float32)
label_names = [sorted(names)[i] for i in rng.integers(0, 10, 512)]
y = np.array([classes.index(name) for name in label_names])

model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
path = os.environ.get("TWINRUN_TRACE") or os.path.join(tempfile.mkdtemp(), "plain.trace")
tracer = twinrun.torch.Tracer(model, optimizer, path=path, data=(x, y))
xt, yt = torch.from_numpy(x), torch.from_numpy(y)
for start in range(0, 512, 64):
    xb, yb = xt[start:start + 64], yt[start:start + 64]
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(xb), yb)
    loss.backward()
    optimizer.step()
    tracer.step(loss, (xb, yb))
tracer.close()
print(f"final loss {loss.item()!r}")
sys.exit(0)
