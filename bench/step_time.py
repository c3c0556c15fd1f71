"""Step times of the seed CNN (batch 64, real Fashion-MNIST) in this fresh process.

    python bench/step_time.py --framework tensorflow|jax|torch|native-torch \
        [--determinism on|off] [--trace-blocks] [--trace-every K] [--warmup 10] [--steps 15]
        [--blocks 8]

The runner (`bench/run.py`) starts this script with the environment the variant needs
(`twinrun.launch.run_environment`, as `twinrun train` does), so what must be in place
before the interpreter or the framework starts is. Inside, it does what a `twinrun train` run
does before training: `twinrun.deterministic(...)` (seeds only with `--determinism off`), the
seed CNN from `twinrun.workloads.fashion_cnn.build_model` and twinrun's seeded batches; the
native-torch framework trains `bench/native_torch_cnn.py` the same way.

After `--warmup` steps (compilation, first allocations; traced when tracing is measured, so
the fingerprint function is compiled there too) it times `--blocks` blocks of `--steps` steps.
With `--trace-blocks` the blocks alternate untraced and traced (`twinrun.keras.Trace` or
`twinrun.torch.Tracer` recording every step), in the order A B B A A B ..., so each traced
block has an untraced neighbour measured seconds apart on the same process. With
`--trace-every K` the traced blocks are sampled: batch and loss every step, the whole state's
words every K-th step (`twinrun check --trace-every K`).

A step's time is the time between the ends of consecutive optimizer steps, so it includes
data loading, every callback and the trace. Prints one JSON line.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STARTED = time.perf_counter()
SEED = 0
jit_compile = []  # what Keras resolved `jit_compile="auto"` to


class MachineLoad:
    """How busy the other processes kept the CPUs while this one was timed.

    From /proc/stat (all CPUs) minus this process's own CPU time, in cores: 0.0 means this
    benchmark had the machine to itself, 1.0 that others kept one core busy on average.
    `steal_cores` is time the hypervisor gave our virtual CPUs to another guest.
    """

    def __init__(self):
        self.start = None
        self.load = {}

    @staticmethod
    def _sample():
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        tick = os.sysconf("SC_CLK_TCK")
        return (time.perf_counter(), (user + nice + system + irq + softirq) / tick,
                steal / tick, time.process_time())

    def begin(self):
        self.start = self._sample()

    def end(self):
        wall0, busy0, steal0, own0 = self.start
        wall1, busy1, steal1, own1 = self._sample()
        wall = max(wall1 - wall0, 1e-9)
        self.load = {"others_cores": round(max(0.0, (busy1 - busy0) - (own1 - own0)) / wall, 3),
                     "own_cores": round((own1 - own0) / wall, 3),
                     "steal_cores": round((steal1 - steal0) / wall, 3)}


class Schedule:
    """Which steps are timed, and which of them are traced."""

    def __init__(self, warmup, steps, blocks, trace_blocks):
        self.warmup, self.steps, self.blocks = warmup, steps, blocks
        self.trace_blocks = trace_blocks
        self.total = warmup + steps * blocks
        self.load = MachineLoad()

    def block_traced(self, block):
        # A B B A A B B A ...: a linear drift in speed cancels out of every pair of pairs.
        return self.trace_blocks and (block % 2 == 1) != (block // 2 % 2 == 1)

    def traced(self, step):
        """Whether step `step` (0-based) is traced: all of the warm-up, then by block."""
        if not self.trace_blocks:
            return False
        if step < self.warmup:
            return True
        return self.block_traced((step - self.warmup) // self.steps)

    def stamped(self, steps_done):
        """Called after every step with the number of steps done."""
        if steps_done == self.warmup:
            self.load.begin()
        elif steps_done == self.total:
            self.load.end()

    def blocks_of(self, stamps):
        """Mean and median ms per step of each timed block."""
        result = []
        for b in range(self.blocks):
            first = self.warmup - 1 + b * self.steps  # the end of the step before the block
            part = np.diff(stamps[first:first + self.steps + 1])
            result.append({"traced": self.block_traced(b),
                           "mean_ms": 1e3 * float(part.mean()),
                           "median_ms": 1e3 * float(np.median(part))})
        return result


def training_split(rows):
    """The first `rows` images of the seed workload's stratified 80 % training split."""
    from twinrun.workloads import fashion_cnn, fashion_mnist

    splits = fashion_cnn.make_splits(fashion_mnist.load(), fashion_cnn.PRESETS["full"])
    if rows > len(splits.x_train):
        raise SystemExit(f"At most {len(splits.x_train) // 64} steps fit in one epoch.")
    return splits.x_train[:rows], splits.y_train[:rows]


def threads_from_launcher():
    value = os.environ.get("TWINRUN_THREADS")
    return int(value) if value else None


def keras_run(args, schedule, workdir):
    import keras

    import twinrun
    from twinrun.workloads import fashion_cnn
    from twinrun.workloads.batches import shuffled_batches

    report = twinrun.deterministic(SEED, backend=args.framework, threads=threads_from_launcher(),
                                   determinism=args.determinism == "on")
    x, y = training_split(schedule.total * fashion_cnn.BATCH_SIZE)
    model = fashion_cnn.build_model(report.seeds)
    if args.jit_compile != "auto":  # for bench/contention.py; Keras' "auto" is off on a CPU
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=fashion_cnn.LEARNING_RATE),
                      loss="categorical_crossentropy", metrics=["accuracy"],
                      jit_compile=args.jit_compile == "on")
    jit_compile.append(bool(model.jit_compile))
    batches = shuffled_batches(x, y, fashion_cnn.BATCH_SIZE, report.seeds["shuffle"])
    stamps = []

    class StepClock(keras.callbacks.Callback):
        # Not async-safe on purpose: Keras then hands every callback concrete logs, so on JAX
        # the step stamped here has finished, not only been dispatched.
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())
            schedule.stamped(len(stamps))

    callbacks = []
    if args.trace_blocks:
        from twinrun.keras import Trace

        trace = Trace(Path(workdir) / "run.trace", batches=batches, snapshots=False,
                      trace_every=args.trace_every)
        callbacks.append(traced_steps(keras, trace, schedule, stamps))
    callbacks.append(StepClock())  # last: its stamp comes after the trace's work
    model.fit(batches, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
    return stamps, report


def traced_steps(keras, trace, schedule, stamps):
    """`trace`, but its per-step work runs only on the steps `schedule` traces.

    Batch fingerprints are produced for every batch (the data thread runs ahead of the steps,
    so it cannot know which block a batch lands in); an untraced step drops its fingerprint.
    That digest (about 0.02 ms for a 64-image batch) is then in both kinds of block. On
    TensorFlow the trace computes the words inside the compiled step; its `active` switch turns
    that off for untraced steps (one `tf.cond` in every step, traced or not).
    """

    switch = {}  # the state of the in-step switch, kept here rather than read every step

    class Gate(keras.callbacks.Callback):
        def set_model(self, model):
            super().set_model(model)
            trace.set_model(model)

        def on_train_begin(self, logs=None):
            trace.on_train_begin(logs)

        def on_epoch_begin(self, epoch, logs=None):
            trace.on_epoch_begin(epoch, logs)

        def on_train_batch_begin(self, batch, logs=None):
            traced = schedule.traced(len(stamps))
            in_step = trace._in_step  # TensorFlow: the words are computed inside the step
            if in_step is not None and switch.get("on") != traced:
                in_step.active.assign(traced)
                switch["on"] = traced
                trace._in_step_on = traced  # a sampled trace switches it again, knowing this
            if traced:
                trace.on_train_batch_begin(batch, logs)

        def on_train_batch_end(self, batch, logs=None):
            if schedule.traced(len(stamps)):
                trace.on_train_batch_end(batch, logs)
            elif trace.batches.batch_fingerprints:
                trace.batches.batch_fingerprints.popleft()

        def on_epoch_end(self, epoch, logs=None):
            trace.on_epoch_end(epoch, logs)

        def on_train_end(self, logs=None):
            trace.on_train_end(logs)

    return Gate()


def native_torch_run(args, schedule, workdir):
    import torch

    import twinrun

    sys.path.insert(0, str(Path(__file__).parent))
    import native_torch_cnn as cnn

    report = twinrun.deterministic(SEED, backend="torch", threads=threads_from_launcher(),
                                   determinism=args.determinism == "on")
    x, y = training_split(schedule.total * cnn.BATCH_SIZE)
    # The same images as the Keras runs, as NCHW tensors with integer labels.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)
    y = torch.from_numpy(y.argmax(axis=1).astype(np.int64)).to(device)
    model, optimizer = cnn.build(report.seeds["init"], device)
    tracer = None
    if args.trace_blocks:
        from twinrun.torch import Tracer

        tracer = Tracer(model, optimizer, path=Path(workdir) / "run.trace", snapshots=False,
                        trace_every=args.trace_every)
    stamps, losses = [], []

    def traced_if_due(step):
        return tracer if schedule.traced(step) else None

    def on_step(loss):
        losses.append(float(loss))  # what a training loop logs; also ends the step
        stamps.append(time.perf_counter())
        schedule.stamped(len(stamps))

    cnn.train_steps(model, optimizer, cnn.batches(x, y, report.seeds["shuffle"]),
                    on_step=on_step, tracer_for_step=traced_if_due)
    if tracer is not None:
        tracer.close()
    return stamps, report


def thread_facts(framework):
    facts = {"affinity": sorted(os.sched_getaffinity(0))}
    if framework in ("torch", "native-torch"):
        import torch

        facts.update(torch_threads=torch.get_num_threads(),
                     torch_interop=torch.get_num_interop_threads())
    elif framework == "tensorflow":
        import tensorflow as tf

        facts.update(tf_intra=tf.config.threading.get_intra_op_parallelism_threads(),
                     tf_inter=tf.config.threading.get_inter_op_parallelism_threads())
    return facts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", required=True,
                        choices=["tensorflow", "jax", "torch", "native-torch"])
    parser.add_argument("--determinism", choices=["on", "off"], default="off")
    parser.add_argument("--trace-blocks", action="store_true",
                        help="alternate untraced and traced blocks")
    parser.add_argument("--trace-every", type=int, default=1,
                        help="the whole state's words every K-th traced step")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=15, help="steps per block")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--jit-compile", choices=["auto", "on", "off"], default="auto",
                        help="Keras `jit_compile` (XLA) for the Keras frameworks")
    args = parser.parse_args()
    schedule = Schedule(args.warmup, args.steps, args.blocks, args.trace_blocks)
    with tempfile.TemporaryDirectory(prefix="twinrun-bench-") as workdir:
        run = native_torch_run if args.framework == "native-torch" else keras_run
        stamps, report = run(args, schedule, workdir)
        trace_bytes = sum(p.stat().st_size for p in Path(workdir).iterdir())
    blocks = schedule.blocks_of(stamps)
    plain = [b["mean_ms"] for b in blocks if not b["traced"]]
    print(json.dumps({
        "framework": args.framework, "determinism": args.determinism,
        "trace_blocks": args.trace_blocks, "trace_every": args.trace_every,
        "warmup": args.warmup, "steps": args.steps,
        "blocks": blocks, "plain_ms": statistics.median(plain),
        "warmup_ms": [round(1e3 * float(d), 1) for d in np.diff(stamps[:args.warmup])],
        "impossible_controls": [c.name for c in report.impossible],
        "jit_compile": jit_compile[0] if jit_compile else None, "load": schedule.load.load, "threads": thread_facts(args.framework),
        "trace_bytes": trace_bytes, "process_s": time.perf_counter() - STARTED,
    }))


if __name__ == "__main__":
    main()
