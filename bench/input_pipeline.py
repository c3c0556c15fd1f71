"""What an epoch of the seed CNN costs with twinrun's batches against arrays: time, page faults,
system time, with and without the allocator settings twinrun's launcher gives a fresh process.

`twinrun train` feeds `model.fit` a `keras.utils.PyDataset` of seeded batches
(`twinrun.workloads.batches.shuffled_batches`, one Python call per batch); a hand-written script
passes NumPy arrays with `shuffle=True`. Native PyTorch compares a `DataLoader` with
`shuffle=True` against batches in twinrun's order (`bench/native_torch_cnn.batches`).

Each framework runs in two fresh processes: one with the environment as it is here (`plain`)
and one with `twinrun.determinism.common.allocator_environment()` added (`twinrun`: what
twinrun's launcher gives every JAX and TensorFlow process; the torch rows show why not torch's). Inside, after one warm-up epoch per variant, the variants alternate for
`--rounds` rounds, and each epoch records its wall time per step, the process's minor page
faults (`resource.getrusage(RUSAGE_SELF).ru_minflt`) and its user and system CPU seconds. Page
faults and CPU seconds hardly depend on what else the machine runs; wall time does, so the load
average is printed with every row.

    python bench/input_pipeline.py [--frameworks tensorflow,jax,torch,native-torch]
        [--allocator both|plain|twinrun] [--rounds 2] [--json PATH]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

FRAMEWORKS = ("tensorflow", "jax", "torch", "native-torch")
SUBSET = 4800  # the quick preset's training images: 75 steps of 64


def usage():
    own = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), own.ru_minflt, own.ru_utime, own.ru_stime


def measure(variants, rounds, steps):
    """Per variant, one row per measured epoch: ms/step, minor faults, user s, system s."""
    for run in variants.values():  # warm-up: trace, compile, first allocations
        run()
    rows = {name: [] for name in variants}
    for r in range(rounds):
        for name in (variants if r % 2 == 0 else reversed(list(variants))):
            before = usage()
            variants[name]()
            after = usage()
            wall, faults, user, system = (b - a for a, b in zip(before, after))
            rows[name].append({"ms_per_step": 1e3 * wall / steps, "minor_faults": faults,
                               "user_s": user, "system_s": system})
    return rows


def keras_variants():
    import keras

    from twinrun.progress import progress_callback
    from twinrun.workloads import fashion_cnn, fashion_mnist
    from twinrun.workloads.batches import shuffled_batches

    splits = fashion_cnn.make_splits(fashion_mnist.load(), fashion_cnn.PRESETS["quick"])
    model = fashion_cnn.build_model({"init": 0, "dropout": 0})
    batches = shuffled_batches(splits.x_train, splits.y_train, fashion_cnn.BATCH_SIZE, 0)
    steps = len(batches)
    progress = progress_callback(1, steps, enabled=False)
    variants = {
        "arrays, shuffle=True": lambda: model.fit(
            splits.x_train, splits.y_train, batch_size=fashion_cnn.BATCH_SIZE, shuffle=True,
            epochs=1, verbose=0),
        "twinrun batches": lambda: model.fit(batches, epochs=1, verbose=0, shuffle=False),
        "twinrun batches + progress": lambda: model.fit(
            batches, epochs=1, verbose=0, callbacks=[progress], shuffle=False),
    }
    del keras
    return variants, steps


def native_torch_variants():
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import native_torch_cnn
    from twinrun.workloads import fashion_cnn, fashion_mnist

    splits = fashion_cnn.make_splits(fashion_mnist.load(), fashion_cnn.PRESETS["quick"])
    x = torch.from_numpy(splits.x_train).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(splits.y_train.argmax(axis=1))
    model, optimizer = native_torch_cnn.build(0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=native_torch_cnn.BATCH_SIZE, shuffle=True)
    epochs = iter(range(10**6))
    variants = {
        "DataLoader, shuffle=True": lambda: native_torch_cnn.train_steps(
            model, optimizer, iter(loader)),
        "twinrun order": lambda: native_torch_cnn.train_steps(
            model, optimizer, native_torch_cnn.batches(x, y, 0, next(epochs))),
    }
    return variants, len(loader)


def child(framework, rounds):
    variants, steps = (native_torch_variants() if framework == "native-torch"
                       else keras_variants())
    rows = measure(variants, rounds, steps)
    print(json.dumps({"steps_per_epoch": steps, "rows": rows}))


def run_child(framework, allocator, rounds):
    from twinrun.determinism.common import allocator_environment

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    if allocator == "twinrun":
        env.update(allocator_environment(env))
    env["KERAS_BACKEND"] = "torch" if framework == "native-torch" else framework
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    load = os.getloadavg()[0]
    done = subprocess.run([sys.executable, __file__, "--child", framework, "--rounds",
                           str(rounds)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{framework} ({allocator}) failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_average"] = [load, os.getloadavg()[0]]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="tensorflow,jax,torch,native-torch")
    parser.add_argument("--allocator", choices=["both", "plain", "twinrun"], default="both")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.rounds)
    allocators = ["plain", "twinrun"] if args.allocator == "both" else [args.allocator]
    results = []
    print(f"{'framework':<13} {'allocator':<8} {'input':<28} {'ms/step':>8} {'faults':>10} "
          f"{'user s':>7} {'sys s':>6} {'sys/user':>8}  load")
    for framework in args.frameworks.split(","):
        for allocator in allocators:
            result = run_child(framework, allocator, args.rounds)
            result.update(framework=framework, allocator=allocator)
            results.append(result)
            for name, rows in result["rows"].items():
                median = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
                print(f"{framework:<13} {allocator:<8} {name:<28} {median['ms_per_step']:8.1f} "
                      f"{median['minor_faults']:10,.0f} {median['user_s']:7.2f} "
                      f"{median['system_s']:6.2f} {median['system_s'] / median['user_s']:8.1%}  "
                      f"{result['load_average'][0]:.1f}-{result['load_average'][1]:.1f}",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps({"measured": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime()),
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
