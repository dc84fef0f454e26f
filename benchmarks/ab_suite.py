"""The workload of benchmarks/ab_power.py: a real conv-net training step (1 thread, ~20-60 ms on a
laptop-class core), made 5% slower by one conv layer more in 20 when $AB_BENCH_EXTRA_LAYER is set in
the case process's environment (what a side's interpreter wrapper sets). And for
benchmarks/instructions_power.py, the same step with 100 and 101 layers (1% more work). Loaded through
$MILESTONES_EXTRA_SUITES=benchmarks.ab_suite."""

from __future__ import annotations

import os
from dataclasses import dataclass

from milestones.harness.context import CaseContext
from milestones.harness.registry import register_suite
from milestones.harness.suite_api import Params, SpeedPlan, Step

SUITE = register_suite("abbench", title="A/B detection power workload", arxiv="0000.00000", year=2000)


@dataclass(frozen=True)
class ConvStep(Params):
    layers: int = 20
    channels: int = 16
    size: int = 16


SUITE.config("abbench-conv20", ConvStep(batch_size=8), scales=("smoke", "proxy"), kinds=("speed",))
# benchmarks/instructions_power.py: 100 conv layers and 101 (1% more work), small (8x8, batch 2): under
# valgrind the 16x16, batch-8 version took about a minute per training step here (oneDNN's JIT kernels).
SUITE.config("abbench-conv100", ConvStep(layers=100, size=8, batch_size=2), scales=("smoke",), kinds=("speed",))
SUITE.config("abbench-conv101", ConvStep(layers=101, size=8, batch_size=2), scales=("smoke",), kinds=("speed",))


@SUITE.kind("speed")
def speed(cfg: ConvStep, ctx: CaseContext) -> SpeedPlan:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    layers = cfg.layers + (1 if os.environ.get("AB_BENCH_EXTRA_LAYER") else 0)
    body = [nn.Conv2d(3, cfg.channels, 3, padding=1), nn.ReLU()]
    for _ in range(layers - 1):
        body += [nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1), nn.ReLU()]
    model = nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cfg.channels, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(ctx.batch_size, 3, cfg.size, cfg.size)
    y = torch.randint(0, 10, (ctx.batch_size,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return SpeedPlan(steps=(Step("train", step, ctx.batch_size, count_flops=False),), info={"layers": layers})
