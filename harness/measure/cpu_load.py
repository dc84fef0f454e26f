"""How much of the CPU is free right now: a default thread count that does not fight other work.

A 2-core machine with one core busy runs a 2-thread step 10-30x slower than a 1-thread one (the threads
wait for each other while one is descheduled), so the default uses the cores that are idle, not all.
"""

from __future__ import annotations

import os
import time


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies over all CPUs from /proc/stat; None where there is no /proc."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    vals = [int(x) for x in fields[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return idle, sum(vals[:8])


def logical_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def idle_cores(sample_s: float = 0.3) -> float | None:
    """Cores idle over a short sample (e.g. 1.2 of 2); None where it cannot be measured."""
    a = _cpu_times()
    if a is None:
        return None
    time.sleep(sample_s)
    b = _cpu_times()
    if b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)


def free_threads(idle: float | None, cores: int) -> int:
    """Threads for a case: the cores idle now (at least 1, at most the cores this process may use)."""
    if idle is None:
        return cores
    return max(1, min(cores, int(idle + 0.25)))  # 0.75 of a core idle counts as a free core
