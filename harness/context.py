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
PROGRESS_FILE = "progress.jsonl"


@dataclass(frozen=True)
class CaseContext:
    case: Case
    timing: TimingSettings = TimingSettings()
    profile: bool = False
    peak_tflops: float | None = None
    seed: int = 0
    # Seeds given on the command line (--seeds, even a single one); None: derive them from `seed`.
    seeds: tuple[int, ...] | None = None
    deterministic: bool = False
    data: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    # A folder that outlives the case process (inside the run folder): checkpoints let `--resume` continue
    # a long training run instead of starting it again. None in tests that run a kind directly.
    checkpoint_dir: str | None = None
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
        """Seeds of a quality claim: `--seeds` when given (one seed too), else `default_n` consecutive seeds
        from `--seed` (a claim over one seed says little); `--option n_seeds=N` changes the count."""
        if self.seeds:
            return tuple(self.seeds)
        n = int(self.options.get("n_seeds", default_n))
        return tuple(self.seed + i for i in range(n))

    def progress(self, message: str, **values: float) -> None:
        """A line in the case's log (so a slow case can be told from a hung one), kept in the workdir too."""
        self._append_progress({"event": "progress", "message": message, "values": values})

    def seed_done(self, seed: int, metrics: dict[str, float], unit: dict[str, str] | None = None) -> None:
        """What one seed of a quality case finished with. If the case is then killed or times out, the
        runner records these per-seed values (marked partial) instead of losing them."""
        self._append_progress({"event": "seed_done", "seed": seed, "metrics": metrics, "unit": unit or {}})

    def _append_progress(self, event: dict[str, Any]) -> None:
        import json
        import sys
        import time

        event = {"t": round(time.time(), 3), **event}
        line = json.dumps(event, default=str, allow_nan=True)
        print(f"[progress] {line}", file=sys.stderr, flush=True)
        if self.workdir:
            from pathlib import Path

            with open(Path(self.workdir) / PROGRESS_FILE, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()

    def check_finite(self, step: int, value: float, what: str = "loss") -> float:
        """Raise Diverged when a training value is NaN or inf; return it otherwise."""
        import math

        if not math.isfinite(value):
            raise Diverged(step, value, what)
        return value
