"""What a suite's kind function receives: the case, and how to measure it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from milestones.harness.measure.timing import SMOKE_TIMING, TimingSettings
from milestones.harness.records import Case


class SkipCase(Exception):
    """Raised by a suite when a case cannot run here (e.g. needs a GPU or user data): status `skipped`."""


class Diverged(Exception):
    """Raised when a loss turns NaN or inf: status `diverged`, with the step where it happened."""

    def __init__(self, step: int, value: float, what: str = "loss") -> None:
        super().__init__(f"{what} became {value} at step {step}")
        self.step, self.value, self.what = step, value, what


DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class CaseContext:
    case: Case
    timing: TimingSettings = TimingSettings()
    profile: bool = False
    peak_tflops: float | None = None
    seed: int = 0
    seeds: tuple[int, ...] = (0,)
    deterministic: bool = False
    data: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_case(cls, case: Case, **kw: Any) -> CaseContext:
        if "timing" not in kw:
            kw["timing"] = SMOKE_TIMING if case.scale == "smoke" else TimingSettings()
        return cls(case=case, **kw)

    @property
    def device(self) -> str:
        return self.case.device

    @property
    def on_gpu(self) -> bool:
        return self.case.device.startswith("cuda")

    @property
    def torch_device(self):
        import torch

        return torch.device(self.case.device)

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.case.dtype)

    @property
    def batch_size(self) -> int:
        if self.case.batch_size is None:
            raise ValueError(f"case {self.case.slug} has no batch size")
        return self.case.batch_size

    def quality_seeds(self, default_n: int) -> tuple[int, ...]:
        """Seeds of a quality claim: `--seeds` when several are given, else `default_n` consecutive seeds
        from `--seed` (a claim over one seed says little); `--option n_seeds=N` changes the count."""
        if len(self.seeds) > 1:
            return tuple(self.seeds)
        n = int(self.options.get("n_seeds", default_n))
        return tuple(self.seed + i for i in range(n))

    def check_finite(self, step: int, value: float, what: str = "loss") -> float:
        """Raise Diverged when a training value is NaN or inf; return it otherwise."""
        import math

        if not math.isfinite(value):
            raise Diverged(step, value, what)
        return value
