"""What the zero-change hooks cost against the explicit tracer, per training step
(`python bench/run.py --only hooks`).

    python bench/hooks.py --rounds 3        # printed as JSON

The same small training, in two forms, each in a fresh process with a trace being written and
one thread (so the other processes on this shared machine disturb it less):
- explicit: the script imports twinrun, calls `twinrun.deterministic()` and adds
  `twinrun.keras.Trace()` to fit (Keras, TensorFlow backend) or calls a
  `twinrun.torch.Tracer` after each step (PyTorch);
- hooked: the same script without any twinrun line, run as `twinrun check` runs it
  (`python -m twinrun.programs.hooked script.py`).
The script times its own steps after a warm-up (start-up and compilation excluded). Both forms
trace every step; the hooked one also digests each batch on the host, keeps the forward-nesting
depth (torch) and watches the global generators. The variants are interleaved (explicit,
hooked, hooked, explicit, ...), medians and the median pairwise ratio are reported, and the
1-minute load average is sampled, since this machine is shared.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twinrun.launch import child_environment
from twinrun.seeds import derive_seeds

PYTHON = sys.executable
WARMUP, STEPS = 16, 160  # steps: 64 per epoch of 4096 rows, batch 64

KERAS = '''
import json, sys, time
import keras, numpy as np
{explicit_import}
x = np.linspace(-1, 1, 4096 * 32, dtype="float32").reshape(4096, 32)
y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(128, activation="relu"),
                          keras.layers.Dense(128, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
marks = {{}}
class Clock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = 0
    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps in ({warmup}, {total}):
            marks[self.steps] = time.perf_counter()
model.fit(x, y, batch_size=64, epochs={epochs}, verbose=0, callbacks=[Clock(){explicit_callback}])
print(json.dumps({{"step_s": (marks[{total}] - marks[{warmup}]) / ({total} - {warmup})}}))
'''

TORCH = '''
import json, time
import torch
{explicit_import}
x = torch.linspace(-1, 1, 4096 * 32).reshape(4096, 32)
y = (x.sum(dim=1, keepdim=True) > 0).float()
model = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                            torch.nn.ReLU(), torch.nn.Linear(128, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
{explicit_tracer}
step = 0
for epoch in range({epochs}):
    for start in range(0, 4096, 64):
        xb, yb = x[start:start + 64], y[start:start + 64]
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        optimizer.step()
        {explicit_step}
        step += 1
        if step == {warmup}:
            began = time.perf_counter()
ended = time.perf_counter()
print(json.dumps({{"step_s": (ended - began) / (step - {warmup})}}))
'''


def script(framework, explicit):
    epochs = -(-STEPS // 64)
    total = epochs * 64
    if framework == "keras":
        return KERAS.format(
            explicit_import="import twinrun, twinrun.keras\ntwinrun.deterministic()"
            if explicit else "", explicit_callback=", twinrun.keras.Trace()" if explicit else "",
            warmup=WARMUP, total=total, epochs=epochs)
    return TORCH.format(
        explicit_import="import twinrun, twinrun.torch\ntwinrun.deterministic(backend='torch')"
        if explicit else "",
        explicit_tracer="tracer = twinrun.torch.Tracer(model, optimizer)" if explicit else "",
        explicit_step="tracer.step(loss, (xb, yb))" if explicit else "pass",
        warmup=WARMUP, epochs=epochs)


def one_run(framework, explicit, folder, index):
    """One fresh process; its seconds per traced step."""
    path = Path(folder) / f"{framework}-{'explicit' if explicit else 'hooked'}.py"
    path.write_text(script(framework, explicit))
    trace = Path(folder) / f"{framework}-{index}-{explicit}.trace"
    # What `twinrun check --threads 1 --backend B` gives a replica.
    backend = "torch" if framework == "torch" else "tensorflow"
    env = child_environment(backend, seeds=derive_seeds(0), threads=1,
                            extra={"TWINRUN_TRACE": str(trace), "TWINRUN_SEED": "0"})
    command = [PYTHON, str(path)] if explicit else [PYTHON, "-m", "twinrun.programs.hooked",
                                                    str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode:
        return {"error": " | ".join(done.stderr.strip().splitlines()[-3:])}
    return json.loads(done.stdout.strip().splitlines()[-1])


def overhead(rounds=2, frameworks=("keras", "torch"), say=print):
    """Interleaved runs of both forms; per framework the medians and pairwise ratios
    (hooked over explicit step time)."""
    found = {}
    with tempfile.TemporaryDirectory(prefix="twinrun-bench-hooks-") as folder:
        for framework in frameworks:
            times = {"explicit": [], "hooked": []}
            loads = [os.getloadavg()[0]]
            for index in range(rounds):
                order = (True, False) if index % 2 == 0 else (False, True)
                for explicit in order:
                    result = one_run(framework, explicit, folder, index)
                    if result.get("error"):
                        return {"error": f"{framework}: {result['error']}"}
                    times["explicit" if explicit else "hooked"].append(result["step_s"])
                    loads.append(os.getloadavg()[0])
            ratios = [h / e for e, h in zip(times["explicit"], times["hooked"])]
            found[framework] = {
                "explicit_step_ms": [t * 1e3 for t in times["explicit"]],
                "hooked_step_ms": [t * 1e3 for t in times["hooked"]],
                "median_explicit_ms": statistics.median(times["explicit"]) * 1e3,
                "median_hooked_ms": statistics.median(times["hooked"]) * 1e3,
                "ratios": ratios, "median_ratio": statistics.median(ratios),
                "load_average": loads}
            say(f"  {framework}: explicit {found[framework]['median_explicit_ms']:.2f} ms/step, "
                f"hooked {found[framework]['median_hooked_ms']:.2f} ms/step, median ratio "
                f"{found[framework]['median_ratio']:.3f} (load average "
                f"{min(loads):.1f}-{max(loads):.1f})")
    return {"rounds": rounds, "warmup_steps": WARMUP, "frameworks": found}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs per framework")
    parser.add_argument("--frameworks", default="keras,torch")
    args = parser.parse_args()
    result = overhead(args.rounds, tuple(args.frameworks.split(",")),
                      say=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(result, indent=1))
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
