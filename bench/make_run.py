"""`make run`'s check against two single quick trainings one after another, interleaved.

    python bench/make_run.py [--rounds 3] [--backend tensorflow] [--preset quick] [--json PATH]

Each round times, in alternating order, `twinrun check -n 2 --workload fashion-cnn --preset
quick` (what `make run` runs) and two `twinrun train --preset quick` one after another (the
floor the check is held to: <= 1.2x), each in its own store, and keeps the check's note on how
the replicas ran (side by side, or taking turns when their threads do not fit the CPUs). The
load average is printed with every round: on a shared machine the ratio is not a quiet figure.
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

TWINRUN = str(Path(sys.executable).with_name("twinrun"))


def timed(command):
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def check(backend, preset, store):
    seconds, out = timed([TWINRUN, "check", "-n", "2", "--workload", "fashion-cnn", "--preset",
                          preset, "--backend", backend, "--store", store, "--json"])
    verdict = json.loads(out)
    note = next((n for n in verdict.get("notes", []) if "replicas ran" in n), "")
    return seconds, {"verdict": verdict["verdict"], "plan": note}


def two_trains(backend, preset, store):
    total = 0.0
    for _ in range(2):
        seconds, _ = timed([TWINRUN, "train", "--preset", preset, "--backend", backend,
                            "--store", store, "--json"])
        total += seconds
    return total, {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()
    variants = {"check -n 2 (make run)": check, "two trains, one after another": two_trains}
    times = {name: [] for name in variants}
    rounds = []
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(list(variants)))
            entry = {"load_before": os.getloadavg()[0]}
            for name in order:
                seconds, facts = variants[name](args.backend, args.preset,
                                                str(Path(folder) / f"store-{r}-{len(entry)}"))
                times[name].append(seconds)
                entry[name] = {"seconds": round(seconds, 1), **facts}
            entry["load_after"] = os.getloadavg()[0]
            rounds.append(entry)
            ratio = (entry["check -n 2 (make run)"]["seconds"]
                     / entry["two trains, one after another"]["seconds"])
            print(f"round {r + 1}: check {entry['check -n 2 (make run)']['seconds']} s, two "
                  f"trains {entry['two trains, one after another']['seconds']} s, ratio "
                  f"{ratio:.2f}x (load {entry['load_before']:.1f}-{entry['load_after']:.1f}); "
                  f"{entry['check -n 2 (make run)']['plan']}", flush=True)
    ratios = [c / t for c, t in zip(*times.values())]
    print(f"median: check {statistics.median(times['check -n 2 (make run)']):.1f} s, two trains "
          f"{statistics.median(times['two trains, one after another']):.1f} s, ratio "
          f"{statistics.median(ratios):.2f}x (goal <= 1.2x)")
    if args.json:
        args.json.write_text(json.dumps({"backend": args.backend, "preset": args.preset,
                                         "rounds": rounds}, indent=1))


if __name__ == "__main__":
    main()
