"""What every framework shares: the report of controls, thread counts, Python/NumPy/hash seed.

Each framework module (`tensorflow.py`, `jax.py`, `torch.py`) has the same four functions:

- `environment_variables(threads, determinism)`: what must be in the environment *before* the
  interpreter or the framework starts (the launcher puts these into every fresh process);
- `apply(seeds, threads, determinism)`: what can be done from inside the process, returning one
  `Control` per switch with its state;
- `thread_counts()`: the intra-op and inter-op thread counts the framework uses (or will use)
  in this process, as `{"intra_op": n, "inter_op": m}` (None where it has no such pool).
- `data_loading(seeds, determinism)`: what keeps the framework's input pipeline in order
  (torch's `DataLoader`, TensorFlow's `tf.data`; JAX has none), one `Control` each.

And two for `--portable` (docs/portable.md): `portable_variables()`, what must be in the
environment before start-up so the CPU kernels give the same bits on any x86-64 CPU with AVX2
and at any thread count (empty where no setting was measured to do that), and
`portability()`, the `Control` saying whether that holds in this process, or why not.

The states of a control, the whole set:

- `applied`: twinrun set it, here and now;
- `already set`: it was already as needed (set before start-up, by the launcher or the user);
- `not needed`: nothing to do here (no GPU, no global random state);
- `off`: the user turned determinism off, so it was left as is;
- `impossible`: it could not be done here; `detail` says why and what to do. A thread pool
  that could not be pinned is `impossible` with a detail that starts with
  `"not pinned: bits may depend on the thread count"`.
"""

import os
import random
import subprocess
import sys
from dataclasses import asdict, dataclass, field

APPLIED = "applied"
ALREADY_SET = "already set"
IMPOSSIBLE = "impossible"
NOT_NEEDED = "not needed"
OFF = "off"

STATES = (APPLIED, ALREADY_SET, NOT_NEEDED, OFF, IMPOSSIBLE)

NOT_PINNED = "not pinned: bits may depend on the thread count"

# The name of the control that says whether a framework's CPU kernels are portable here.
PORTABLE = "portable CPU kernels"

# Thread-pool variables read once by OpenMP, MKL and OpenBLAS when they load.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class Control:
    """One determinism switch and what happened to it.

    `state` is one of `STATES` (see the module docstring); `detail` says what was done, or
    why it could not be and what to do.
    """

    name: str
    state: str
    detail: str = ""


@dataclass
class DeterminismReport:
    """Every control `deterministic()` touched, in the order it touched them.

    `threads` holds the thread counts the framework uses after the call,
    `{"intra_op": n, "inter_op": m}`: results depend on them, so they are part of the record.
    """

    backend: str
    seed: int
    determinism: bool
    threads: dict | None
    seeds: dict = field(default_factory=dict)
    controls: list = field(default_factory=list)
    portable: bool = False

    @property
    def impossible(self):
        """The controls that could not be applied: each one a reason the run may not repeat."""
        return [c for c in self.controls if c.state == IMPOSSIBLE]

    def to_dict(self):
        return asdict(self)

    def __str__(self):
        lines = [f"determinism for {self.backend} (seed {self.seed}):"]
        for c in self.controls:
            lines.append(f"  {c.name:<34} {c.state:<12} {c.detail}")
        return "\n".join(lines)


def schedulable_cpus():
    """CPUs this process may run on (its affinity): what TensorFlow and XLA size pools by."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_environment(threads):
    """Thread-pool variables for a fresh process (empty when `threads` is None)."""
    if threads is None:
        return {}
    return {name: str(threads) for name in THREAD_VARIABLES}


# glibc malloc settings for a fresh training process (see `allocator_environment`).
ALLOCATOR_VARIABLES = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(2**62),
}


def allocator_environment(environ=None):
    """glibc malloc settings that keep the memory a training step frees for the next step.

    Not about bits (allocation addresses do not change results: every framework aligns its
    tensors itself; the weights fingerprints are equal with and without), about time. glibc
    gives a block above 32 MB (its largest dynamic mmap threshold) its own `mmap` and unmaps
    it on `free`, and returns the free top of a heap to the kernel past a trim threshold, so
    a step that allocates its temporaries afresh faults every page in again: XLA on the CPU
    allocates the seed CNN's step buffers as blocks of 42-69 MB, and one 75-step epoch on JAX
    took 2.8 M minor page faults with more system than user time. One arena that never maps
    blocks of its own and never trims keeps the process at its peak size and reuses it: 12
    faults an epoch (`bench/input_pipeline.py`). TensorFlow's processes get them too: on an
    AVX2-only AMD EPYC (Zen 3) one quick training (750 steps) took 30 M faults and 99 s of
    system time without them, 0.22 M and 4.5 s with them, and 99 instead of 201 s, with the
    same fingerprint (on an AVX-512 Zen 5 it faulted far less and the settings changed its CPU
    time by about 3 %). torch's processes get none: on the same Zen 3 its quick training
    faulted 1.6 M times for 7.5 s of system time, and one arena cost it more user time (150
    against 138 s) than that.

    Arguments:
        environ: the environment the fresh process inherits (default `os.environ`). When it
            sets any glibc malloc variable itself (`MALLOC_*`, or `glibc.malloc` tunables in
            `GLIBC_TUNABLES`), nothing is added: the user's choice stands whole.

    Example:
    >>> allocator_environment({})["MALLOC_ARENA_MAX"]
    '1'
    >>> allocator_environment({"MALLOC_ARENA_MAX": "4"})
    {}
    """
    environ = os.environ if environ is None else environ
    if (any(name.startswith("MALLOC_") for name in environ)
            or "glibc.malloc" in environ.get("GLIBC_TUNABLES", "")):
        return {}
    return dict(ALLOCATOR_VARIABLES)


def set_before_start(name):
    """True when the launcher put variable `name` into this fresh process's environment."""
    return name in os.environ.get("TWINRUN_PRESET_VARIABLES", "").split(",")


def pinned_detail(counts, origin):
    """The detail of a pinned thread-pool control: the counts, where they came from, and why
    they matter."""
    inter = counts.get("inter_op")
    pools = f"{counts['intra_op']} intra-op" + ("" if inter is None else f", {inter} inter-op")
    return (f"{pools} ({origin}); bits depend on these counts, so runs with other counts may "
            "differ in the last bits")


def portable_cpu_problem():
    """Why this CPU cannot give twinrun's portable bits, in words, or None when it can.

    The portable settings cap every kernel at AVX2 (with FMA), the widest level all x86-64
    CPUs measured share; a CPU without it computes with other instructions and other bits.
    """
    import platform

    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return (f"this is a {platform.machine()} CPU; portable bits are measured on x86-64 "
                "CPUs only")
    flags = cpu_flags()
    if flags is None:
        return None  # no /proc/cpuinfo to read (not Linux): the self-test decides
    missing = [name.upper() for name in ("avx2", "fma") if name not in flags]
    if missing:
        return f"this CPU lacks {' and '.join(missing)}, which the portable kernels use"
    return None


def cpu_flags():
    """The CPU's feature flags (`/proc/cpuinfo`), or None where there is no such file."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                name, _, value = line.partition(":")
                if name.strip() == "flags":
                    return set(value.split())
    except OSError:
        return None
    return set()


def not_pinned(name, why):
    """An `impossible` control for a thread pool whose size twinrun could not fix."""
    return Control(name, IMPOSSIBLE, f"{NOT_PINNED}; {why}")


def seed_python_and_numpy(seeds):
    """Seed `random` and NumPy's legacy global generator; return their controls."""
    import numpy as np

    random.seed(seeds["python"])
    np.random.seed(seeds["numpy"])
    return [
        Control("random.seed", APPLIED, f"seed {seeds['python']}"),
        Control("numpy.random.seed", APPLIED, f"seed {seeds['numpy']}"),
    ]


def _hash_of_probe_in_fresh_interpreter(hash_seed):
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "print(hash('twinrun-hash-probe'))"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    return probe.stdout.strip()


def hash_seed_control(determinism):
    """Whether string hashing (set and dict-of-str iteration order) is fixed in this process.

    `PYTHONHASHSEED` only works if it is set before the interpreter starts, so setting it
    here would be a lie. Instead we check whether this interpreter's hashes are the ones a
    fresh interpreter with the same `PYTHONHASHSEED` computes.
    """
    name = "PYTHONHASHSEED"
    value = os.environ.get(name)
    if not determinism:
        return Control(name, OFF, f"left as is ({value or 'random'})")
    if value in (None, "", "random"):
        return Control(
            name, IMPOSSIBLE,
            "string hashing is randomised: PYTHONHASHSEED was not set when this interpreter "
            "started; run the training under `twinrun train`/`twinrun check` (fresh processes) "
            "or start Python with PYTHONHASHSEED set",
        )
    if sys.flags.hash_randomization == 0:
        return Control(name, ALREADY_SET, "0 (hash randomisation off since start-up)")
    try:
        fresh = _hash_of_probe_in_fresh_interpreter(value)
    except (OSError, subprocess.SubprocessError):
        fresh = None
    if fresh == str(hash("twinrun-hash-probe")):
        return Control(name, ALREADY_SET, f"{value} (set before this interpreter started)")
    return Control(
        name, IMPOSSIBLE,
        f"PYTHONHASHSEED={value} was set after this interpreter started, so it has no effect "
        "here; start Python with it set, or use `twinrun check`",
    )
