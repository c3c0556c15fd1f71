"""The seed CNN in plain PyTorch on Fashion-MNIST, on the GPU when there is one: the plain-PyTorch
path of `bench/gpu_check.sh`, run under `twinrun check` (traced) or alone (untraced).

`twinrun.deterministic(backend="torch")` takes its seed and its on/off switch from the check
that launched it; `twinrun.torch.Tracer` records every step (weights, BatchNorm statistics,
Adam's moments and step counts, the CPU and CUDA generator states). After the last step it
prints the median milliseconds per step, so the same script measures the overhead of
determinism (on against off) and of the trace (under check against alone).

Usage: python bench/gpu_native_torch.py [--steps N]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import twinrun
import twinrun.torch

sys.path.insert(0, str(Path(__file__).parent))
from native_torch_cnn import build, batches  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=600)
args = parser.parse_args()

report = twinrun.deterministic(backend="torch")
device = "cuda" if torch.cuda.is_available() else "cpu"
from twinrun.workloads import fashion_mnist  # noqa: E402

data = fashion_mnist.load()
x = torch.from_numpy(data.x_train[:, None].astype("float32") / 255.0).to(device)
y = torch.from_numpy(data.y_train.astype("int64")).to(device)
model, optimizer = build(report.seeds["init"], device)
loss_function = torch.nn.CrossEntropyLoss()
times = []
with twinrun.torch.Tracer(model, optimizer) as tracer:
    model.train()
    for step, (bx, by) in enumerate(batches(x, y, report.seeds["shuffle"])):
        if step == args.steps:
            break
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(model(bx), by)
        loss.backward()
        optimizer.step()
        tracer.step(loss, (bx, by))
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    warm = times[20:] or times
    ms = 1000 * statistics.median(warm)
    tracer.epoch_end({"loss": loss.item(), "ms_per_step": ms})
print(f"{device}: {len(times)} steps, median {ms:.3f} ms/step, final loss {loss.item():.6f}",
      flush=True)
