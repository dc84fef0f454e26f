"""Energy from NVML's total-energy counter (Volta and newer).

The counter is read in millijoules but only advances every few tens of milliseconds, so a smoke step's
timed loop (a few ms on an H200) read before and after shows 0 J or one update's worth. Energy is therefore
measured over its own loop of the step: it starts on an update of the counter and runs for at least
`min_window_s`, so one update period is a small fraction of the window. A reading where the counter did not
advance is reported as not measured, never as 0 J.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MIN_WINDOW_S = 1.0  # >= ~10 update periods of the counter; the GPU check reports the period it saw
_EDGE_WAIT_S = 0.5  # longest wait for the counter's next update
NO_CPU_COUNTER = "no energy counter on the CPU"  # the reason a host-side step has no energy figure


def _wait_for_update(read: Callable[[], int], start: int, limit_s: float) -> tuple[int, float] | None:
    """The counter's next value and when it appeared, or None if it did not change within limit_s."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        v = read()
        if v != start:
            return v, time.perf_counter()
        time.sleep(0.0005)
    return None


class EnergyMeter:
    """Context manager; `.joules` is None (with `.why`) where no counter exists, e.g. on a CPU, or where the
    counter did not advance. `.update_period_s` is the time between two updates seen on entry."""

    def __init__(self, device: str, index: int = 0) -> None:
        self.device, self.index = device, index
        self.joules: float | None = None
        self.why: str | None = None
        self.update_period_s: float | None = None
        self._start: int | None = None
        self._h: Any = None

    def _read(self) -> int:
        import pynvml

        return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._h))  # millijoules

    def __enter__(self) -> EnergyMeter:
        if not self.device.startswith("cuda"):
            self.why = NO_CPU_COUNTER
            return self
        try:
            import pynvml

            pynvml.nvmlInit()
            self._h = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            # Start on an update, so the window does not begin with a part-period already counted.
            first = _wait_for_update(self._read, self._read(), _EDGE_WAIT_S)
            second = _wait_for_update(self._read, first[0], _EDGE_WAIT_S) if first else None
            if second:
                self.update_period_s = second[1] - first[1]
                self._start = second[0]
            else:
                self._start = self._read()
        except Exception as e:  # NVMLError or a GPU without the counter
            self.why = f"NVML energy counter unavailable: {e}"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._start is None:
            return
        import pynvml

        try:
            delta = self._read() - self._start
            if delta > 0:
                self.joules = delta / 1000.0
            else:
                self.why = "NVML energy counter did not advance over the window"
        except pynvml.NVMLError as e:
            self.why = f"NVML energy counter unavailable: {e}"
        finally:
            pynvml.nvmlShutdown()


@dataclass(frozen=True)
class EnergyReading:
    joules: float | None
    steps: int
    window_s: float
    update_period_s: float | None
    why: str | None


def measure_energy(fn: Callable[[], Any], device: str, index: int = 0,
                   min_window_s: float = MIN_WINDOW_S) -> EnergyReading:
    """Run `fn` for at least `min_window_s` (synchronized) inside an EnergyMeter; on a CPU, run nothing."""
    if not device.startswith("cuda"):
        return EnergyReading(None, 0, 0.0, None, NO_CPU_COUNTER)
    import torch

    steps, window = 0, 0.0
    with EnergyMeter(device, index) as meter:
        if meter.why is None:
            t0 = time.perf_counter()
            while window < min_window_s:
                fn()
                torch.cuda.synchronize(device)
                steps += 1
                window = time.perf_counter() - t0
    return EnergyReading(meter.joules, steps, window, meter.update_period_s, meter.why)
