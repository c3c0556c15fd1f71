"""Time to verdict, what lockstep costs, and the comparing parent's memory (`--only verdict`).

    python bench/run.py --only verdict       # all three, results in bench/results/verdict.json
    python bench/verdict.py memory --steps 150000    # the memory part alone, printed

1. Time to verdict: `twinrun check --preset full --backend torch --threads 1,2` (a divergence
   planted at step 0: on this CPU, 1- and 2-thread convolutions give other bits at the first
   step), by default (lockstep), timed from the command's start to its exit; the parent's own
   peak RSS (VmHWM) is read as it exits.
2. What lockstep costs: an identical check of the quick preset (--epochs E), interleaved,
   as lockstep side by side (the default), side by side without lockstep, and one after
   another without lockstep (the old default).
3. The comparing parent's peak memory for a full-length comparison: two SYNTHETIC traces of
   150,000 steps with the seed CNN's 52 fingerprinted tensors (Keras on torch: 20 variables,
   Adam's 2 x 14 slots, its iteration and learning rate, and 2 generator states), written with
   the real `TraceWriter`. Replica 0's trace is read whole first (the worst case: replicas one
   after another), then replica 1's grows an epoch (750 steps) at a time while the real
   `TraceReader` and `Comparison` read and compare it; then the verdict's own reads
   (`first_divergence`, `loss_growth`, the last records). Measured in a fresh process:
   VmHWM. The same traces held as the reader used to hold them (every record a dict) are
   measured the same way, as the baseline.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
TWINRUN = str(Path(PYTHON).with_name("twinrun"))
HERE = Path(__file__).resolve()
# Keras on torch, the seed CNN with Adam: the header of a real `--backend torch` trace.
SEED_CNN_TENSORS = 52
STEPS_PER_EPOCH = 750


def vm_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    return None


# -- 1. time to verdict -------------------------------------------------------------------------

# Runs `twinrun check ...` in this interpreter and reports the parent's own peak RSS; the
# replicas are its children, so their memory is not in it.
CHECK_WITH_PEAK = """
import sys
from twinrun.cli import main
try:
    main()
finally:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("PARENT_VMHWM_KIB", line.split()[1], file=sys.stderr, flush=True)
"""


def timed_check(args, env=None):
    """Run `twinrun check --json ARGS`; return (verdict dict or None, wall s, parent MB, stderr)."""
    with tempfile.TemporaryDirectory(prefix="twinrun-bench-verdict-") as store:
        command = [PYTHON, "-c", CHECK_WITH_PEAK, "check", "--json", "--store", store, *args]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600,
                              stdin=subprocess.DEVNULL, env=env)
        wall = time.perf_counter() - started
    peak = None
    for line in done.stderr.splitlines():
        if line.startswith("PARENT_VMHWM_KIB"):
            peak = int(line.split()[1]) / 1024
    try:
        verdict = json.loads(done.stdout)
    except ValueError:
        verdict = None
    return verdict, wall, peak, done.stderr


def time_to_verdict(rounds):
    """The planted step-0 divergence of the full preset, checked by default (lockstep)."""
    args = ["--workload", "fashion-cnn", "--preset", "full", "--backend", "torch",
            "--threads", "1,2", "--no-localize"]
    walls, peaks, runs = [], [], []
    for _ in range(rounds):
        verdict, wall, peak, stderr = timed_check(args)
        if verdict is None:
            return {"error": stderr.strip()[-500:]}
        walls.append(wall)
        peaks.append(peak)
        runs.append({"verdict": verdict["verdict"],
                     "divergence_step": (verdict["first_divergence"] or {}).get("step"),
                     "steps_trained": [r["steps"] for r in verdict["replicas"]],
                     "stopped_early": [r["stopped_early"] for r in verdict["replicas"]]})
    return {"command": "twinrun check " + " ".join(args), "wall_s": walls,
            "parent_peak_mb": peaks, "runs": runs}


# -- 2. what lockstep costs ---------------------------------------------------------------------

LOCKSTEP_VARIANTS = {
    "lockstep, side by side (default)": [],
    "no lockstep, side by side": ["--no-lockstep", "--jobs", "2"],
    "no lockstep, one after another (old default)": ["--no-lockstep", "--jobs", "1"],
}


def lockstep_cost(rounds, epochs, preset="quick"):
    """An identical check of `preset`, each way, interleaved (A, B, C, C, B, A, ...)."""
    args = ["--workload", "fashion-cnn", "--preset", preset, "--backend", "torch",
            "--epochs", str(epochs)]
    names = list(LOCKSTEP_VARIANTS)
    walls = {name: [] for name in names}
    loads = []
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            verdict, wall, _, stderr = timed_check(args + LOCKSTEP_VARIANTS[name])
            if verdict is None or verdict["verdict"] != "identical":
                return {"error": f"{name}: " + (stderr.strip()[-300:] if verdict is None
                                                else f"verdict {verdict['verdict']}")}
            walls[name].append(wall)
            loads.append(os.getloadavg()[0])
    return {"command": "twinrun check " + " ".join(args), "wall_s": walls,
            "steps": verdict["steps_compared"], "load_average_1min": loads}


# -- 3. the comparing parent's memory -----------------------------------------------------------

def write_synthetic(path, steps, tensors, diverge_at=None, seed=0):
    """A trace of `steps` steps with `tensors` tensors; from `diverge_at` on, every step's
    first tensor and loss differ (as after a real divergence)."""
    import numpy as np

    from twinrun.trace import TraceWriter

    rng = np.random.default_rng(seed)
    writer = TraceWriter(path)
    writer.header([f"tensor{i}" for i in range(tensors)], [[64]] * tensors, backend="torch",
                  framework="keras", synthetic=True)
    chunk = 1000
    for first in range(0, steps, chunk):
        count = min(chunk, steps - first)
        words = rng.integers(0, 2**32, size=(count, tensors, 3), dtype=np.uint64)
        losses = rng.random(count)
        batches = rng.integers(0, 2**63, size=count)
        for j in range(count):
            step = first + j
            rows = words[j].tolist()
            loss = float(losses[j])
            if diverge_at is not None and step >= diverge_at:
                rows[0][1] ^= 1
                loss += 1e-7
            writer.step(step, step // STEPS_PER_EPOCH, f"{int(batches[j]):032x}", loss, rows,
                        loss_running_mean=loss)
    writer.write({"kind": "end", "steps": steps})
    writer.close()


def packed_child(reference_path, other_path):
    """In a fresh process: the real reader and comparison, replica 1 growing an epoch at a time."""
    from twinrun.checks.causes import loss_growth
    from twinrun.checks.verdict import Comparison, first_divergence
    from twinrun.fingerprint import words_to_hex
    from twinrun.trace import TraceReader

    base = vm_kib("VmRSS:")
    started = time.perf_counter()
    reference = TraceReader(reference_path)
    reference.advance()
    growing_path = Path(other_path).with_suffix(".growing")
    growing = TraceReader(growing_path)
    comparison = Comparison([reference.trace, growing.trace])
    with open(other_path, "rb") as source, open(growing_path, "wb") as sink:
        block = []
        for line in source:
            block.append(line)
            if len(block) == STEPS_PER_EPOCH:
                sink.writelines(block)
                sink.flush()
                block = []
                growing.advance()
                comparison.advance()
        sink.writelines(block)
    growing.advance()
    comparison.advance(final=True)
    traces = [reference.trace, growing.trace]
    divergence = first_divergence(traces)
    growth = loss_growth(traces, divergence.step) if divergence else []
    last = [words_to_hex(t.steps[-1]["variables"]) for t in traces]
    seconds = time.perf_counter() - started
    os.unlink(growing_path)
    return {"steps": [len(t.steps) for t in traces],
            "divergence_step": divergence.step if divergence else None,
            "loss_growth_rows": len(growth), "last_fingerprints_differ": last[0] != last[1],
            "packed_mb": [t.steps.nbytes() / 2**20 for t in traces],
            "vmhwm_mb": vm_kib("VmHWM:") / 1024, "imports_rss_mb": base / 1024,
            "seconds": seconds}


def dicts_child(reference_path, other_path):
    """In a fresh process: both traces held as the reader used to (every record a dict)."""
    base = vm_kib("VmRSS:")
    started = time.perf_counter()
    held = []
    for path in (reference_path, other_path):
        with open(path, "rb") as handle:
            held.append([json.loads(line) for line in handle])
    return {"records": [len(h) for h in held], "vmhwm_mb": vm_kib("VmHWM:") / 1024,
            "imports_rss_mb": base / 1024, "seconds": time.perf_counter() - started}


def parent_memory(steps, tensors=SEED_CNN_TENSORS, with_dicts=True):
    """Peak RSS of a fresh process comparing two synthetic full-length traces (MB)."""
    results = {"steps": steps, "tensors": tensors, "synthetic": True}
    with tempfile.TemporaryDirectory(prefix="twinrun-bench-memory-") as folder:
        reference = Path(folder) / "replica-0.trace"
        started = time.perf_counter()
        write_synthetic(reference, steps, tensors)
        results["write_s"] = time.perf_counter() - started
        results["trace_mb"] = reference.stat().st_size / 1e6
        for label, diverge_at in (("identical", None), ("diverged at step 0", 0)):
            other = Path(folder) / f"replica-1-{diverge_at}.trace"
            if diverge_at is None:
                shutil.copyfile(reference, other)
            else:
                write_synthetic(other, steps, tensors, diverge_at=diverge_at)
            modes = ["packed"] + (["dicts"] if with_dicts and diverge_at is None else [])
            for mode in modes:
                done = subprocess.run([PYTHON, str(HERE), f"{mode}-child", str(reference),
                                       str(other)], capture_output=True, text=True,
                                      timeout=3600)
                if done.returncode:
                    return {"error": f"{mode}: {done.stderr.strip()[-500:]}"}
                results[f"{mode}, {label}"] = json.loads(done.stdout.strip().splitlines()[-1])
            other.unlink()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["memory", "packed-child", "dicts-child"])
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--no-dicts", action="store_true")
    args = parser.parse_args()
    if args.mode == "packed-child":
        print(json.dumps(packed_child(*args.paths)))
    elif args.mode == "dicts-child":
        print(json.dumps(dicts_child(*args.paths)))
    else:
        print(json.dumps(parent_memory(args.steps, with_dicts=not args.no_dicts), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
