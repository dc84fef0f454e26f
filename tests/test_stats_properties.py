"""No input of the statistics layer raises: a crash must never read as a regression (issue 23).

Property tests (hypothesis, derandomized) over the paired A/B rule, the history rules and compare's
row logic, with the inputs a shared machine produces: two rounds, ratios of 1e-9 and 1e9, zeros,
infinities, NaN, a constant metric.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milestones.harness import compare, history, stats

PROPS = settings(derandomize=True, max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
# The history rules search change points (scipy per split): fewer examples keep the file fast.
PROPS_SLOW = settings(PROPS, max_examples=60)

# What a record can hold: ordinary values, the extremes, zeros, infinities and NaN.
EDGE = st.sampled_from([0.0, -0.0, 1e-9, 1e9, 1e-300, 1e300, math.inf, -math.inf, math.nan, 1.0, -1.0])
VALUE = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), EDGE)
POSITIVE = st.one_of(st.floats(min_value=1e-12, max_value=1e12), st.sampled_from([1e-9, 1e9, 1.0]))
SAMPLES = st.lists(VALUE, min_size=0, max_size=24)
LOG_RATIOS = st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                st.sampled_from([math.log(1e-9), math.log(1e9), 0.0])), min_size=0, max_size=40)


def _finite_or_none(*xs: float | None) -> bool:
    return all(x is None or isinstance(x, float) for x in xs)


def test_the_overflow_of_the_issue_is_an_inconclusive_verdict():
    r = stats.paired_verdict([math.log(1.658), math.log(0.536)], higher_is_better=False, n_looks=40, final=True)
    assert r.comparison.verdict == "inconclusive" and not r.decided
    assert "budget spent" in r.comparison.reason


@PROPS
@given(LOG_RATIOS, st.booleans(), st.booleans(), st.integers(1, 300),
       st.one_of(st.none(), st.floats(0, 1), st.sampled_from([0.0, 1e-300, 1e-63])))
@pytest.mark.slow
def test_paired_verdict_never_raises(xs, hib, final, n_looks, level):
    r = stats.paired_verdict(xs, higher_is_better=hib, n_looks=n_looks, final=final, level=level)
    c = r.comparison
    assert c.verdict in stats.VERDICTS
    assert r.decided == (c.verdict in ("regressed", "improved", "unchanged"))
    # Every number it reports can be written as JSON (to_dict turns non-finite ones into null).
    assert _finite_or_none(c.ratio, c.ci_low, c.ci_high, c.change)
    if r.decided:
        assert c.ci_low <= c.ratio <= c.ci_high


@pytest.mark.slow
@PROPS
@given(LOG_RATIOS, st.integers(2, 300), st.booleans(), st.booleans())
def test_sequential_verdict_never_raises_and_spends_at_most_alpha(xs, planned, hib, spending):
    r = stats.sequential_verdict(xs, planned=planned, higher_is_better=hib, spending=spending)
    assert r.comparison.verdict in stats.VERDICTS


@pytest.mark.slow
@PROPS
@given(st.lists(st.tuples(st.integers(1, 400), st.integers(1, 400)), min_size=1, max_size=30), st.floats(1e-6, 0.5))
def test_spending_levels_never_sum_past_alpha(looks, alpha):
    s = stats.Spending(alpha)
    total = sum(s.level(n, planned) for n, planned in looks) + s.level(looks[-1][0], looks[-1][1], final=True)
    assert 0 <= total <= alpha * (1 + 1e-12)
    assert min(lvl for _, lvl in s.looks) >= 0


@pytest.mark.slow
@PROPS
@given(SAMPLES, SAMPLES, st.booleans())
def test_run_vs_run_rules_never_raise(a, b, hib):
    for kind, unit in (("speed", "s"), ("quality", "accuracy"), ("fidelity", "count"), ("speed", "B"),
                       ("speed", "instructions")):
        c = compare.compare_metric(kind, unit, hib, a, b, 0.05)
        assert c.verdict in stats.VERDICTS
    g = stats.gross_change(a, b, higher_is_better=hib)
    assert g is None or g.verdict in ("regressed", "improved")


@pytest.mark.slow
@PROPS
@given(st.lists(SAMPLES, min_size=0, max_size=5), st.lists(SAMPLES, min_size=0, max_size=5), st.booleans())
def test_repeated_runs_rule_never_raises(ra, rb, hib):
    c = stats.compare_repeated_runs(ra, rb, higher_is_better=hib)
    assert c.verdict in stats.VERDICTS


@PROPS_SLOW
@given(st.lists(VALUE, min_size=0, max_size=40), VALUE, st.booleans(), st.one_of(st.none(), VALUE))
def test_history_judgement_never_raises(series, latest, hib, noise):
    j = history.judge_latest(series, latest, higher_is_better=hib, noise=noise)
    assert j.state in ("ok", "suspect", "confirmed", "improved", "too few runs")


@pytest.mark.slow
@PROPS_SLOW
@given(st.lists(POSITIVE, min_size=0, max_size=40))
def test_history_steps_never_raise(series):
    starts = history.steps_at(series)
    assert all(0 < i < len(series) for i in starts)
    assert history.segment(series) == sorted(history.segment(series))
    assert math.isfinite(stats.run_noise(np.log(series))) if series else True


@PROPS_SLOW
@given(st.lists(VALUE, min_size=0, max_size=30))
def test_change_points_never_raise(xs):
    for cp in stats.change_points(xs):
        assert 0 <= cp.index <= len(xs)


@pytest.mark.parametrize("a,b", [([5.0] * 20, [5.0] * 20), ([0.0] * 20, [0.0] * 20), ([1e-9] * 9, [1e9] * 9),
                                 ([1.0, 1.0], [2.0, 2.0])])
def test_constant_metrics_get_a_verdict(a, b):
    assert stats.compare_timeseries(a, b, higher_is_better=False).verdict in stats.VERDICTS
    assert stats.paired_verdict([0.0] * 8, higher_is_better=False).comparison.verdict == "unchanged"


# ------------------------------------------------------------------------ compare's row logic, on records
def _records(step: list[list[float]], cpu: list[list[float]], peak: list[float]):
    import dataclasses
    from pathlib import Path

    from milestones.harness.records import Metric
    from milestones.harness.store import load_records

    fix = Path(__file__).parent / "fixtures" / "records" / "history"
    (r,) = [r for r in load_records(fix) if r.run_id == "20260310T020000Z-nightly"]
    out = []
    for i, (s, c, p) in enumerate(zip(step, cpu, peak, strict=False)):
        metrics = {"train.step_time": Metric.from_values("train.step_time", "s", False, s),
                   "train.cpu_time": Metric.from_values("train.cpu_time", "s", False, c),
                   "train.throughput": Metric.from_values("train.throughput", "images/s", True,
                                                          [64 / x if x else math.inf for x in s]),
                   "train.peak_rss": Metric.single("train.peak_rss", "B", False, p)}
        out.append(dataclasses.replace(r, run_id=f"20260310T02{i:04d}Z-p", metrics=metrics, info={},
                                       started_at=f"2026-03-10T02:{i:02d}:00+00:00"))
    return out


RUN_SAMPLES = st.lists(VALUE, min_size=1, max_size=12)


@PROPS_SLOW
@given(st.lists(RUN_SAMPLES, min_size=7, max_size=7), st.lists(RUN_SAMPLES, min_size=7, max_size=7),
       st.lists(VALUE, min_size=7, max_size=7))
@pytest.mark.slow
def test_compare_rows_and_history_never_raise(step, cpu, peak):
    recs = _records(step, cpu, peak)
    rows, _ = compare.compare_runs(recs[-2:-1], recs[-1:])
    assert all(r.verdict in stats.VERDICTS and r.key == compare.case_key(recs[0].case) for r in rows)
    rows, _ = compare.compare_history(recs[:-1], recs[-1:])
    assert {r.metric for r in rows} >= {"train.step_time", "train.cpu_time"}
    compare.suspects(rows)


def test_the_bootstrap_memory_is_bounded_whatever_the_sample_count():
    """A record of 3.3 M samples made `_bootstrap` allocate 49 GiB (n_boot x all samples); bounded now."""
    import tracemalloc

    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 0.05, 3_300_000)
    b = a * 1.1
    tracemalloc.start()
    lo, hi = stats.block_bootstrap_ratio(a, b)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # The input is 26 MB a side; what the bootstrap adds stays near one chunk and a sorted copy.
    assert peak < 200e6, f"{peak / 1e6:.0f} MB"
    assert lo == pytest.approx(1.1, rel=0.01) and hi == pytest.approx(1.1, rel=0.01)


def test_the_block_sketch_keeps_the_bootstrap_of_large_blocks_close_to_the_exact_one():
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(0, 0.2, 30_000), rng.lognormal(0.05, 0.2, 30_000)
    blocks = [stats.blocks(x, 10) for x in (a, b)]
    old, stats.SKETCH = stats.SKETCH, 10**9
    try:
        exact = stats._bootstrap(blocks, level=0.99, n_boot=400, seed=0)
    finally:
        stats.SKETCH = old
    sketched = stats._bootstrap(blocks, level=0.99, n_boot=400, seed=0)
    assert sketched == pytest.approx(exact, rel=2e-3)
