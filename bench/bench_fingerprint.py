"""How long a per-step fingerprint of every model variable takes, per framework.

For each framework (in its own process, with KERAS_BACKEND set) this builds the seed CNN's
variables (Conv32-BN-ReLU x2, MaxPool, Dense512-BN-ReLU, Dense10: about 2.4M float32 values,
BatchNorm statistics included) and times:

- `tensor_words`: the on-device fingerprint twinrun records after every step;
- `host copy`: copying the same tensors to host memory (what an exact per-step digest needs);
- `host digest`: that copy plus `digest_arrays` (xxh3-128), the exact alternative.

Thread settings are left as the framework chose them (as in training) and reported.

    python bench/bench_fingerprint.py [--repeats 200] [--out bench/results/fingerprint.json]
"""

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FRAMEWORKS = ("numpy", "tensorflow", "jax", "torch")


def seed_cnn_weights(backend):
    """The seed CNN's variables as framework tensors, or same-shaped random arrays if Keras is
    missing (or for `numpy`)."""
    if backend != "numpy" and importlib.util.find_spec("keras") is not None:
        from twinrun.workloads.fashion_cnn import build_model

        model = build_model({"init": 0, "dropout": 0})
        return [v.value for v in model.weights], "keras seed CNN (twinrun.workloads)"
    shapes = [(3, 3, 1, 32), (32,), *[(32,)] * 4, (3, 3, 32, 32), (32,), *[(32,)] * 4,
              (4608, 512), (512,), *[(512,)] * 4, (512, 10), (10,)]
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes], "random, same shapes"


def item_size(tensor):
    if hasattr(tensor, "element_size"):  # torch
        return tensor.element_size()
    if hasattr(tensor.dtype, "size"):  # tensorflow
        return tensor.dtype.size
    return tensor.dtype.itemsize  # numpy, jax


def host_copy_function(backend):
    if backend == "torch":
        return lambda ts: [t.detach().cpu().numpy().copy() for t in ts]
    if backend == "tensorflow":
        return lambda ts: [t.numpy() for t in ts]
    return lambda ts: [np.array(t, copy=True) for t in ts]  # numpy, jax


def median_ms(function, argument, repeats, fastest=None):
    """Median time of a call in ms; also stores the 10th percentile in `fastest`, which is
    what the call costs when no other process competes for the cores."""
    function(argument)  # trace/compile/allocate outside the timing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - start)
    if fastest is not None:
        fastest.append(1e3 * float(np.percentile(times, 10)))
    return 1e3 * statistics.median(times)


def thread_settings(backend):
    # Other processes competing for the cores inflate the medians (torch's OpenMP barriers
    # most): the load average says how busy the machine was.
    settings = {"cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}
    if backend == "torch":
        import torch

        settings.update(torch_threads=torch.get_num_threads(),
                        torch_interop_threads=torch.get_num_interop_threads())
    elif backend == "tensorflow":
        import tensorflow as tf

        settings.update(tf_intra_op=tf.config.threading.get_intra_op_parallelism_threads(),
                        tf_inter_op=tf.config.threading.get_inter_op_parallelism_threads())
    elif backend == "jax":
        import jax

        settings.update(jax_devices=str(jax.devices()), xla_flags=os.environ.get("XLA_FLAGS"))
    return settings


def measure(backend, repeats):
    """Run in the framework's own process; returns one result dict."""
    from twinrun.fingerprint import digest_arrays, tensor_words_for

    tensor_words = tensor_words_for(backend)
    tensors, source = seed_cnn_weights(backend)
    values = sum(int(np.prod(t.shape)) for t in tensors)
    nbytes = sum(int(np.prod(t.shape)) * item_size(t) for t in tensors)
    copy = host_copy_function(backend)
    start = time.perf_counter()
    tensor_words(tensors)
    first_call_ms = 1e3 * (time.perf_counter() - start)
    fastest = []
    result = {
        "backend": backend, "tensors": len(tensors), "values": values, "bytes": nbytes,
        "source": source, "first_call_ms": first_call_ms,
        "tensor_words_ms": median_ms(tensor_words, tensors, repeats, fastest),
        "host_copy_ms": median_ms(copy, tensors, repeats),
        "host_digest_ms": median_ms(lambda ts: digest_arrays(copy(ts)), tensors, repeats),
        "threads": thread_settings(backend),
    }
    result["tensor_words_p10_ms"] = fastest[0]
    if backend == "tensorflow":
        from twinrun.fingerprint import tensorflow as fingerprint_tf

        function = fingerprint_tf._function_for(tensors).function
        result["traces"] = function.experimental_get_tracing_count()
        fingerprint_tf.JIT_COMPILE = False
        result["tensor_words_no_xla_ms"] = median_ms(tensor_words, tensors, repeats)
        fingerprint_tf.JIT_COMPILE = True
    if backend == "jax":
        from twinrun.fingerprint import jax as fingerprint_jax

        result["traces"] = fingerprint_jax._mixed_words._cache_size()
    for key in [k for k in result if k.endswith("_ms") and k.startswith(("tensor", "host"))]:
        result[key.replace("_ms", "_gbps")] = nbytes / (result[key] * 1e-3) / 1e9
    return result


def run_worker(backend, repeats):
    env = dict(os.environ, KERAS_BACKEND=backend if backend != "numpy" else "tensorflow",
               TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, __file__, "--worker", backend, "--repeats", str(repeats)],
        env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"backend": backend, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def print_table(results):
    header = (f"{'framework':<11}{'tensors':>8}{'values':>10}{'words ms':>10}{'p10 ms':>8}"
              f"{'GB/s':>7}{'copy ms':>9}{'digest ms':>11}{'first ms':>10}  threads")
    print(header)
    print("-" * len(header))
    for r in results:
        if "error" in r:
            print(f"{r['backend']:<11} failed: {r['error']}")
            continue
        threads = {k: v for k, v in r["threads"].items() if k not in ("jax_devices", "cpu_count")}
        print(f"{r['backend']:<11}{r['tensors']:>8}{r['values']:>10}"
              f"{r['tensor_words_ms']:>10.3f}{r['tensor_words_p10_ms']:>8.3f}"
              f"{r['tensor_words_gbps']:>7.1f}{r['host_copy_ms']:>9.3f}"
              f"{r['host_digest_ms']:>11.3f}{r['first_call_ms']:>10.0f}  {threads}")
        if "tensor_words_no_xla_ms" in r:
            print(f"{'  (no XLA)':<37}{r['tensor_words_no_xla_ms']:>10.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", default="bench/results/fingerprint.json")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.repeats)))
        return
    installed = [f for f in FRAMEWORKS if f == "numpy" or importlib.util.find_spec(f)]
    results = [run_worker(f, args.repeats) for f in installed]
    print_table(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                               "python": platform.python_version(), "results": results},
                              indent=2) + "\n")
    print(f"\nWritten to {out}")


if __name__ == "__main__":
    main()
