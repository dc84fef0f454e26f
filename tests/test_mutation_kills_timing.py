"""Tests that bite on harness/measure/timing.py, CUDA loop included: a fake clock and fake CUDA events
make every stop rule observable on a CPU-only machine (no duration is asserted, only counts). The
fake torch keeps each run of this file short, for `nox -s mutation -- timing`."""

from __future__ import annotations

import sys
import types

import pytest

from milestones.harness.measure import timing
from tests.fake_clock import Clock


@pytest.fixture
def clk(fake_clock):
    return fake_clock


@pytest.fixture
def fake_cuda(monkeypatch, clk):
    synced = []

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.t = None

        def record(self):
            self.t = clk.t

        def elapsed_time(self, end):  # milliseconds, like torch
            return (end.t - self.t) / 1e6

    # A stand-in torch with just what time_cuda uses: no GPU (and no torch import) needed.
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        Event=Event, synchronize=lambda device=None: synced.append(device)))
    monkeypatch.setitem(sys.modules, "torch", fake)
    return synced


def S(**kw):
    base = dict(warmup_iters=0, warmup_time=0.0, min_iters=1, min_time=0.0, max_iters=10_000, max_time=60.0)
    return timing.TimingSettings(**{**base, **kw})


def test_settings_validation():
    S(min_iters=1, warmup_iters=0, max_iters=1)  # the smallest valid settings
    for bad in (dict(min_iters=0), dict(warmup_iters=-1), dict(min_iters=5, max_iters=4)):
        with pytest.raises(ValueError):
            S(**bad)
    d = timing.TimingSettings()
    assert (d.warmup_iters, d.warmup_time, d.min_iters, d.min_time, d.max_iters, d.max_time) == \
        (3, 0.2, 10, 1.0, 10_000, 60.0)


def test_warmup_iterations_time_and_cap(clk):
    assert timing.time_cpu(clk.work, S(warmup_iters=4)).warmup_iters == 4
    c2 = Clock()
    assert timing._warmup(c2.work, S(warmup_iters=0, warmup_time=0.0), lambda: None) == 0
    # Iterations done but time not yet: goes on until warmup_time (fake: 1, 2, 3 ms -> 6 ms >= 5 ms).
    clk.reset()
    assert timing.time_cpu(clk.work, S(warmup_iters=1, warmup_time=0.005)).warmup_iters == 3
    # max_iters also bounds the warm-up.
    clk.reset()
    assert timing.time_cpu(clk.work, S(warmup_iters=50, min_iters=2, max_iters=7)).warmup_iters == 7


def test_time_cpu_counts_and_units(clk):
    r = timing.time_cpu(clk.work, S(min_iters=4))
    assert r.samples_s == pytest.approx((0.001, 0.002, 0.003, 0.004)) and r.timer == "perf_counter_ns"
    clk.reset()
    # min_time: 1+2+3 = 6 ms < 7 ms, 1+2+3+4 = 10 ms
    assert len(timing.time_cpu(clk.work, S(min_iters=1, min_time=0.007)).samples_s) == 4
    clk.reset()
    assert len(timing.time_cpu(clk.work, S(min_iters=1, min_time=0.006)).samples_s) == 3  # exactly reached
    clk.reset()
    # max_time stops a long min_time once min_iters are done: 1+2+3 = 6 ms >= 5 ms
    assert len(timing.time_cpu(clk.work, S(min_iters=3, min_time=100, max_time=0.005)).samples_s) == 3
    clk.reset()
    clk.reset()
    assert len(timing.time_cpu(clk.work, S(min_iters=3, min_time=100, max_time=0.006)).samples_s) == 3  # exactly
    clk.reset()
    # ...but never before min_iters.
    assert len(timing.time_cpu(clk.work, S(min_iters=5, min_time=100, max_time=0.001)).samples_s) == 5
    clk.reset()
    assert len(timing.time_cpu(clk.work, S(min_iters=2, min_time=100, max_iters=2)).samples_s) == 2


def test_time_cuda_loop_on_fake_events(clk, fake_cuda):
    r = timing.time_cuda(clk.work, S(warmup_iters=2, min_iters=3), device="cuda:1")
    assert r.timer == "cuda_event" and r.warmup_iters == 2
    assert r.samples_s == pytest.approx((0.003, 0.004, 0.005))  # seconds, from milliseconds
    assert fake_cuda == ["cuda:1", "cuda:1"]  # once after the warm-up, once at the end
    clk.reset()
    assert len(timing.time_cuda(clk.work, S(min_iters=1, min_time=0.0059)).samples_s) == 3  # float seconds here
    clk.reset()
    assert len(timing.time_cuda(clk.work, S(min_iters=1, min_time=0.007)).samples_s) == 4
    clk.reset()
    assert len(timing.time_cuda(clk.work, S(min_iters=3, min_time=100, max_time=0.005)).samples_s) == 3
    clk.reset()
    assert len(timing.time_cuda(clk.work, S(min_iters=5, min_time=100, max_time=0.001)).samples_s) == 5
    clk.reset()
    assert len(timing.time_cuda(clk.work, S(min_iters=3, min_time=100, max_time=0.0059)).samples_s) == 3
    clk.reset()
    assert len(timing.time_cuda(clk.work, S(min_iters=2, min_time=100, max_iters=2)).samples_s) == 2


def test_time_fn_picks_the_timer(clk, fake_cuda):
    assert timing.time_fn(clk.work, "cuda:0", S()).timer == "cuda_event"
    assert timing.time_fn(clk.work, "cuda", S()).timer == "cuda_event"
    assert timing.time_fn(clk.work, "cpu", S()).timer == "perf_counter_ns"
    assert timing.SMOKE_TIMING.min_iters == 15 and timing.SMOKE_TIMING.warmup_time == 0.0


def test_min_time_is_compared_in_whole_nanoseconds(monkeypatch):
    t = {"ns": Clock.START}
    steps = iter([5_999_999, 1_000_000, 1_000_000])

    def work():
        t["ns"] += next(steps)

    monkeypatch.setattr(timing.time, "perf_counter_ns", lambda: t["ns"])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: t["ns"] / 1e9)
    r = timing.time_cpu(work, S(min_iters=1, min_time=0.006))
    assert len(r.samples_s) == 2  # 5 999 999 ns is short of 6 ms by one nanosecond


def test_smoke_timing_settings():
    # 15 samples: enough blocks for a verdict on a smoke case (issue 15), after 2 warm-up calls.
    assert timing.SMOKE_TIMING == timing.TimingSettings(warmup_iters=2, warmup_time=0.0, min_iters=15, min_time=0.05,
                                                        max_time=10.0)


def test_one_second_boundaries(monkeypatch):
    t = {"ns": Clock.START}

    def work():
        t["ns"] += 1_000_000_000

    monkeypatch.setattr(timing.time, "perf_counter_ns", lambda: t["ns"])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: t["ns"] / 1e9)
    assert len(timing.time_cpu(work, S(min_iters=1, min_time=1.0)).samples_s) == 1  # exactly 1 s is enough
    assert len(timing.time_cpu(work, S(min_iters=1, min_time=100, max_time=1.0)).samples_s) == 1


def test_settings_and_results_are_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        S().min_iters = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        timing.TimingResult((1.0,), 0, "perf_counter_ns").timer = "x"


def test_cuda_stop_rules_at_exact_boundaries(monkeypatch, fake_cuda):
    # Host time in exact binary fractions (0.25 s a call), so "exactly reached" is exact in floats.
    clock = {"s": 1024.0}

    def work():
        clock["s"] += 0.25

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock["s"])
    sys.modules["torch"].cuda.Event = _exact_event(clock)  # the fixture's stand-in torch
    assert len(timing.time_cuda(work, S(min_iters=1, min_time=0.5)).samples_s) == 2
    assert len(timing.time_cuda(work, S(min_iters=1, min_time=100, max_time=0.5)).samples_s) == 2


def _exact_event(clock):
    class Event:
        def __init__(self, enable_timing=False):
            self.t = None

        def record(self):
            self.t = clock["s"]

        def elapsed_time(self, end):
            return (end.t - self.t) * 1e3

    return Event


def test_max_time_is_compared_in_whole_nanoseconds(monkeypatch):
    t = {"ns": Clock.START}
    steps = iter([999_999_999, 1, 1, 1])

    def work():
        t["ns"] += next(steps)

    monkeypatch.setattr(timing.time, "perf_counter_ns", lambda: t["ns"])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: t["ns"] / 1e9)
    assert len(timing.time_cpu(work, S(min_iters=1, min_time=100, max_time=1.0)).samples_s) == 2
