"""A tiny speed suite for `milestones ab` tests: a sleep-based step whose length the side's
environment sets ($AB_FACTOR), so a planted 2x slowdown is known exactly."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from milestones.harness.context import CaseContext
from milestones.harness.registry import register_suite
from milestones.harness.suite_api import Params, SpeedPlan, Step

SUITE = register_suite("abfake", title="A/B plumbing (tests only)", arxiv="0000.00000", year=2000)


@dataclass(frozen=True)
class StepConfig(Params):
    seconds: float = 0.004


SUITE.config("abfake-step", StepConfig(batch_size=1), scales=("smoke",), kinds=("speed",))


@SUITE.kind("speed", params=StepConfig)
def speed(cfg: StepConfig, ctx: CaseContext) -> SpeedPlan:
    if os.environ.get("AB_FAIL"):
        raise RuntimeError("injected failure on this side")
    pause = cfg.seconds * float(os.environ.get("AB_FACTOR", "1"))
    return SpeedPlan(steps=(Step("train", lambda: time.sleep(pause), 1, count_flops=False),))


@dataclass(frozen=True)
class WorkConfig(Params):
    matmuls: int = 100


# Instruction counts: `matmuls` small matmuls per step, 1% more with $AB_EXTRA_WORK=1.
SUITE.config("abfake-mm", WorkConfig(batch_size=1), scales=("smoke",), kinds=("speed",))
SUITE.config("abfake-mm-again", WorkConfig(batch_size=1), scales=("smoke",), kinds=("speed",))
SUITE.config("abfake-mm101", WorkConfig(matmuls=101, batch_size=1), scales=("smoke",), kinds=("speed",))


@SUITE.kind("speed", params=WorkConfig)
def work_speed(cfg: WorkConfig, ctx: CaseContext) -> SpeedPlan:
    import torch

    # 64x64: enough arithmetic per op that the dispatcher's and allocator's state-dependent costs
    # (a few thousand instructions per op) stay well under 0.1% of the count.
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0)) / 8
    n = cfg.matmuls + (cfg.matmuls // 100 if os.environ.get("AB_EXTRA_WORK") else 0)

    def step() -> None:
        y = x
        for _ in range(n):
            y = torch.mm(y, x).clamp_(-1, 1)

    return SpeedPlan(steps=(Step("train", step, 1, count_flops=False),))
