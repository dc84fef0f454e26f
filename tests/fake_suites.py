"""Fault-injecting suites for the runner's tests, loaded through $MILESTONES_EXTRA_SUITES.

Each config misbehaves in one way a real model can: crash, die by signal, hang (with a child of its
own), run out of CUDA memory (raised as torch raises it), diverge, or succeed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from milestones.harness.context import CaseContext
from milestones.harness.records import CaseOutput, Metric
from milestones.harness.registry import register_suite

SUITE = register_suite("fake", title="Fault injection (tests only)", arxiv="0000.00000", year=2000)


@dataclass(frozen=True)
class FakeConfig:
    behaviour: str
    batch_size: int = 4
    cpu_batch_size: int = 2


for b in ("ok", "crash", "segv", "hang", "oom", "nan", "slow", "oom-above-8", "partial"):
    SUITE.config(f"fake-{b}", FakeConfig(b), scales=("smoke", "proxy"), kinds=("speed", "quality"))


def _behave(cfg: FakeConfig, ctx: CaseContext) -> CaseOutput:
    b = cfg.behaviour
    if b == "crash":
        raise ValueError("injected crash")
    if b == "segv":
        os.kill(os.getpid(), signal.SIGKILL)
    if b == "hang":
        # A grandchild in the same process group: the runner must kill it too.
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        marker = os.environ.get("FAKE_HANG_PIDFILE")
        if marker:
            Path(marker).write_text(f"{os.getpid()} {child.pid}")
        time.sleep(600)
    if b == "oom":
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
    if b == "oom-above-8" and ctx.batch_size > 8:
        raise torch.OutOfMemoryError(f"CUDA out of memory at batch {ctx.batch_size} (injected)")
    if b == "nan":
        loss = 1.0
        for step in range(10):
            loss = loss * 10.0 if step < 5 else float("nan")
            ctx.check_finite(step, loss)
    if b == "partial":
        # Two seeds finish, then the third hangs: a timeout must keep the first two.
        for seed in ctx.quality_seeds(3)[:2]:
            ctx.progress(f"seed {seed} evaluated", value=seed + 0.5)
            ctx.seed_done(seed, {"train_error.fake": 0.1 * (seed + 1)}, {"train_error.fake": "fraction"})
        time.sleep(600)
    if b == "slow":
        marker = os.environ.get("FAKE_SLOW_STARTED")
        if marker:
            Path(marker).write_text(str(os.getpid()))
        time.sleep(float(ctx.options.get("sleep", "30")))
    x = torch.randn(64, 64)
    samples = [float((x @ x).sum().abs()) % 1 + 1 for _ in range(5)]  # any values: tests check plumbing
    return CaseOutput(metrics={"value": Metric.from_values("value", "unit", True, samples),
                               "batch": Metric.single("batch", "count", False, ctx.batch_size)},
                      info={"behaviour": b, "quality_seeds": list(ctx.quality_seeds(3)),
                            "params_batch_size": cfg.batch_size, "params_cpu_batch_size": cfg.cpu_batch_size})


SUITE.kind("speed")(_behave)
SUITE.kind("quality")(_behave)
