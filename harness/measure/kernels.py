"""Kernel / operator table from `torch.profiler`: top entries by self time, with call counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def kernel_table(fn: Callable[[], Any], device: str, *, iters: int = 3, top: int = 20) -> list[dict[str, Any]]:
    """Profile `iters` calls of `fn` (after timing, so warm). Times are per profiled call, in µs."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(iters):
            fn()
        if cuda:
            torch.cuda.synchronize()
    rows = []
    for ev in prof.key_averages():
        # On a GPU the kernels are what matter; on the CPU the aten ops are the unit of work.
        self_us = getattr(ev, "self_device_time_total", None) if cuda else ev.self_cpu_time_total
        if self_us is None and cuda:
            self_us = getattr(ev, "self_cuda_time_total", 0.0)
        if not self_us or self_us <= 0:
            continue
        rows.append({"name": ev.key, "self_time_us": float(self_us) / iters, "calls": int(ev.count) / iters})
    total = sum(r["self_time_us"] for r in rows) or 1.0
    rows.sort(key=lambda r: r["self_time_us"], reverse=True)
    for r in rows:
        r["share"] = r["self_time_us"] / total
    return rows[:top]
