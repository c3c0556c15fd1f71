"""A plain PyTorch training whose bits depend on the intra-op thread count.

`twinrun check --threads 1,2` runs it with a different intra-op thread count per replica.
Which sums a CPU splits across threads depends on the CPU and its BLAS (on an AMD EPYC, 1- and
2-thread matrix products give the same bits), so the script picks its batch size at run time:
the first candidate whose first training step gives other weights with 1 than with 2 threads.
Every replica searches the same way, so all of them train the same shape.
Extra arguments make misbehaving replicas for the launcher's error paths:
    --fail-replica R    replica R exits with status 3 after two steps
    --hang-replica R    replica R sleeps forever after two steps
    --short-replica R   replica R trains two steps fewer
    --steps N           optimizer steps (default 6)
    --pid-dir DIR       each replica writes its process id to DIR/replica-R.pid first
"""

import argparse
import os
import sys
import time

import torch

import twinrun

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=6)
parser.add_argument("--fail-replica")
parser.add_argument("--hang-replica")
parser.add_argument("--short-replica")
parser.add_argument("--pid-dir")
args = parser.parse_args()
replica = os.environ.get("TWINRUN_REPLICA")
if args.pid_dir:
    with open(os.path.join(args.pid_dir, f"replica-{replica}.pid"), "w") as pid_file:
        pid_file.write(str(os.getpid()))

CANDIDATE_BATCHES = (256, 2048)


def build(batch):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1024, generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 10))
    return x, y, model, torch.optim.Adam(model.parameters(), lr=1e-3)


def weights_after_one_step(batch, threads):
    torch.set_num_threads(threads)
    with torch.random.fork_rng():  # leaves the global generator as the training finds it
        x, y, model, optimizer = build(batch)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return [p.detach() for p in model.parameters()]


def thread_sensitive_batch(pinned_threads):
    try:
        for batch in CANDIDATE_BATCHES:
            one, two = weights_after_one_step(batch, 1), weights_after_one_step(batch, 2)
            if any(not torch.equal(a, b) for a, b in zip(one, two)):
                return batch
        print("torch_matmul: on this CPU no candidate batch gives other bits with 1 than with 2 "
              "threads", file=sys.stderr)
        return CANDIDATE_BATCHES[0]
    finally:
        torch.set_num_threads(pinned_threads)


report = twinrun.deterministic(backend="torch")  # seed and threads from `twinrun check`
x, y, model, optimizer = build(thread_sensitive_batch(report.threads["intra_op"]))
steps = args.steps - (2 if replica == args.short_replica else 0)
with twinrun.torch.Tracer(model, optimizer) as tracer:
    for step in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        tracer.step(loss, (x, y))
        if step == 1 and replica == args.fail_replica:
            print("boom: replica failed on purpose", file=sys.stderr)
            sys.exit(3)
        if step == 1 and replica == args.hang_replica:
            time.sleep(3600)
