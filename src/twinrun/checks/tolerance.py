"""Tolerance verdicts: the bits differ, but do the losses and weights stay close enough?

Where exact bits cannot be had (GPU kernels that reduce in a varying order, another CPU, a new
framework version), the honest question is how far apart the runs end up. With `--rtol R
[--atol A]`, a run is *within tolerance* of the first (replica 0, or the reference) when

- every step's loss, at every step both have one: |loss - loss_0| <= A + R * |loss_0|
  (`numpy.isclose`'s rule), and
- every per-epoch weight snapshot both have: ||w - w_0|| <= A + R * ||w_0||, with ||.|| the
  Euclidean norm over all of the model's weights (the distance `twinrun.checks.causes` reports).

The largest relative differences are reported whatever the verdict: the loss one in the form
of the well-known answer's table ("max loss difference 0.0144 %").
"""

import math
from dataclasses import dataclass

import numpy as np

from twinrun.errors import TwinrunError


@dataclass(frozen=True)
class Tolerance:
    """How far runs may drift apart and still count as within tolerance.

    Arguments:
        rtol: relative tolerance (0.001 = 0.1 %).
        atol: absolute tolerance, added to `rtol * |reference|`.

    Example:
    >>> Tolerance(1e-3).allows(1.0005, 1.0)
    True
    """

    rtol: float
    atol: float = 0.0

    def allows(self, value, reference):
        return abs(value - reference) <= self.atol + self.rtol * abs(reference)

    def to_dict(self):
        return {"rtol": self.rtol, "atol": self.atol}


def validate_tolerance(rtol, atol=None):
    """The `Tolerance` of `--rtol`/`--atol`, or None without `--rtol`.

    Raises `TwinrunError` (one sentence) for a negative or non-finite value, or `--atol`
    without `--rtol`.

    Example:
    >>> validate_tolerance(1e-3, 1e-8)
    Tolerance(rtol=0.001, atol=1e-08)
    >>> validate_tolerance(None) is None
    True
    """
    if rtol is None:
        if atol is not None:
            raise TwinrunError("--atol needs --rtol too (e.g. `--rtol 1e-3 --atol 1e-8`); "
                               "pass --rtol 0 to compare absolute differences only.")
        return None
    for option, value in (("--rtol", rtol), ("--atol", atol)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise TwinrunError(f"Expected {option} to be a number of at least 0 (e.g. 1e-3). "
                               f"Received: {option} {value!r}.")
    return Tolerance(float(rtol), float(atol or 0.0))


@dataclass
class ToleranceResult:
    """How far the runs drifted from the first one, and whether it stays within tolerance.

    `max_loss_difference` is the largest |loss - loss_0| / |loss_0| over every step and run
    (a fraction: 0.000144 is 0.0144 %), `max_weight_distance` the largest ||w - w_0|| / ||w_0||
    over the epoch snapshots (None without snapshots), `steps` the steps whose losses were
    compared, `reasons` why the runs are not within tolerance (empty when they are).
    """

    tolerance: Tolerance
    max_loss_difference: float | None
    max_weight_distance: float | None
    steps: int
    epochs: int
    reasons: list

    @property
    def within(self):
        return not self.reasons


def measure(traces, weight_rows):
    """The largest relative loss difference at each step, against `traces[0]`.

    Arguments:
        traces: the traces (the first is the one compared against).
        weight_rows: `twinrun.checks.causes.weight_distance(traces)`.

    Returns `(max_loss_difference, compared_steps, lengths_differ, max_weight_distance)`.
    """
    lengths = [len(t.steps) for t in traces]
    shared = min(lengths)
    columns = [t.steps.loss_column(0, shared) for t in traces]
    reference, has_reference = columns[0]
    largest = 0.0
    compared = 0
    for values, has in columns[1:]:
        both = has & has_reference
        compared = max(compared, int(both.sum()))
        a, b = values[both], reference[both]
        nan = np.isnan(a) | np.isnan(b)
        same_nan = np.isnan(a) & np.isnan(b)
        if np.any(nan & ~same_nan):
            largest = math.inf
            continue
        a, b = a[~nan], b[~nan]
        differences = np.abs(a - b)
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(b != 0, differences / np.abs(b),
                                np.where(differences == 0, 0.0, math.inf))
        if relative.size:
            largest = max(largest, float(relative.max()))
    distances = [row["max_relative_distance"] for row in weight_rows]
    return (largest if compared else None, compared, len(set(lengths)) > 1,
            max(distances) if distances else None)


def judge(traces, weight_rows, tolerance):
    """Whether every run in `traces` stays within `tolerance` of `traces[0]`.

    Arguments:
        traces: the whole runs' traces (not stopped at a divergence), the first compared
            against.
        weight_rows: `twinrun.checks.causes.weight_distance(traces)`: per-epoch relative distances.
        tolerance: a `Tolerance`.

    Returns a `ToleranceResult`.
    """
    largest, compared, lengths_differ, weights = measure(traces, weight_rows)
    reasons = []
    if lengths_differ:
        lengths = ", ".join(str(len(t.steps)) for t in traces)
        reasons.append(f"the runs trained different numbers of steps ({lengths}), so not every "
                       f"step's loss can be compared")
    if not compared:
        reasons.append("no step has a loss in every run, so the losses cannot be compared")
    else:
        shared = min(len(t.steps) for t in traces)
        reference, has_reference = traces[0].steps.loss_column(0, shared)
        for trace in traces[1:]:
            values, has = trace.steps.loss_column(0, shared)
            both = has & has_reference
            a, b = values[both], reference[both]
            close = np.isclose(a, b, rtol=tolerance.rtol, atol=tolerance.atol, equal_nan=True)
            if not close.all():
                step = int(trace.steps.step_numbers(0, shared)[both][int(np.argmin(close))])
                reasons.append(f"the loss at step {step} differs by more than the tolerance")
                break
    for row in weight_rows:
        if row["max_relative_distance"] > tolerance.rtol + _absolute_share(traces, row,
                                                                           tolerance):
            reasons.append(f"the weights after {row['epoch']} epochs are further apart than "
                           f"the tolerance (relative distance "
                           f"{row['max_relative_distance']:.3g})")
            break
    return ToleranceResult(tolerance=tolerance, max_loss_difference=largest,
                           max_weight_distance=weights, steps=compared,
                           epochs=len(weight_rows), reasons=reasons)


def _absolute_share(traces, row, tolerance):
    """`atol / ||w_0||` for one epoch, so the weight rule reads ||dw|| <= atol + rtol ||w_0||."""
    if not tolerance.atol:
        return 0.0
    norm = row.get("reference_norm")
    return tolerance.atol / norm if norm else math.inf


def percent(fraction):
    """A relative difference as the answer's table writes it.

    Example:
    >>> percent(0.000144)
    '0.0144 %'
    """
    if fraction is None:
        return "n/a"
    if math.isinf(fraction):
        return "inf %"
    return f"{100 * fraction:.4f} %" if 100 * fraction >= 1e-4 or fraction == 0 \
        else f"{100 * fraction:.3g} %"
