import numpy as np
import pytest
import torch

from milestones.harness.measure import timing
from milestones.harness.measure.flops import count_flops
from milestones.harness.measure.kernels import kernel_table
from milestones.harness.measure.memory import peak_rss_bytes
from milestones.harness.records import Stats


@pytest.mark.parametrize("dist", ["normal", "lognormal", "uniform"])
def test_stats_match_numpy_on_known_distributions(dist):
    rng = np.random.default_rng(0)
    xs = {"normal": rng.normal(10, 2, 5000), "lognormal": rng.lognormal(0, 0.5, 5000),
          "uniform": rng.uniform(0, 1, 5000)}[dist]
    s = Stats.from_samples(list(xs))
    assert s.n == 5000
    assert s.median == pytest.approx(np.median(xs))
    assert s.iqr == pytest.approx(np.percentile(xs, 75) - np.percentile(xs, 25))
    assert s.p10 == pytest.approx(np.percentile(xs, 10)) and s.p90 == pytest.approx(np.percentile(xs, 90))
    assert s.std == pytest.approx(np.std(xs, ddof=1)) and s.cv == pytest.approx(s.std / s.mean)
    if dist == "normal":  # the known population: median 10, IQR 2*0.6745*sigma
        assert s.median == pytest.approx(10, abs=0.1) and s.iqr == pytest.approx(2.698, rel=0.05)
    if dist == "uniform":
        assert s.p90 == pytest.approx(0.9, abs=0.02)


def test_time_cpu_keeps_every_raw_sample_of_a_known_workload(fake_clock):
    clk = fake_clock
    s = timing.TimingSettings(warmup_iters=2, warmup_time=0.0, min_iters=5, min_time=0.010, max_time=100)
    r = timing.time_cpu(clk.work, s)
    assert r.warmup_iters == 2 and r.timer == "perf_counter_ns"
    # Warm-up took calls 1-2; timed calls are 3 ms, 4 ms, ... until >= 5 samples and >= 10 ms.
    assert r.samples_s[:5] == pytest.approx([0.003, 0.004, 0.005, 0.006, 0.007])
    assert len(r.samples_s) == 5


def test_time_cpu_honours_min_time_and_max_iters(fake_clock):
    clk = fake_clock
    r = timing.time_cpu(clk.work, timing.TimingSettings(warmup_iters=0, warmup_time=0, min_iters=1, min_time=0.020))
    assert sum(r.samples_s) >= 0.020 and len(r.samples_s) == 6  # 1+2+3+4+5 = 15 ms < 20 ms <= 21 ms
    r = timing.time_cpu(clk.work, timing.TimingSettings(warmup_iters=0, warmup_time=0, min_iters=2, max_iters=3,
                                                        min_time=100))
    assert len(r.samples_s) == 3


def test_warmup_by_time(fake_clock):
    clk = fake_clock
    clk.t = 0  # from 0 the float seconds are exact: 6 ms is reached at the 3rd call, not a rounding later
    r = timing.time_cpu(clk.work, timing.TimingSettings(warmup_iters=1, warmup_time=0.006, min_iters=1, min_time=0))
    assert r.warmup_iters == 3  # 1+2 = 3 ms < 6 ms; 1+2+3 = 6 ms


def test_real_timing_loop_samples_are_positive():
    x = torch.randn(64, 64)
    r = timing.time_fn(lambda: x @ x, "cpu", timing.TimingSettings(warmup_iters=1, min_iters=7, min_time=0.0))
    assert len(r.samples_s) >= 7 and all(s > 0 for s in r.samples_s)


def test_flop_counter_on_a_known_matmul_and_conv():
    a, b = torch.randn(8, 16), torch.randn(16, 32)
    total, per_op = count_flops(lambda: a @ b)
    assert total == 2 * 8 * 16 * 32
    conv = torch.nn.Conv2d(3, 4, 3, bias=False)
    with torch.device("meta"):
        x = torch.empty(1, 3, 10, 10)
    conv_meta = torch.nn.Conv2d(3, 4, 3, bias=False, device="meta")
    total, _ = count_flops(lambda: conv_meta(x))
    assert total == 2 * (4 * 8 * 8) * (3 * 3 * 3)
    del conv


def test_kernel_table_has_ops_with_counts():
    x = torch.randn(32, 32)
    rows = kernel_table(lambda: torch.relu(x @ x), "cpu", iters=2)
    names = [r["name"] for r in rows]
    assert any("mm" in n for n in names)
    assert all(r["calls"] > 0 and r["self_time_us"] > 0 for r in rows)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0, abs=1e-6) or len(rows) == 20


def test_peak_rss_is_plausible():
    assert peak_rss_bytes() > 10 * 2**20


def test_t_table_matches_scipy():
    from scipy import stats as sps

    from milestones.harness.records import _T975

    for df, v in _T975.items():
        assert v == pytest.approx(sps.t.ppf(0.975, df), abs=1e-3)


def test_seed_interval_covers_known_mean_and_olympic_mean():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(400):
        s = Stats.from_samples(list(rng.normal(5.0, 1.0, 5)))
        covered += s.ci95_low <= 5.0 <= s.ci95_high
    assert 0.92 <= covered / 400 <= 0.98  # a 95% interval covers the true mean ~95% of the time
    s = Stats.from_samples([10.0, 1.0, 2.0, 3.0, 100.0])
    assert s.olympic_mean == pytest.approx(5.0)  # drops 1 and 100
    assert Stats.from_samples([1.0, 2.0]).olympic_mean is None
