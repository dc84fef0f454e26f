"""Timing loops.

Warm up by both a minimum count and a minimum time, then time until both `min_iters` and `min_time`
are reached (bounded by `max_iters`/`max_time`). Every raw sample is kept.
CPU: `time.perf_counter_ns` around each call. CUDA: one pair of events per iteration, read after a
single synchronize at the end, so the host never waits inside the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TimingSettings:
    warmup_iters: int = 3
    warmup_time: float = 0.2
    min_iters: int = 10
    min_time: float = 1.0
    max_iters: int = 10_000
    max_time: float = 60.0

    def __post_init__(self) -> None:
        if self.min_iters < 1 or self.warmup_iters < 0:
            raise ValueError("min_iters must be >= 1 and warmup_iters >= 0")
        if self.max_iters < self.min_iters:
            raise ValueError("max_iters must be >= min_iters")


SMOKE_TIMING = TimingSettings(warmup_iters=1, warmup_time=0.0, min_iters=3, min_time=0.05, max_time=10.0)


@dataclass(frozen=True)
class TimingResult:
    samples_s: tuple[float, ...]
    warmup_iters: int
    timer: str  # "perf_counter_ns" | "cuda_event"


def _warmup(fn: Callable[[], Any], s: TimingSettings, sync: Callable[[], None]) -> int:
    n, t0 = 0, time.perf_counter()
    while n < s.warmup_iters or (time.perf_counter() - t0) < s.warmup_time:
        fn()
        n += 1
        if n >= s.max_iters:
            break
    sync()
    return n


def time_cpu(fn: Callable[[], Any], s: TimingSettings = TimingSettings()) -> TimingResult:
    n_warm = _warmup(fn, s, lambda: None)
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    min_ns, max_ns = int(s.min_time * 1e9), int(s.max_time * 1e9)
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append(t1 - t0)
        n, elapsed = len(samples), t1 - start
        if n >= s.max_iters or (elapsed >= max_ns and n >= s.min_iters):
            break
        if n >= s.min_iters and elapsed >= min_ns:
            break
    return TimingResult(tuple(x * 1e-9 for x in samples), n_warm, "perf_counter_ns")


def time_cuda(fn: Callable[[], Any], s: TimingSettings = TimingSettings(), device: Any = None) -> TimingResult:
    import torch

    sync = lambda: torch.cuda.synchronize(device)  # noqa: E731
    n_warm = _warmup(fn, s, sync)
    pairs = []
    start = time.perf_counter()
    while True:
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        pairs.append((a, b))
        n, elapsed = len(pairs), time.perf_counter() - start
        if n >= s.max_iters or (elapsed >= s.max_time and n >= s.min_iters):
            break
        # The host runs ahead of the GPU; host-side elapsed time only decides when to stop queueing.
        if n >= s.min_iters and elapsed >= s.min_time:
            break
    torch.cuda.synchronize(device)
    return TimingResult(tuple(a.elapsed_time(b) * 1e-3 for a, b in pairs), n_warm, "cuda_event")


def time_fn(fn: Callable[[], Any], device: str, s: TimingSettings = TimingSettings()) -> TimingResult:
    return time_cuda(fn, s) if device.startswith("cuda") else time_cpu(fn, s)
