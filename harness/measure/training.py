"""Bookkeeping for quality runs: loss curves, divergence, and time to quality (steps and seconds)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class TrainLog:
    """Append (step, value) as training goes; records when `target` is first reached.

    `higher_is_better` says which side of the target counts as reached (accuracy: True; error/loss: False).
    Raises milestones.harness.context.Diverged on a NaN/inf value so the case is recorded as `diverged`.
    """

    target: float | None = None
    higher_is_better: bool = False
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    step_to_target: int | None = None
    seconds_to_target: float | None = None
    _t0: float = field(default_factory=time.perf_counter)

    def log(self, step: int, value: float) -> None:
        if not math.isfinite(value):
            from milestones.harness.context import Diverged

            raise Diverged(step, value)
        el = time.perf_counter() - self._t0
        self.steps.append(step)
        self.values.append(float(value))
        self.seconds.append(el)
        if self.target is not None and self.step_to_target is None:
            hit = value >= self.target if self.higher_is_better else value <= self.target
            if hit:
                self.step_to_target, self.seconds_to_target = step, el

    def curve(self) -> dict[str, list[float]]:
        return {"step": list(self.steps), "value": list(self.values), "seconds": list(self.seconds)}
