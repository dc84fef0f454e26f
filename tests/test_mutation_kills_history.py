"""Tests that bite on harness/history.py: which runs make a history (status, metric, case key, min_runs),
the step fits (`steps_at`, the older `segment`), the levels and steps a History carries, and the nightly
question `judge_latest` (too few runs, the level after the last change point, noise floor, size and
persistence rules, the distribution-free guard). Plain numbers and hand-built records only: each run
of this file takes seconds, for `nox -s mutation -- history`."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from milestones.harness import history as H
from milestones.harness.records import SCHEMA_VERSION, Case, Metric, RunRecord


def rec(run_id: str, started: str, samples, *, metric="train.step_time", status="ok", device="cpu", batch=8,
        version="v1", commit=None, higher_is_better=False, unit="s", config="cfg") -> RunRecord:
    case = Case("suite", config, "speed", "smoke", device, "float32", batch)
    env = {"git": {"commit": commit}} if commit else {}
    return RunRecord(SCHEMA_VERSION, run_id, f"{run_id}/{case.slug}", started, started, 1.0, case, {}, version, env,
                     status, None, {metric: Metric(metric, unit, higher_is_better, tuple(samples))})


def nightly(levels, *, spread=0.0, **kw):
    """One record per night at the given levels (three samples each, +-spread around the level)."""
    return [rec(f"n{i:02d}", f"2026-01-{i + 1:02d}T00:00:00", [v * (1 - spread), v, v * (1 + spread)], **kw)
            for i, v in enumerate(levels)]


def noisy(n, sd=0.01, seed=2, level=1.0):
    return list(level * np.exp(np.random.default_rng(seed).normal(0, sd, n)))


# --------------------------------------------------------------------------------------- records
def test_a_step_reports_its_relative_change_and_a_history_its_summary():
    s = H.Step(3, "r3", "t3", "abc", 2.0, 3.0, True, False)
    assert s.change == 0.5 and H.Step(1, "r", "t", None, 4.0, 3.0, False, True).change == -0.25
    assert math.isnan(H.Step(1, "r", "t", None, 0.0, 3.0, False, True).change)
    h = H.build("suite", "cfg", "speed", "train.step_time", [(r, list(r.metrics["train.step_time"].samples))
                                                            for r in nightly([1.0] * 5 + [2.0] * 5)])
    d = h.to_dict()
    assert (d["suite"], d["config"], d["kind"], d["metric"], d["unit"], d["runs"]) == \
        ("suite", "cfg", "speed", "train.step_time", "s", 10)
    (step,) = d["steps"]
    assert step == {"run_id": "n05", "index": 5, "started_at": "2026-01-06T00:00:00", "commit": None, "before": 1.0,
                    "after": 2.0, "change": 1.0, "worse": True, "tentative": False}


# ------------------------------------------------------------------------------------ histories
def test_histories_group_runs_by_case_and_need_min_runs_different_runs():
    recs = nightly([1.0, 1.0, 1.0])
    (h,) = H.histories(recs)  # exactly min_runs (3) runs: a history
    assert h.run_ids == ("n00", "n01", "n02") and h.medians == (1.0, 1.0, 1.0)
    assert (h.suite, h.config, h.kind, h.metric, h.unit) == ("suite", "cfg", "speed", "train.step_time", "s")
    assert H.histories(recs[:2]) == [] and len(H.histories(recs[:2], min_runs=2)) == 1
    assert H.histories(recs, min_runs=4) == []
    # Two records of one run are one run (their samples pooled), not two.
    extra = rec("n01", "2026-01-02T00:00:00", [4.0, 4.0, 4.0])
    (h,) = H.histories([*recs, extra])
    assert len(h.run_ids) == 3 and h.medians[1] == 2.5
    assert H.histories([*recs[:2], extra]) == []


def test_histories_leave_out_failed_runs_unmeasured_or_nonfinite_samples_and_unasked_metrics():
    good = nightly([1.0] * 3)
    failed = rec("f", "2026-02-01T00:00:00", [1.0], status="failed")
    nan = rec("x", "2026-02-02T00:00:00", [1.0, float("nan")])
    inf = rec("y", "2026-02-03T00:00:00", [float("inf")])
    empty = rec("z", "2026-02-04T00:00:00", [])
    (h,) = H.histories([failed, nan, *good, inf, empty])  # a skipped record does not end the reading
    assert h.run_ids == ("n00", "n01", "n02")
    assert H.histories([*good[:2], failed, nan, inf, empty]) == []
    other = nightly([2.0] * 3, metric="eval.loss")
    got = H.histories([*good, *other])
    assert [x.metric for x in got] == ["eval.loss", "train.step_time"]  # in key order
    assert [x.metric for x in H.histories([*good, *other], metrics=["train.*"])] == ["train.step_time"]
    assert [x.metric for x in H.histories([*good, *other], metrics=["*.loss", "nope"])] == ["eval.loss"]


def test_histories_keep_cases_apart_but_merge_devices_of_one_type():
    a = nightly([1.0] * 3, device="cuda:0")
    b = [rec(f"m{i}", f"2026-03-0{i + 1}T00:00:00", [1.0]) for i in range(3)]
    assert len(H.histories([*a, *b])) == 2  # cuda vs cpu
    gpus = nightly([1.0] * 2, device="cuda:0") + [rec("n02", "2026-01-03T00:00:00", [1.0], device="cuda:1")]
    assert len(H.histories(gpus)) == 1
    for kw in (dict(batch=16), dict(version="v2"), dict(config="other")):
        mixed = nightly([1.0] * 2) + [rec("n02", "2026-01-03T00:00:00", [1.0], **kw)]
        assert H.histories(mixed) == [], kw


def test_a_history_is_in_time_order_with_its_levels_steps_and_commits():
    recs = nightly([1.0] * 6 + [1.5] * 6, spread=0.1, commit="c0ffee")
    h = H.build("suite", "cfg", "speed", "train.step_time",
                [(r, list(r.metrics["train.step_time"].samples)) for r in reversed(recs)])
    assert h.run_ids == tuple(r.run_id for r in recs) and h.started_at[0] == "2026-01-01T00:00:00"
    assert h.medians == (1.0,) * 6 + (1.5,) * 6 and h.commits == ("c0ffee",) * 12
    assert h.p10[0] == pytest.approx(np.quantile([0.9, 1.0, 1.1], 0.1)) and h.p90[-1] == pytest.approx(1.5 * 1.08)
    assert h.levels == (1.0,) * 6 + (1.5,) * 6 and h.unit == "s" and not h.higher_is_better
    (s,) = h.steps
    assert (s.index, s.run_id, s.commit, s.before, s.after, s.worse, s.tentative) == \
        (6, "n06", "c0ffee", 1.0, 1.5, True, False)


def test_a_step_is_worse_in_the_metrics_bad_direction_and_tentative_on_one_run():
    down = nightly([2.0] * 8 + [1.0] * 8, higher_is_better=True, unit="1/s", metric="train.throughput")
    (h,) = H.histories(down)
    (s,) = h.steps
    assert s.worse and s.before == 2.0 and s.after == 1.0 and h.higher_is_better and h.unit == "1/s"
    (h,) = H.histories(nightly([2.0] * 8 + [1.0] * 8))
    assert not h.steps[0].worse
    # A new level of one run (the newest) is tentative; levels are medians of their segments.
    h = H.build("s", "c", "speed", "train.step_time", [(r, [v]) for r, v in zip(nightly([1] * 12), [1.0] * 11 + [3.0],
                                                                                 strict=True)])
    if h.steps:  # the t-test may or may not call a one-run level; when it does, it is tentative
        assert h.steps[-1].tentative and h.steps[-1].index == 11
    h = H.build("s", "c", "speed", "train.step_time", [(r, [v]) for r, v in zip(nightly([1] * 16),
                                                                                 [1.0] * 8 + [2.0] * 8, strict=True)])
    assert [(s.index, s.tentative) for s in h.steps] == [(8, False)]


def test_no_steps_are_fitted_through_a_non_positive_median():
    recs = nightly([1.0] * 6 + [0.0] + [2.0] * 6)
    (h,) = H.histories(recs)
    assert h.steps == () and h.levels == (1.0,) * 13
    (h,) = H.histories(nightly([1.0] * 3))
    assert h.steps == () and h.levels == (1.0, 1.0, 1.0)


# ---------------------------------------------------------------------------------------- steps_at
def test_steps_at_finds_relative_steps_above_the_floor_only():
    assert H.steps_at([1.0, 2.0]) == [] and H.steps_at([]) == []
    assert H.steps_at([1.0] * 10 + [1.2] * 10) == [10]
    assert H.steps_at([1.0] * 10 + [1.2] * 10 + [0.8] * 10) == [10, 20]
    assert H.steps_at([5.0] * 30) == []  # flat: rounding is not a step
    small = [1.0] * 10 + [1.01] * 10
    assert H.steps_at(small) == [] and H.steps_at(small, min_step=0.005) == [10]
    # Windows: an old level does not hide a recent step.
    assert 55 in H.steps_at([1.0] * 55 + [1.1] * 5, window=50)
    assert H.steps_at(noisy(20, 0.02) + noisy(20, 0.02, seed=3, level=1.03), max_pvalue=1e-12) == []


# ------------------------------------------------------------------------------ the older fit: segment
def test_segment_costs_are_l1_distances_to_each_segments_median():
    c = H._l1_costs(np.array([1.0, 2.0, 4.0]))
    assert c.shape == (4, 4) and c[0, 3] == 3.0 and c[1, 3] == 2.0 and c[0, 1] == 0.0 and c[0, 2] == 1.0


def test_noise_scale_is_the_mad_of_first_differences():
    assert H.noise_scale([1.0]) == 0.0 and H.noise_scale([]) == 0.0
    assert H.noise_scale([0, 1, 3, 4, 6]) == pytest.approx(0.5 / 0.6745 / math.sqrt(2))
    assert H.noise_scale([0, 1, 0, 1, 0]) == pytest.approx(1 / 0.6745 / math.sqrt(2))


def test_segment_finds_steps_and_merges_those_too_small_to_act_on():
    assert H.segment([1.0, 2.0]) == []
    assert H.segment([1.0] * 8 + [2.0] * 8) == [8]
    assert H.segment([1.0] * 6 + [2.0] * 6 + [4.0] * 6) == [6, 12]
    assert H.segment([3.0] * 12) == []
    assert H.segment(noisy(16, 0.01)) == []
    # A 1% step is real (no noise) but below min_step: merged away; a lower floor keeps it.
    small = [1.0] * 8 + [1.01] * 8
    assert H.segment(small) == [] and H.segment(small, min_step=0.001) == [8]
    assert H.segment([1.0] * 6 + [1.01] * 6 + [2.0] * 6) == [12]
    # The penalty is in units of the noise: a large given noise, or a large penalty, finds nothing.
    step = [1.0] * 8 + [1.2] * 8
    assert H.segment(step, scale=1.0) == [] and H.segment(step, penalty=1000.0) == []
    assert H.segment(step, scale=0.01) == [8] and H.segment(step, penalty=0.5) == [8]
    # The steps are worth their penalty: a 3-run blip with a huge penalty is no step, with none it is.
    blip = [1.0] * 5 + [1.5] * 3 + [1.0] * 5
    assert H.segment(blip) == [5, 8] and H.segment(blip, scale=0.5) == []


# ------------------------------------------------------------------------------------ judge_latest
def test_too_few_runs_are_not_judged():
    j = H.judge_latest([1.0] * 4, 2.0, higher_is_better=False)
    assert (j.state, j.runs, j.persisted) == ("too few runs", 4, False) and math.isnan(j.change)
    assert H.judge_latest([1.0] * 4 + [0.0, -1.0], 2.0, higher_is_better=False).state == "too few runs"
    assert H.judge_latest([1.0] * 5, 0.0, higher_is_better=False).state == "too few runs"
    assert H.judge_latest([1.0] * 5, 2.0, higher_is_better=False).state == "suspect"
    assert H.judge_latest([1.0] * 5, 1e-9, higher_is_better=False).state == "improved"


def test_a_clear_change_is_suspect_or_improved_by_the_metrics_direction():
    h = noisy(20)
    level = math.exp(float(np.median(np.log(h))))
    at = H.judge_latest(h, level, higher_is_better=False)
    assert at.state == "ok" and at.change == pytest.approx(0.0, abs=1e-12) and at.runs == 20
    assert at.level == pytest.approx(level) and not at.persisted
    up = H.judge_latest(h, level * 1.2, higher_is_better=False)
    assert up.state == "suspect" and up.change == pytest.approx(0.2) and up.z > 0 and up.p_value < 0.01
    assert up.as_far == 0.0
    down = H.judge_latest(h, level / 1.2, higher_is_better=False)
    assert down.state == "improved" and down.change == pytest.approx(1 / 1.2 - 1) and down.z < 0
    assert H.judge_latest(h, level * 1.2, higher_is_better=True).state == "improved"
    faster = H.judge_latest(h, level / 1.2, higher_is_better=True)
    assert faster.state == "suspect" and faster.change == pytest.approx(0.2)


def test_the_test_is_a_t_test_with_the_robust_noise_and_its_degrees_of_freedom():
    from scipy.stats import t as student_t

    from milestones.harness import stats

    h = noisy(20)
    lh = np.log(h)
    sigma = stats.run_noise(lh)
    j = H.judge_latest(h, 1.03, higher_is_better=False)
    assert j.noise == pytest.approx(sigma)
    d = math.log(1.03) - float(np.median(lh))
    se = sigma * math.sqrt(1 + (math.pi / 2) / 20)
    assert j.z == pytest.approx(d / se)
    assert j.p_value == pytest.approx(2 * student_t.sf(abs(d / se), 0.37 * 18))
    # A given noise is used as is; a history of identical values still has the 0.2% floor.
    assert H.judge_latest(h, 1.03, higher_is_better=False, noise=0.05).noise == 0.05
    flat = H.judge_latest([1.0] * 10, 1.003, higher_is_better=False)
    assert flat.noise == 0.002 and flat.z == pytest.approx(math.log(1.003) / (0.002 * math.sqrt(1 + math.pi / 20)))
    # Very short histories have few degrees of freedom (at least one).
    short = H.judge_latest([1.0] * 5, 1.01, higher_is_better=False)
    assert short.p_value == pytest.approx(2 * student_t.sf(abs(short.z), 1.11))
    assert H.judge_latest([1.0] * 10, 1.01, higher_is_better=False, alpha=0.01, noise=0.001).p_value == \
        pytest.approx(2 * student_t.sf(math.log(1.01) / (0.002 * math.sqrt(1 + math.pi / 20)), 0.37 * 8))


def test_alpha_and_min_change_decide_what_is_off():
    h = noisy(20)
    j = H.judge_latest(h, 1.025, higher_is_better=False)
    assert j.state == "suspect" and 1e-4 < j.p_value < 0.01
    assert H.judge_latest(h, 1.025, higher_is_better=False, alpha=j.p_value / 2).state == "ok"
    assert H.judge_latest(h, 1.025, higher_is_better=False, alpha=j.p_value * 2).state == "suspect"
    # Significant but small: below min_change nothing is called (exactly at it, it is).
    tiny = H.judge_latest([1.0] * 20, 1.015, higher_is_better=False)
    assert tiny.p_value < 0.01 and tiny.state == "ok"
    assert H.judge_latest([1.0] * 20, 1.015, higher_is_better=False, min_change=0.01).state == "suspect"
    edge = H.judge_latest([1.0] * 20, 1.02, higher_is_better=False, min_change=math.expm1(math.log(1.02)))
    assert edge.state == "suspect"


def test_the_level_is_the_median_after_the_last_change_point_within_the_window():
    j = H.judge_latest([1.0] * 10 + [1.5] * 10, 1.5, higher_is_better=False)
    assert j.state == "ok" and j.runs == 10 and j.level == pytest.approx(1.5)
    j = H.judge_latest([1.0] * 10 + [1.5] * 10, 1.0, higher_is_better=False)
    assert j.state == "improved" and j.change == pytest.approx(1 / 1.5 - 1)
    assert H.judge_latest(noisy(70), 1.0, higher_is_better=False).runs == 50  # at most the window
    assert H.judge_latest(noisy(50), 1.0, higher_is_better=False).runs == 50
    assert H.judge_latest(noisy(49), 1.0, higher_is_better=False).runs == 49


def test_a_last_level_of_two_runs_whose_first_sits_at_the_old_level_is_one_odd_run():
    # The change point search (min 2 runs a level) puts a level at [1.0, 1.5]: not a level, one odd run.
    h = noisy(30) + [1.0, 1.5]
    j = H.judge_latest(h, 1.5, higher_is_better=False)
    assert j.runs == 32 and j.state == "confirmed" and j.persisted and j.level == pytest.approx(1.0, abs=0.01)
    # Two runs at a new level are a level.
    j = H.judge_latest(noisy(30) + [1.5, 1.5], 1.5, higher_is_better=False)
    assert j.runs == 2 and j.state == "ok" and j.level == pytest.approx(1.5)
    # Earlier levels: the odd run is compared with the level just before it.
    j = H.judge_latest(noisy(30) + noisy(30, seed=5, level=1.3) + [1.3, 1.8], 1.8, higher_is_better=False)
    assert j.runs == 32 and j.level == pytest.approx(1.3, abs=0.02) and j.state == "confirmed"


def test_a_regression_is_confirmed_when_the_run_before_was_off_the_same_way():
    h = noisy(20)
    j = H.judge_latest(h + [1.2], 1.2, higher_is_better=False)
    assert j.state == "confirmed" and j.persisted and j.runs == 21
    assert j.worst_seen == pytest.approx(1.2 / j.level - 1)  # the first night of it
    # The run before was off the other way: not persisted, still off.
    j = H.judge_latest(h + [1 / 1.2], 1.2, higher_is_better=False)
    assert j.state == "suspect" and not j.persisted
    # The run before was off the same way but by less than min_change: not persisted.
    j = H.judge_latest([1.0] * 20 + [1.015], 1.2, higher_is_better=False)
    assert j.state == "suspect" and not j.persisted
    # An improvement that lasts is "improved", never confirmed.
    j = H.judge_latest(h + [1 / 1.2], 1 / 1.2, higher_is_better=False)
    assert j.state == "improved" and j.persisted
    # A history too short to tell (at most MIN_HISTORY runs in the level) is not persisted.
    j = H.judge_latest([1.0] * 4 + [1.2], 1.2, higher_is_better=False)
    assert j.runs == 5 and not j.persisted
    j = H.judge_latest([1.0] * 5 + [1.2], 1.2, higher_is_better=False)
    assert j.runs == 6 and j.persisted and j.state == "confirmed"


def test_a_level_the_metric_has_shown_before_is_not_called_a_regression():
    # Two odd nights among twenty: a third at that height is what this metric does, not a regression.
    h = [1.0] * 8 + [1.3] + [1.0] * 8 + [1.3] + [1.0] * 2
    j = H.judge_latest(h, 1.3, higher_is_better=False)
    assert j.p_value < 0.01 and j.state == "ok" and j.as_far == pytest.approx(2 / 20)
    assert j.worst_seen == pytest.approx(0.3)
    # One odd night among 40 (2.5%, under the 5% share allowed): called.
    h = [1.0] * 20 + [1.3] + [1.0] * 19
    assert H.judge_latest(h, 1.3, higher_is_better=False).state == "suspect"
    # Within one noise SD of the newest counts as "as far".
    j = H.judge_latest([1.0] * 18 + [1.29, 1.0], 1.3, higher_is_better=False, noise=0.02)
    assert j.as_far == pytest.approx(1 / 20)
    j = H.judge_latest([1.0] * 18 + [1.2, 1.0], 1.3, higher_is_better=False, noise=0.02)
    assert j.as_far == 0.0
    # For a higher-is-better metric the bad direction is down.
    j = H.judge_latest([1.0] * 8 + [0.7] + [1.0] * 8 + [0.7] + [1.0] * 2, 0.7, higher_is_better=True)
    assert j.state == "ok" and j.as_far == pytest.approx(2 / 20) and j.worst_seen == pytest.approx(1 / 0.7 - 1)


def test_a_second_night_is_judged_against_the_runs_before_the_first():
    # The previous night was off, but the level has shown it before: no persistence is claimed.
    h = [1.0] * 8 + [1.2] + [1.0] * 8 + [1.2] + [1.0] * 2 + [1.2]
    j = H.judge_latest(h, 1.2, higher_is_better=False)
    assert not j.persisted and j.state == "ok"
    # Newest beyond every earlier run, previous night too: persisted.
    j = H.judge_latest([1.0] * 20 + [1.2], 1.25, higher_is_better=False)
    assert j.persisted and j.state == "confirmed"
    # The newest is back at the level while the previous night was off: not persisted.
    j = H.judge_latest([1.0] * 20 + [1.25], 1.0, higher_is_better=False)
    assert not j.persisted and j.state == "ok"
    # The previous night was beyond every earlier run, but the newest is where the level has been before.
    j = H.judge_latest([1.0] * 6 + [1.3] + [1.0] * 6 + [1.3] + [1.0] * 6 + [1.35], 1.25, higher_is_better=False)
    assert not j.persisted and j.state == "ok"


def test_persistence_needs_the_previous_night_off_by_at_least_min_change():
    h = [1.0] * 20 + [1.05]
    # The previous night's log change as judge_latest computes it (numpy's log of the whole series), and
    # the min_change whose log1p is exactly that: the boundary, found on this machine's arithmetic.
    x = float(np.log(np.asarray(h, float))[-1])
    mc = math.expm1(x)
    while math.log1p(mc) != x:
        mc = float(np.nextafter(mc, math.inf if math.log1p(mc) < x else -math.inf))
    j = H.judge_latest(h, 1.2, higher_is_better=False, min_change=mc)
    assert j.persisted and j.state == "confirmed"  # exactly min_change is enough
    above = mc
    while math.log1p(above) <= x:
        above = float(np.nextafter(above, math.inf))
    j = H.judge_latest(h, 1.2, higher_is_better=False, min_change=above)
    assert not j.persisted and j.state == "suspect"


def test_the_previous_night_must_be_beyond_the_runs_before_it_too():
    # Two nights ago (1.15) was within one noise SD of the previous night (1.2): the level had shown that
    # height already, so the newest is a suspect, not a confirmed regression.
    j = H.judge_latest(noisy(12, 0.05) + [1.15, 1.2], 1.3, higher_is_better=False)
    assert j.runs == 14 and j.state == "suspect" and not j.persisted


def test_a_judgement_is_frozen():
    j = H.judge_latest([1.0] * 5, 1.0, higher_is_better=False)
    with pytest.raises(AttributeError):
        j.state = "confirmed"
    assert j.to_dict()["state"] == "ok" and set(j.to_dict()) >= {"change", "z", "p_value", "level", "persisted"}


def test_a_previous_night_off_at_the_looser_persistence_level_still_confirms():
    # Judged alone the 3% night was not off at alpha (p ~0.03), but it is under sqrt(alpha) = 0.1: with a
    # second, clearly worse night after it, the regression is confirmed.
    h = noisy(12, 0.01)
    alone = H.judge_latest(h, 1.03, higher_is_better=False)
    assert alone.state == "ok" and 0.01 < alone.p_value < 0.1
    j = H.judge_latest(h + [1.03], 1.2, higher_is_better=False)
    assert j.state == "confirmed" and j.persisted


def test_an_unjudged_metric_reports_nothing_worse_seen():
    j = H.judge_latest([1.0] * 3, 5.0, higher_is_better=False)
    assert j.state == "too few runs" and j.worst_seen == 0.0 and j.as_far == 0.0


def test_segment_finds_a_step_right_after_the_first_run():
    assert H.segment([1.0] + [2.0] * 8) == [1] and H.segment([2.0] + [1.0] * 10) == [1]


def test_segment_needs_three_runs_and_finds_a_step_in_three():
    assert H.segment([1.0, 2.0], scale=0.001) == []
    assert H.segment([1.0, 2.0, 2.0], scale=0.001) == [1] and H.segment([1.0, 1.0, 2.0], scale=0.001) == [2]


def test_a_newest_run_exactly_at_the_level_is_not_worse():
    # The share "as far" is then counted on the good side: the runs at or below the level (11 of 21).
    j = H.judge_latest([1.0, 1.05] * 10 + [1.0], 1.0, higher_is_better=False, noise=0.01)
    assert j.change == 0.0 and j.state == "ok" and j.as_far == pytest.approx(11 / 21)


def test_a_previous_night_needs_a_two_sided_p_under_the_square_root_of_alpha():
    # The previous night (1.7% off, two-sided p ~0.15 > sqrt(0.01)) was not off enough to count: the newest
    # clear regression is a suspect, not yet confirmed.
    h = [1.0] * 20 + [1.017]
    prev = H.judge_latest(h[:-1], 1.017, higher_is_better=False, noise=0.01, min_change=0.01)
    assert 0.1 < prev.p_value < 0.2
    j = H.judge_latest(h, 1.2, higher_is_better=False, noise=0.01, min_change=0.01)
    assert j.state == "suspect" and not j.persisted


def test_segment_merges_small_steps_measured_from_the_first_run():
    # A first-run outlier is its own segment; the 1% step after it is too small to keep.
    assert H.segment([0.5, 1.0, 1.0] + [1.01] * 4) == [1]


def test_segment_keeps_merging_until_no_step_is_too_small():
    assert H.segment([1.0] * 6 + [1.005] * 6 + [1.01] * 6, scale=0.0001) == []
    assert H.segment([1.0] * 5 + [1.008] * 5 + [1.016] * 5 + [1.024] * 5, scale=0.0001) == []


def test_segment_penalty_is_four_noise_scales_per_log_run():
    # Splitting [1]*8 + [1.2]*8 saves 8 x log(1.2) = 1.46 of L1 cost; a step costs 4 x log(16) x scale.
    step = [1.0] * 8 + [1.2] * 8
    assert H.segment(step, scale=0.12) == [8] and H.segment(step, scale=0.14) == []


def test_steps_at_judges_three_runs():
    assert H.steps_at([1.0, 1.0, 2.0]) == [2] and H.steps_at([1.0, 2.0, 2.0]) == [1]


def test_runs_exactly_one_noise_sd_short_of_the_newest_count_as_as_far():
    noise = math.log(1.25)
    j = H.judge_latest([1.0] * 20, 1.25, higher_is_better=False, noise=noise)
    assert j.as_far == 1.0 and j.state == "ok"


def test_p_exactly_at_alpha_is_not_off():
    h = noisy(20)
    p = H.judge_latest(h, 1.025, higher_is_better=False).p_value
    assert H.judge_latest(h, 1.025, higher_is_better=False, alpha=p).state == "ok"


def test_a_step_after_a_one_run_level_starts_from_that_run():
    h = H.build("s", "c", "speed", "train.step_time",
                [(r, [v]) for r, v in zip(nightly([1] * 16), [0.5] + [1.0] * 7 + [2.0] * 8, strict=True)])
    assert [(s.index, s.before, s.after) for s in h.steps] == [(1, 0.5, 1.0), (8, 1.0, 2.0)]


def test_a_previous_night_as_far_as_one_run_in_twenty_still_persists():
    # One earlier run (1.25) as far as the previous night (1.2): exactly the 5% share allowed.
    j = H.judge_latest([1.0] * 9 + [1.25] + [1.0] * 10 + [1.2], 1.3, higher_is_better=False)
    assert j.persisted and j.state == "confirmed"


def test_every_metric_of_a_record_is_read_after_one_that_is_left_out():
    def two(run_id, started):
        r = rec(run_id, started, [1.0])
        return dataclasses.replace(r, metrics={"eval.loss": Metric("eval.loss", "", False, ()),
                                               "zz.other": Metric("zz.other", "s", False, (9.0,)),
                                               **r.metrics})

    recs = [two(f"n{i}", f"2026-01-0{i + 1}T00:00:00") for i in range(3)]
    assert [h.metric for h in H.histories(recs)] == ["train.step_time", "zz.other"]
    assert [h.metric for h in H.histories(recs, metrics=["train.*"])] == ["train.step_time"]
