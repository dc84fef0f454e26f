"""Tests that bite on harness/stats.py and harness/compare.py: each pins a rule of the verdict or the
comparison that a small change of the code (a dropped condition, a doubled threshold, a changed
level or alpha) would break. Against the public behaviour only; see `nox -s mutation`."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats as sps

from milestones.harness import compare, stats
from milestones.harness.baselines import Baseline, Paper
from milestones.harness.errors import UsageError
from milestones.harness.records import SCHEMA_VERSION, Case, Metric, RunRecord

T = math.log1p(0.05)  # the default threshold on the log scale


# ------------------------------------------------------------------------------------------ decide
def test_verdict_needs_the_ci_to_exclude_no_change():
    # p is tiny but the CI crosses 0: not significant, so not a regression (nor an improvement).
    assert stats.decide(0.2, (-0.01, 0.3), 0.001, 0.01, 0.05)[0] == "inconclusive"
    assert stats.decide(-0.2, (-0.3, 0.01), 0.001, 0.01, 0.05)[0] == "inconclusive"
    assert stats.decide(0.2, (0.01, 0.3), 0.001, 0.01, 0.05)[0] == "regressed"
    assert stats.decide(-0.2, (-0.3, -0.01), 0.001, 0.01, 0.05)[0] == "improved"


def test_verdict_needs_p_below_alpha():
    assert stats.decide(0.2, (0.01, 0.3), 0.01, 0.01, 0.05)[0] == "inconclusive"  # p == alpha
    assert stats.decide(0.2, (0.01, 0.3), 0.0099, 0.01, 0.05)[0] == "regressed"


def test_verdict_effect_size_and_ci_reach_boundaries():
    e = 0.5 * T
    assert stats.decide(e, (0.001, T), 0.001, 0.01, 0.05)[0] == "regressed"          # both exactly reached
    assert stats.decide(e * 0.99, (0.001, T * 1.5), 0.001, 0.01, 0.05)[0] == "inconclusive"
    assert "below 50% of the 5% threshold" in stats.decide(e * 0.99, (0.001, T * 1.5), 0.001, 0.01, 0.05)[1]
    assert stats.decide(-e, (-T, -0.001), 0.001, 0.01, 0.05)[0] == "improved"
    assert stats.decide(-e * 0.99, (-T * 1.5, -0.001), 0.001, 0.01, 0.05)[0] == "inconclusive"
    v, why = stats.decide(e, (0.001, T * 0.999), 0.001, 0.01, 0.05)
    assert v == "unchanged" and why.startswith("significant but small") and "worse" in why
    v, why = stats.decide(-e, (-T * 0.999, -0.001), 0.001, 0.01, 0.05)
    assert v == "unchanged" and "better" in why
    assert stats.decide(0.0, (-T, 0.01), 0.5, 0.01, 0.05)[0] == "inconclusive"       # lo == -t: not within
    assert stats.decide(0.0, (-0.01, T), 0.5, 0.01, 0.05)[0] == "inconclusive"       # hi == t: not within
    assert stats.decide(0.0, (-0.01, 0.01), 0.5, 0.01, 0.05) == ("unchanged", "CI within +-5%")
    assert stats.decide(0.1, (0.001, 0.2), 0.001, 0.01, 0.05, min_effect=0.0)[0] == "regressed"


def test_verdict_reasons_name_the_size_and_p():
    assert stats.decide(math.log(1.1), (0.01, 0.2), 0.001, 0.01, 0.05)[1] == "10.0% worse (p=0.001)"
    assert stats.decide(-math.log(1.1), (-0.2, -0.01), 0.002, 0.01, 0.05)[1] == "10.0% better (p=0.002)"
    assert stats.decide(0.0, (-0.2, 0.3), 0.3, 0.01, 0.05)[1] == "not significant (p=0.3) and the CI reaches +-5%"


# -------------------------------------------------------------------------------------- primitives
def test_blocks():
    assert [stats.n_blocks(n) for n in (0, 4, 5, 6, 10, 29, 30, 31, 1000)] == [1, 1, 1, 2, 3, 9, 10, 10, 10]
    assert stats.n_blocks(12, max_blocks=2, min_block=3) == 2
    b = stats.blocks(list(range(11)), 3)
    assert b.shape == (3, 3) and b[2].tolist() == [6, 7, 8]  # the tail that does not fill a block is dropped
    assert stats.block_medians(list(range(10))).tolist() == [1.0, 4.0, 7.0]
    assert stats.block_medians([5.0, 1.0, 3.0], k=1).tolist() == [3.0]


def test_mann_whitney_and_welch_against_scipy():
    a, b = [1.0, 2.0, 3.5, 4.0], [2.5, 5.0, 6.0, 7.5, 8.0]
    assert stats.mann_whitney(a, b) == pytest.approx(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    assert math.isnan(stats.mann_whitney([], b)) and math.isnan(stats.mann_whitney(a, []))
    assert stats.mann_whitney([2.0, 2.0], [2.0, 2.0, 2.0]) == 1.0
    assert stats.mann_whitney([2.0, 2.0], [3.0, 3.0]) < 1.0
    p, diff, se = stats.welch(a, b)
    assert p == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    assert diff == pytest.approx(np.mean(b) - np.mean(a))
    assert se == pytest.approx(math.sqrt(np.var(a, ddof=1) / 4 + np.var(b, ddof=1) / 5))
    p1, d1, s1 = stats.welch([1.0], [2.0, 3.0])
    assert math.isnan(p1) and d1 == 1.5 and math.isnan(s1)
    assert math.isnan(stats.welch([], [1.0, 2.0])[1])
    assert stats.welch([1.0, 1.0], [1.0, 1.0]) == (1.0, 0.0, 0.0)
    assert stats.welch([1.0, 1.0], [2.0, 2.0]) == (0.0, 1.0, 0.0)


def test_welch_ci_against_the_formula():
    a, b = [1.0, 2.0, 3.5, 4.0], [2.5, 5.0, 6.0, 7.5, 8.0]
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 5
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)
    q = sps.t.ppf(0.975, df)
    d = np.mean(b) - np.mean(a)
    assert stats.welch_ci(a, b) == pytest.approx((d - q * math.sqrt(va + vb), d + q * math.sqrt(va + vb)))
    lo90, hi90 = stats.welch_ci(a, b, level=0.9)
    assert hi90 - lo90 < stats.welch_ci(a, b)[1] - stats.welch_ci(a, b)[0]
    assert stats.welch_ci([1.0, 1.0], [3.0, 3.0]) == (2.0, 2.0)


def test_bootstrap_level_defaults():
    rng = np.random.default_rng(3)
    a, b = list(rng.normal(1.0, 0.05, 50)), list(rng.normal(1.1, 0.05, 50))
    ci99 = stats.block_bootstrap_ratio(a, b, level=0.99)
    assert stats.block_bootstrap_ratio(a, b) == ci99  # 99% unless asked
    lo50, hi50 = stats.block_bootstrap_ratio(a, b, level=0.5)
    assert ci99[0] < lo50 < hi50 < ci99[1]
    r = stats.compare_timeseries(a, b, higher_is_better=False)
    assert (r.ci_low, r.ci_high) == ci99 and r.method == "blocks" and r.n_base == 50
    assert r.ratio == pytest.approx(np.median(b) / np.median(a)) and r.verdict == "regressed"
    assert r.reason.endswith("; 10 vs 10 blocks") and r.p_value == stats.mann_whitney(
        stats.block_medians(a), stats.block_medians(b))
    assert r.change == pytest.approx(r.ratio - 1)
    thr = stats.compare_timeseries(b, a, higher_is_better=True)  # throughput fell by ~9%
    assert thr.verdict == "regressed" and thr.change == pytest.approx(np.median(b) / np.median(a) - 1, rel=1e-6)
    assert stats.compare_timeseries(b, a, higher_is_better=False).verdict == "improved"


@pytest.mark.parametrize("fn, a, b, reason", [
    (stats.compare_timeseries, [], [1.0], "no samples on the base side"),
    (stats.compare_timeseries, [1.0], [], "no samples on the new side"),
    (stats.compare_timeseries, [1.0, math.nan], [1.0], "non-finite samples"),
    (stats.compare_timeseries, [1.0, 1.0], [0.0, 0.0], "medians must be positive for a ratio"),
    (stats.compare_seeds, [], [1.0], "no samples on the base side"),
    (stats.compare_seeds, [1.0], [], "no samples on the new side"),
    (stats.compare_seeds, [1.0, math.inf], [1.0], "non-finite values (diverged?)"),
    (stats.compare_seeds, [0.0, 0.0], [1.0, 1.0], "base mean is 0: no relative change"),
])
@pytest.mark.parametrize("hib", [True, False])
def test_guards_say_why_not_comparable(fn, a, b, reason, hib):
    r = fn(a, b, higher_is_better=hib)
    assert r.reason == reason and r.verdict == "not comparable"


def test_timeseries_guards():
    ts = stats.compare_timeseries
    assert ts([0.0], [1.0], higher_is_better=False).verdict == "not comparable"
    same = ts([2.0], [2.0], higher_is_better=False)
    assert (same.verdict, same.change, same.ratio) == ("unchanged", 0.0, 1.0)
    one = ts([2.0], [3.0, 3.0], higher_is_better=False)
    assert one.verdict == "inconclusive" and one.reason == "1 sample(s): no test possible"
    assert one.change == pytest.approx(0.5)


def test_seeds_alpha_and_guards():
    a = [0.70, 0.71, 0.69, 0.705, 0.695]
    b = [0.70 - 0.02 + 0.02 * s for s in (-1, -0.5, 0, 0.5, 1)]  # Welch p = 0.046
    r = stats.compare_seeds(a, b, higher_is_better=True)
    assert r.verdict == "regressed" and 0.04 < r.p_value < 0.05 and r.method == "welch"
    assert stats.compare_seeds(a, b, higher_is_better=True, alpha=0.01).verdict == "inconclusive"
    lo, hi = stats.welch_ci(a, b, 0.95)
    ma = float(np.mean(a))
    assert (r.ci_low, r.ci_high) == pytest.approx(((ma + lo) / ma, (ma + hi) / ma))
    assert r.reason.endswith("; Welch over 5 vs 5 seeds")
    assert stats.compare_seeds(a, b, higher_is_better=False).verdict == "improved"
    cs = stats.compare_seeds
    assert cs([0.5], [0.5], higher_is_better=True).verdict == "unchanged"
    one = cs([0.5], [0.6, 0.7], higher_is_better=True)
    assert one.verdict == "inconclusive" and "1 seed(s) on one side" in one.reason


def test_exact_counts_any_difference_past_the_threshold_counts():
    ex = stats.compare_exact
    assert ex([100.0], [106.0], higher_is_better=False).verdict == "regressed"
    assert ex([100.0], [104.0], higher_is_better=False).verdict == "unchanged"
    assert ex([100.0], [106.0], higher_is_better=True).verdict == "improved"
    assert ex([100.0], [94.0], higher_is_better=True).verdict == "regressed"
    assert ex([100.0], [106.0], higher_is_better=False, threshold=0.1).verdict == "unchanged"
    r = ex([100.0], [106.0], higher_is_better=False)
    assert r.reason == "deterministic value 6.00% worse" and r.ratio == r.ci_low == r.ci_high == 1.06
    assert r.change == pytest.approx(0.06)
    assert ex([100.0], [104.0], higher_is_better=False).reason == "deterministic value changed by 4.00%, within 5%"
    assert ex([5.0], [5.0], higher_is_better=True).reason == "identical"
    assert ex([0.0], [5.0], higher_is_better=True).reason == "base is 0: no relative change"
    assert ex([5.0], [-5.0], higher_is_better=True).reason == "sign changed: no ratio"
    assert ex([], [5.0], higher_is_better=True).reason == "no value on the base side"
    assert ex([5.0], [], higher_is_better=True).reason == "no value on the new side"
    assert ex([1.0, 3.0, 100.0], [3.0], higher_is_better=True).verdict == "unchanged"  # medians


def test_repeated_runs_alpha():
    base = [[1.0, 1.01, 0.99, 1.0], [1.05, 1.04, 1.06, 1.05], [0.95, 0.96, 0.94, 0.95]]
    new = [[x * 1.08 * (1 + 0.02 * s) for x in [1.0, 1.01, 0.99, 1.0]] for s in (-1, 0, 1)]
    r = stats.compare_repeated_runs(base, new, higher_is_better=False)
    assert 0.05 < r.p_value < 0.5 and r.ci_low > 1.0  # the CI alone would call it
    assert r.verdict == "inconclusive" and r.method == "runs" and r.reason.endswith("; 3 vs 3 runs")
    assert stats.compare_repeated_runs(base, new, higher_is_better=False, alpha=0.5).verdict == "regressed"
    assert r.n_base == 12 and r.ratio == pytest.approx(np.median(sum(new, [])) / np.median(sum(base, [])))
    bad = stats.compare_repeated_runs([[1.0, 0.0]] * 3, new, higher_is_better=False)
    assert bad.verdict == "not comparable"


def test_comparison_to_dict_nulls_non_finite():
    d = stats.Comparison("inconclusive", "x", "blocks", ratio=math.inf, p_value=math.nan, base=1.0).to_dict()
    assert d["ratio"] is None and d["p_value"] is None and d["base"] == 1.0 and d["threshold"] == 0.05


# ----------------------------------------------------------------------------------------- compare
def rec(config="c", samples=(1.0,) * 20, *, version="v1", kind="speed", unit="s", bs=8, dtype="float32",
        status="ok", env=None, metric="train.step_time", started="2026-01-01T00:00:00", info=None, **m):
    case = Case("s", config, kind, "smoke", "cpu", dtype, bs)
    metrics = {metric: Metric.from_values(metric, unit, False, samples), **m}
    return RunRecord(SCHEMA_VERSION, "r", f"r/{case.slug}", started, started, 1.0, case, {}, version,
                     env or {"machine_id": "m", "gpu": None}, status, None, metrics, info or {})


def one_row(base, new, **kw):
    rows, _ = compare.compare_runs(base, new, **kw)
    (row,) = rows
    return row


def test_compare_runs_not_comparable_reasons():
    assert one_row([rec()], [rec(version="v2")]).result.reason == "suite version v1 vs v2"
    assert one_row([rec()], [rec(bs=16)]).result.reason == "batch size 8 vs 16"
    assert one_row([rec()], [rec(dtype="bfloat16")]).result.reason == "dtype float32 vs bfloat16"
    assert one_row([rec()], [rec(info={"world_size": 2})]).result.reason == "world size 1 vs 2"
    assert one_row([rec()], [rec(status="failed")]).result.reason.startswith("new status failed")
    assert one_row([rec(status="oom")], [rec()]).result.reason.startswith("base status oom")
    assert one_row([rec(status="skipped")], [rec()]).verdict == "unchanged"
    rows, _ = compare.compare_runs([rec("a")], [rec("b")])
    assert sorted(r.result.reason for r in rows) == ["case only in base", "case only in new"]
    with pytest.raises(UsageError):
        compare.compare_runs([], [rec()])


def test_compare_runs_metric_rows():
    extra = {"x.count": Metric.single("x.count", "count", False, 5)}
    rows, _ = compare.compare_runs([rec(**extra)], [rec()])
    assert {r.metric: r.result.reason for r in rows}["x.count"] == "metric missing in new"
    rows, _ = compare.compare_runs([rec()], [rec(unit="ms")])
    assert rows[0].result.reason == "unit or direction differs (s vs ms)"
    miss = {"y": Metric.missing("y", "s", False, "no GPU")}
    rows, _ = compare.compare_runs([rec(**miss)], [rec(**{"y": Metric.from_values("y", "s", False, [1.0])})])
    assert {r.metric: r.result.reason for r in rows}["y"] == "not measured in base: no GPU"
    rows, _ = compare.compare_runs([rec(**extra)], [rec(**extra)], metrics=["x.*"])
    assert [r.metric for r in rows] == ["x.count"] and rows[0].result.method == "exact"
    slow = one_row([rec(samples=[1.0 + 0.001 * i for i in range(50)])], [rec(samples=[1.2 + 0.001 * i for i in range(50)])])
    assert slow.verdict == "regressed" and slow.result.method == "blocks"
    th = compare.Thresholds(0.05, (("train.*", 0.5), ("*.step_time", 0.3)))
    assert th.for_metric("train.step_time") == 0.3 and th.for_metric("train.x") == 0.5 and th.for_metric("z") == 0.05
    r = one_row([rec(samples=[1.0 + 0.001 * i for i in range(50)])], [rec(samples=[1.2 + 0.001 * i for i in range(50)])],
                thresholds=compare.Thresholds(0.5))
    assert r.verdict != "regressed" and r.result.threshold == 0.5


def test_compare_runs_uses_runs_when_three_or_more():
    base = [rec(samples=[1.0, 1.01], started=f"2026-01-0{i}") for i in range(1, 4)]
    new = [rec(samples=[1.0, 1.01], started=f"2026-01-0{i}") for i in range(1, 4)]
    assert one_row(base, new).result.method == "runs"
    assert one_row(base[:2], new[:2]).result.method == "blocks"
    assert one_row([rec(samples=[1.0])] * 3, [rec(samples=[1.0])] * 3).result.method == "blocks"
    q = one_row([rec(kind="quality", samples=[0.7, 0.71, 0.69])], [rec(kind="quality", samples=[0.7, 0.7, 0.7])])
    assert q.result.method == "welch"
    assert one_row([rec(kind="fidelity", samples=[5.0])], [rec(kind="fidelity", samples=[5.0])]).result.method == "exact"


def test_samples_are_in_time_order():
    late = rec(samples=[3.0], started="2026-01-02")
    early = rec(samples=[1.0], started="2026-01-01")
    assert compare._samples([late, early], "train.step_time") == [1.0, 3.0]
    assert compare._samples([rec(metric="other")], "train.step_time") == []


def test_parse_percent_and_verdict_counts():
    pp = compare.parse_percent
    assert (pp("5%"), pp("0.05"), pp("5"), pp("1"), pp("0.99"), pp("999"), pp(" 10% ")) == \
        (0.05, 0.05, 0.05, 0.01, 0.99, 9.99, 0.1)
    for bad in ("0", "-5%", "1000", "nan", "five"):
        with pytest.raises(UsageError):
            pp(bad)
    rows, _ = compare.compare_runs([rec("a"), rec("b")], [rec("a"), rec("c")])
    counts = compare.verdict_counts(rows)
    assert counts == {"regressed": 0, "improved": 0, "unchanged": 1, "inconclusive": 0, "not comparable": 2}


def test_env_differences_and_group_labels():
    a = rec(env={"machine_id": "m1", "gpu": "G1", "torch": "2.1", "git": {"commit": "0123456789abcdef"}})
    b = rec(env={"machine_id": "m2", "gpu": "G2", "torch": "2.1", "nvidia": {"driver": "5"}})
    assert compare.env_differences([a], [b]) == ["GPU G1 vs G2", "driver None vs 5"]
    assert compare.env_differences([a], [a]) == []
    assert compare.group_label(a, "gpu") == "CPU: unknown"  # a CPU case
    gpu_case = dataclasses.replace(a, case=dataclasses.replace(a.case, device="cuda:0"))
    assert compare.group_label(gpu_case, "gpu") == "G1"
    assert compare.group_label(dataclasses.replace(a, env={"cpu_model": "EPYC"}), "gpu") == "CPU: EPYC"
    assert compare.group_label(a, "commit") == "0123456789" and compare.group_label(b, "commit") == "unknown"
    assert compare.group_label(a, "cuda") == "none" and compare.group_label(a, "machine") == "m1"
    assert compare.group_label(a, "torch") == "2.1"
    with pytest.raises(UsageError):
        compare.group_label(a, "colour")


def _gpu(g, samples, version="v1", config="c"):
    r = rec(config, samples, version=version, env={"machine_id": g, "gpu": g})
    return dataclasses.replace(r, case=dataclasses.replace(r.case, device="cuda"))


def test_by_group_ratios_reference_and_suite_version():
    recs = [_gpu("A", [1.0, 1.0, 1.0]), _gpu("A", [1.0, 1.0]), _gpu("B", [2.0, 2.0, 2.0]),
            _gpu("C", [4.0, 4.0], version="v2")]
    rows, groups = compare.compare_by(recs, "gpu")
    (row,) = rows
    assert groups == ["A", "B", "C"] and row.reference == "A"  # the group with the most records
    assert row.ratios["A"] == 1.0 and row.ratios["B"] == 2.0 and row.ratios["C"] is None
    assert row.notes["C"] == "not comparable: suite version differs from the reference"
    assert row.cis["B"] is not None and "A" not in row.cis
    rows, _ = compare.compare_by(recs, "gpu", reference="B")
    assert rows[0].ratios["A"] == 0.5 and rows[0].ref_value == 2.0
    with pytest.raises(UsageError, match="is not a gpu"):
        compare.compare_by(recs, "gpu", reference="Z")
    with pytest.raises(UsageError):
        compare.compare_by([dataclasses.replace(_gpu("A", [1.0]), status="failed")], "gpu")
    only_a, _ = compare.compare_by([_gpu("A", [1.0]), _gpu("B", [2.0], config="other")], "gpu")
    assert only_a == []  # each case measured in one group only


def test_paper_tolerance():
    paper = Paper(suite="s", title="t", arxiv="0", year=2000)
    b = Baseline(id="b", suite="s", paper=paper, metric="acc", configs=("c",), kind="quality", value=0.80,
                 unit="fraction", dataset="d", split="test", protocol="p", source="Table 1", confirmed=True,
                 higher_is_better=True, tolerance=0.05, tolerance_kind="relative", scales=("smoke",))

    def verdict(x):
        r = rec(kind="quality", samples=[x], unit="fraction", metric="acc")
        return compare.paper_verdict(b, r)

    assert verdict(0.80 * 1.049).verdict == "reproduced"
    assert verdict(0.80 * 1.051).verdict == "not reproduced" and "better than the paper" in verdict(0.85).reason
    assert verdict(0.80 * 0.951).verdict == "reproduced" and verdict(0.80 * 0.949).verdict == "not reproduced"
    assert "worse than the paper" in verdict(0.70).reason and "tolerance +-5%" in verdict(0.70).reason
    absb = dataclasses.replace(b, tolerance=0.01, tolerance_kind="absolute")
    assert compare.paper_verdict(absb, rec(kind="quality", samples=[0.809], unit="fraction", metric="acc")).verdict \
        == "reproduced"
    assert compare.paper_verdict(absb, rec(kind="quality", samples=[0.8101], unit="fraction", metric="acc")).verdict \
        == "not reproduced"
    assert compare.paper_verdict(b, rec(kind="quality", samples=[0.8], unit="%", metric="acc")).verdict \
        == "not comparable"
    assert compare.paper_verdict(dataclasses.replace(b, scales=("paper",)), rec(kind="quality", samples=[0.8],
                                 unit="fraction", metric="acc")).verdict == "not comparable"
    rows = compare.compare_with_paper([rec(kind="quality", samples=[0.8], unit="fraction", metric="acc"),
                                       rec("other", kind="quality", samples=[0.8], unit="fraction", metric="acc")], [b])
    assert [r.verdict for r in rows] == ["reproduced"]


# ------------------------------------------------------------- second round (what the first run left)
def test_a_wide_ci_below_the_threshold_is_not_unchanged():
    rng = np.random.default_rng(0)
    a, b = list(rng.normal(1.0, 0.02, 50)), list(rng.normal(0.98, 0.08, 50))
    r = stats.compare_timeseries(a, b, higher_is_better=False)
    assert r.ci_low < 1 / 1.05 and r.ci_high < 1.05 and r.verdict == "inconclusive"
    base = [[1.0, 1.01, 0.99, 1.0], [1.05, 1.04, 1.06, 1.05], [0.95, 0.96, 0.94, 0.95]]
    new = [[x * 0.93 * (1 + 0.05 * k) for x in [1.0, 1.01, 0.99, 1.0]] for k in (-1, 0, 1)]
    r = stats.compare_repeated_runs(runs_a=base, runs_b=new, higher_is_better=False)
    assert r.ci_low < 1 / 1.05 and r.ci_high < 1.05 and r.verdict == "inconclusive"


def test_block_bootstrap_resamples_whole_blocks_at_the_asked_level():
    # The documented algorithm, written out: k blocks per side drawn with replacement, median of the
    # pooled samples, percentile interval of the ratio.
    rng_data = np.random.default_rng(7)
    a, b = list(rng_data.normal(1.0, 0.05, 50)), list(rng_data.normal(1.1, 0.05, 50))
    rng = np.random.default_rng(0)
    meds = []
    for x in (a, b):
        blk = np.asarray(x).reshape(10, 5)
        idx = rng.integers(0, 10, size=(500, 10))
        meds.append(np.median(blk[idx].reshape(500, -1), axis=1))
    want = np.quantile(meds[1] / meds[0], [0.25, 0.75])
    assert stats.block_bootstrap_ratio(a, b, level=0.5, n_boot=500) == pytest.approx(tuple(want))


def test_more_decision_edges():
    assert stats.decide(0.0, (0.01, 0.1), 0.001, 0.01, 0.05, min_effect=0.0)[0] == "inconclusive"
    why = stats.decide(0.5 * T * 0.99, (0.001, T * 1.5), 0.001, 0.01, 0.05)[1]
    assert why.startswith("significant 2.4% worse")
    why = stats.decide(-0.5 * T * 0.99, (-T * 1.5, -0.001), 0.001, 0.01, 0.05)[1]
    assert why.startswith("significant 2.4% better")
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.Comparison("unchanged", "x", "exact").verdict = "regressed"


def test_more_guards():
    two = stats.compare_seeds([0.5, 0.6], [0.7, 0.72, 0.71], higher_is_better=True)
    assert two.method == "welch" and two.p_value is not None and "Welch over 2 vs 3 seeds" in two.reason
    one = stats.compare_seeds([0.5, 0.6], [0.7], higher_is_better=True)
    assert one.reason == "1 seed(s) on one side: Welch's test needs 2+"
    assert stats.compare_exact([5.0], [5.0], higher_is_better=True).change == 0.0
    runs = stats.compare_repeated_runs
    assert runs([[1.0, math.nan]] * 3, [[1.0, 1.0]] * 3, higher_is_better=False).verdict == "not comparable"
    assert runs([[1.0, 1.0]] * 3, [[1.0, math.inf]] * 3, higher_is_better=False).verdict == "not comparable"
    assert runs([], [], higher_is_better=False).verdict == "not comparable"


def test_third_round_edges():
    # A CI that touches no-change (lo == 0) does not exclude it.
    assert stats.decide(0.1, (0.0, 0.2), 0.001, 0.01, 0.05)[0] == "inconclusive"
    c = stats.Comparison("unchanged", "x", "exact")
    assert (c.n_base, c.n_new, c.threshold, c.ratio) == (0, 0, 0.05, None)
    two = stats.compare_timeseries([1.0, 1.1], [1.0, 1.1], higher_is_better=False)
    assert two.reason.endswith("; 1 vs 1 blocks")  # two samples a side are tested, not refused
    assert stats.compare_seeds([0.5], [0.5], higher_is_better=True).change == 0.0
    a, b = [0.70, 0.71, 0.69], [0.60, 0.61, 0.59]
    hib = stats.compare_seeds(a, b, higher_is_better=True)
    assert hib.change == pytest.approx(np.mean(a) / np.mean(b) - 1)  # worse by the inverse ratio
    low = stats.compare_seeds(a, b, higher_is_better=False)
    assert low.change == pytest.approx(np.mean(b) / np.mean(a) - 1)


# ------------------------------------------------------------------ compare.py, what the run left
def _dev(r, device):
    return dataclasses.replace(r, case=dataclasses.replace(r.case, device=device))


def test_cases_match_across_device_indices_and_rows_name_the_first():
    base = [_dev(rec(), "cuda:0"), _dev(rec(), "cuda:1")]
    row = one_row(base, [_dev(rec(), "cuda:1")])
    assert row.verdict == "unchanged" and row.device == "cuda:0"


def test_failed_sides_and_long_errors():
    b = dataclasses.replace(rec(status="oom"), error="e" * 300)
    n = dataclasses.replace(rec(status="timeout"), error="t")
    why = one_row([b], [n]).result.reason
    assert why == "base status oom: " + "e" * 200


def test_a_record_without_the_metric_among_repeated_runs():
    base = [rec(samples=[1.0, 1.01], started=f"2026-01-0{i}") for i in range(1, 4)]
    other = rec(metric="other", samples=[1.0, 1.0], started="2026-01-04")
    new = [rec(samples=[1.0, 1.01], started=f"2026-01-0{i}") for i in range(1, 4)]
    rows, _ = compare.compare_runs(base + [other], new)
    assert {r.metric: r.result.method for r in rows}["train.step_time"] == "runs"


def test_paper_reason_relative_and_counts():
    b = Baseline(id="b", suite="s", paper=Paper(suite="s", title="t", arxiv="0", year=2000), metric="acc",
                 configs=("c",), kind="quality", value=0.80, unit="fraction", dataset="d", split="test",
                 protocol="p", source="T1", confirmed=True, higher_is_better=True, tolerance=0.05,
                 tolerance_kind="relative", scales=("smoke",))
    r = compare.paper_verdict(b, rec(kind="quality", samples=[0.85], unit="fraction", metric="acc"))
    assert "off by +0.05 fraction (+6.2%)" in r.reason and r.n == 1
    missing = compare.paper_verdict(b, rec(kind="quality", samples=[0.85], unit="fraction", metric="other"))
    assert missing.verdict == "not measured" and missing.n == 0 and missing.ours is None


def test_by_group_cis_notes_and_order():
    recs = [_gpu("A", [1.0, 1.1, 0.9]), _gpu("A", [1.0]), _gpu("B", [2.0]), _gpu("C", [3.0, 3.1, 2.9])]
    (row,) = compare.compare_by(recs, "gpu", reference="A")[0]
    assert "B" not in row.cis and isinstance(row.to_dict()["cis"]["C"], list)  # one sample: no interval
    lone = [_gpu("A", [1.0]), _gpu("C", [3.0, 3.1, 2.9])]
    (row,) = compare.compare_by(lone, "gpu", reference="A")[0]
    assert row.cis == {} and row.ratios["C"] == pytest.approx(3.0)  # a one-sample reference: none either
    no_ref = [_gpu("A", [1.0], config="c"), _gpu("B", [2.0]), _gpu("C", [4.0])]
    no_ref[0] = dataclasses.replace(no_ref[0], metrics={"train.step_time": Metric.missing(
        "train.step_time", "s", False, "no GPU timer")})
    (row,) = compare.compare_by(no_ref, "gpu", reference="A")[0]
    assert row.notes == {"A": "no GPU timer", "B": "reference not measured", "C": "reference not measured"}
    gap = [_gpu("A", [1.0, 1.0]), _gpu("A", [1.0]), _gpu("B", [2.0], config="x"), _gpu("C", [4.0, 4.0])]
    rows, _ = compare.compare_by(gap, "gpu", reference="A")
    c_row = next(r for r in rows if r.config == "c")
    assert c_row.ratios == {"A": 1.0, "B": None, "C": 4.0} and c_row.notes["B"] == "not run"
    za = dataclasses.replace(_gpu("A", [1.0], config="a"), run_id="z")
    zb = dataclasses.replace(_gpu("B", [2.0], config="a"), run_id="z")
    ab = dataclasses.replace(_gpu("A", [1.0], config="b"), run_id="a")
    bb = dataclasses.replace(_gpu("B", [2.0], config="b"), run_id="a")
    assert [r.config for r in compare.compare_by([bb, ab, zb, za], "gpu")[0]] == ["a", "b"]


def _kern(rows, config="c"):
    r = rec(config)
    return dataclasses.replace(r, artifacts={"train.kernels": rows})


def test_kernel_diffs_edges():
    k = lambda n, us, calls=1: {"name": n, "self_time_us": us, "calls": calls}  # noqa: E731
    base = _kern([k(f"k{i}", 10.0) for i in range(12)] + [k("gone", 5.0)])
    new = _kern([k(f"k{i}", 10.0 + i) for i in range(12)] + [k("new", 7.0, 3)])
    d = compare.kernel_diff(base, new)
    assert len(d) == 10
    full = {x.name: x for x in compare.kernel_diff(base, new, top=100)}
    assert full["gone"].new_us == 0.0 and full["gone"].new_calls == 0.0
    assert full["new"].base_us == 0.0 and full["new"].base_calls == 0.0 and full["new"].ratio is None
    assert full["k4"].ratio == pytest.approx(1.4)
    calls_only = compare.kernel_diffs([_kern([k("a", 1.0, 1)])], [_kern([k("a", 1.0, 2)])])
    assert len(calls_only) == 1
    assert compare.kernel_diffs([_kern([k("a", 1.0, 1)])], [_kern([k("a", 1.0, 1)])]) == []
    with pytest.raises(UsageError, match="missing in base record"):
        compare.kernel_diff(_kern([k("a", 1.0)]), new, label="other")
    with pytest.raises(UsageError, match="missing in new record"):
        compare.kernel_diff(dataclasses.replace(rec(), artifacts={"other.kernels": [k("a", 1.0)]}), new,
                            label="other")


# -------------------------------------------------------------------------------- trimmed location
def test_trimmed_location_trims_winsorizes_and_counts_degrees_of_freedom():
    x = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 100.0]       # n 10, g 2
    m, se, df = stats.trimmed_location(x)
    assert m == pytest.approx(4.5) and df == 5
    w = [2.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 7.0, 7.0]
    assert se == pytest.approx(np.std(w, ddof=1) / (0.6 * math.sqrt(10)))
    m4, se4, df4 = stats.trimmed_location([1.0, 2.0, 3.0, 50.0])     # n 4: g 0 (floor 0.8)
    assert (m4, df4) == (pytest.approx(14.0), 3) and se4 == pytest.approx(np.std([1, 2, 3, 50], ddof=1) / 2)
    m3, se3, df3 = stats.trimmed_location([1.0, 2.0, 9.0], trim=0.4)  # g 1 would leave 1 value: g 0
    assert (m3, df3) == (pytest.approx(4.0), 2)
    assert stats.trimmed_location(x, trim=0.0)[0] == pytest.approx(np.mean(x))
    # The A/B rule uses it: its interval is the trimmed mean's, with n - 2g - 1 degrees of freedom.
    r = stats.paired_verdict([0.1] * 7 + [0.11, 0.09, 5.0], higher_is_better=False, final=True)
    assert r.comparison.ratio == pytest.approx(math.exp(0.1), rel=1e-3)
    assert r.comparison.verdict == "regressed"
