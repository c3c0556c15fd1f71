"""The variance breakdown: how much each source of randomness moves a metric.

Per source (see `twinrun.studies.plan`): the summary of the metric over its runs
(`twinrun.studies.stats.summarize`), its share of the `all` variance, and — from each run's
stored test predictions (one byte per test image) — how often two runs disagree, how much each
class's accuracy moves, and the independent-errors floor:

    floor_sd = sqrt(sum_i p_i (1 - p_i)) / n_test

where `p_i` is the share of runs that classify test image `i` correctly. It is the SD the
accuracy would have if each image were right or wrong independently with its own `p_i`, that
is, from which images happen to be in the test set; an observed SD near it says the runs
differ by the coin flips of borderline images, not by being better or worse models.

A source whose runs all end with identical weights fingerprints changed nothing on this
machine (e.g. `nondeterminism` on a CPU): it is reported with `effect=False`, "no effect here",
instead of a zero variance that would read as a finding.
"""

from dataclasses import dataclass, field

import numpy as np

from twinrun.errors import TwinrunError
from twinrun.studies.stats import (CONFIDENCE, SampleSummary, as_values, metric_range,
                                   summarize)


@dataclass
class SourceRuns:
    """The finished runs of one source, as plain data.

    Arguments:
        values: the metric of each run.
        fingerprints: each run's final weights fingerprint, or None if not recorded.
        predictions: a `(runs, n_test)` uint8 array of predicted classes, or None.
    """

    values: object
    fingerprints: list | None = None
    predictions: object = None


@dataclass(frozen=True)
class SourceSummary:
    """One source's line of the breakdown.

    Arguments:
        source: the source's name.
        summary: n, mean, SD ± error, min, max, CIs (`SampleSummary`).
        effect: False when every run ended with the same weights ("no effect here").
        effect_basis: `"weights fingerprints"`, or `"metric values"` when no fingerprints
            were recorded.
        share: the source's variance over the `all` variance (None without `all` runs or
            when `all` has no variance); not clipped, so noise can push it above 1.
        share_ci95: its CI from the F distribution of a ratio of two sample variances
            (normal data), or None.
        disagreement: mean over run pairs of the fraction of test images they predict
            differently, or None without predictions.
        class_accuracy_sd: `{class: SD across runs of that class's accuracy}`, or None.
        floor_sd: the independent-errors floor (accuracy metrics only), or None.
        note: a sentence for the reader, e.g. why a number is missing.
    """

    source: str
    summary: SampleSummary
    effect: bool
    effect_basis: str
    share: float | None = None
    share_ci95: list | None = None
    disagreement: float | None = None
    class_accuracy_sd: dict | None = None
    floor_sd: float | None = None
    note: str | None = None
    tests: dict = field(default_factory=dict)

    def to_dict(self):
        summary = self.summary.to_dict()
        return {
            "n": summary["n"], "mean": summary["mean"], "sd": summary["sd"],
            "sd_err": summary["sd_err"], "min": summary["min"], "max": summary["max"],
            "ci95": summary["ci95"], "ci95_bootstrap": summary["ci95_bootstrap"],
            "share": self.share, "share_ci95": self.share_ci95,
            "disagreement": self.disagreement, "class_accuracy_sd": self.class_accuracy_sd,
            "floor_sd": self.floor_sd, "effect": self.effect, "effect_basis": self.effect_basis,
            "note": self.note, "tests": {**summary["tests"], **self.tests},
        }


@dataclass(frozen=True)
class VarianceBreakdown:
    """Every source's `SourceSummary`, for one metric."""

    metric: str
    sources: dict

    def to_dict(self):
        return {"metric": self.metric,
                "sources": {name: line.to_dict() for name, line in self.sources.items()}}


def variance_breakdown(runs_by_source, *, metric="test_accuracy", labels=None,
                       confidence=CONFIDENCE, random_state=0):
    """Summarise each source's runs and relate them to the `all` runs.

    Arguments:
        runs_by_source: `{source: SourceRuns}` (the finished runs only).
        metric: the metric's name; the floor is computed for accuracy metrics only.
        labels: the test labels (`n_test` integers), needed for per-class spread and the
            floor; None leaves those out.
        confidence: the CIs' level.
        random_state: the bootstraps' seed.

    Example:
    >>> breakdown = variance_breakdown({"init": SourceRuns([0.90, 0.91, 0.93]),
    ...                                 "all": SourceRuns([0.89, 0.92, 0.94])})
    >>> round(breakdown.sources["init"].share, 2)
    0.37
    """
    if not runs_by_source:
        raise TwinrunError("The study has no sources to summarise; give --vary one or more "
                           "sources.")
    all_values = None
    if "all" in runs_by_source:
        all_values = as_values(runs_by_source["all"].values, "source all")
    lines = {}
    for source, runs in runs_by_source.items():
        values = as_values(runs.values, f"source {source}")
        summary = summarize(values, confidence=confidence, random_state=random_state,
                            bounds=metric_range(metric))
        lines[source] = _source_line(source, runs, values, summary, all_values, metric, labels,
                                     confidence)
    return VarianceBreakdown(metric=metric, sources=lines)


def _source_line(source, runs, values, summary, all_values, metric, labels, confidence):
    effect, basis = has_effect(values, runs.fingerprints)
    share, share_ci = variance_share(values, all_values, confidence=confidence)
    disagreement = class_sd = floor = None
    notes = []
    if not effect:
        notes.append(f"No effect here: all {summary.n} runs ended with identical "
                     f"{basis}, so this source's variance is not a measurement.")
    if summary.n < 2:
        notes.append("One finished run only: no spread can be estimated.")
    if runs.predictions is not None:
        predictions = _predictions(runs.predictions, values.size, source)
        disagreement = pairwise_disagreement(predictions) if summary.n >= 2 else None
        if labels is not None:
            labels = _labels(labels, predictions.shape[1])
            if summary.n >= 2:
                class_sd = class_accuracy_spread(predictions, labels)
            if "accuracy" in metric:
                floor = independent_errors_floor(predictions, labels)
    tests = {"share_ci95": "F distribution of a variance ratio"} if share_ci else {}
    return SourceSummary(source=source, summary=summary, effect=effect, effect_basis=basis,
                         share=share, share_ci95=share_ci, disagreement=disagreement,
                         class_accuracy_sd=class_sd, floor_sd=floor,
                         note=" ".join(notes) or None, tests=tests)


def has_effect(values, fingerprints=None):
    """Whether a source changed anything: `(effect, basis)`.

    Arguments:
        values: the metric of each run.
        fingerprints: each run's final weights fingerprint, or None.

    Equal fingerprints mean equal bits, the strongest evidence of "no effect"; without them
    equal metric values are the best available.
    """
    if fingerprints is not None and len(fingerprints) and all(f is not None for f in fingerprints):
        return len(set(fingerprints)) > 1, "weights fingerprints"
    return bool(np.ptp(np.asarray(values, dtype=float)) > 0), "metric values"


def variance_share(values, all_values, *, confidence=CONFIDENCE):
    """A source's variance over the `all` variance, with its CI: `(share, [lo, hi])`.

    Arguments:
        values: the source's runs; all_values: the `all` runs.
        confidence: the CI's level.

    For normal data `(s1^2 / s2^2) / (sigma1^2 / sigma2^2)` follows F(n1-1, n2-1), so the
    ratio's CI is `[r / F_hi, r / F_lo]`. Returns `(None, None)` when there are no `all`
    runs, too few runs, or no variance in `all`.
    """
    from scipy import stats

    if all_values is None or len(values) < 2 or len(all_values) < 2:
        return None, None
    var_all = float(np.var(all_values, ddof=1))
    if var_all == 0:
        return None, None
    ratio = float(np.var(values, ddof=1)) / var_all
    df1, df2 = len(values) - 1, len(all_values) - 1
    tail = (1 - confidence) / 2
    low = ratio / float(stats.f.ppf(1 - tail, df1, df2))
    high = ratio / float(stats.f.ppf(tail, df1, df2))
    return ratio, [low, high]


def pairwise_disagreement(predictions):
    """The mean, over all pairs of runs, of the fraction of test images they predict differently.

    Arguments:
        predictions: `(runs, n_test)` predicted classes (uint8).

    Counted per image from class counts rather than pair by pair: an image whose runs
    predict class k `c_k` times is agreed on by `sum_k C(c_k, 2)` of the `C(runs, 2)` pairs.

    Example:
    >>> round(pairwise_disagreement(np.array([[0, 1], [0, 2], [0, 1]], dtype=np.uint8)), 4)
    0.3333
    """
    predictions = np.asarray(predictions)
    runs, n_test = predictions.shape
    if runs < 2:
        raise TwinrunError("Disagreement needs the predictions of two runs or more.")
    pairs = runs * (runs - 1) / 2
    agreeing = np.zeros(n_test)
    for label in np.unique(predictions):
        counts = (predictions == label).sum(axis=0)
        agreeing += counts * (counts - 1) / 2
    return float(np.mean(1 - agreeing / pairs))


def class_accuracy_spread(predictions, labels):
    """`{class: SD across runs of that class's test accuracy}` (`ddof=1`).

    Arguments:
        predictions: `(runs, n_test)` predicted classes.
        labels: the `n_test` true classes.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    spread = {}
    for label in np.unique(labels):
        members = labels == label
        accuracy = (predictions[:, members] == label).mean(axis=1)
        spread[int(label)] = float(accuracy.std(ddof=1))
    return spread


def independent_errors_floor(predictions, labels):
    """The accuracy SD that test-set sampling alone gives: `sqrt(sum p_i (1 - p_i)) / n_test`.

    Arguments:
        predictions: `(runs, n_test)` predicted classes.
        labels: the `n_test` true classes.

    Example:
    >>> independent_errors_floor(np.array([[0, 1], [0, 0]]), np.array([0, 1]))
    0.25
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    p = (predictions == labels[None, :]).mean(axis=0)
    return float(np.sqrt(np.sum(p * (1 - p))) / labels.size)


def _predictions(predictions, runs, source):
    array = np.asarray(predictions)
    if array.ndim != 2 or array.shape[0] != runs:
        raise TwinrunError(
            f"The stored predictions of source {source} do not match its runs: expected "
            f"{runs} rows, one per finished run. Received an array of shape {array.shape}.")
    return array


def _labels(labels, n_test):
    array = np.asarray(labels).ravel()
    if array.size != n_test:
        raise TwinrunError(
            f"Expected {n_test} test labels, one per stored prediction. Received {array.size}.")
    return array
