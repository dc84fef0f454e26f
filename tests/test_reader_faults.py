"""Issue 24, items 8 and 9: readers of records the harness itself writes (non-finite samples) or a
foreign one holds (env.nvidia a list) never crash."""

from __future__ import annotations

import dataclasses
import math

import pytest

from milestones.harness import compare, report, store
from milestones.harness.records import Metric, Stats
from tests.test_store import make_record

NONFINITE = [(float("nan"), float("inf"), float("-inf")), (1e308, 1e308, -1e308), (float("inf"),) * 3,
             (1e308, 1e308, 1e308, 1e308)]


@pytest.mark.parametrize("samples", NONFINITE)
def test_stats_of_nonfinite_samples_do_not_raise(samples):
    st = Stats.from_samples(list(samples))
    assert st is not None and st.n == len(samples)
    if all(math.isfinite(x) for x in samples):
        # 1e308s summed overflow; their mean does not.
        assert math.isfinite(st.mean) and st.mean == pytest.approx(sum(x / len(samples) for x in samples))
    else:
        assert not math.isfinite(st.mean)


def test_stats_of_ordinary_samples_are_unchanged():
    st = Stats.from_samples([1.0, 2.0, 3.0, 4.0])
    assert (st.mean, st.median, st.olympic_mean) == (2.5, 2.5, 2.5)
    assert st.std == pytest.approx(math.sqrt(5 / 3))


@pytest.mark.slow
@pytest.mark.parametrize("samples", NONFINITE[:2])
def test_report_on_stored_nonfinite_samples(cli, tmp_path, samples):
    rec = make_record(samples=samples)
    store.write_record(tmp_path / "res" / "m1" / "r1", rec)
    back = store.load_records(tmp_path / "res")[0]
    assert len(back.metrics["train.step_time"].samples) == len(samples)
    for out in ("r.md", "r.html"):
        r = cli("report", str(tmp_path / "res"), "--output", str(tmp_path / out), "--no-plots")
        assert r.returncode == 0, r.stderr[-2000:]
        assert (tmp_path / out).exists()


@pytest.mark.slow
def test_compare_with_a_list_for_env_nvidia(cli, tmp_path):
    good = make_record(run_id="a")
    odd = dataclasses.replace(make_record(run_id="b"), env={**good.env, "nvidia": [1, 2], "git": "abc"})
    assert compare.env_value(odd, "driver") is None and compare.env_value(odd, "commit") is None
    store.write_record(tmp_path / "a", good)
    store.write_record(tmp_path / "b", odd)
    assert store.load_frame(tmp_path / "b")["driver"].isna().all()
    assert "driver" not in report.appendix_env(odd.env) and "commit" not in report.appendix_env(odd.env)
    for args in (("compare", str(tmp_path / "a"), str(tmp_path / "b")),
                 ("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "markdown"),
                 ("report", str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(tmp_path / "r.md"),
                  "--no-plots")):
        r = cli(*args)
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_metric_round_trip_of_overflowing_samples():
    m = Metric.from_values("x", "s", False, [1e308, 1e308, -1e308])
    assert Metric.from_dict("x", m.to_dict()).samples == m.samples
