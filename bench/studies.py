"""What `--jobs 2` gains on this machine: a study of eight quick runs, two at a time against one
at a time (`python bench/run.py --only studies`).

    python bench/run.py --only studies          # results in bench/results/studies.json
    python bench/studies.py --rounds 1 --epochs 2    # a shorter pass, printed as JSON

Each measurement is `twinrun variance --runs 8 --vary init --preset quick --jobs J` in a fresh
store (so every one runs all eight runs, the same eight: same seeds), timed from the command's
start to its exit. The variants are interleaved (1, 2, 2, 1, ...) and each pair gives a
throughput ratio, runs per second with `--jobs 2` over runs per second one at a time (= the
wall time of `--jobs 1` over that of `--jobs 2`). The 1-minute load average is sampled every
5 s during each measurement: other processes on this shared machine take cores too.
A run's thread pools keep their default size under `--jobs 2` (thread counts change the bits),
so two runs share the cores; both variants must give the same statistics (checked).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PYTHON = sys.executable
TWINRUN = str(Path(PYTHON).with_name("twinrun"))
RUNS = 8
JOBS = (1, 2)


def _load_sampler(samples, stop):
    while not stop.wait(5.0):
        try:
            samples.append(os.getloadavg()[0])
        except OSError:
            return


def one_study(jobs, runs=RUNS, epochs=None, data_dir=None, timeout=7200):
    """Run one study in a fresh store; return its wall time, load and mean metric."""
    with tempfile.TemporaryDirectory(prefix="twinrun-bench-studies-") as folder:
        command = [TWINRUN, "variance", "--runs", str(runs), "--vary", "init", "--preset",
                   "quick", "--jobs", str(jobs), "--store", os.path.join(folder, "store"),
                   "--json"]
        if epochs:
            command += ["--set", f"epochs={epochs}"]
        if data_dir:
            command += ["--data-dir", data_dir]
        samples, stop = [], threading.Event()
        sampler = threading.Thread(target=_load_sampler, args=(samples, stop), daemon=True)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        sampler.start()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return {"error": f"--jobs {jobs}: timed out after {timeout} s"}
        finally:
            stop.set()
        wall = time.perf_counter() - started
        if done.returncode:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            return {"error": f"--jobs {jobs}: exit {done.returncode}: {tail}"}
        result = json.loads(done.stdout)
        return {"jobs": jobs, "wall_s": wall, "runs": result["finished"],
                "load_before": load_before,
                "load_during": statistics.mean(samples) if samples else load_before,
                "mean": result["sources"]["init"]["mean"], "sd": result["sources"]["init"]["sd"]}


def throughput(rounds=1, runs=RUNS, epochs=None, data_dir=None, say=print):
    """Interleaved measurements of both variants; the pairwise throughput ratios.

    Returns `{"measurements", "ratios", "same_results", ...}` or `{"error": ...}`.
    """
    measurements = {jobs: [] for jobs in JOBS}
    for index in range(rounds):
        order = JOBS if index % 2 == 0 else tuple(reversed(JOBS))
        for jobs in order:
            found = one_study(jobs, runs, epochs, data_dir)
            if found.get("error"):
                return {"error": found["error"], "measurements": measurements}
            say(f"  --jobs {jobs}: {found['runs']} runs in {found['wall_s']:.0f} s "
                f"(load average {found['load_before']:.1f} before, "
                f"{found['load_during']:.1f} during)")
            measurements[jobs].append(found)
    ratios = [one["wall_s"] / two["wall_s"] for one, two in zip(measurements[1], measurements[2])]
    results = {(m["mean"], m["sd"]) for found in measurements.values() for m in found}
    return {"runs": runs, "epochs": epochs, "rounds": rounds,
            "measurements": {f"jobs={jobs}": found for jobs, found in measurements.items()},
            "ratios": ratios, "same_results": len(results) == 1}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="pairs of measurements")
    parser.add_argument("--runs", type=int, default=RUNS, help="runs per study")
    parser.add_argument("--epochs", type=int, default=None,
                        help="shorten each run (--set epochs=N); default: the quick preset's")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    result = throughput(args.rounds, args.runs, args.epochs, args.data_dir,
                        say=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(result, indent=1))
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
