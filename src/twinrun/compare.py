"""The verdict: are the replicas' traces identical, and if not, where and how do they part?"""

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from twinrun.errors import TwinrunError

IDENTICAL = "identical"
DIVERGED = "diverged"
# The bits differ, but every loss and weight stays within --rtol/--atol (`twinrun.tolerance`).
WITHIN_TOLERANCE = "within_tolerance"


@dataclass
class Divergence:
    """The first place the replicas differ.

    `step` is the optimizer step (0-based; `-1` for the training data before step 0),
    `records` what differed there (`data`, `batch`, `loss`, `variables`), `variables` the
    names of the fingerprinted tensors that differed first (model variables, optimizer state
    named `optimizer/...`, random generator states named `rng/...`), and `layer` the layer
    localisation named.

    When every step's words agreed but an exact digest of the whole state did not
    (`twinrun.trace.digests`), `records` is `["exact digest"]`, `step` the last step before
    that digest, and `digest` says which: `{"at": "epoch 2" | "end", "after_step": s,
    "digests": [each replica's whole-state digest]}`.
    """

    step: int
    epoch: int | None
    records: list
    variables: list = field(default_factory=list)
    layer: dict | None = None
    digest: dict | None = None


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
    # With --rtol: the tolerance, and the largest relative loss difference over every step
    # (a fraction) and weight distance over the epoch snapshots (`twinrun.tolerance`).
    tolerance: dict | None = None
    max_loss_difference: float | None = None
    max_weight_distance: float | None = None
    # With --against: the reference file, and what changed since it was recorded, in words.
    reference: dict | None = None
    environment_changes: list = field(default_factory=list)
    # Pitfalls in the checked script (`twinrun lint`, and the hooks' dynamic findings).
    findings: list = field(default_factory=list)
    # The check's id in the store, once recorded.
    check_id: str | None = None
    # A notebook's check: each traced phase with the cell (and line) that trained it, and the
    # phase the divergence is in (`twinrun.notebooks.places`).
    notebook: dict | None = None

    @property
    def identical(self):
        return self.verdict == IDENTICAL

    def to_dict(self):
        return asdict(self)


def first_divergence(traces):
    """The first step where any replica's record differs from replica 0's, or None.

    Steps that a streaming `Comparison` of these same traces already found equal (and freed
    the words of) are not compared again.

    Raises `TwinrunError` when the traces agree on every shared step but have different
    lengths (a replica stopped early, or the scripts do different amounts of work).
    """
    comparison = Comparison(traces)
    divergence = with_exact_digests(traces, comparison.advance(final=True))
    if divergence is not None:
        return divergence
    lengths = [len(t.steps) for t in traces]
    if len(set(lengths)) > 1:
        raise TwinrunError(
            f"The replicas' traces have different lengths ({', '.join(map(str, lengths))} "
            "steps) but agree on every step they share; make every replica train the same "
            "number of steps.")
    return None


EXACT_DIGEST = "exact digest"


def with_exact_digests(traces, divergence):
    """The earlier of `divergence` (from the step words, or None) and the first exact digest
    of the whole state that differs between the replicas (`twinrun.trace.digests`).

    A digest taken after step s counts as a divergence at step s: the words of every step up
    to s agreed, the state after it did not.
    """
    from twinrun.trace.digests import first_digest_difference

    found = first_digest_difference(traces)
    if found is None or found["after"] == 0:
        return divergence
    step = found["after"] - 1
    if divergence is not None and divergence.step <= step:
        return divergence
    record = traces[0].steps[step]
    return Divergence(step=step, epoch=record.get("epoch"), records=[EXACT_DIGEST],
                      variables=found["tensors"],
                      digest={"at": found["at"], "after_step": step,
                              "digests": found["digests"]})


class Comparison:
    """Compares replicas' traces as they grow, each against replica 0, and frees the words of
    every step found equal, so the comparing process holds only what is not yet compared.

    Call `advance()` whenever the traces have grown (`TraceReader.advance`); it returns the
    first divergence once there is one. Each replica keeps its own position, so replicas that
    run one after another are compared against replica 0 while they run, and only replica 0's
    trace is kept whole meanwhile.

    Arguments:
        traces: the replicas' `Trace`s, replica 0 first (the reference).

    Example:
    >>> from twinrun.trace import Trace
    >>> a, b = Trace("a"), Trace("b")
    >>> for t, w in ((a, 7), (b, 7), (a, 8), (b, 9)):
    ...     t.steps.append({"kind": "step", "step": len(t.steps), "epoch": 0, "batch": None,
    ...                     "loss": 0.5, "variables": [[1, 2, w]]})
    >>> comparison = Comparison([a, b])
    >>> comparison.advance().step, comparison.agreed
    (1, 1)
    """

    BLOCK = 4096  # steps compared at once (bounds the temporary arrays)

    def __init__(self, traces):
        self.traces = list(traces)
        # Steps a comparison of these traces already found equal have no words left.
        self.positions = [t.steps.released for t in self.traces[1:]]
        self.differs_at = [None] * len(self.positions)  # index of each replica's first difference
        self.divergence = None
        self._data_checked = False

    @property
    def agreed(self):
        """Steps every replica has, all found equal to replica 0's."""
        if len(self.traces) < 2:
            return len(self.traces[0].steps) if self.traces else 0
        return min(self.positions)

    def advance(self, final=False):
        """Compare every step that replica 0 and each other replica both have.

        Returns the first divergence (a `Divergence`) once one is found, else None. With
        `final`, the traces are complete: a data record missing from some replica counts.
        """
        if self.divergence is not None:
            return self.divergence
        if not self._data_checked and (final or all(len(t.steps) for t in self.traces)):
            self._data_checked = True
            data = [t.data["fingerprint"] if t.data else None for t in self.traces]
            if any(d is not None for d in data) and len(set(data)) > 1:
                self.divergence = Divergence(step=-1, epoch=None, records=["data"])
                return self.divergence
        reference = self.traces[0].steps
        for k, trace in enumerate(self.traces[1:]):
            if self.differs_at[k] is not None:
                continue
            stop = min(len(reference), len(trace.steps))
            while self.positions[k] < stop:
                end = min(stop, self.positions[k] + self.BLOCK)
                first = _first_difference(reference, trace.steps, self.positions[k], end)
                if first is not None:
                    self.differs_at[k] = first
                    self.positions[k] = first
                    # Nothing after its first difference is compared: keep only its last
                    # step's words (the final fingerprint) from now on.
                    trace.steps.drop_words_after(first)
                    break
                self.positions[k] = end
            trace.steps.release_words(self.positions[k])
        if len(self.traces) > 1:
            # Only as far as every other replica freed its own: a later comparison of these
            # traces starts where they did.
            reference.release_words(min(t.steps.released for t in self.traces[1:]))
            if all(d is not None for d in self.differs_at):
                reference.drop_words_after(max(self.differs_at))
        if not self._data_checked:
            return None
        # The earliest difference is the divergence once no replica can still show an earlier
        # one: every other replica has been compared at least that far.
        found = [d for d in self.differs_at if d is not None]
        if found:
            first = min(found)
            if all(p >= first for p in self.positions):
                self.divergence = self._divergence_at(first)
        return self.divergence

    def _divergence_at(self, index):
        rows = [self.traces[0].steps[index]]
        rows += [t.steps[index] for t, d in zip(self.traces[1:], self.differs_at) if d == index]
        return compare_step(rows, self.traces[0].names_at(index))


def _first_difference(reference, other, start, stop):
    """The index of the first step in `start .. stop-1` whose batch, loss or words differ
    between two `StepTable`s, or None. Compares the arrays; fields kept as written are
    compared as records (`compare_step`)."""
    from twinrun.trace.steps import (BATCH_PACKED, HAS_LOSS, RAW_COMPARED, WORDS_DROPPED,
                                     WORDS_RAW)

    fa, fb = reference.flags(start, stop), other.flags(start, stop)
    differs = ((fa ^ fb) & (HAS_LOSS | BATCH_PACKED)) != 0
    loss_a, has_a = reference.loss_column(start, stop)
    loss_b, _ = other.loss_column(start, stop)
    # Bits, not values: -0.0 and 0.0 differ, as their reprs do in the trace.
    differs |= has_a & (loss_a.view(np.int64) != loss_b.view(np.int64))
    packed = (fa & fb & BATCH_PACKED) != 0
    differs |= packed & np.any(reference.batch_column(start, stop)
                               != other.batch_column(start, stop), axis=1)
    tensors_a, width_a = reference.layout(start, stop)
    tensors_b, width_b = other.layout(start, stop)
    layout_differs = (tensors_a != tensors_b) | (width_a != width_b)
    differs |= layout_differs
    # Words: compare the steps up to the first change of layout in one flat comparison. Steps
    # whose words were dropped lie after a difference already found, and end it too.
    ends = layout_differs | (((fa | fb) & WORDS_DROPPED) != 0)
    same_layout = stop if not ends.any() else start + int(np.argmax(ends))
    if same_layout > start:
        unequal = np.flatnonzero(reference.words_range(start, same_layout)
                                 != other.words_range(start, same_layout))
        if len(unequal):
            offsets = reference.word_offsets(start, same_layout)
            steps = np.searchsorted(offsets, unequal, side="right") - 1
            differs[np.unique(steps)] = True
    # Fields kept as written: decided record by record (rare).
    slow = np.flatnonzero(((fa | fb) & (RAW_COMPARED | WORDS_RAW)) != 0)
    differs[slow] = False
    for i in slow:
        rows = [reference[start + int(i)], other[start + int(i)]]
        if compare_step(rows, []) is not None:
            differs[i] = True
    if not differs.any():
        return None
    return start + int(np.argmax(differs))


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
        localization: `twinrun.localize.localize_step`'s result, once the rerun is done.
        gpu_used: whether the replicas' framework had a GPU (`gpu_used`).

    Example:
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


def is_state_name(name):
    """True for a tensor of the training state outside the model: the optimizer's slots and
    counters (`optimizer/...`) and random generator states (`rng/...`)."""
    return name.startswith(("optimizer/", "rng/"))


# -- against a reference: what changed since the recording, in words ---------------------------

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
