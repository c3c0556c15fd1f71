"""What `--portable` costs in step time: the seed CNN with and without it, interleaved.

    python bench/portable_cost.py [--framework native-torch|torch] [--rounds 3] [--threads 2]

Each run is a fresh `bench/step_time.py` process (determinism on, untraced) whose environment
comes from the one child-environment builder (`twinrun.launch.run_environment`, as `twinrun
train` builds it) with `portable` off or on, in the order A B B A A B ..., so each portable run has a plain neighbour
measured seconds apart. The load average is read around every run: on a shared machine the
medians are comparable with each other, not with a quiet machine's. Writes one JSON object
(stdout, and bench/results/portable_cost_<framework>.json).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent


def environment(framework, portable, threads):
    from twinrun.launch import run_environment
    from twinrun.runconfig import RunConfig

    backend = "torch" if framework == "native-torch" else framework
    return run_environment(RunConfig(backend=backend, seed=0, threads=threads,
                                     portable=portable).validated())


def one_run(framework, portable, threads, args):
    load_before = os.getloadavg()
    done = subprocess.run(
        [sys.executable, str(BENCH / "step_time.py"), "--framework", framework,
         "--determinism", "on", "--warmup", str(args.warmup), "--steps", str(args.steps),
         "--blocks", str(args.blocks)],
        env=environment(framework, portable, threads), capture_output=True, text=True,
        timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"step_time.py failed: {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    own = (result.get("load") or {}).get("own_cores")
    return {"portable": portable, "plain_ms": result["plain_ms"],
            # Wall time swings with what else runs; CPU time per step far less.
            "cpu_ms_per_step": result["plain_ms"] * own if own else None,
            "impossible_controls": result["impossible_controls"],
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
            "other_processes_cores": result.get("load")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", default="native-torch", choices=["native-torch", "torch"])
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--blocks", type=int, default=3)
    args = parser.parse_args()
    order = []
    for i in range(args.rounds):
        order += [False, True] if i % 2 == 0 else [True, False]
    runs = [one_run(args.framework, portable, args.threads, args) for portable in order]
    medians = {key: statistics.median(r["plain_ms"] for r in runs if r["portable"] == flag)
               for key, flag in (("plain", False), ("portable", True))}
    cpu = {key: statistics.median(r["cpu_ms_per_step"] for r in runs if r["portable"] == flag)
           for key, flag in (("plain", False), ("portable", True))}
    summary = {"framework": args.framework, "threads": args.threads, "runs": runs,
               "median_step_ms": medians,
               "portable_over_plain": medians["portable"] / medians["plain"],
               "median_cpu_ms_per_step": cpu,
               "cpu_portable_over_plain": cpu["portable"] / cpu["plain"],
               "note": "shared 2-core machine: other processes ran beside every run (loadavg)"}
    out = BENCH / "results" / f"portable_cost_{args.framework}.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
