"""The verdict: are the replicas' traces identical, and if not, where do they first part?

`Verdict` is what a check returns (and `twinrun check --json` prints); `Comparison` walks the
traces step by step as they grow, and `first_divergence` names the first step and tensors
that differ. What the divergence means (how it grew, its likely causes) is `checks.causes`.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from twinrun.errors import TwinrunError


IDENTICAL = "identical"
DIVERGED = "diverged"
# The bits differ, but every loss and weight stays within --rtol/--atol (`twinrun.checks.tolerance`).
WITHIN_TOLERANCE = "within_tolerance"


@dataclass
class Divergence:
    """The first place the replicas differ.

    `step` is the optimizer step (0-based; `-1` for the training data before step 0),
    `epoch` the epoch it belongs to, counted from 1 as Keras prints epochs (`Epoch 1/5`) and
    as every twinrun output counts them (the step records of a trace keep the 0-based epoch
    a framework's callbacks receive: `epoch_number` converts),
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
    # (a fraction) and weight distance over the epoch snapshots (`twinrun.checks.tolerance`).
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


def epoch_number(record):
    """The epoch of a trace's step record counted from 1, as every output counts epochs (step
    records keep the 0-based index a framework's callbacks receive); None when unknown.

    >>> epoch_number({"step": 0, "epoch": 0}), epoch_number({"step": 5})
    (1, None)
    """
    epoch = record.get("epoch")
    return epoch + 1 if isinstance(epoch, int) else None


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
    return Divergence(step=step, epoch=epoch_number(record), records=[EXACT_DIGEST],
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
        self._schemes_checked = False

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
        if not self._schemes_checked and all(t.header for t in self.traces):
            self._schemes_checked = True
            schemes = sorted({t.header.get("fingerprint_scheme", 1) for t in self.traces})
            if len(schemes) > 1:
                raise TwinrunError(
                    f"The traces' step words were written with different fingerprint schemes "
                    f"({' and '.join(map(str, schemes))}), which cannot be compared; record "
                    f"them again with one twinrun version and device.")
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
    return Divergence(step=rows[0]["step"], epoch=epoch_number(rows[0]), records=records,
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


def is_state_name(name):
    """True for a tensor of the training state outside the model: the optimizer's slots and
    counters (`optimizer/...`) and random generator states (`rng/...`)."""
    return name.startswith(("optimizer/", "rng/"))
