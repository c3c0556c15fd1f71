"""A tiny PyTorch training of two epochs whose bits depend on the intra-op thread count, with
per-epoch weight snapshots: the reference and tolerance tests record it with one thread count
and check it with another.

As in torch_matmul.py, the batch size is picked at run time: the first candidate whose first
gradients differ between 1 and 2 threads (which sums a CPU splits across
threads depends on the CPU and its BLAS). Every run searches the same way, so all of them train
the same shape.
"""

import os
import sys

import torch

import twinrun

# Planted pitfall: `twinrun check` prints lint's finding for this line above the verdict.
os.environ["PYTHONHASHSEED"] = "0"

CANDIDATE_BATCHES = (256, 2048)
EPOCHS, STEPS_PER_EPOCH = 2, 3


def build(batch):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1024, generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 10))
    return x, y, model, torch.optim.Adam(model.parameters(), lr=1e-3)


def first_gradients(batch, threads):
    # Gradients, not an optimizer step: twinrun's zero-change hooks trace every optimizer
    # step, and this search is no part of the training.
    torch.set_num_threads(threads)
    with torch.random.fork_rng():  # leaves the global generator as the training finds it
        x, y, model, _ = build(batch)
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return [p.grad for p in model.parameters()]


def thread_sensitive_batch(pinned_threads):
    try:
        for batch in CANDIDATE_BATCHES:
            one, two = first_gradients(batch, 1), first_gradients(batch, 2)
            if any(not torch.equal(a, b) for a, b in zip(one, two)):
                return batch
        print("torch_epochs: on this CPU no candidate batch gives other bits with 1 than with 2 "
              "threads", file=sys.stderr)
        return CANDIDATE_BATCHES[0]
    finally:
        torch.set_num_threads(pinned_threads)


report = twinrun.deterministic(backend="torch")  # seed and threads from the launcher
x, y, model, optimizer = build(thread_sensitive_batch(report.threads["intra_op"]))
with twinrun.torch.Tracer(model, optimizer) as tracer:
    for epoch in range(EPOCHS):
        for step in range(STEPS_PER_EPOCH):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            tracer.step(loss, (x, y))
        tracer.epoch_end({"loss": float(loss)})
