"""A plain PyTorch training for `twinrun variance -- python study_torch.py`: init and order on
their own generators, from `twinrun.seeds()`; no dropout, so it never reads the `dropout` seed.

Reports its test accuracy and loss with `twinrun.log_metrics`; traces with a
`twinrun.torch.Tracer`, so the study compares its final weights. A second of training on CPU.
"""

import torch

import twinrun

twinrun.deterministic(backend="torch")
seeds = twinrun.seeds()
data = torch.Generator().manual_seed(1234)  # the data stay the same in every run
x = torch.randn(512, 10, generator=data)
y = (x[:, :3].sum(dim=1) + 0.5 * torch.randn(512, generator=data) > 0).long()
x_test, y_test, x, y = x[:128], y[:128], x[128:], y[128:]

torch.manual_seed(seeds["init"])  # weight initialisation
model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
order = torch.Generator().manual_seed(seeds["order"])  # the order of training batches
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32,
                                     shuffle=True, generator=order)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loss_fn = torch.nn.CrossEntropyLoss()
tracer = twinrun.torch.Tracer(model, optimizer)
for epoch in range(2):
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        tracer.step(loss, (xb, yb))
tracer.close()
with torch.no_grad():
    logits = model(x_test)
twinrun.log_metrics(test_accuracy=(logits.argmax(1) == y_test).float().mean().item(),
                    test_loss=loss_fn(logits, y_test).item())
