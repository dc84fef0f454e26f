"""Timing loops.

Warm up by both a minimum count and a minimum time, then time until both `min_iters` and `min_time`
are reached (bounded by `max_iters`/`max_time`). Every raw sample is kept.
CPU: `time.perf_counter_ns` around each call. CUDA: one pair of events per iteration, read after a
single synchronize at the end, so the host never waits inside the loop.

Contention: on a shared CPU a sample's wall time measures the scheduler as much as the code. Beside
each CPU sample the loop keeps the process's CPU time (`time.process_time_ns`, all threads) and the
longest time any of its threads sat runnable but not running (the run-queue delay of
/proc/<pid>/task/*/schedstat, Linux). A sample whose run-queue delay exceeds DESCHEDULED_FRACTION of
its wall time is flagged `descheduled`: kept raw in the record, left out of verdicts, and counted.
The reads happen outside the timed interval, so the timed figure is unchanged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A thread that waited on the run queue for more than this share of a sample's wall time makes the
# sample "descheduled". 5%: the smallest change a verdict acts on is 5%, so a sample delayed by more
# than that could fake one on its own; smaller delays are common noise the statistics absorb.
DESCHEDULED_FRACTION = 0.05


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


# Smoke timings are what the nightly job compares: 15 samples (5 blocks of 3, the fewest for which the
# block rule can reach p < 0.01, and room to drop descheduled ones) after 2 warm-up steps. Cost: 17 step
# calls per step function instead of 4 (a 0.1 s step: 1.7 s instead of 0.4 s).
SMOKE_TIMING = TimingSettings(warmup_iters=2, warmup_time=0.0, min_iters=15, min_time=0.05, max_time=10.0)


@dataclass(frozen=True)
class TimingResult:
    samples_s: tuple[float, ...]
    warmup_iters: int
    timer: str  # "perf_counter_ns" | "cuda_event"
    # CPU only, one per sample (empty for CUDA or where the OS does not say): process CPU time, and the
    # longest run-queue delay of any thread of the process during the sample (None: not available).
    cpu_s: tuple[float, ...] = ()
    sched_wait_s: tuple[float | None, ...] = ()

    @property
    def descheduled(self) -> tuple[bool, ...]:
        return descheduled_flags(self.samples_s, self.sched_wait_s)


def descheduled_flags(wall_s, wait_s, fraction: float = DESCHEDULED_FRACTION) -> tuple[bool, ...]:
    """One flag per sample: its run-queue delay exceeded `fraction` of its wall time (None: unknown, False)."""
    if not wait_s:
        return tuple(False for _ in wall_s)
    return tuple(w is not None and w > fraction * t for t, w in zip(wall_s, wait_s, strict=False))


def _task_dir() -> Path | None:
    p = Path(f"/proc/{os.getpid()}/task")
    return p if p.is_dir() else None


def run_queue_delays(task_dir: Path | None) -> dict[str, int] | None:
    """thread id -> ns spent runnable but waiting for a CPU (Linux schedstat); None where unavailable."""
    if task_dir is None:
        return None
    out: dict[str, int] = {}
    try:
        names = os.listdir(task_dir)
    except OSError:
        return None
    for tid in names:
        try:
            with open(task_dir / tid / "schedstat", "rb") as f:
                out[tid] = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return out or None


def _max_delay(before: dict[str, int] | None, after: dict[str, int] | None) -> float | None:
    if before is None or after is None:
        return None
    # A thread born during the sample counts from 0: its whole delay fell inside the sample.
    return max((v - before.get(t, 0) for t, v in after.items()), default=0) * 1e-9


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
    cpu: list[int] = []
    waits: list[float | None] = []
    clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    tasks = _task_dir()
    start = clock()
    min_ns, max_ns = int(s.min_time * 1e9), int(s.max_time * 1e9)
    while True:
        d0 = run_queue_delays(tasks)
        c0 = cpu_clock()
        t0 = clock()
        fn()
        t1 = clock()
        c1 = cpu_clock()
        waits.append(_max_delay(d0, run_queue_delays(tasks)))
        samples.append(t1 - t0)
        cpu.append(c1 - c0)
        n, elapsed = len(samples), t1 - start
        if n >= s.max_iters or (elapsed >= max_ns and n >= s.min_iters):
            break
        if n >= s.min_iters and elapsed >= min_ns:
            break
    return TimingResult(tuple(x * 1e-9 for x in samples), n_warm, "perf_counter_ns",
                        cpu_s=tuple(x * 1e-9 for x in cpu), sched_wait_s=tuple(waits))


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


def contention_metrics(label: str, t: TimingResult) -> dict[str, Any]:
    """`<label>.cpu_time` and `<label>.sched_wait` (one value per sample, aligned with `<label>.step_time`):
    what lets a verdict leave out the samples where the process was descheduled. Empty for CUDA timings."""
    from milestones.harness.records import Metric

    if not t.cpu_s:
        return {}
    out = {f"{label}.cpu_time": Metric.from_values(f"{label}.cpu_time", "s", False, t.cpu_s,
                                                   note="process CPU time per sample, all threads")}
    if t.sched_wait_s and all(w is not None for w in t.sched_wait_s):
        out[f"{label}.sched_wait"] = Metric.from_values(
            f"{label}.sched_wait", "s", False, [float(w) for w in t.sched_wait_s if w is not None],
            note=f"longest run-queue delay of any thread per sample; > {DESCHEDULED_FRACTION:.0%} of the "
                 "sample's wall time marks it descheduled (kept here, left out of verdicts)")
    else:
        out[f"{label}.sched_wait"] = Metric.missing(f"{label}.sched_wait", "s", False,
                                                    "run-queue delays not available (needs Linux schedstat)")
    return out


def _cpu_busy_jiffies() -> tuple[int, int] | None:
    try:
        with open("/proc/stat", "rb") as f:
            parts = f.readline().split()[1:]
    except OSError:
        return None
    vals = [int(x) for x in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return sum(vals) - idle, sum(vals)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_cores(window: float = 0.25) -> tuple[int, float]:
    """(cores free for a case, cores busy with other work), from /proc/stat over `window` seconds while
    this process sleeps. Where that is unreadable: the 1-minute load average stands in for the busy count."""
    cores = usable_cores()
    a = _cpu_busy_jiffies()
    if a is not None:
        time.sleep(window)
        b = _cpu_busy_jiffies()
        total_cores = os.cpu_count() or cores
        busy = (b[0] - a[0]) / max(1, b[1] - a[1]) * total_cores if b else 0.0
    else:
        try:
            busy = os.getloadavg()[0]
        except OSError:
            busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5))), busy


def default_threads() -> tuple[int, str]:
    """The thread count of a speed case when none is asked for: the free cores, so the case does not
    fight other work for a core (on a busy 2-core machine, 2 threads made a 0.1 s step take 1-4 s)."""
    free, busy = free_cores()
    return free, f"free cores at start: {free} of {usable_cores()} usable ({busy:.1f} busy with other work)"
