"""What checking a notebook costs over checking a script of the same code (kernel start-up).

    python bench/notebook.py --rounds 3        # printed as JSON

The same tiny PyTorch training (a 4-8-2 network, 16 SGD steps, one thread), once as a script
and once as a notebook whose cells hold the script's code, measured two ways:
- replica: one fresh process as `twinrun check` starts it, to its end: the hooked script
  (`python -m twinrun.programs.hooked train.py`) against the notebook program
  (`python -m twinrun.programs.notebook train.ipynb`: nbclient, a fresh ipykernel, the hooks
  sent before the first cell, the executed notebook saved);
- check: the whole command, `twinrun check -n 2 --threads 1` of each, to its verdict.
The training is the same, so the difference is what a notebook adds: starting a kernel, the
messages per cell, saving the executed notebook. The variants are interleaved (script,
notebook, notebook, script, ...) and the 1-minute load average is sampled beside each
measurement: this machine is shared, so the figures are under that load, not a quiet machine's.
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
TWINRUN = str(Path(PYTHON).parent / "twinrun")

CELLS = [
    "import numpy as np\nimport torch\ntorch.manual_seed(0)\ntorch.set_num_threads(1)",
    "x = torch.linspace(-1, 1, 256 * 4).reshape(256, 4)\ny = (x.sum(dim=1) > 0).long()",
    "model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))\n"
    "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    "for start in range(0, 256, 16):\n"
    "    optimizer.zero_grad()\n"
    "    loss = torch.nn.functional.cross_entropy(model(x[start:start + 16]), "
    "y[start:start + 16])\n"
    "    loss.backward()\n"
    "    optimizer.step()\n"
    "print(float(loss))",
]


def write_inputs(folder):
    import nbformat
    import nbformat.v4 as v4

    script = Path(folder) / "train.py"
    script.write_text("\n".join(CELLS) + "\n")
    notebook = Path(folder) / "train.ipynb"
    nbformat.write(v4.new_notebook(cells=[v4.new_code_cell(c) for c in CELLS]), str(notebook))
    return script, notebook


def load():
    return os.getloadavg()[0]


def timed(command, env, cwd):
    began = time.perf_counter()
    completed = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - began
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{completed.stderr[-2000:]}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="twinrun-bench-notebook-"))
    script, notebook = write_inputs(folder)
    # What `twinrun check --threads 1` gives a replica of a script or notebook (every backend
    # prepared, KERAS_BACKEND left to the script).
    os.environ.pop("KERAS_BACKEND", None)
    env = child_environment(None, seeds=derive_seeds(0), threads=1,
                            extra={"TWINRUN_STORE": str(folder / "store")})

    def replica(kind, k):
        trace = folder / f"{kind}-{k}.trace"
        target = ["-m", "twinrun.programs.hooked", script] if kind == "script" else \
            ["-m", "twinrun.programs.notebook", notebook]
        return timed([PYTHON, *target], dict(env, TWINRUN_TRACE=str(trace)), folder)

    def check(kind, k):
        target = ["--", "python", script] if kind == "script" else [notebook]
        return timed([TWINRUN, "check", "-n", "2", "--threads", "1", *target], env, folder)

    results = {}
    for name, measure in (("replica", replica), ("check", check)):
        times = {"script": [], "notebook": []}
        loads = []
        for k in range(args.rounds):
            order = ("script", "notebook") if k % 2 == 0 else ("notebook", "script")
            for kind in order:
                loads.append(load())
                times[kind].append(measure(kind, k))
        pairs = [n - s for s, n in zip(times["script"], times["notebook"])]
        results[name] = {
            "script_s": [round(t, 2) for t in times["script"]],
            "notebook_s": [round(t, 2) for t in times["notebook"]],
            "median_script_s": round(statistics.median(times["script"]), 2),
            "median_notebook_s": round(statistics.median(times["notebook"]), 2),
            "median_added_s": round(statistics.median(pairs), 2),
            "load_1min": [round(v, 2) for v in loads]}
    results["rounds"] = args.rounds
    results["cpus"] = os.cpu_count()
    results["note"] = ("interleaved on a shared machine; the load average beside each run says "
                       "how busy it was")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
