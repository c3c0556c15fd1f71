"""A against B: does a change beat the noise between seeds?

Given the finished runs of two studies (same metric), this reports:
- the difference of means, B - A, with a bootstrap CI (`scipy.stats.bootstrap`, BCa,
  each arm resampled on its own);
- Welch's t-test (`scipy.stats.ttest_ind(equal_var=False)`), which does not assume the two
  arms are equally noisy, and a permutation test of the difference of means
  (`scipy.stats.permutation_test`; exact when the arms are small enough to enumerate);
- P(A beats B): the probability that a random run of A is better than a random run of B,
  ties counted half (the Mann-Whitney AUC), with a bootstrap CI, as Bouthillier et al.
  (MLSys 2021) recommend in place of single-seed comparisons;
- the runs per arm that would detect the observed difference with 80 % power at alpha 0.05
  (statsmodels `TTestIndPower` on Cohen's d);
- a one-line reading: "B beats A by 0.41 ± 0.18 points (p = 0.003)" when Welch's p is below
  0.05 and the bootstrap CI excludes 0, else "not distinguishable from seed noise at n = 5".

"Better" follows the metric: higher for accuracies, lower for losses and errors.
"""

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from twinrun.errors import TwinrunError
from twinrun.studies.stats import (CONFIDENCE, N_RESAMPLES, ConfidenceInterval, as_values,
                                   bootstrap_interval)

ALPHA = 0.05
POWER = 0.8
FEW_RUNS = 5


@dataclass(frozen=True)
class StudyComparison:
    """The comparison of two studies' runs on one metric.

    Arguments:
        metric: the metric compared; higher_is_better: its direction.
        names: the two arms' names (A, B).
        n_a, n_b, mean_a, mean_b, sd_a, sd_b: each arm's runs.
        difference: mean_b - mean_a; ci: its bootstrap CI.
        welch_statistic, welch_df, p_welch: Welch's t-test (B against A).
        p_permutation: the permutation test's two-sided p-value; permutation_exact: True when
            every relabelling was enumerated.
        p_a_beats_b: P(a random run of A is better than a random run of B), ties half;
            p_a_beats_b_ci: its bootstrap CI.
        cohen_d: the difference over the pooled SD (B - A).
        runs_for_power80: runs per arm to detect `cohen_d` with 80 % power (None: no
            difference to detect).
        distinguishable: True when p_welch < 0.05 and the CI excludes 0.
        reading: the one-line reading.
        warnings: sentences about the comparison's limits (e.g. fewer than 5 runs per arm).
    """

    metric: str
    higher_is_better: bool
    names: tuple
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    difference: float
    ci: ConfidenceInterval
    welch_statistic: float | None
    welch_df: float | None
    p_welch: float
    p_permutation: float
    permutation_exact: bool
    p_a_beats_b: float
    p_a_beats_b_ci: ConfidenceInterval
    cohen_d: float | None
    runs_for_power80: int | None
    distinguishable: bool
    reading: str
    warnings: list = field(default_factory=list)

    def to_dict(self):
        return {
            "metric": self.metric, "higher_is_better": self.higher_is_better,
            "names": list(self.names), "n_a": self.n_a, "n_b": self.n_b,
            "mean_a": self.mean_a, "mean_b": self.mean_b, "sd_a": self.sd_a, "sd_b": self.sd_b,
            "difference": self.difference, "ci95": self.ci.to_list(),
            "welch_statistic": self.welch_statistic, "welch_df": self.welch_df,
            "p_welch": self.p_welch, "p_permutation": self.p_permutation,
            "permutation_exact": self.permutation_exact,
            "p_a_beats_b": self.p_a_beats_b, "p_a_beats_b_ci95": self.p_a_beats_b_ci.to_list(),
            "cohen_d": self.cohen_d, "runs_for_power80": self.runs_for_power80,
            "distinguishable": self.distinguishable, "reading": self.reading,
            "warnings": self.warnings,
            "tests": {"ci95": f"difference of means, {self.ci.method}",
                      "p_welch": "Welch's t-test (scipy.stats.ttest_ind, equal_var=False)",
                      "p_permutation": "permutation test of the difference of means "
                                       "(scipy.stats.permutation_test)",
                      "p_a_beats_b": "Mann-Whitney AUC, ties half (Bouthillier et al. 2021), "
                                     f"{self.p_a_beats_b_ci.method} CI",
                      "runs_for_power80": "statsmodels TTestIndPower on Cohen's d, "
                                          "alpha 0.05, two-sided"},
        }


def metric_direction(metric):
    """True when a higher value of `metric` is better (accuracy), False for losses and errors."""
    name = metric.lower()
    return not any(word in name for word in ("loss", "error"))


def compare_runs(values_a, values_b, *, metric="test_accuracy", metric_b=None,
                 names=("A", "B"), higher_is_better=None, confidence=CONFIDENCE,
                 random_state=0, n_resamples=N_RESAMPLES):
    """Compare the finished runs of two studies on one metric.

    Arguments:
        values_a, values_b: the metric of each run of A and of B (at least 2 each).
        metric: the metric's name (A's).
        metric_b: B's metric, if it may differ; a different one is refused.
        names: how the reading names the arms.
        higher_is_better: the metric's direction; None infers it from the name.
        confidence, random_state, n_resamples: the CIs' level, the seed of the bootstraps
            and the permutation test, and their resamples.

    Example:
    >>> result = compare_runs([0.90, 0.91, 0.90, 0.91, 0.90], [0.92, 0.93, 0.92, 0.93, 0.92])
    >>> result.p_a_beats_b, result.distinguishable
    (0.0, True)
    """
    from scipy import stats

    name_a, name_b = names
    if metric_b is not None and metric_b != metric:
        raise TwinrunError(
            f"Cannot compare {name_a} ({metric}) with {name_b} ({metric_b}): they measure "
            f"different metrics; compare two studies of the same --metric.")
    a = as_values(values_a, name_a)
    b = as_values(values_b, name_b)
    for name, arm in ((name_a, a), (name_b, b)):
        if arm.size < 2:
            raise TwinrunError(
                f"Comparing needs at least 2 finished runs per study, and {name} has "
                f"{arm.size}; resume it or run it again with more --runs.")
    higher = metric_direction(metric) if higher_is_better is None else bool(higher_is_better)
    difference = float(b.mean() - a.mean())
    ci = bootstrap_interval((a, b), _difference_of_means, confidence=confidence,
                            random_state=random_state, n_resamples=n_resamples)
    welch_t, welch_df, p_welch = _welch(a, b)
    permutation = stats.permutation_test(
        (a, b), _difference_of_means, vectorized=True, n_resamples=n_resamples,
        alternative="two-sided", rng=np.random.default_rng(random_state))
    exact = math.comb(a.size + b.size, a.size) <= n_resamples
    # Orient the values so that larger is better, then P(A beats B) is P(A > B).
    sign = 1.0 if higher else -1.0
    p_beats = float(_a_beats_b(sign * a, sign * b))
    beats_ci = bootstrap_interval((sign * a, sign * b), _a_beats_b, confidence=confidence,
                                  random_state=random_state, n_resamples=n_resamples)
    d = cohen_d(a, b)
    distinguishable = bool(p_welch < ALPHA and (ci.low > 0 or ci.high < 0))
    return StudyComparison(
        metric=metric, higher_is_better=higher, names=(name_a, name_b), n_a=int(a.size),
        n_b=int(b.size), mean_a=float(a.mean()), mean_b=float(b.mean()),
        sd_a=float(a.std(ddof=1)), sd_b=float(b.std(ddof=1)), difference=difference, ci=ci,
        welch_statistic=welch_t, welch_df=welch_df, p_welch=p_welch,
        p_permutation=float(permutation.pvalue), permutation_exact=exact,
        p_a_beats_b=p_beats, p_a_beats_b_ci=beats_ci, cohen_d=d,
        runs_for_power80=runs_for_power(d),
        distinguishable=distinguishable,
        reading=_reading(metric, higher, names, a, b, difference, ci, p_welch,
                         distinguishable),
        warnings=_warnings(names, a, b))


def probability_a_beats_b(values_a, values_b, higher_is_better=True):
    """P(a random run of A is better than a random run of B), ties counted half.

    Arguments:
        values_a, values_b: the two arms' runs.
        higher_is_better: the metric's direction.

    Example:
    >>> probability_a_beats_b([3, 4], [1, 2])
    1.0
    """
    sign = 1.0 if higher_is_better else -1.0
    return float(_a_beats_b(sign * np.asarray(values_a, float),
                            sign * np.asarray(values_b, float)))


def cohen_d(values_a, values_b):
    """(mean B - mean A) over the pooled SD; None when both arms have no spread and equal means.

    Arguments:
        values_a, values_b: the two arms' runs (2 or more each).
    """
    a, b = np.asarray(values_a, float), np.asarray(values_b, float)
    pooled = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1))
                       / (a.size + b.size - 2))
    difference = float(b.mean() - a.mean())
    if pooled == 0:
        return None if difference == 0 else math.copysign(math.inf, difference)
    return difference / pooled


def runs_for_power(d, *, alpha=ALPHA, power=POWER):
    """Runs per arm a two-sided t-test needs to detect an effect of Cohen's `d` with `power`.

    Arguments:
        d: Cohen's d (its sign does not matter); None or 0: nothing to detect, returns None.
        alpha, power: the test's level and the wanted power.

    Example:
    >>> runs_for_power(0.5)  # Cohen's classic: 64 per group for a medium effect
    64
    """
    from statsmodels.stats.power import TTestIndPower

    if d is None or d == 0 or math.isnan(d):
        return None
    if math.isinf(d):
        return 2
    analysis = TTestIndPower()
    with warnings.catch_warnings():
        # The root finder cannot bracket effects so large that two runs already suffice
        # (it warns and gives NaN), and the power at n = 2 itself overflows for huge d.
        warnings.simplefilter("ignore")
        at_two = float(analysis.power(effect_size=abs(d), nobs1=2, alpha=alpha, ratio=1.0))
        if at_two >= power or (math.isnan(at_two) and abs(d) > 1):
            return 2
        try:
            n = analysis.solve_power(effect_size=abs(d), alpha=alpha, power=power, ratio=1.0,
                                     alternative="two-sided")
        except (ValueError, RuntimeError, ArithmeticError):
            return None
    n = float(np.asarray(n).ravel()[0])
    return max(2, math.ceil(n)) if math.isfinite(n) else None


def _welch(a, b):
    from scipy import stats

    if np.ptp(a) == 0 and np.ptp(b) == 0:
        # Welch's t is undefined without spread: equal constants are one result, unequal
        # ones are as different as two results can be.
        return None, None, 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings():
        # Runs that differ only in the last bits make SciPy warn about precision loss; the
        # statistic is still the best estimate there is, and the reading says how close.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(b, a, equal_var=False)
    return float(result.statistic), float(result.df), float(result.pvalue)


def _difference_of_means(x, y, axis=-1):
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


def _a_beats_b(x, y, axis=-1):
    x, y = np.moveaxis(np.asarray(x), axis, -1), np.moveaxis(np.asarray(y), axis, -1)
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    ties = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * ties


def _reading(metric, higher, names, a, b, difference, ci, p_welch, distinguishable):
    name_a, name_b = names
    points = "accuracy" in metric.lower() and a.min() >= 0 and max(a.max(), b.max()) <= 1
    scale, unit = (100.0, "points") if points else (1.0, f"in {metric}")
    half = ci.half_width * scale
    size = abs(difference) * scale
    arms = f"n = {a.size}" if a.size == b.size else f"n = {a.size} and {b.size}"
    if distinguishable:
        b_better = (difference > 0) == higher
        winner, loser = (name_b, name_a) if b_better else (name_a, name_b)
        return (f"{winner} beats {loser} by {_pair(size, half)} {unit} "
                f"({_p(p_welch)}).")
    return (f"{name_a} and {name_b} are not distinguishable from seed noise at {arms} "
            f"({name_b} - {name_a} = {_pair(difference * scale, half)} {unit}, "
            f"{_p(p_welch)}).")


def _warnings(names, a, b):
    few = [f"{name} has {arm.size}" for name, arm in zip(names, (a, b)) if arm.size < FEW_RUNS]
    if not few:
        return []
    return [f"Fewer than {FEW_RUNS} runs per arm ({' and '.join(few)}): the tests have little "
            f"power and the reading is tentative; run more with --runs."]


def _pair(value, half):
    """`value ± half`, both to the decimals that show two significant digits of `half`."""
    if 0 < half < 1e-3:  # differences in the last bits read better in scientific notation
        return f"{value:.1e} ± {half:.1e}"
    decimals = 3 if half <= 0 else max(0, 1 - math.floor(math.log10(half)))
    return f"{value:.{decimals}f} ± {half:.{decimals}f}"


def _p(p):
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"
