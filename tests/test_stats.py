"""Statistics on known distributions: false alarms on same-vs-same pairs, power against known shifts."""

import math

import numpy as np
import pytest

from milestones.harness import stats
from milestones.harness.history import segment


def ar_lognormal(rng, n, median=0.01, cv=0.07, phi=0.7):
    """Timing-like samples: log-normal around `median` with AR(1) drift (consecutive samples correlated)."""
    z = np.zeros(n)
    e = rng.standard_normal(n)
    for i in range(n):
        z[i] = (phi * z[i - 1] if i else 0.0) + e[i] * math.sqrt(1 - phi * phi)
    return median * np.exp(cv * z)


def regressed(a, b, **kw):
    return stats.compare_timeseries(a, b, higher_is_better=False, n_boot=400, **kw).verdict == "regressed"


@pytest.mark.slow
def test_block_rule_keeps_false_alarms_low_where_per_sample_mann_whitney_fails():
    rng = np.random.default_rng(1)
    pairs = [(ar_lognormal(rng, 100), ar_lognormal(rng, 100)) for _ in range(120)]
    ours = sum(regressed(a, b) for a, b in pairs) / len(pairs)
    # The naive rule (per-sample Mann-Whitney p < 0.01, ratio > 3%) on the same autocorrelated samples.
    naive = sum(stats.mann_whitney(a, b) < 0.01 and np.median(b) / np.median(a) > 1.03 for a, b in pairs) / len(pairs)
    assert ours <= 0.02
    assert naive >= 0.08, "the fixture is meant to be autocorrelated enough to fool the per-sample test"


def test_power_against_a_known_10_percent_slowdown():
    rng = np.random.default_rng(2)
    hits = sum(regressed(ar_lognormal(rng, 100), ar_lognormal(rng, 100) * 1.10) for _ in range(60))
    assert hits / 60 >= 0.85


def test_throughput_direction_and_improvement():
    rng = np.random.default_rng(3)
    a = ar_lognormal(rng, 100, median=100.0)
    b = ar_lognormal(rng, 100, median=80.0)      # throughput down 20%: a regression
    assert stats.compare_timeseries(a, b, higher_is_better=True, n_boot=400).verdict == "regressed"
    assert stats.compare_timeseries(b, a, higher_is_better=True, n_boot=400).verdict == "improved"
    assert stats.compare_timeseries(a, b, higher_is_better=False, n_boot=400).verdict == "improved"


def test_identical_samples_are_unchanged_and_tiny_samples_inconclusive():
    rng = np.random.default_rng(4)
    a = ar_lognormal(rng, 100, cv=0.01)
    assert stats.compare_timeseries(a, a, higher_is_better=False, n_boot=200).verdict == "unchanged"
    few = stats.compare_timeseries(a[:4], a[:4] * 1.5, higher_is_better=False, n_boot=200)
    assert few.verdict == "inconclusive"  # 1 block per side: no test can be significant
    assert stats.compare_timeseries([], a, higher_is_better=False).verdict == "not comparable"
    assert stats.compare_timeseries([1.0, float("nan")], a, higher_is_better=False).verdict == "not comparable"


@pytest.mark.parametrize("change,ci,p,expected", [
    (math.log(1.10), (math.log(1.06), math.log(1.14)), 1e-4, "regressed"),
    (math.log(1.05), (math.log(1.02), math.log(1.08)), 1e-4, "regressed"),
    (-math.log(1.10), (-math.log(1.14), -math.log(1.06)), 1e-4, "improved"),
    (math.log(1.01), (math.log(0.99), math.log(1.03)), 0.3, "unchanged"),
    (math.log(1.02), (math.log(1.01), math.log(1.03)), 1e-4, "unchanged"),      # significant but small
    (math.log(1.06), (math.log(0.97), math.log(1.15)), 0.2, "inconclusive"),     # not significant
    (math.log(1.06), (math.log(1.01), math.log(1.12)), 0.05, "inconclusive"),    # p above alpha
    (math.log(1.015), (math.log(1.005), math.log(1.06)), 1e-4, "inconclusive"),  # below half the threshold
])
def test_decide_rule(change, ci, p, expected):
    assert stats.decide(change, ci, p, 0.01, 0.05)[0] == expected


def test_welch_over_seeds_false_alarms_and_power():
    rng = np.random.default_rng(5)
    fa = sum(stats.compare_seeds(rng.normal(90, 0.5, 5), rng.normal(90, 0.5, 5), higher_is_better=True,
                                 threshold=0.01).verdict == "regressed" for _ in range(300)) / 300
    power = sum(stats.compare_seeds(rng.normal(90, 0.5, 5), rng.normal(88, 0.5, 5), higher_is_better=True,
                                    threshold=0.01).verdict == "regressed" for _ in range(100)) / 100
    assert fa <= 0.04
    assert power >= 0.9
    one = stats.compare_seeds([90.0], [80.0], higher_is_better=True)
    assert one.verdict == "inconclusive" and "2+" in one.reason


def test_welch_matches_scipy():
    from scipy.stats import ttest_ind

    rng = np.random.default_rng(6)
    a, b = rng.normal(0, 1, 7), rng.normal(0.8, 2, 9)
    assert stats.welch(a, b)[0] == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)


def test_exact_comparison_of_counts():
    assert stats.compare_exact([100.0], [100.0], higher_is_better=False).verdict == "unchanged"
    assert stats.compare_exact([100.0], [120.0], higher_is_better=False).verdict == "regressed"
    assert stats.compare_exact([100.0], [101.0], higher_is_better=False).verdict == "unchanged"


@pytest.mark.slow
def test_repeated_runs_carry_run_to_run_noise():
    """Runs with a per-run offset (sd 4%): blocks within a run cannot see it, runs as units can."""
    rng = np.random.default_rng(7)

    def runs(k, shift=1.0):
        return [ar_lognormal(rng, 40, cv=0.03) * shift * math.exp(0.04 * rng.standard_normal()) for _ in range(k)]

    fa_runs = fa_blocks = 0
    for _ in range(60):
        ra, rb = runs(5), runs(5)
        fa_runs += stats.compare_repeated_runs(ra, rb, higher_is_better=False, n_boot=300).verdict == "regressed"
        fa_blocks += regressed(ra[0], rb[0])
    assert fa_runs / 60 <= 0.05
    assert fa_blocks > fa_runs
    power = sum(stats.compare_repeated_runs(runs(5), runs(5, 1.25), higher_is_better=False,
                                            n_boot=300).verdict == "regressed" for _ in range(30)) / 30
    assert power >= 0.8


@pytest.mark.slow
def test_step_detection_finds_the_step_and_nothing_in_noise():
    rng = np.random.default_rng(8)
    exact = false_steps = 0
    for _ in range(100):
        x = np.exp(0.02 * rng.standard_normal(12))
        false_steps += bool(segment(x))
        y = x.copy()
        y[7:] *= 1.15
        exact += segment(y) == [7]
    assert false_steps <= 3
    assert exact >= 90


def test_step_detection_is_robust_to_one_odd_run_and_merges_tiny_steps():
    x = [1.0, 1.01, 0.99, 1.0, 1.6, 1.0, 1.01, 0.99, 1.0, 1.0]
    assert segment(x) in ([], [4, 5])  # an outlier is at most a one-run segment, never a lasting step
    y = [1.0] * 6 + [1.01] * 6                               # a 1% step: below the 2% minimum
    assert segment(y) == []
