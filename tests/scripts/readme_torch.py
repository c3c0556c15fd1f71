"""The README's plain-PyTorch example as a user writes it: `import twinrun`, no seed, no path.

Runs as a plain `python readme_torch.py` (the default seed; the tracer records nothing and says
so) and under `twinrun check -- python readme_torch.py` (the check's seed; the tracer writes
the replica's trace). Prints one JSON line: the seed used, the steps taken and the last loss.
"""

import json

import torch

import twinrun

report = twinrun.deterministic(backend="torch")
x, y = torch.randn(256, 20), torch.randint(0, 3, (256,))
loader = [(x[i:i + 32], y[i:i + 32]) for i in range(0, len(x), 32)]
model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = torch.nn.CrossEntropyLoss()

tracer = twinrun.torch.Tracer(model, optimizer, data=(x, y))
steps = 0
for xb, yb in loader:
    optimizer.zero_grad(); loss = loss_fn(model(xb), yb); loss.backward(); optimizer.step()
    tracer.step(loss, (xb, yb))
    steps += 1
tracer.close()
print(json.dumps({"seed": report.seed, "steps": steps, "loss": loss.item()}))
