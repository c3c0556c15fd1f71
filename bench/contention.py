"""Why step times on this 2-core machine come in modes (TensorFlow at ~50 or ~100 ms/step, torch
up to 25x slower): controlled experiments on thread pools and competing processes.

Each condition is a fresh process (`bench/step_time.py`, determinism off, no trace) that
changes one thing; conditions are interleaved round by round, and every measurement records
how many cores this process and the others used meanwhile (this machine is shared).

    python bench/contention.py --framework tensorflow [--rounds 3]
    python bench/contention.py --framework native-torch --rounds 2

Writes `bench/results/contention_<framework>.json`. Conclusions: docs/performance.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import machine_load_now, run_environment, run_json  # noqa: E402

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

# name: (extra environment, command prefix, step_time options, start a competitor)
CONDITIONS = {
    "tensorflow": {
        "default": ({}, [], [], False),
        "one busy competitor process": ({}, [], [], True),
        "pinned to one core (taskset -c 0)": ({}, ["taskset", "-c", "0"], [], False),
        "TF pools 1 intra-op / 1 inter-op": (
            {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}, [], [], False),
        "TF pools 1/1 + busy competitor": (
            {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}, [], [], True),
        "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, [], [], False),
        "XLA on (jit_compile=True)": ({}, [], ["--jit-compile", "on"], False),
    },
    "native-torch": {
        "default (2 OpenMP threads)": ({}, [], [], False),
        "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, [], [], False),
        "one busy competitor process": ({}, [], [], True),
        "competitor + OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, [], [], True),
        "competitor + 1 thread (OMP_NUM_THREADS=1)": (ONE_THREAD, [], [], True),
    },
}
STEPS = {"tensorflow": ["--warmup", "10", "--steps", "20", "--blocks", "4"],
         "native-torch": ["--warmup", "6", "--steps", "10", "--blocks", "4"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=sorted(CONDITIONS), default="tensorflow")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out = BENCH / "results" / f"contention_{args.framework}.json"
    conditions = CONDITIONS[args.framework]
    results = {name: [] for name in conditions}
    for r in range(args.rounds):
        names = list(conditions) if r % 2 == 0 else list(reversed(conditions))
        for name in names:
            extra, prefix, options, competitor = conditions[name]
            env = run_environment(args.framework, False)
            env.pop("OMP_WAIT_POLICY", None)  # OpenMP's own default unless a condition sets it
            env.update(extra)
            busy = None
            if competitor:
                # One pure-Python busy loop: what another single-threaded test does to us.
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                result, wall = run_json(prefix + [
                    sys.executable, str(BENCH / "step_time.py"), "--framework", args.framework,
                    *STEPS[args.framework], *options], env=env)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            results[name].append(result)
            if "error" in result:
                print(f"round {r} {name}: FAILED {result['error']}", flush=True)
                continue
            others = result["load"]["others_cores"]
            print(f"round {r} {name:<38} {result['plain_ms']:6.1f} ms/step  blocks "
                  f"{[round(b['mean_ms']) for b in result['blocks']]}  others {others:.2f} cores "
                  f"(the competitor counts), own {result['load']['own_cores']:.2f}", flush=True)
    # CPU time per step (step time x cores this process got): if it stays put while the step
    # time doubles, the process simply got half the cores.
    print(f"\n{'condition':<40}{'median':>8}{'min':>8}{'max':>8}{'CPU ms':>8}  others' cores")
    summary = {}
    for name, runs in results.items():
        ok = [x for x in runs if "error" not in x]
        if not ok:
            continue
        times = [x["plain_ms"] for x in ok]
        loads = [x["load"]["others_cores"] for x in ok]
        cpu_ms = statistics.median(x["plain_ms"] * x["load"]["own_cores"] for x in ok)
        summary[name] = {"median_ms": statistics.median(times), "min_ms": min(times),
                         "max_ms": max(times), "cpu_ms_per_step": cpu_ms, "others_cores": loads}
        print(f"{name:<40}{statistics.median(times):8.1f}{min(times):8.1f}{max(times):8.1f}"
              f"{cpu_ms:8.1f}  {[round(v, 2) for v in loads]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    from twinrun.environment import fingerprint_environment

    out.write_text(json.dumps({
        "name": f"contention_{args.framework}", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "load_average": machine_load_now(), "environment": fingerprint_environment(),
        "summary": summary, "measurements": results}, indent=1, default=str) + "\n")
    print(f"\nWritten to {out}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
