"""The burst case process of `milestones ab`: `python -m milestones.harness.burst_worker SPEC.json`.

Sets a speed case up once (the suite's declared steps, in the case's execution mode, warmed up) and then
times bursts of steps when its parent asks, so that a round's two processes, one per side, can take
turns: while one times a burst the other waits on its pipe, never running at the same time. The load
of a busy machine then changes little between a burst and the next, and cancels in their ratio.

The protocol is one JSON object per line. Replies go to a private copy of the original stdout; the
suite's own prints go to stderr (the case's log), so they cannot corrupt a reply.
  -> {"ready": {"steps": [LABEL, ...], "step_s": SECONDS, "info": {...}}}   set up; one warm step took SECONDS
  -> {"failed": {"status": "failed"|"skipped"|"oom", "error": TEXT, "info": {...}}}   and exits
  <- {"burst": N}   -> {"samples": {LABEL: {"wall": [...], "cpu": [...], "wait": [...]}}}   N timed steps each
  <- {"end": true}  -> {"end": {"peak_rss_bytes": N}}   and exits
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

BURST_MODULE = "burst_worker"  # beside the side's worker module: <package>.burst_worker


def _reply(out: Any, obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def _exact(n: int) -> Any:
    """Timing settings for exactly n timed calls and no warm-up (the burst's steps are already warm)."""
    from milestones.harness.measure.timing import TimingSettings

    return TimingSettings(warmup_iters=0, warmup_time=0.0, min_iters=n, max_iters=n, min_time=0.0,
                          max_time=1e9)  # finite: the CPU loop takes it in integer ns


def burst(steps: Any, device: str, n: int) -> dict[str, dict[str, list[float | None]]]:
    """Each step, in declared order, timed n times: wall, CPU time and run-queue delay per call."""
    from milestones.harness.measure.timing import time_fn

    out = {}
    for step in steps:
        t = time_fn(step.fn, step.device or device, _exact(n))
        out[step.label] = {"wall": list(t.samples_s), "cpu": list(t.cpu_s), "wait": list(t.sched_wait_s)}
    return out


def prepare(spec: Any, stack: ExitStack) -> tuple[Any, str, dict[str, Any]]:
    """The case's steps in its mode, set up and warmed (the precision flags held by `stack`)."""
    import torch

    from milestones.harness.context import SkipCase
    from milestones.harness.measure.plan import SpeedPlan
    from milestones.harness.measure.speed import MeasureSettings, in_mode
    from milestones.harness.measure.timing import SMOKE_TIMING
    from milestones.harness.registry import load_suite
    from milestones.harness.worker import context_for, resolved_params, seed_everything

    if spec.threads:
        torch.set_num_threads(int(spec.threads))
    info: dict[str, Any] = {"threads": torch.get_num_threads(), "protocol": "bursts"}
    info.update(seed_everything(spec.seed, spec.deterministic))
    case = spec.case
    reg = load_suite(case.suite)
    params = resolved_params(reg.config(case.config).params, case.batch_size)
    ctx = context_for(spec, params)
    plan = reg.suite(case.suite).kind_fn(case.kind, params)(params, ctx)
    if not isinstance(plan, SpeedPlan):
        raise SkipCase(f"{case.config} ({case.kind}) declares no steps to time in bursts")
    ms = MeasureSettings(device=ctx.device, dtype=case.dtype, mode=case.mode)
    plan = stack.enter_context(in_mode(plan, ms, {}, info))
    warm = spec.timing or SMOKE_TIMING
    for step in plan.steps:
        if step.setup is not None:
            step.setup()
    for _ in range(max(1, warm.warmup_iters)):
        t0 = time.perf_counter()
        burst(plan.steps, ctx.device, 1)
    # The last warm round of every step: what the parent sizes its bursts from.
    return plan.steps, ctx.device, {**info, "step_s": time.perf_counter() - t0}


def serve(spec: Any, inp: Any, out: Any) -> int:
    from milestones.harness.context import SkipCase
    from milestones.harness.measure.memory import peak_rss_bytes
    from milestones.harness.measure.modes import ModeUnsupported
    from milestones.harness.worker import failure

    with ExitStack() as stack:
        try:
            steps, device, info = prepare(spec, stack)
        except (SkipCase, ModeUnsupported) as e:
            _reply(out, {"failed": {"status": "skipped", "error": str(e), "info": {}}})
            return 0
        except Exception as e:
            status, error, tb = failure(e)
            _reply(out, {"failed": {"status": status, "error": error, "info": {"traceback": tb}}})
            return 0
        step_s = info.pop("step_s")
        _reply(out, {"ready": {"steps": [s.label for s in steps], "step_s": step_s, "info": info}})
        for line in inp:
            msg = json.loads(line)
            if "burst" in msg:
                _reply(out, {"samples": burst(steps, device, max(1, int(msg["burst"])))})
            else:
                break
    _reply(out, {"end": {"peak_rss_bytes": peak_rss_bytes()}})
    return 0


def main(argv: list[str]) -> int:
    from milestones.harness.launch.spec import CaseSpec
    from milestones.harness.worker import die_with_parent

    die_with_parent()
    # Replies on a private copy of stdout; fd 1 (what print() and C libraries write to) becomes the log.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return serve(CaseSpec.read(Path(argv[0])), sys.stdin, out)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
