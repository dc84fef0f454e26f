"""A second clock on the same step: the harness's timer (CUDA events on a GPU, perf_counter_ns on a CPU)
against `torch.utils.benchmark.Timer`, which synchronises the device itself. Their ratio near 1 says the
event timings are not missing work queued outside the events (or counting host gaps)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from milestones.harness.measure.timing import TimingSettings, time_fn


def timer_crosscheck(step_fn: Callable[[], Any], device: str, iters: int = 20) -> dict[str, Any]:
    """Median seconds per call of `step_fn` by both clocks, and harness / Timer. `iters` calls each,
    after the harness's warm-up."""
    import torch.utils.benchmark as benchmark

    if iters < 1:
        raise ValueError("iters must be >= 1")
    s = TimingSettings(warmup_iters=3, warmup_time=0.0, min_iters=iters, min_time=0.0, max_iters=iters)
    ours = time_fn(step_fn, device, s)
    import torch

    # the same thread count as the harness's loop (Timer defaults to one thread)
    timer = benchmark.Timer(stmt="step_fn()", globals={"step_fn": step_fn}, num_threads=torch.get_num_threads())
    # one call per measurement, so both clocks give a per-call distribution; Timer synchronises CUDA itself
    theirs_samples = [float(timer.timeit(1).mean) for _ in range(iters)]
    ours_med = statistics.median(ours.samples_s)
    theirs = statistics.median(theirs_samples)
    return {"device": device, "iters": iters, "harness_timer": ours.timer, "harness_median_s": ours_med,
            "benchmark_timer_median_s": theirs, "ratio": ours_med / theirs if theirs > 0 else None,
            "harness_samples_s": list(ours.samples_s), "benchmark_timer_samples_s": theirs_samples}
