"""The statistics every study shares: a sample's summary and its confidence intervals.

Results are small named objects, like `scipy.stats`' (`TtestResult`), each naming the test it
used; `to_dict()` gives plain JSON-able data. SciPy is imported inside the functions, so that
importing twinrun (and `twinrun --help`) stays fast.

Bootstraps resample with a fixed `random_state` (default 0): the same runs give the same
interval every time, which a reproducibility tool owes its users.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np

from twinrun.errors import TwinrunError

CONFIDENCE = 0.95
N_RESAMPLES = 9999
BATCH = 1000  # resamples evaluated at once: bounds memory for pairwise statistics


@dataclass(frozen=True)
class ConfidenceInterval:
    """A two-sided confidence interval and the method that gave it.

    Arguments:
        low, high: the bounds.
        level: the confidence level (0.95).
        method: e.g. `"Student t"`, `"bootstrap BCa"`, `"bootstrap percentile"`.
    """

    low: float
    high: float
    level: float
    method: str

    @property
    def half_width(self):
        return (self.high - self.low) / 2

    def to_list(self):
        return [self.low, self.high]

    def to_dict(self):
        return {"low": self.low, "high": self.high, "level": self.level, "method": self.method}


@dataclass(frozen=True)
class SampleSummary:
    """n, mean, SD (with its own uncertainty), min, max and two 95 % CIs of the mean.

    Arguments:
        n: number of values.
        mean, sd: the mean and the sample standard deviation (`ddof=1`).
        sd_err: the SD's standard error, `sd / sqrt(2 (n - 1))` (exact for normal data to
            first order): with 8 runs an SD is only known to about ±27 %.
        min, max: the extremes.
        ci_t: the mean's CI from Student's t (`scipy.stats.t`).
        ci_bootstrap: the mean's CI from a bootstrap over the values (`scipy.stats.bootstrap`).

    With a single value, `sd`, `sd_err` and both CIs are None.
    """

    n: int
    mean: float
    sd: float | None
    sd_err: float | None
    min: float
    max: float
    ci_t: ConfidenceInterval | None
    ci_bootstrap: ConfidenceInterval | None

    def to_dict(self):
        return {"n": self.n, "mean": self.mean, "sd": self.sd, "sd_err": self.sd_err,
                "min": self.min, "max": self.max,
                "ci95": self.ci_t.to_list() if self.ci_t else None,
                "ci95_bootstrap": self.ci_bootstrap.to_list() if self.ci_bootstrap else None,
                "tests": {"ci95": self.ci_t.method if self.ci_t else None,
                          "ci95_bootstrap":
                              self.ci_bootstrap.method if self.ci_bootstrap else None}}


def as_values(values, name="values"):
    """`values` as a 1-D float array without NaN, or a `TwinrunError` naming `name`."""
    array = np.asarray(values, dtype=float).ravel()
    if array.size == 0:
        raise TwinrunError(f"No finished runs in {name}: there is nothing to summarise yet; "
                           f"run or resume the study first.")
    if not np.all(np.isfinite(array)):
        raise TwinrunError(f"{name} holds a value that is not a finite number; "
                           f"check the runs' metrics with `twinrun runs`.")
    return array


def summarize(values, *, confidence=CONFIDENCE, random_state=0, n_resamples=N_RESAMPLES,
              bounds=(None, None)):
    """Summarise one metric over runs: n, mean, SD ± its error, min, max, CIs of the mean.

    Arguments:
        values: the metric of each finished run.
        confidence: the CIs' level.
        random_state: the bootstrap's seed.
        n_resamples: bootstrap resamples.
        bounds: the metric's range (`metric_range`): the t interval stays within it (the
            bootstrap's does anyway: it resamples the values themselves).

    Example:
    >>> s = summarize([0.90, 0.91, 0.92])
    >>> round(s.mean, 3), round(s.sd, 3), s.ci_t.method
    (0.91, 0.01, 'Student t')
    """
    x = as_values(values)
    n = int(x.size)
    mean = float(x.mean())
    if n < 2:
        return SampleSummary(n, mean, None, None, float(x.min()), float(x.max()), None, None)
    sd = float(x.std(ddof=1))
    return SampleSummary(
        n=n, mean=mean, sd=sd, sd_err=sd / math.sqrt(2 * (n - 1)),
        min=float(x.min()), max=float(x.max()),
        ci_t=t_interval(x, confidence=confidence, bounds=bounds),
        ci_bootstrap=bootstrap_interval((x,), _mean, confidence=confidence,
                                        random_state=random_state, n_resamples=n_resamples))


# The range each study metric can take: an interval for it never leaves it.
METRIC_RANGES = {"test_accuracy": (0.0, 1.0), "test_loss": (0.0, None),
                 "best_val_loss": (0.0, None), "stopped_epoch": (0.0, None)}
LOGIT_METHOD = "Student t on the logit scale"
# A proportion of exactly 0 or 1 has no logit; it is moved this far inside before the
# transform (far below any test set's resolution of 1/n_test).
_LOGIT_EPS = 1e-6


def metric_range(metric):
    """`(low, high)` a metric can take (None: unbounded on that side).

    Example:
    >>> metric_range("test_accuracy"), metric_range("my_score")
    ((0.0, 1.0), (None, None))
    """
    if metric in METRIC_RANGES:
        return METRIC_RANGES[metric]
    if "accuracy" in str(metric) or str(metric).endswith("_acc"):
        return (0.0, 1.0)
    return (None, None)


def t_interval(values, *, confidence=CONFIDENCE, scale=1.0, bounds=(None, None)):
    """The mean's CI from Student's t: `mean ± t_{(1+c)/2, n-1} * sd / sqrt(n) * scale`.

    For a proportion (`bounds=(0, 1)`, an accuracy) the interval is built on the logit scale
    and mapped back, so it stays within [0, 1] and is asymmetric near the ends (the method
    says so). A metric bounded on one side only (a loss, >= 0) keeps the plain interval, cut at
    the bound, and the method says "clipped".

    Arguments:
        values: at least two numbers.
        confidence: the level.
        scale: widens the standard error (1 for independent values; see
            `twinrun.studies.cv` for the correction when they are not).
        bounds: the metric's range (`metric_range`); `(None, None)` for none.

    Example:
    >>> ci = t_interval([0.5829, 0.6088], bounds=(0.0, 1.0))
    >>> 0 < ci.low < ci.high < 1, ci.method
    (True, 'Student t on the logit scale')
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = x.size
    low_bound, high_bound = bounds
    if low_bound == 0.0 and high_bound == 1.0:
        p = np.clip(x, _LOGIT_EPS, 1 - _LOGIT_EPS)
        inner = t_interval(np.log(p / (1 - p)), confidence=confidence, scale=scale)
        logistic = lambda v: float(1 / (1 + math.exp(-v)))  # noqa: E731
        return ConfidenceInterval(logistic(inner.low), logistic(inner.high), confidence,
                                  LOGIT_METHOD)
    mean = float(x.mean())
    sem = float(x.std(ddof=1)) / math.sqrt(n) * scale
    if sem == 0:
        return ConfidenceInterval(mean, mean, confidence, "Student t")
    half = float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) * sem
    low, high, method = mean - half, mean + half, "Student t"
    if low_bound is not None and low < low_bound:
        low, method = low_bound, f"Student t, clipped at {low_bound:g}"
    if high_bound is not None and high > high_bound:
        high, method = high_bound, f"Student t, clipped at {high_bound:g}"
    return ConfidenceInterval(low, high, confidence, method)


def bootstrap_interval(samples, statistic, *, confidence=CONFIDENCE, random_state=0,
                       n_resamples=N_RESAMPLES, method="BCa"):
    """A bootstrap CI of `statistic(*samples, axis=-1)`, resampling each sample on its own.

    Arguments:
        samples: a tuple of 1-D arrays (one for a mean, two for a difference).
        statistic: a vectorised function `f(*samples, axis)`.
        confidence, random_state, n_resamples: as in `scipy.stats.bootstrap`.
        method: `"BCa"` or `"percentile"`.

    BCa corrects the percentile interval's bias and skew but is undefined when the
    resampled statistics are degenerate (e.g. P(A > B) = 1 in every resample); then the
    percentile interval is used, and when even that is undefined (all values equal) the
    interval shrinks to the statistic itself. The returned `method` says which one applied.
    """
    from scipy import stats

    observed = float(statistic(*samples, axis=-1))
    for chosen in dict.fromkeys((method, "percentile")):
        with warnings.catch_warnings():
            # Degenerate resamples warn and give NaN; we fall back instead of warning.
            warnings.simplefilter("ignore")
            try:
                result = stats.bootstrap(
                    samples, statistic, vectorized=True, axis=-1, confidence_level=confidence,
                    n_resamples=n_resamples, method=chosen, batch=BATCH,
                    rng=np.random.default_rng(random_state))
            except ValueError:
                continue
        low, high = (float(v) for v in result.confidence_interval)
        if math.isfinite(low) and math.isfinite(high):
            return ConfidenceInterval(low, high, confidence, f"bootstrap {chosen}")
    return ConfidenceInterval(observed, observed, confidence, "bootstrap (degenerate)")


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def runs_for_mean(sd, *, fraction=0.5, confidence=CONFIDENCE):
    """How many runs make the mean's Student-t interval at most `fraction` × SD wide on each
    side, and that half-width for this `sd`: `(n, half_width)`.

    The answer depends on the ratio only (18 runs for half an SD at 95 %), so it holds before
    the SD is known well; `half_width` is None without an SD.

    Example:
    >>> n, half = runs_for_mean(0.02)
    >>> n, round(half, 4)
    (18, 0.0099)
    """
    from scipy import stats

    n = 2
    while float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) / math.sqrt(n) > fraction:
        n += 1
    if sd is None:
        return n, None
    return n, float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) * sd / math.sqrt(n)


def runs_for_sd(sd, *, relative=0.25, confidence=CONFIDENCE):
    """How many runs pin an SD down to ±`relative` of itself (normal approximation of the
    SD's standard error, `sd / sqrt(2 (n - 1))`), and that half-width: `(n, half_width)`.

    Ranking sources of randomness compares their SDs, so this, not the mean's interval,
    says how many runs per source a ranking needs.

    Example:
    >>> n, half = runs_for_sd(0.016)
    >>> n, round(half, 4)
    (32, 0.004)
    """
    from scipy import stats

    z = float(stats.norm.ppf((1 + confidence) / 2))
    n = 1 + math.ceil((z / relative) ** 2 / 2)
    if sd is None:
        return n, None
    return n, z * sd / math.sqrt(2 * (n - 1))
