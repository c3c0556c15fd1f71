"""A study's statistics, each checked against an independent computation."""

import itertools
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from twinrun.errors import TwinrunError
from twinrun.studies.anova import crossed_variance
from twinrun.studies.compare import (cohen_d, compare_runs, probability_a_beats_b,
                                     runs_for_power)
from twinrun.studies.cv import cross_validate_results, cv_summary
from twinrun.workloads.variations import validate_folds
from twinrun.studies.stats import summarize, t_interval
from twinrun.studies.variance import (SourceRuns, class_accuracy_spread,
                                      independent_errors_floor, pairwise_disagreement,
                                      variance_breakdown)

T_975_DF4 = 2.7764451051977987  # Student t, 97.5 % quantile, 4 degrees of freedom (tables)
F_975_7_7 = 4.994909219          # F(7, 7), 97.5 % quantile (tables)


def assert_one_sentence(error, *fragments):
    message = str(error.value)
    assert "\n" not in message and message[0].isupper() and message.endswith("."), message
    for fragment in fragments:
        assert fragment in message, message


# --- one sample ------------------------------------------------------------------------------

def test_the_summary_matches_the_hand_formulas():
    summary = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    sd = math.sqrt(2.5)
    assert (summary.n, summary.mean, summary.min, summary.max) == (5, 3.0, 1.0, 5.0)
    assert summary.sd == pytest.approx(sd)
    assert summary.sd_err == pytest.approx(sd / math.sqrt(8))
    half = T_975_DF4 * sd / math.sqrt(5)
    assert summary.ci_t.to_list() == pytest.approx([3 - half, 3 + half])
    assert summary.ci_t.method == "Student t"


def test_the_bootstrap_interval_is_reproducible_and_agrees_with_t_on_a_large_sample():
    values = np.random.default_rng(3).normal(0.9, 0.01, size=200)
    first, second = summarize(values), summarize(values)
    assert first.ci_bootstrap == second.ci_bootstrap
    assert first.ci_bootstrap.method.startswith("bootstrap")
    assert first.ci_bootstrap.low < first.mean < first.ci_bootstrap.high
    assert first.ci_bootstrap.half_width == pytest.approx(first.ci_t.half_width, rel=0.15)
    assert summarize(values, random_state=1).ci_bootstrap != first.ci_bootstrap


def test_identical_values_give_a_zero_width_interval_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = summarize([0.9] * 6)
    assert summary.sd == 0
    assert summary.ci_t.to_list() == [0.9, 0.9] and summary.ci_bootstrap.to_list() == [0.9, 0.9]


def test_one_run_has_no_spread_and_no_runs_is_refused():
    one = summarize([0.9])
    assert (one.n, one.sd, one.ci_t, one.ci_bootstrap) == (1, None, None, None)
    with pytest.raises(TwinrunError) as error:
        summarize([])
    assert_one_sentence(error, "No finished runs")


# --- variance breakdown ----------------------------------------------------------------------

def test_pairwise_disagreement_equals_the_mean_over_all_pairs():
    predictions = np.random.default_rng(0).integers(0, 3, size=(6, 50)).astype(np.uint8)
    by_pairs = np.mean([np.mean(predictions[i] != predictions[j])
                        for i, j in itertools.combinations(range(6), 2)])
    assert pairwise_disagreement(predictions) == pytest.approx(by_pairs)
    assert pairwise_disagreement(np.repeat(predictions[:1], 4, axis=0)) == 0


def test_the_independent_errors_floor_on_a_constructed_prediction_matrix():
    labels = np.array([0, 1, 2, 3])
    predictions = np.array([[0, 1, 9, 3],  # image 0 always right, 1 right half the time,
                            [0, 1, 9, 3],  # 2 never, 3 three times out of four
                            [0, 9, 9, 3],
                            [0, 9, 9, 9]], dtype=np.uint8)
    expected = math.sqrt(0 + 0.5 * 0.5 + 0 + 0.75 * 0.25) / 4
    assert independent_errors_floor(predictions, labels) == pytest.approx(expected)


def test_per_class_accuracy_spread_is_the_sd_across_runs_of_each_class():
    labels = np.array([0, 0, 1, 1])
    predictions = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]])
    spread = class_accuracy_spread(predictions, labels)
    assert spread[0] == pytest.approx(np.std([1.0, 0.5, 0.0], ddof=1))
    assert spread[1] == 0


def test_a_source_share_is_its_variance_over_the_all_variance_with_an_f_interval():
    rng = np.random.default_rng(1)
    init, every = rng.normal(0.9, 0.002, 8), rng.normal(0.9, 0.004, 8)
    breakdown = variance_breakdown({"init": SourceRuns(init), "all": SourceRuns(every)})
    line = breakdown.sources["init"]
    ratio = np.var(init, ddof=1) / np.var(every, ddof=1)
    assert line.share == pytest.approx(ratio)
    assert line.share_ci95 == pytest.approx([ratio / F_975_7_7, ratio * F_975_7_7], rel=1e-6)
    assert breakdown.sources["all"].share == pytest.approx(1.0)
    assert variance_breakdown({"init": SourceRuns(init)}).sources["init"].share is None


def test_a_source_whose_runs_end_with_identical_weights_has_no_effect_here():
    values = [0.91, 0.91, 0.91]
    breakdown = variance_breakdown({
        "nondeterminism": SourceRuns(values, fingerprints=["ab12"] * 3),
        "init": SourceRuns([0.90, 0.91, 0.92], fingerprints=["a", "b", "c"])})
    quiet, loud = breakdown.sources["nondeterminism"], breakdown.sources["init"]
    assert quiet.effect is False and quiet.effect_basis == "weights fingerprints"
    assert quiet.note.startswith("No effect here: all 3 runs ended with identical weights")
    assert loud.effect is True and loud.note is None
    assert quiet.to_dict()["effect"] is False


def test_the_breakdown_reports_the_issue_json_keys_with_predictions():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 200)
    predictions = np.where(rng.random((5, 200)) < 0.9, labels, (labels + 1) % 10).astype(np.uint8)
    accuracy = (predictions == labels).mean(axis=1)
    breakdown = variance_breakdown(
        {"order": SourceRuns(accuracy, ["x", "y", "z", "w", "v"], predictions)},
        metric="test_accuracy", labels=labels)
    line = breakdown.to_dict()["sources"]["order"]
    assert {"n", "mean", "sd", "sd_err", "ci95", "share", "disagreement", "floor_sd",
            "effect"} <= set(line)
    assert line["floor_sd"] == pytest.approx(independent_errors_floor(predictions, labels))
    assert line["disagreement"] == pytest.approx(pairwise_disagreement(predictions))
    assert set(line["class_accuracy_sd"]) == set(range(10))
    loss = variance_breakdown({"order": SourceRuns(accuracy, None, predictions)},
                              metric="test_loss", labels=labels)
    assert loss.sources["order"].floor_sd is None


def test_predictions_that_do_not_match_the_runs_are_refused():
    with pytest.raises(TwinrunError) as error:
        variance_breakdown({"init": SourceRuns([0.9, 0.8], None, np.zeros((3, 10), np.uint8))})
    assert_one_sentence(error, "expected 2 rows", "(3, 10)")


# --- crossed design --------------------------------------------------------------------------

def grid(levels_a, levels_b, cell):
    a, b = np.meshgrid(np.arange(levels_a), np.arange(levels_b), indexing="ij")
    a, b = np.repeat(a.ravel(), cell), np.repeat(b.ravel(), cell)
    return a, b


def test_the_anova_sums_of_squares_match_row_and_column_means():
    rng = np.random.default_rng(4)
    y = rng.normal(size=(4, 5))
    a, b = grid(4, 5, 1)
    result = crossed_variance(y.ravel(), a, b)
    grand = y.mean()
    ss_a = 5 * np.sum((y.mean(axis=1) - grand) ** 2)
    ss_b = 4 * np.sum((y.mean(axis=0) - grand) ** 2)
    ss_e = np.sum((y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True)
                   + grand) ** 2)
    table = result.table
    assert table["init"]["sum_sq"] == pytest.approx(ss_a)
    assert table["order"]["sum_sq"] == pytest.approx(ss_b)
    assert table["init:order + residual"]["sum_sq"] == pytest.approx(ss_e)
    ms_e = ss_e / 12
    assert result.components["init"].variance == pytest.approx(max(0, (ss_a / 3 - ms_e) / 5))
    assert result.confounded and "cannot be told apart" in result.note
    assert table["init"]["F"] == pytest.approx((ss_a / 3) / ms_e)


def test_the_anova_recovers_known_variance_components_with_many_levels():
    rng = np.random.default_rng(5)
    levels = 40
    effect_a, effect_b = rng.normal(0, 2.0, levels), rng.normal(0, 1.0, levels)
    a, b = grid(levels, levels, 1)
    y = 10 + effect_a[a] + effect_b[b] + rng.normal(0, 0.5, a.size)
    components = crossed_variance(y, a, b).components
    # Closely the variance of the effects actually drawn...
    assert components["init"].variance == pytest.approx(np.var(effect_a, ddof=1), rel=0.05)
    assert components["order"].variance == pytest.approx(np.var(effect_b, ddof=1), rel=0.05)
    # ...and the true components within three standard errors of a variance from 40 levels.
    three_se = 3 * math.sqrt(2 / (levels - 1))
    assert components["init"].variance == pytest.approx(4.0, rel=three_se)
    assert components["order"].variance == pytest.approx(1.0, rel=three_se)
    assert components["init:order + residual"].variance == pytest.approx(0.25, rel=0.1)
    assert sum(c.share for c in components.values()) == pytest.approx(1.0)


def test_with_replicates_the_interaction_is_separated_from_the_residual():
    rng = np.random.default_rng(6)
    levels, cell = 12, 3
    effect_a, effect_b = rng.normal(0, 1.0, levels), rng.normal(0, 1.0, levels)
    interaction = rng.normal(0, 1.0, (levels, levels))
    a, b = grid(levels, levels, cell)
    y = effect_a[a] + effect_b[b] + interaction[a, b] + rng.normal(0, 0.5, a.size)
    result = crossed_variance(y, a, b, factors=("init", "split"))
    assert not result.confounded and result.runs_per_cell == cell
    assert set(result.components) == {"init", "split", "init:split", "residual"}
    # 121 interaction and 288 residual degrees of freedom: within about three standard errors.
    assert result.components["init:split"].variance == pytest.approx(1.0, rel=0.4)
    assert result.components["residual"].variance == pytest.approx(0.25, rel=0.25)
    assert result.table["init"]["F"] == pytest.approx(
        result.table["init"]["mean_sq"] / result.table["init:split"]["mean_sq"])


def test_a_negative_component_is_clipped_at_zero_and_flagged():
    column = np.array([0.0, 1.0, 2.0])
    noise = np.array([[1, -1, 0], [0, 1, -1], [-1, 0, 1]], dtype=float)  # rows sum to 0
    y = column[None, :] + noise
    a, b = grid(3, 3, 1)
    result = crossed_variance(y.ravel(), a, b)
    init = result.components["init"]
    assert init.clipped and init.variance == 0 and init.raw < 0
    assert any("init component came out negative" in flag for flag in result.flags)
    assert not result.components["order"].clipped


def test_an_incomplete_crossed_grid_is_refused():
    a, b = grid(3, 3, 1)
    with pytest.raises(TwinrunError) as error:
        crossed_variance(np.arange(8.0), a[:8], b[:8])
    assert_one_sentence(error, "1 of 9 cells empty", "resume the study")


# --- cross-validation ------------------------------------------------------------------------

def test_folds_up_to_the_smallest_class_are_accepted_where_scikit_learn_agrees():
    from sklearn.model_selection import StratifiedKFold

    labels = np.array([0] * 3 + [1] * 10 + [2] * 7)
    assert validate_folds(3, labels) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns when a class misses a fold
        list(StratifiedKFold(3, shuffle=True, random_state=0).split(labels, labels))
    with pytest.raises(TwinrunError) as error:
        validate_folds(4, labels)
    assert_one_sentence(error, "Class 0, the smallest class, has only 3 images",
                        "--folds 4", "at most 3 folds")
    with pytest.warns(UserWarning, match="least populated class"):
        list(StratifiedKFold(4, shuffle=True, random_state=0).split(labels, labels))


@pytest.mark.parametrize("folds", [1, 0, -2, 2.5, True])
def test_fewer_than_two_folds_are_refused(folds):
    with pytest.raises(TwinrunError) as error:
        validate_folds(folds, [0, 1] * 10)
    assert_one_sentence(error, "Expected --folds to be at least 2")


def test_cross_validation_results_are_shaped_like_cross_validate():
    folds = [{"test_accuracy": 0.90, "fit_time": 3.0, "best_val_loss": 0.3, "tag": "x"},
             {"test_accuracy": 0.92, "fit_time": 2.0, "best_val_loss": 0.25, "tag": "y"},
             {"test_accuracy": 0.91, "fit_time": 2.5, "best_val_loss": 0.28, "tag": "z"}]
    results = cross_validate_results(folds)
    assert set(results) == {"test_accuracy", "fit_time", "best_val_loss"}
    np.testing.assert_array_equal(results["fit_time"], [3.0, 2.0, 2.5])
    summary = cv_summary(folds, metric="test_accuracy", n_splits=3)
    assert summary.mean == pytest.approx(0.91) and summary.sd == pytest.approx(0.01)
    assert summary.folds == [0.90, 0.92, 0.91]
    as_json = summary.to_dict()
    assert as_json["cross_validate"]["test_accuracy"] == [0.90, 0.92, 0.91]
    assert {"folds", "mean", "sd", "ci95"} <= set(as_json)


def test_the_corrected_cv_interval_is_wider_by_the_nadeau_bengio_factor():
    # An accuracy's intervals are built on the logit scale: the factor holds there.
    folds = [{"test_accuracy": v} for v in (0.90, 0.92, 0.91, 0.93, 0.89)]
    summary = cv_summary(folds, n_splits=5)
    factor = math.sqrt((1 / 5 + 1 / 4) / (1 / 5))

    def logit_half_width(ci):
        return (math.log(ci.high / (1 - ci.high)) - math.log(ci.low / (1 - ci.low))) / 2

    assert logit_half_width(summary.ci_corrected) == pytest.approx(
        logit_half_width(summary.summary.ci_t) * factor)
    assert "Nadeau & Bengio" in summary.ci_corrected.method
    assert "logit" in summary.ci_corrected.method


def test_an_accuracy_interval_from_two_folds_stays_within_0_and_1():
    # The issue's case: two folds of 0.5829 and 0.6088 gave a Student t interval of
    # [0.43, 0.76] and a corrected one of [0.31, 0.88]; far apart folds gave [0.108, 1.408].
    summary = cv_summary([{"test_accuracy": 0.30}, {"test_accuracy": 0.95}], n_splits=2)
    for ci in (summary.summary.ci_t, summary.ci_corrected):
        assert 0.0 <= ci.low < summary.mean < ci.high <= 1.0
    plain = t_interval([0.30, 0.95])
    assert plain.low < 0 and plain.high > 1  # what the unbounded interval said


def test_a_loss_interval_is_clipped_at_zero_and_says_so():
    ci = t_interval([0.01, 0.9], bounds=(0.0, None))
    assert ci.low == 0.0 and ci.method == "Student t, clipped at 0"


def test_a_cv_metric_no_fold_reported_is_refused():
    with pytest.raises(TwinrunError) as error:
        cv_summary([{"test_accuracy": 0.9}, {"test_accuracy": 0.8}], metric="test_loss")
    assert_one_sentence(error, "No fold reported the metric 'test_loss'", "test_accuracy")


# --- A against B -----------------------------------------------------------------------------

def test_a_beats_b_with_probability_one_when_every_run_of_a_is_better():
    a, b = [0.93, 0.94, 0.95, 0.96, 0.97], [0.90, 0.91, 0.92, 0.90, 0.91]
    result = compare_runs(a, b)
    assert result.p_a_beats_b == 1.0
    assert result.p_a_beats_b_ci.to_list() == [1.0, 1.0]
    assert probability_a_beats_b(b, a) == 0.0
    # For a loss, lower is better: the same numbers mean B beats A.
    assert compare_runs(a, b, metric="test_loss").p_a_beats_b == 0.0


def test_p_a_beats_b_is_the_mann_whitney_auc_with_ties_counted_half():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 5, 9).astype(float), rng.integers(0, 5, 7).astype(float)
    u = mannwhitneyu(a, b).statistic
    assert probability_a_beats_b(a, b) == pytest.approx(u / (9 * 7))


def test_the_permutation_p_value_is_exact_for_small_arms():
    result = compare_runs([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], metric="score")
    # Of the C(6, 3) = 20 relabellings, only the observed one and its mirror are as extreme.
    values = [1, 2, 3, 4, 5, 6]
    extreme = sum(abs(np.mean([values[i] for i in range(6) if i not in chosen])
                      - np.mean([values[i] for i in chosen])) >= 3
                  for chosen in itertools.combinations(range(6), 3))
    assert extreme == 2
    assert result.permutation_exact and result.p_permutation == pytest.approx(extreme / 20)


def test_welch_t_matches_the_hand_formula():
    a, b = np.array([0.90, 0.91, 0.93, 0.92, 0.90]), np.array([0.92, 0.95, 0.93, 0.97, 0.94])
    result = compare_runs(a, b)
    va, vb = a.var(ddof=1) / 5, b.var(ddof=1) / 5
    t = (b.mean() - a.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 4)
    assert result.welch_statistic == pytest.approx(t)
    assert result.welch_df == pytest.approx(df)
    assert result.difference == pytest.approx(b.mean() - a.mean())
    assert result.ci.low < result.difference < result.ci.high
    assert compare_runs(a, b).ci == result.ci  # the bootstrap is seeded


def test_a_clear_difference_reads_as_b_beats_a_in_points():
    a = [0.900, 0.902, 0.901, 0.899, 0.900, 0.901]
    b = [0.905, 0.906, 0.904, 0.905, 0.907, 0.905]
    result = compare_runs(a, b, names=("lr=1e-3", "lr=3e-4"))
    assert result.distinguishable and result.warnings == []
    assert result.reading.startswith("lr=3e-4 beats lr=1e-3 by 0.")
    assert " points (p " in result.reading
    assert compare_runs(b, a).reading.startswith("A beats B by")


def test_a_lower_loss_reads_as_the_better_arm():
    a, b = [0.30, 0.31, 0.30, 0.32, 0.31], [0.25, 0.26, 0.25, 0.24, 0.26]
    result = compare_runs(a, b, metric="best_val_loss")
    assert result.reading.startswith("B beats A by") and "in best_val_loss" in result.reading
    assert result.p_a_beats_b == 0.0


def test_overlapping_arms_are_not_distinguishable_from_seed_noise():
    a, b = [0.90, 0.92, 0.91, 0.93, 0.89], [0.91, 0.90, 0.93, 0.92, 0.90]
    result = compare_runs(a, b)
    assert not result.distinguishable
    assert result.reading.startswith(
        "A and B are not distinguishable from seed noise at n = 5 (B - A = 0.2 ± ")
    assert result.reading.endswith(" points, p = 0.83).")
    last_bits = compare_runs([0.9] * 4 + [0.9 + 1e-12], [0.9] * 5)
    assert "(B - A = -2.0e-11 ± " in last_bits.reading


def test_fewer_than_five_runs_per_arm_warn_but_still_read():
    result = compare_runs([0.90, 0.91, 0.92], [0.95, 0.96, 0.97, 0.95, 0.96])
    assert result.warnings == [
        "Fewer than 5 runs per arm (A has 3): the tests have little power and the reading "
        "is tentative; run more with --runs."]
    assert result.reading


def test_runs_for_power_follow_cohens_table_and_fall_as_the_effect_grows():
    assert runs_for_power(0.5) == 64 and runs_for_power(0.8) == 26
    needed = [runs_for_power(d) for d in (0.2, 0.5, 1.0, 2.0, 4.0)]
    assert needed == sorted(needed, reverse=True) and len(set(needed)) == 5
    assert runs_for_power(-0.5) == 64 and runs_for_power(0) is None
    assert runs_for_power(10.0) == runs_for_power(50.0) == runs_for_power(math.inf) == 2


def test_cohens_d_is_the_difference_over_the_pooled_sd():
    a, b = [1.0, 2.0, 3.0], [3.0, 4.0, 5.0, 6.0]
    pooled = math.sqrt((2 * 1.0 + 3 * np.var(b, ddof=1)) / 5)
    assert cohen_d(a, b) == pytest.approx((4.5 - 2.0) / pooled)
    result = compare_runs(a, b, metric="score")
    assert result.runs_for_power80 == runs_for_power(result.cohen_d)


def test_studies_of_different_metrics_are_not_compared():
    with pytest.raises(TwinrunError) as error:
        compare_runs([0.9, 0.8], [0.9, 0.8], metric="test_accuracy", metric_b="test_loss",
                     names=("variance-aaa", "variance-bbb"))
    assert_one_sentence(error, "Cannot compare variance-aaa (test_accuracy) with "
                               "variance-bbb (test_loss)")


def test_an_arm_with_one_run_is_refused():
    with pytest.raises(TwinrunError) as error:
        compare_runs([0.9], [0.9, 0.8])
    assert_one_sentence(error, "at least 2 finished runs per study", "A has 1")


def test_the_comparison_reports_the_issue_json_keys():
    as_json = compare_runs([0.90, 0.91, 0.92, 0.90, 0.91], [0.91, 0.92, 0.93, 0.92, 0.91]).to_dict()
    assert {"difference", "ci95", "p_welch", "p_permutation", "p_a_beats_b",
            "runs_for_power80", "reading"} <= set(as_json)
    assert all(as_json["tests"].values())


def test_the_studies_package_imports_neither_scipy_nor_statsmodels_until_used():
    code = ("import sys\n"
            "import twinrun.studies.plan, twinrun.workloads.settings, twinrun.studies.stats\n"
            "import twinrun.studies.variance, twinrun.studies.anova, twinrun.studies.cv\n"
            "import twinrun.studies.compare\n"
            "print(sorted(m for m in ('scipy', 'statsmodels', 'pandas') if m in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
