"""The verdict: are the replicas' traces identical, and if not, where and how do they part?"""

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from twinrun.errors import TwinrunError

IDENTICAL = "identical"
DIVERGED = "diverged"


@dataclass
class Divergence:
    """The first place the replicas differ.

    `step` is the optimizer step (0-based; `-1` for the training data before step 0),
    `records` what differed there (`data`, `batch`, `loss`, `variables`), `variables` the
    names of the fingerprinted tensors that differed first (model variables, optimizer state
    named `optimizer/...`, random generator states named `rng/...`), and `layer` the layer
    localisation named.
    """

    step: int
    epoch: int | None
    records: list
    variables: list = field(default_factory=list)
    layer: dict | None = None


@dataclass
class Verdict:
    verdict: str
    steps_compared: int
    replicas: list
    first_divergence: Divergence | None = None
    loss_growth: list = field(default_factory=list)
    weight_distance: list = field(default_factory=list)
    environment_diff: list = field(default_factory=list)
    likely_causes: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    localization: dict | None = None

    @property
    def identical(self):
        return self.verdict == IDENTICAL

    def to_dict(self):
        return asdict(self)


def first_divergence(traces):
    """The first step where any replica's record differs from replica 0's, or None.

    Raises `TwinrunError` when the traces agree on every shared step but have different
    lengths (a replica stopped early, or the scripts do different amounts of work).
    """
    data = [t.data["fingerprint"] if t.data else None for t in traces]
    if any(d is not None for d in data) and len(set(data)) > 1:
        return Divergence(step=-1, epoch=None, records=["data"])
    shared = min(len(t.steps) for t in traces)
    for s in range(shared):
        divergence = compare_step([t.steps[s] for t in traces], traces[0].names_at(s))
        if divergence is not None:
            return divergence
    lengths = [len(t.steps) for t in traces]
    if len(set(lengths)) > 1:
        raise TwinrunError(
            f"The replicas' traces have different lengths ({', '.join(map(str, lengths))} "
            "steps) but agree on every step they share; make every replica train the same "
            "number of steps.")
    return None


def compare_step(rows, names):
    """Compare the replicas' records of one step; a `Divergence` if they differ, else None.

    The loss compared is the batch's own loss (`loss`); Keras' running mean is derived from
    it and not compared.

    Arguments:
        rows: each replica's step record (dicts as in `twinrun.trace`).
        names: the names of the tensors in replica 0's record.

    Example:
        >>> row = {"step": 3, "epoch": 0, "batch": None, "loss": 0.5, "variables": [[1, 2, 3]]}
        >>> compare_step([row, dict(row, variables=[[1, 2, 4]])], ["w"]).variables
        ['w']
    """
    records = []
    if len({_key(r.get("batch")) for r in rows}) > 1:
        records.append("batch")
    if len({_key(r.get("loss")) for r in rows}) > 1:
        records.append("loss")
    differing = _differing_variables(rows, names)
    if differing:
        records.append("variables")
    if not records:
        return None
    return Divergence(step=rows[0]["step"], epoch=rows[0].get("epoch"), records=records,
                      variables=differing)


def _key(value):
    # repr keeps -0.0 apart from 0.0 and every NaN equal to itself.
    return repr(value)


def _differing_variables(rows, names):
    reference = rows[0]["variables"]
    differing = []
    for other in rows[1:]:
        for i, (a, b) in enumerate(zip(reference, other["variables"])):
            if a != b:
                name = names[i] if i < len(names) else f"#{i}"
                if name not in differing:
                    differing.append(name)
        if len(reference) != len(other["variables"]):
            differing.append("(number of variables)")
    return differing


def loss_growth(traces, start):
    """Largest |loss_r - loss_0| over replicas at each step from `start` on, from each step's
    batch loss (steps without one are left out)."""
    growth = []
    shared = min(len(t.steps) for t in traces)
    for s in range(max(start, 0), shared):
        losses = [t.steps[s].get("loss") for t in traces]
        if any(v is None for v in losses):
            continue
        diffs = [abs(v - losses[0]) for v in losses[1:]]
        growth.append({"step": s, "max_abs_loss_diff": max(diffs) if diffs else 0.0,
                       "max_rel_loss_diff": max((d / abs(losses[0]) if losses[0] else math.inf)
                                                for d in diffs) if diffs else 0.0})
    return growth


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
        rows.append({"epoch": epoch, "max_relative_distance": max(distances) if distances else 0.0})
    return rows


def _load_snapshot(path):
    with np.load(path, allow_pickle=False) as archive:
        return [archive[f"v{i}"] for i in range(len(archive.files))]


def likely_causes(divergence, environment_diff):
    """Plain-language suspects, from what differed first and how the environments differ."""
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
        causes.append("The hash seed: string hashing differed between replicas (PYTHONHASHSEED "
                      "was random), so the iteration order of a set or dict of strings changed "
                      "the data. Run under `twinrun check` with the hash seed fixed, or sort "
                      "before iterating.")
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
    if state_first and not causes:
        causes.append("The training state outside the model: "
                      + ", ".join(divergence.variables[:3])
                      + (" ..." if len(divergence.variables) > 3 else "")
                      + " differed while every weight and the loss agreed, so the optimizer's "
                      "update (or code that changes the optimizer or a random generator "
                      "between steps) is where the replicas part.")
    if not causes:
        causes.append("Numerical nondeterminism: the same inputs gave different bits, typically "
                      "a kernel that reduces in a varying order (GPU atomics, thread "
                      "scheduling). Localisation names the first layer where it shows.")
    return causes


def is_state_name(name):
    """True for a tensor of the training state outside the model: the optimizer's slots and
    counters (`optimizer/...`) and random generator states (`rng/...`)."""
    return name.startswith(("optimizer/", "rng/"))
