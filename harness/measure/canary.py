"""The machine-speed canary: a fixed workload timed inside every CPU speed case, before and after its steps.

On a shared CPU the same code can run 20-120% slower for minutes (another tenant on the host, a lower
clock), with its CPU time rising too, so neither the run-queue delay nor CPU time tells it from a
regression. The canary is the harness's own code, the same in every revision and every case, so a
canary that ran slow says the *machine* was slow while the case was measured; `compare` then leaves
that case's timing regressions to `milestones ab` instead of failing the job (docs/verdicts.md).

The workload has three parts of a few ms each, because machine events do not slow everything alike:
a 256x256 float32 matmul (compute), a 16 MiB tensor copy (memory bandwidth) and 1200 small tensor adds
(dispatch: the interpreter and torch's per-op overhead, what small smoke steps are made of). It runs
on one torch thread and is timed in the calling thread's CPU time, so a descheduled canary still
measures the speed of the core it ran on, not the scheduler. Raw samples are kept in the record.
"""

from __future__ import annotations

import time
from typing import Any

# Bump when the workload changes: canaries of different versions are never compared.
VERSION = 1
SAMPLES = 3  # before the steps, and again after them
PARTS = ("matmul", "copy", "dispatch")


def _workload() -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    return {"a": torch.randn(256, 256, generator=g), "b": torch.randn(256, 256, generator=g),
            "c": torch.empty(256, 256), "src": torch.ones(4 << 20), "dst": torch.empty(4 << 20),
            "x": torch.ones(8), "y": torch.ones(8)}


def _parts(w: dict[str, Any]) -> dict[str, Any]:
    import torch

    def matmul() -> None:
        for _ in range(6):
            torch.mm(w["a"], w["b"], out=w["c"])

    def copy() -> None:
        for _ in range(2):
            w["dst"].copy_(w["src"])

    def dispatch() -> None:
        x, y = w["x"], w["y"]
        for _ in range(1200):
            x = x + y

    return {"matmul": matmul, "copy": copy, "dispatch": dispatch}


def sample(n: int = SAMPLES) -> list[dict[str, float]]:
    """n samples of the canary: per part, the calling thread's CPU seconds."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        parts = _parts(_workload())
        for fn in parts.values():  # warm-up: page in the buffers, pick the kernels
            fn()
        out = []
        for _ in range(n):
            s = {}
            for name, fn in parts.items():
                t0 = time.thread_time_ns()
                fn()
                s[name] = (time.thread_time_ns() - t0) / 1e9
            out.append(s)
        return out
    finally:
        torch.set_num_threads(threads)


def record(before: list[dict[str, float]], after: list[dict[str, float]]) -> dict[str, Any]:
    """What a record's `info.canary` holds: the version, the raw samples, and each sample's total."""
    return {"version": VERSION, "before": before, "after": after,
            "total_s": [sum(s.values()) for s in before + after]}


def median_total(info: Any) -> float | None:
    """The canary's figure for one case process (median total CPU seconds), None without a usable one."""
    import statistics

    if not isinstance(info, dict) or info.get("version") != VERSION:
        return None
    xs = [x for x in info.get("total_s") or () if isinstance(x, (int, float)) and x > 0]
    return statistics.median(xs) if xs else None
