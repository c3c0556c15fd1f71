"""What a divergence looks like and what likely caused it, in words.

How the losses grew after the first divergent step, how far the final weights ended apart, the
likely causes given what differed in the replicas' environments, and, against a reference,
what changed in the environment since the recording.
"""

import math
from pathlib import Path

import numpy as np

from twinrun.checks.verdict import is_state_name


# Rows of `loss_growth` kept in full after the divergence; beyond them, spaced out.
GROWTH_ROWS = 1000


def loss_growth(traces, start):
    """Largest |loss_r - loss_0| over replicas at each step from `start` on, from each step's
    batch loss (steps without one are left out).

    The first `GROWTH_ROWS` steps from `start` are all listed; later ones at about
    `GROWTH_ROWS` geometrically spaced steps (and the last), so a full-length run that diverged
    at step 0 gives a curve, not 150,000 rows.
    """
    shared = min(len(t.steps) for t in traces)
    start = max(start, 0)
    if start >= shared:
        return []
    columns = [t.steps.loss_column(start, shared) for t in traces]
    present = np.logical_and.reduce([has for _, has in columns])
    reference = columns[0][0]
    if len(traces) > 1:
        diffs = np.stack([np.abs(values - reference) for values, _ in columns[1:]])
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(reference != 0, diffs / np.abs(reference), math.inf)
        largest, largest_relative = diffs.max(axis=0), relative.max(axis=0)
    else:
        largest = largest_relative = np.zeros(shared - start)
    keep = np.flatnonzero(present)
    keep = keep[_growth_points(keep)]
    return [{"step": start + int(i), "max_abs_loss_diff": float(largest[i]),
             "max_rel_loss_diff": float(largest_relative[i])} for i in keep]


def _growth_points(indices):
    """Positions in `indices` to report: the first `GROWTH_ROWS`, then geometric spacing."""
    if len(indices) <= 2 * GROWTH_ROWS:
        return np.arange(len(indices))
    later = np.geomspace(GROWTH_ROWS, len(indices) - 1, GROWTH_ROWS).astype(np.int64)
    return np.unique(np.concatenate([np.arange(GROWTH_ROWS), later, [len(indices) - 1]]))


def weight_distance(traces):
    """Largest relative distance ||w_r - w_0|| / ||w_0|| between replicas' weights, per epoch,
    from the snapshots the tracers saved."""
    rows = []
    by_epoch = [{e["epoch"]: e.get("snapshot") for e in t.epochs} for t in traces]
    for epoch in sorted(set.intersection(*(set(b) for b in by_epoch))):
        files = [b[epoch] for b in by_epoch]
        if not all(files):
            continue
        try:
            weights = [_load_snapshot(Path(t.path).parent / f) for t, f in zip(traces, files)]
        except (OSError, ValueError):
            continue
        reference = weights[0]
        norm = float(np.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in reference)))
        distances = []
        for other in weights[1:]:
            squared = sum(float(np.sum(np.square(a.astype(np.float64) - b.astype(np.float64))))
                          for a, b in zip(reference, other) if a.shape == b.shape)
            distances.append(math.sqrt(squared) / norm if norm else math.inf)
        rows.append({"epoch": epoch, "max_relative_distance": max(distances) if distances else 0.0,
                     "reference_norm": norm})
    return rows


def _load_snapshot(path):
    with np.load(path, allow_pickle=False) as archive:
        return [archive[f"v{i}"] for i in range(len(archive.files))]


def likely_causes(divergence, environment_diff, localization=None, gpu_used=False):
    """Plain-language suspects, from what differed first, how the environments differ, and
    what the localisation rerun saw.

    Each cause opens with a short name (up to its first colon), which the verdict's headline
    quotes. A rerun that diverges again at the same step, in the same layer, with nothing
    different in the environment, points at randomness twinrun does not seed, not at a sum
    added in another order: a reordering race moves between runs. GPU causes are named only
    when a GPU was used.

    Arguments:
        divergence: the `Divergence` (None: no causes).
        environment_diff: `twinrun.environment.environment_diff` of the replicas.
        localization: `twinrun.checks.localize.localize_step`'s result, once the rerun is done.
        gpu_used: whether the replicas' framework had a GPU (`gpu_used`).

    Example:
    >>> from twinrun.checks.verdict import Divergence
    >>> first = Divergence(step=12, epoch=0, records=["loss", "variables"])
    >>> rerun = {"step": 12, "rerun_divergence": 12, "race": False,
    ...          "layer": {"name": "planted_noise", "class": "Noise"}}
    >>> likely_causes(first, [], rerun)[0].split(":")[0]
    'Unseeded randomness in layer planted_noise (Noise)'
    """
    if divergence is None:
        return []
    causes = []
    keys = {d["key"] for d in environment_diff}
    hash_keys = [k for k in keys if "hash" in k.lower()]
    thread_keys = [k for k in keys if "thread" in k.lower() and "determinis" not in k.lower()]
    determinism_keys = [k for k in keys if "determinis" in k.lower()]
    data_first = {"data", "batch"} & set(divergence.records)
    state_first = (divergence.records == ["variables"] and divergence.variables
                   and all(is_state_name(n) for n in divergence.variables))
    if data_first and hash_keys:
        causes.append("The hash seed: string hashing differed between replicas (their "
                      "PYTHONHASHSEED was random), so the iteration order of a set or dict of "
                      "strings changed the data. Sort before iterating (sorted(names)); a plain "
                      "`python` run needs PYTHONHASHSEED set before the interpreter starts, "
                      "which `twinrun check` does unless --hash-seed random.")
    elif data_first:
        causes.append("The data: the training data or its order differs between replicas "
                      "before any computation, typically an unseeded shuffle (for example "
                      "numpy.random.default_rng() without a seed) or iteration over a set.")
    if thread_keys:
        causes.append("Thread counts differ between replicas ("
                      + ", ".join(sorted(thread_keys)) + "): parallel reductions add in a "
                      "different order, which changes the last bits.")
    if determinism_keys:
        causes.append("The determinism settings differ between replicas: kernels chosen "
                      "for speed reduce in another order than deterministic ones.")
    kernel_keys = sorted(k for k in keys if k == "framework.cpu_capability"
                         or k in _PORTABLE_KEYS)
    if kernel_keys:
        changes = environment_changes([d for d in environment_diff if d["key"] in kernel_keys])
        causes.append("The instruction set the kernels use differs between replicas ("
                      + ", ".join(changes) + "): AVX-512, AVX2 and scalar kernels sum in "
                      "other orders.")
    if state_first and not causes:
        causes.append("The training state outside the model: "
                      + ", ".join(divergence.variables[:3])
                      + (" ..." if len(divergence.variables) > 3 else "")
                      + " differed while every weight and the loss agreed, so the optimizer's "
                      "update (or code that changes the optimizer or a random generator "
                      "between steps) is where the replicas part.")
    if divergence.digest is not None and not causes:
        causes.append("A change the per-step fingerprint words cannot see, or one made outside "
                      "the traced steps: every step's words and losses agreed, but the exact "
                      "digest of " + ", ".join(divergence.variables[:3])
                      + (" ..." if len(divergence.variables) > 3 else "") + " did not. Look "
                      "for code that edits the weights or the optimizer after the last traced "
                      "step or between an epoch's last step and its end.")
    unseeded = _unseeded_in(localization, divergence) if not (causes or environment_diff) \
        else None
    if unseeded:
        causes.append(f"Unseeded randomness in {unseeded}: the rerun diverged again at step "
                      f"{divergence.step}, there, from identical inputs, and nothing differed "
                      "in the environment, so it draws from a source no seed reaches "
                      "(os.urandom, a generator seeded from the OS or the clock), not from a "
                      "sum added in another order. Seed it from the run's seed.")
    if not causes:
        where = ("GPU atomics, cuDNN algorithm choice, thread scheduling" if gpu_used
                 else "a multithreaded CPU kernel that splits a sum differently, thread "
                      "scheduling")
        causes.append("Numerical nondeterminism: the same inputs gave different bits, typically "
                      f"a kernel that reduces in a varying order ({where}). Localisation names "
                      "the first layer where it shows.")
    return causes


def _unseeded_in(localization, divergence):
    """The layer (or op) a rerun blamed again at the same step, in words; None for a race, an
    intermittent difference, or no rerun."""
    if not localization or localization.get("race"):
        return None
    if localization.get("rerun_divergence") != divergence.step:
        return None
    layer = localization.get("layer")
    if not layer or layer.get("inputs_differed") or layer.get("variable"):
        return None
    kind = f" ({layer['class']})" if layer.get("class") else ""
    what = "op" if layer.get("op") else "layer"
    return f"{what} {layer.get('name')}{kind}"


def gpu_used(environments):
    """True when any replica's framework had a GPU (a GPU it could train on: the trace does
    not say which device each op ran on).

    Example:
    >>> gpu_used([{"framework": {"devices": ["cpu:0"]}}, {"gpu": {"devices": []}}])
    False
    """
    for environment in environments:
        devices = (environment.get("framework") or {}).get("devices") or []
        if any(any(word in str(device).lower() for word in ("gpu", "cuda"))
               for device in devices):
            return True
    return False


# Facts that say how fast a run went, or where its interpreter lies: never a cause of other bits.
_NOT_CAUSES = ("speed.", "python.executable", "cpu.affinity")
# The variables `--portable` sets (twinrun.determinism.torch.PORTABLE_VARIABLES), as diff keys.
_PORTABLE_KEYS = ("env.ATEN_CPU_CAPABILITY", "env.ONEDNN_MAX_CPU_ISA", "env.MKL_CBWR",
                  "env.MKL_DYNAMIC", "env.TWINRUN_PORTABLE")
_THREADS = {"threads.intra_op": "intra-op threads", "threads.inter_op": "inter-op threads"}


def environment_changes(diff):
    """The differences between a recording's environment and this run's, as short phrases:
    `"torch 2.13.0 → 2.14.0"`, `"intra-op threads 2 → 1"`, `"CPU flags: avx512f absent"`.

    Arguments:
        diff: `twinrun.environment.environment_diff([recorded, now])`.

    Example:
    >>> environment_changes([{"key": "packages.torch", "values": ["2.13.0", "2.14.0"]},
    ...                      {"key": "threads.intra_op", "values": [2, 1]},
    ...                      {"key": "cpu.flags", "values": [["avx2", "avx512f"], ["avx2"]]}])
    ['torch 2.13.0 → 2.14.0', 'intra-op threads 2 → 1', 'CPU flags: avx512f absent']
    """
    keys = {d["key"] for d in diff}
    phrases = []
    # The framework's own facts first (versions, thread counts, CPU), the variables that set
    # them last: they usually say the same thing again.
    diff = sorted(diff, key=lambda d: d["key"].startswith("env."))
    for entry in diff:
        key, values = entry["key"], entry["values"]
        if len(values) < 2 or key.startswith(_NOT_CAUSES):
            continue
        before, after = values[0], values[-1]
        if key == "process.threads" and keys & set(_THREADS):
            continue  # the same fact as the framework's thread counts, said once
        if key.startswith("packages."):
            phrases.append(f"{key.split('.', 1)[1]} {_shown(before)} → {_shown(after)}")
        elif key in _THREADS:
            phrases.append(f"{_THREADS[key]} {_shown(before)} → {_shown(after)}")
        elif key == "process.threads":
            phrases.append(f"threads pinned by twinrun {_shown(before)} → {_shown(after)}")
        elif key == "cpu.flags" and isinstance(before, list) and isinstance(after, list):
            absent = sorted(set(before) - set(after))
            new = sorted(set(after) - set(before))
            if absent:
                phrases.append("CPU flags: " + _listed(absent) + " absent")
            if new:
                phrases.append("CPU flags: " + _listed(new) + " new")
        elif key == "cpu.model":
            phrases.append(f"CPU {_shown(before)} → {_shown(after)}")
        elif key == "cpu.identity":
            phrases.append(f"CPU {_shown(before)} → {_shown(after)}")
        elif key == "cpu.isa":
            phrases.append(f"widest vector instructions {_shown(before)} → {_shown(after)}")
        elif key == "framework.cpu_capability":
            phrases.append(f"torch's kernels in use {_shown(before)} → {_shown(after)}")
        elif key == "cpu.logical_cores":
            phrases.append(f"logical CPUs {_shown(before)} → {_shown(after)}")
        elif key == "hostname":
            phrases.append(f"host {_shown(before)} → {_shown(after)}")
        elif key == "python.version":
            phrases.append(f"Python {_shown(before)} → {_shown(after)}")
        elif key.startswith("env."):
            phrases.append(f"{key[4:]} {_shown(before)} → {_shown(after)}")
        elif isinstance(before, list) or isinstance(after, list):
            phrases.append(f"{key} changed")
        else:
            phrases.append(f"{key} {_shown(before)} → {_shown(after)}")
    return phrases


def reference_causes(divergence, diff):
    """Plain-language suspects for a run that moved away from its reference: what changed
    since the recording (packages, CPU, threads, settings), from the first difference and
    `diff` (`environment_diff([recorded, now])`)."""
    if divergence is None:
        return []
    keys = {d["key"] for d in diff}
    changes = {d["key"]: d for d in diff}
    causes = []
    if {"data", "batch"} & set(divergence.records):
        causes.append("The data: the training data or its order differs from the recording's "
                      "before any computation (another data file, an unseeded shuffle, or "
                      "iteration over a set with another hash seed).")
    packages = environment_changes([changes[k] for k in sorted(keys)
                                    if k.startswith("packages.")])
    if packages:
        causes.append("Package versions changed since the recording (" + ", ".join(packages)
                      + "): a new version may pick other kernels or sum in another order.")
    cpu = environment_changes([changes[k] for k in sorted(keys) if k.startswith("cpu.")
                               and not k.startswith(_NOT_CAUSES)])
    if cpu:
        causes.append("The CPU differs from the recording's (" + ", ".join(cpu) + "): other "
                      "instruction sets select other kernels, which round differently.")
    threads = [k for k in keys if "thread" in k.lower() and "determinis" not in k.lower()]
    if any(k.startswith("threads.") for k in threads):
        threads = [k for k in threads if k.startswith("threads.")]  # the counts in use
    if threads:
        causes.append("Thread counts differ from the recording ("
                      + ", ".join(environment_changes([changes[k] for k in sorted(threads)]))
                      + "): parallel reductions add in a different order, which changes the "
                      "last bits.")
    kernels = environment_changes([changes[k] for k in sorted(keys)
                                   if k == "framework.cpu_capability"
                                   or k in _PORTABLE_KEYS])
    if kernels:
        causes.append("The instruction set the kernels use, or the portable settings, differ "
                      "from the recording's (" + ", ".join(kernels) + "): AVX-512 and AVX2 "
                      "kernels sum in other orders.")
    if any("determinis" in k.lower() for k in keys):
        causes.append("The determinism settings differ from the recording: kernels chosen for "
                      "speed reduce in another order than deterministic ones.")
    if not causes:
        causes.append("Nothing recorded about the environment changed, so the script or its "
                      "data may have, or a kernel is nondeterministic (check it with "
                      "`twinrun check -n 2`).")
    return causes


def layer_of(variables):
    """The layer that owns the first model variable in `variables` (the name up to its last
    dot), or None when only optimizer or generator state differed.

    Example:
    >>> layer_of(["optimizer/0.weight/exp_avg", "0.weight"])
    '0'
    """
    for name in variables:
        if not is_state_name(name) and "." in name:
            return name.rsplit(".", 1)[0]
        if not is_state_name(name) and "/" in name:
            return name.rsplit("/", 1)[0]
    return None


def _shown(value):
    return "unset" if value is None else str(value)


def _listed(names, most=6):
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
