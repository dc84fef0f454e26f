"""Energy from NVML's total-energy counter (Volta and newer), read before and after a timed loop."""

from __future__ import annotations

from typing import Any


class EnergyMeter:
    """Context manager; `.joules` is None (with `.why`) where no counter exists, e.g. on a CPU."""

    def __init__(self, device: str, index: int = 0) -> None:
        self.device, self.index = device, index
        self.joules: float | None = None
        self.why: str | None = None
        self._start: int | None = None
        self._h: Any = None

    def __enter__(self) -> EnergyMeter:
        if not self.device.startswith("cuda"):
            self.why = "no energy counter on the CPU"
            return self
        try:
            import pynvml

            pynvml.nvmlInit()
            self._h = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self._start = pynvml.nvmlDeviceGetTotalEnergyConsumption(self._h)  # millijoules
        except Exception as e:  # NVMLError or a GPU without the counter
            self.why = f"NVML energy counter unavailable: {e}"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._start is None:
            return
        import pynvml

        try:
            self.joules = (pynvml.nvmlDeviceGetTotalEnergyConsumption(self._h) - self._start) / 1000.0
        except pynvml.NVMLError as e:
            self.why = f"NVML energy counter unavailable: {e}"
        finally:
            pynvml.nvmlShutdown()
