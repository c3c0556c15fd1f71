"""Stratified k-fold cross-validation: check the folds, summarise the per-fold results.

The folds are scikit-learn's `StratifiedKFold(n_splits=K, shuffle=True, random_state=seed)`
over the training set. Each fold's model early-stops on its held-out fold and is evaluated
on the test set too; the results come back as scikit-learn's `cross_validate` shapes them: a
dict of per-fold arrays (`{"test_accuracy": array([...]), "fit_time": array([...]), ...}`).

A caution the summary carries: the folds' models share (K-2)/(K-1) of their training data,
so their scores are not independent and the plain Student-t CI of the mean is too narrow.
`CVSummary.ci_corrected` widens it with Nadeau & Bengio's corrected resampled t (2003):
variance `(1/J + n_test/n_train) s^2` over J folds, with `n_test/n_train = 1/(K-1)`.
"""

import math
import numbers
from dataclasses import dataclass

from twinrun.errors import TwinrunError
from twinrun.studies.stats import (CONFIDENCE, ConfidenceInterval, SampleSummary, metric_range,
                                   summarize, t_interval)


@dataclass(frozen=True)
class CVSummary:
    """Cross-validation results for one metric.

    Arguments:
        metric: the metric summarised.
        n_splits, repeats: the design.
        folds: the metric of each fold, in fold order (repeat by repeat).
        summary: n, mean, SD ± error, min, max, the Student-t CI (independent folds) and the
            bootstrap CI (`SampleSummary`).
        ci_corrected: Nadeau & Bengio's corrected resampled-t CI, or None with one fold.
        results: the `cross_validate`-shaped dict of per-fold arrays (every numeric key).
    """

    metric: str
    n_splits: int
    repeats: int
    folds: list
    summary: SampleSummary
    ci_corrected: ConfidenceInterval | None
    results: dict

    @property
    def mean(self):
        return self.summary.mean

    @property
    def sd(self):
        return self.summary.sd

    def to_dict(self):
        summary = self.summary.to_dict()
        return {
            "metric": self.metric, "n_splits": self.n_splits, "repeats": self.repeats,
            "folds": self.folds, "mean": summary["mean"], "sd": summary["sd"],
            "sd_err": summary["sd_err"], "ci95": summary["ci95"],
            "ci95_bootstrap": summary["ci95_bootstrap"],
            "ci95_corrected": self.ci_corrected.to_list() if self.ci_corrected else None,
            "cross_validate": {key: values.tolist() for key, values in self.results.items()},
            "tests": {**summary["tests"], "ci95_corrected":
                      self.ci_corrected.method if self.ci_corrected else None},
        }


def cross_validate_results(fold_results):
    """Per-fold dicts of numbers as one dict of arrays, the shape of `cross_validate`.

    Arguments:
        fold_results: one dict per fold, e.g. `{"test_accuracy": 0.91, "fit_time": 42.0}`.
            Keys missing from some folds, or holding non-numbers, are left out.

    Example:
    >>> cross_validate_results([{"test_accuracy": 0.9, "fit_time": 3.0},
    ...                         {"test_accuracy": 0.8, "fit_time": 2.5}])["test_accuracy"]
    array([0.9, 0.8])
    """
    import numpy as np

    if not fold_results:
        return {}
    keys = [key for key in fold_results[0]
            if all(_is_number(fold.get(key)) for fold in fold_results)]
    return {key: np.array([float(fold[key]) for fold in fold_results]) for key in keys}


def cv_summary(fold_results, *, metric="test_accuracy", n_splits=None, repeats=1,
               confidence=CONFIDENCE, random_state=0):
    """Summarise a cross-validation's folds for one metric.

    Arguments:
        fold_results: one dict of numbers per finished fold, in fold order.
        metric: the key to summarise.
        n_splits: K (needed for the corrected CI; default: folds per repeat).
        repeats: how many fold assignments the folds come from.
        confidence, random_state: the CIs' level and the bootstrap's seed.
    """
    results = cross_validate_results(fold_results)
    if metric not in results:
        known = ", ".join(sorted(results)) or "none"
        raise TwinrunError(
            f"No fold reported the metric {metric!r}; the folds report {known}. Pick one with "
            f"--metric.")
    values = results[metric]
    n_splits = n_splits or max(2, round(values.size / repeats))
    bounds = metric_range(metric)
    summary = summarize(values, confidence=confidence, random_state=random_state,
                        bounds=bounds)
    corrected = None
    if values.size >= 2:
        # Nadeau & Bengio: var(mean) = (1/J + n_test/n_train) s^2, against s^2 / J naive.
        scale = math.sqrt(1 + values.size / (n_splits - 1))
        interval = t_interval(values, confidence=confidence, scale=scale, bounds=bounds)
        scale_words = ("" if interval.method == "Student t"
                       else ", " + interval.method.replace("Student t", "").strip(", "))
        corrected = ConfidenceInterval(interval.low, interval.high, confidence,
                                       "corrected resampled t (Nadeau & Bengio 2003)"
                                       + scale_words)
    return CVSummary(metric=metric, n_splits=n_splits, repeats=repeats,
                     folds=values.tolist(), summary=summary, ci_corrected=corrected,
                     results=results)


def _is_number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))
