"""Cases that break the runner's assumptions (issue 24): children that outlive the case (one ignoring
SIGTERM, one in a session of its own), CPU out-of-memory as Python and torch raise it, a case that
kills its own fork server, a case that cannot write its result (a file-size limit: the disk is full
as far as the case can tell). Loaded through $MILESTONES_EXTRA_SUITES by tests/test_case_faults.py."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from milestones.harness.context import CaseContext
from milestones.harness.records import CaseOutput, Metric
from milestones.harness.registry import register_suite

SUITE = register_suite("casefault", title="Case faults (tests only)", arxiv="0000.00000", year=2000)

BEHAVIOURS = ("stubborn-child", "setsid-child", "memory-error", "cpu-alloc", "kill-server", "no-space")


@dataclass(frozen=True)
class CaseFaultConfig:
    behaviour: str
    batch_size: int = 2


for b in BEHAVIOURS:
    SUITE.config(f"casefault-{b}", CaseFaultConfig(b), scales=("smoke",), kinds=("speed",))

# A child that ignores SIGTERM and sleeps: only SIGKILL ends it.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


def _in_a_case_process() -> bool:
    # Both launchers tell a case process who its parent is; a test process (pytest, an xdist worker)
    # running this in-process is not one, and must never kill its parent or cap its own file size.
    return os.environ.get("MILESTONES_PARENT_PID") == str(os.getppid())


@SUITE.kind("speed")
def _behave(cfg: CaseFaultConfig, ctx: CaseContext) -> CaseOutput:
    b = cfg.behaviour
    if b in ("kill-server", "no-space", "stubborn-child", "setsid-child") and not _in_a_case_process():
        raise RuntimeError(f"casefault-{b} runs only in a case process (it would harm the process running it)")
    if b in ("stubborn-child", "setsid-child"):
        child = subprocess.Popen([sys.executable, "-c", STUBBORN], start_new_session=b == "setsid-child")
        time.sleep(0.5)  # let it install its handler
        Path(ctx.options["pidfile"]).write_text(str(child.pid))
    if b == "memory-error":
        raise MemoryError()
    if b == "cpu-alloc":
        import torch

        torch.empty(1 << 52, dtype=torch.uint8)  # 4 PiB: "DefaultCPUAllocator: can't allocate memory"
    if b == "kill-server":
        os.kill(os.getppid(), signal.SIGKILL)  # the fork server this case was forked from
        time.sleep(60)
    if b == "no-space":
        # Writing the result fails with EFBIG, as a full disk fails it with ENOSPC.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return CaseOutput(metrics={"value": Metric.from_values("value", "unit", True, [1.0, 2.0])},
                      info={"behaviour": b})
