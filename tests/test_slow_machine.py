"""The machine-speed canary: measured in every CPU speed case, read by compare to recognise a slow machine."""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from milestones.harness import compare, report, slow_machine, stats
from milestones.harness.measure import canary
from milestones.harness.records import Metric
from milestones.harness.store import load_records

FIX = Path(__file__).parent / "fixtures" / "records"


def _record(run_id: str, step_s: float, canary_s: float | None, *, peak: float = 1e9, seed: int = 0, n: int = 15):
    (r,) = [r for r in load_records(FIX / "history") if r.run_id == "20260310T020000Z-nightly"]
    rng = np.random.default_rng(seed)
    samples = step_s * (1 + 0.005 * rng.standard_normal(n))
    metrics = {"train.step_time": Metric.from_values("train.step_time", "s", False, samples),
               "train.throughput": Metric.from_values("train.throughput", "images/s", True, 64 / samples),
               "train.peak_rss": Metric.single("train.peak_rss", "B", False, peak)}
    info = {} if canary_s is None else {"canary": canary.record(
        [{"matmul": canary_s / 3, "copy": canary_s / 3, "dispatch": canary_s / 3}] * 3,
        [{"matmul": canary_s / 3, "copy": canary_s / 3, "dispatch": canary_s / 3}] * 3)}
    return dataclasses.replace(r, run_id=run_id, metrics=metrics, info=info,
                               started_at=f"2026-03-{10 + seed % 18:02d}T02:{seed % 60:02d}:00+00:00")


def _verdicts(rows):
    return {r.metric: r for r in rows}


def test_the_canary_measures_three_parts_on_one_thread_and_restores_the_thread_count():
    import torch

    before = torch.get_num_threads()
    s = canary.sample(2)
    assert len(s) == 2 and all(set(x) == set(canary.PARTS) and min(x.values()) > 0 for x in s)
    assert torch.get_num_threads() == before
    rec = canary.record(s, s)
    assert rec["version"] == canary.VERSION and len(rec["total_s"]) == 4
    assert canary.median_total(rec) == pytest.approx(statistics.median(rec["total_s"]))
    assert canary.median_total({**rec, "version": canary.VERSION + 1}) is None  # another workload
    assert canary.median_total(None) is None


def test_the_check_needs_the_floor_and_twice_the_canarys_noise():
    assert slow_machine.check([0.010], 0.0104).slow is False      # +4%: under the 5% floor
    assert slow_machine.check([0.010], 0.0106).slow is True       # +6%
    noisy = [0.010 * (1 + d) for d in (-0.03, 0.03, -0.02, 0.02, 0.0, 0.01, -0.01)]
    c = slow_machine.check(noisy, 0.01055)      # +5.5%, noise ~3%: bar ~6%
    assert c.noise > 0.02 and c.slow is False
    assert slow_machine.check(noisy, 0.0107).slow is True
    assert slow_machine.check([], 0.01) is None and slow_machine.check([0.01], None) is None


def test_a_timing_regression_on_a_slow_machine_is_a_suspect_not_a_failure():
    base = [_record("base", 0.100, 0.010)]
    slow = [_record("new", 0.125, 0.013, seed=1)]              # step +25%, canary +30%
    rows = _verdicts(compare.compare_runs(base, slow)[0])
    for m in ("train.step_time", "train.throughput"):
        assert rows[m].verdict == "inconclusive" and rows[m].result.suspect, rows[m].result.reason
        assert "slow machine" in rows[m].result.reason
    assert compare.compare_runs(base, slow)[1] == []  # not an environment difference
    line = report.slow_machine_line(list(rows.values()))
    assert line.startswith("Slow machine: 2 timing row(s) of 1 case(s)") and "+30%" in line
    assert "Slow machine" in report.markdown_compare(list(rows.values()), [], title="t")
    from milestones.harness import html
    page = html.to_html(html.build(base + slow, [], plots=False))
    assert "Slow machine: 2 timing row(s) of 1 case(s)" in page
    assert compare.suspects(list(rows.values())) == ["resnet50-smoke"]
    # The same step change with the canary where it was: called.
    rows = _verdicts(compare.compare_runs(base, [_record("new", 0.125, 0.010, seed=1)])[0])
    assert rows["train.step_time"].verdict == "regressed" and rows["train.step_time"].result.canary_ratio is None
    assert report.slow_machine_line(list(rows.values())) is None
    # No canary on either side (GPU records, older records): the verdict is untouched.
    rows = _verdicts(compare.compare_runs([_record("base", 0.1, None)], [_record("new", 0.125, None, seed=1)])[0])
    assert rows["train.step_time"].verdict == "regressed"


def test_a_gross_change_beyond_the_canarys_slowdown_and_memory_are_still_called():
    base = [_record("base", 0.100, 0.010)]
    new = [_record("new", 0.250, 0.012, seed=1, peak=3e9)]     # step 2.5x, canary +20%, memory 3x
    rows = _verdicts(compare.compare_runs(base, new)[0])
    assert rows["train.step_time"].verdict == "regressed"
    assert "beyond it" in rows["train.step_time"].result.reason
    assert rows["train.peak_rss"].verdict == "regressed"       # not a timing: the canary has no say


def test_history_reads_the_canary_against_its_own_level():
    hist = [_record(f"n{i:02d}", 0.100, 0.010 * (1 + 0.01 * ((i % 3) - 1)), seed=i) for i in range(12)]
    night = [_record("n12", 0.100 * 1.3, 0.010 * 1.4, seed=12)]  # first slow night of a slow machine
    after = [_record("n13", 0.100 * 1.3, 0.010 * 1.4, seed=13)]  # the second: would be confirmed
    rows = _verdicts(compare.compare_history([r for r in hist + night], after)[0])
    assert rows["train.step_time"].verdict == "inconclusive" and rows["train.step_time"].result.suspect
    assert "slow machine" in rows["train.step_time"].result.reason
    # The same two nights with the canary at its level: a confirmed regression.
    night = [_record("n12", 0.130, 0.010, seed=12)]
    after = [_record("n13", 0.130, 0.010, seed=13)]
    rows = _verdicts(compare.compare_history(hist + night, after)[0])
    assert rows["train.step_time"].verdict == "regressed", rows["train.step_time"].result.reason


@pytest.mark.slow
def test_every_cpu_speed_record_carries_a_canary(cli, tmp_path):
    r = cli("run", "gan-smoke", "--kind", "speed", "--threads", "1", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    (rec,) = load_records(tmp_path)
    c = rec.info["canary"]
    assert c["version"] == canary.VERSION and len(c["before"]) == len(c["after"]) == canary.SAMPLES
    assert canary.median_total(c) > 0


@pytest.mark.slow
def test_ignore_canary_judges_the_timings_alone(cli, tmp_path):
    from milestones.harness import store

    base, slow = _record("base", 0.100, 0.010), _record("new", 0.125, 0.013, seed=1)
    rows = _verdicts(compare.compare_runs([base], [slow], canary=False)[0])
    assert rows["train.step_time"].verdict == "regressed"
    store.write_record(tmp_path / "a", base)
    store.write_record(tmp_path / "b", slow)
    held = cli("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--fail-on", "regression")
    assert held.returncode == 0 and "Slow machine: 2 timing row(s)" in held.stdout, held.stdout + held.stderr
    raw = cli("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--fail-on", "regression", "--ignore-canary")
    assert raw.returncode == 1 and "Slow machine" not in raw.stdout


def test_slow_machine_rules_at_their_boundaries():
    """Pins each number and comparison of harness/slow_machine.py (found by `nox -s mutation -- slow_machine`)."""
    C = slow_machine.CanaryCheck
    assert C(1.5, 0.25, 5).bar == 0.5 and not C(1.5, 0.25, 5).slow             # exactly at the bar: not slow
    assert C(1.5, 0.249, 5).slow and C(1.051, 0.0, 1).slow and not C(1.049, 0.0, 1).slow
    assert C(1.0, 0.05, 5).bar == pytest.approx(slow_machine.NOISE_Z * 0.05) == pytest.approx(0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        C(1.0, 0.0, 1).ratio = 2.0
    assert C(1.3, 0.0, 1).describe() == "machine canary +30%"
    assert C(0.9, 0.021, 2).describe() == "machine canary -10%, its noise 2.1% over 2 runs"
    # The noise: 1.4826 x the MAD of the logs, from 5 reference runs on (none from 4).
    ref = [math.exp(x) for x in (0.0, 0.01, -0.01, 0.02, -0.02)]
    assert slow_machine.check(ref, 1.0).noise == pytest.approx(1.4826 * 0.01)
    assert slow_machine.check(ref[:4], 1.0).noise == 0.0
    assert slow_machine.check([0.0, 1.0], 1.2).n_ref == 1                     # a zero canary is no reference
    # Only the latest REFERENCE_RUNS: an old, slower stretch of the machine's past is forgotten.
    old, recent = [2.0] * 20, [1.0] * 30
    c = slow_machine.check(old + recent, 1.0)
    assert c.ratio == pytest.approx(1.0) and c.n_ref == 30  # docs/verdicts.md: "the last 30 runs"
    # Slowdown as a time factor, whatever the direction; nothing for a ratio that is no ratio.
    res = lambda r: stats.Comparison("regressed", "x", method="blocks", ratio=r)  # noqa: E731
    assert slow_machine.slowdown(res(1.25), False) == 1.25 and slow_machine.slowdown(res(0.8), True) == 1.25
    for bad in (None, math.inf, 0.0, -1.0):
        assert slow_machine.slowdown(res(bad), False) is None
    # Exactly the gross bar (50%) beyond the canary's slowdown: still called.
    kept = slow_machine.excuse(res(3.0), False, C(2.0, 0.0, 1))
    assert kept.verdict == "regressed" and "still a 1.5x slowdown beyond it" in kept.reason
    held = slow_machine.excuse(res(2.99), False, C(2.0, 0.0, 1))
    assert held.verdict == "inconclusive" and held.suspect and held.canary_ratio == 2.0
