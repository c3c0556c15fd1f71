"""A crossed design's variance split: two-way random-effects ANOVA.

`--design crossed --vary init,order` runs every pair of levels (init seed i, order seed j).
Both factors are random effects (their levels are a sample of all seeds), so the question is
not "does init seed 3 differ from init seed 5" but "how much variance does each source add":

    y_ijk = mu + a_i + b_j + (ab)_ij + e_ijk,   a ~ N(0, s2_a), b ~ N(0, s2_b), ...

The sums of squares come from statsmodels (`ols` + `anova_lm`, balanced data, so type I = II);
the components from the expected mean squares of the balanced design with `r` runs per cell,
`a` levels of the first source and `b` of the second:

    E[MS_A]  = s2_e + r s2_ab + r b s2_a        s2_a  = (MS_A - MS_AB) / (r b)
    E[MS_B]  = s2_e + r s2_ab + r a s2_b        s2_b  = (MS_B - MS_AB) / (r a)
    E[MS_AB] = s2_e + r s2_ab                   s2_ab = (MS_AB - MS_E) / r
    E[MS_E]  = s2_e

A negative estimate (a mean square below the one it is tested against, by chance) is clipped
to 0 and flagged. With one run per cell, which is what a deterministic machine gives (a second
run of the same cell is bit-identical), the interaction cannot be told from the residual: the
two are reported as one component, and the main effects are tested against it.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from twinrun.errors import TwinrunError


@dataclass(frozen=True)
class VarianceComponent:
    """One estimated variance component.

    Arguments:
        name: e.g. `"init"`, `"init:order"`, `"init:order + residual"`, `"residual"`.
        variance: the estimate (clipped at 0).
        sd: its square root.
        share: its part of the summed components.
        clipped: True when the raw estimate was negative and was set to 0.
        raw: the estimate before clipping.
    """

    name: str
    variance: float
    sd: float
    share: float | None
    clipped: bool
    raw: float

    def to_dict(self):
        return {"variance": self.variance, "sd": self.sd, "share": self.share,
                "clipped": self.clipped, "raw": self.raw}


@dataclass(frozen=True)
class CrossedVariance:
    """The two-way random-effects ANOVA of a crossed study.

    Arguments:
        factors: the two sources, in order.
        levels: levels per factor; runs_per_cell: `r`.
        components: `{name: VarianceComponent}`, first factor, second, then the interaction
            (and residual, or the two confounded).
        table: `{term: {"df", "sum_sq", "mean_sq", "F", "p"}}`; F and p test each term
            against the mean square its expectation exceeds (random-effects F tests).
        confounded: True with one run per cell.
        note: a sentence for the reader.
        test: the method, cited.
    """

    factors: tuple
    levels: tuple
    runs_per_cell: int
    components: dict
    table: dict
    confounded: bool
    note: str
    test: str = ("two-way random-effects ANOVA (statsmodels ols + anova_lm sums of squares; "
                 "components from expected mean squares, negatives clipped at 0)")
    flags: list = field(default_factory=list)

    def to_dict(self):
        return {"factors": list(self.factors), "levels": list(self.levels),
                "runs_per_cell": self.runs_per_cell,
                "components": {k: c.to_dict() for k, c in self.components.items()},
                "table": self.table, "confounded": self.confounded, "note": self.note,
                "flags": self.flags, "test": self.test}


def crossed_variance(values, first_levels, second_levels, *, factors=("init", "order")):
    """Split a crossed study's variance into its two sources and their interaction.

    Arguments:
        values: the metric of each run.
        first_levels, second_levels: each run's level index of the two sources.
        factors: the two sources' names.

    Every cell of the grid needs the same number of runs (a balanced design; resume a study
    whose runs failed before analysing it).

    Example:
    >>> result = crossed_variance([1.0, 2.0, 1.5, 2.5], [0, 0, 1, 1], [0, 1, 0, 1])
    >>> round(result.components["order"].variance, 6), result.confounded
    (0.5, True)
    """
    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    y = np.asarray(values, dtype=float).ravel()
    a_idx = np.asarray(first_levels).ravel()
    b_idx = np.asarray(second_levels).ravel()
    if not (y.size == a_idx.size == b_idx.size):
        raise TwinrunError(
            f"Expected one level of each source per run. Received {y.size} values, "
            f"{a_idx.size} {factors[0]} levels and {b_idx.size} {factors[1]} levels.")
    if not np.all(np.isfinite(y)):
        raise TwinrunError("A run's metric is not a finite number; check the runs' metrics "
                           "with `twinrun runs`.")
    a, b, r = _balanced_shape(a_idx, b_idx, factors)
    frame = pd.DataFrame({"y": y, "A": a_idx.astype(str), "B": b_idx.astype(str)})
    confounded = r == 1
    formula = "y ~ C(A) + C(B)" if confounded else "y ~ C(A) * C(B)"
    table = anova_lm(smf.ols(formula, data=frame).fit(), typ=1)

    def row(term):
        df, ss = float(table.loc[term, "df"]), float(table.loc[term, "sum_sq"])
        return df, ss, ss / df

    df_a, ss_a, ms_a = row("C(A)")
    df_b, ss_b, ms_b = row("C(B)")
    df_e, ss_e, ms_e = row("Residual")
    first, second = factors
    terms = {first: (df_a, ss_a, ms_a), second: (df_b, ss_b, ms_b)}
    if confounded:
        df_ab, ms_ab = df_e, ms_e
        interaction = f"{first}:{second} + residual"
        terms[interaction] = (df_e, ss_e, ms_e)
        raw = {first: (ms_a - ms_ab) / b, second: (ms_b - ms_ab) / a, interaction: ms_ab}
    else:
        df_ab, ss_ab, ms_ab = row("C(A):C(B)")
        interaction = f"{first}:{second}"
        terms[interaction] = (df_ab, ss_ab, ms_ab)
        terms["residual"] = (df_e, ss_e, ms_e)
        raw = {first: (ms_a - ms_ab) / (r * b), second: (ms_b - ms_ab) / (r * a),
               interaction: (ms_ab - ms_e) / r, "residual": ms_e}
    denominators = {first: (ms_ab, df_ab), second: (ms_ab, df_ab)}
    if not confounded:
        denominators[interaction] = (ms_e, df_e)
    return CrossedVariance(
        factors=tuple(factors), levels=(a, b), runs_per_cell=r,
        components=_components(raw), table=_table(terms, denominators), confounded=confounded,
        note=_note(confounded, first, second),
        flags=[f"The {name} component came out negative ({value:.3g}) and was set to 0: "
               f"its mean square fell below the one it is tested against, by chance."
               for name, value in raw.items() if value < 0])


def _balanced_shape(a_idx, b_idx, factors):
    a_levels, b_levels = np.unique(a_idx), np.unique(b_idx)
    if a_levels.size < 2 or b_levels.size < 2:
        raise TwinrunError(
            f"A crossed design needs at least 2 levels of each source. Received "
            f"{a_levels.size} of {factors[0]} and {b_levels.size} of {factors[1]}.")
    counts = {}
    for pair in zip(a_idx.tolist(), b_idx.tolist()):
        counts[pair] = counts.get(pair, 0) + 1
    cells = a_levels.size * b_levels.size
    per_cell = set(counts.values())
    if len(counts) != cells or len(per_cell) != 1:
        missing = cells - len(counts)
        raise TwinrunError(
            f"The crossed grid is incomplete ({missing} of {cells} cells empty, or cells with "
            f"different numbers of runs); resume the study so that every cell has its runs, "
            f"then analyse it again.")
    return int(a_levels.size), int(b_levels.size), per_cell.pop()


def _components(raw):
    clipped = {name: max(value, 0.0) for name, value in raw.items()}
    total = sum(clipped.values())
    return {name: VarianceComponent(name=name, variance=value, sd=math.sqrt(value),
                                    share=value / total if total > 0 else None,
                                    clipped=raw[name] < 0, raw=float(raw[name]))
            for name, value in clipped.items()}


def _table(terms, denominators):
    from scipy import stats

    table = {}
    for name, (df, ss, ms) in terms.items():
        entry = {"df": df, "sum_sq": ss, "mean_sq": ms, "F": None, "p": None}
        if name in denominators:
            ms_den, df_den = denominators[name]
            if ms_den > 0 and df_den > 0:
                entry["F"] = ms / ms_den
                entry["p"] = float(stats.f.sf(entry["F"], df, df_den))
        table[name] = entry
    return table


def _note(confounded, first, second):
    if confounded:
        return (f"With one run per cell, the {first}:{second} interaction cannot be told "
                f"apart from the residual; they are reported together, and the main effects "
                f"are tested against them.")
    return (f"Main effects are tested against the {first}:{second} interaction, the "
            f"interaction against the residual, as random effects require.")
