"""The case process: `python -m milestones.harness.worker SPEC.json RESULT.json`.

Runs one case of one suite in a fresh interpreter (clean memory peaks, no global flags leaking from
other models), and writes what happened to RESULT.json. The parent turns that into a record; if this
process dies without writing, the parent records the crash.
"""

from __future__ import annotations

import dataclasses
import os
import random
import sys
import traceback
from pathlib import Path
from typing import Any

# How the CPU allocators say it: torch's "DefaultCPUAllocator: can't allocate memory: you tried to
# allocate N bytes", glibc's ENOMEM text; Python's own is a MemoryError.
OOM_TEXTS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def _is_oom(e: BaseException) -> bool:
    import torch

    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if isinstance(e, (MemoryError, *oom_types)):
        return True
    return isinstance(e, RuntimeError) and any(t in str(e).lower() for t in OOM_TEXTS)


def failure(e: BaseException) -> tuple[str, str, str]:
    """How a case that raised `e` ends: its status (oom or failed), one line of error and the traceback's tail
    (call inside the `except`)."""
    status = "oom" if _is_oom(e) else "failed"
    error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
    return status, error, traceback.format_exc()[-4000:]


def seed_everything(seed: int, deterministic: bool) -> dict[str, Any]:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    info: dict[str, Any] = {"seed": seed, "deterministic": deterministic}
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        info["cudnn_deterministic"] = True
        info["torch_deterministic_algorithms"] = True
        if torch.cuda.is_available():
            # warn_only: ops with no deterministic CUDA kernel still run (and warn) rather than fail.
            info["determinism_note"] = ("CUDA: best effort; ops without a deterministic kernel (e.g. some "
                                        "scatter/index_add backward) stay nondeterministic and warn")
        else:
            info["determinism_note"] = "CPU: same seed and thread count give bitwise-identical results"
    elif torch.cuda.is_available():
        info["determinism_note"] = "not deterministic: cuDNN autotuning and atomics may vary run to run"
    return info


def _run_quality_with_mllog(fn, params, ctx):
    """Every quality case can emit MLPerf-style `:::MLLOG` lines (`--option mllog=PATH` or
    $MILESTONES_MLLOG): run_start/run_stop around the training, its seed and batch, each accuracy
    metric as eval_accuracy, and status success when the case's claim held."""
    from milestones.harness import mllog

    c = ctx.case
    with mllog.run(ctx, benchmark=f"{c.suite}/{c.config}", seed=ctx.seed, global_batch_size=c.batch_size) as log:
        res = fn(params, ctx)
        for name, m in res.metrics.items():
            if m.value is not None and ("accuracy" in name or name.startswith("bleu") or ".bleu" in name):
                log.event("eval_accuracy" if "accuracy" in name else "eval_bleu", m.value, {"metric": name})
        claims = [m.value for n, m in res.metrics.items() if n.endswith("claim_held") and m.value is not None]
        if claims and all(v >= 0.5 for v in claims):
            log.success()
    return res


def measured(res: Any, ctx: Any) -> Any:
    """A kind that declares a SpeedPlan gets it measured here; a CaseOutput passes through."""
    from milestones.harness.measure.plan import SpeedPlan
    from milestones.harness.measure.speed import MeasureSettings, measure_plan
    from milestones.harness.records import CaseOutput

    if not isinstance(res, SpeedPlan):
        return res
    ms = MeasureSettings(device=ctx.device, dtype=ctx.case.dtype, timing=ctx.timing, profile=ctx.profile,
                         peak_tflops=ctx.peak_tflops, mode=ctx.case.mode)
    metrics, artifacts, info = measure_plan(res, ms)
    return CaseOutput(metrics=metrics, info=info, artifacts=artifacts)


def context_for(spec: Any, params: Any) -> Any:
    """The CaseContext a suite sees, built from the spec alone."""
    from milestones.harness.context import CaseContext

    kw: dict[str, Any] = {"profile": spec.profile, "peak_tflops": spec.peak_tflops, "seed": spec.seed,
                          "seeds": spec.seeds, "deterministic": spec.deterministic, "data": dict(spec.data),
                          "options": dict(spec.options), "workdir": spec.workdir,
                          "checkpoint_dir": spec.checkpoint_dir, "requested_device": spec.requested_device}
    if spec.timing is not None:
        kw["timing"] = spec.timing
    return CaseContext.for_case(spec.case, **kw)


def resolved_params(params: Any, batch_size: int | None) -> Any:
    """The config's params with the case's batch size as its only batch size, so a suite that reads
    cfg.batch_size sees the same number as ctx.batch_size (the one resolved when the case was planned)."""
    import dataclasses

    if batch_size is None or not dataclasses.is_dataclass(params):
        return params
    names = {f.name for f in dataclasses.fields(params)}
    changes = {k: v for k, v in (("batch_size", batch_size), ("cpu_batch_size", batch_size)) if k in names}
    return dataclasses.replace(params, **changes) if changes else params


def run_spec(spec: Any) -> Any:
    """Run one case in this process: a CaseSpec in, a CaseResult out (never raises for a case's failure)."""
    import torch

    from milestones.harness.context import Diverged, SkipCase
    from milestones.harness.launch.spec import CaseResult, CaseSpec
    from milestones.harness.measure.memory import peak_rss_bytes
    from milestones.harness.measure.modes import ModeUnsupported
    from milestones.harness.registry import load_suite

    if isinstance(spec, dict):
        spec = CaseSpec.from_dict(spec)
    if spec.threads:
        torch.set_num_threads(int(spec.threads))
    info: dict[str, Any] = {"threads": torch.get_num_threads()}
    try:
        info["loadavg_at_start"] = list(os.getloadavg())  # what could bias this case's timings
    except OSError:
        pass
    info.update(seed_everything(spec.seed, spec.deterministic))
    case = spec.case
    status, error, metrics, artifacts = "ok", None, {}, {}
    try:
        reg = load_suite(case.suite)
        entry = reg.config(case.config)
        params = resolved_params(entry.params, case.batch_size)
        fn = reg.suite(case.suite).kind_fn(case.kind, params)
        ctx = context_for(spec, params)
        if case.kind == "quality":
            res = _run_quality_with_mllog(fn, params, ctx)
        else:
            res = measured(fn(params, ctx), ctx)
        metrics, artifacts = dict(res.metrics), dict(res.artifacts)
        for k, m in metrics.items():  # say in the record that an echoed setting is not a measurement
            if k.startswith("hparam.") and not m.note:
                metrics[k] = dataclasses.replace(m, note="echoes the config: a configuration check, not a measurement")
        info.update(res.info)
    except (SkipCase, ModeUnsupported) as e:
        status, error = "skipped", str(e)
    except Diverged as e:
        status, error = "diverged", str(e)
        info["diverged_at_step"] = e.step
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted (SIGINT)"
    except Exception as e:
        from milestones.harness.launch.spec import disk_full
        from milestones.harness.records import DISK_FULL_KEY

        status, error, info["traceback"] = failure(e)
        if disk_full(e):
            info[DISK_FULL_KEY] = True
    info["peak_rss_bytes"] = peak_rss_bytes()
    return CaseResult(status=status, error=error, metrics=metrics, info=info, artifacts=artifacts)


PARENT_PID_ENV = "MILESTONES_PARENT_PID"


def die_with_parent() -> None:
    """If the runner dies, even by SIGKILL, this case process and every child it started die with it.

    The kernel sends SIGTERM when the parent dies (Linux prctl PR_SET_PDEATHSIG); the handler kills the
    whole process group, which the case process leads (the launcher starts it in a new session), so the
    children a suite started (emulators, data loaders, torchrun ranks) go too.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    def kill_group(signum: int = 0, frame: Any = None) -> None:
        try:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        finally:
            os._exit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, kill_group)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    expected = os.environ.get(PARENT_PID_ENV)
    if os.getppid() == 1 or (expected and expected.isdigit() and os.getppid() != int(expected)):
        kill_group()  # the parent died before prctl took effect


def main(argv: list[str]) -> int:
    from milestones.harness.launch.spec import DISK_FULL_EXIT, CaseSpec, disk_full

    die_with_parent()
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    result = run_spec(CaseSpec.read(spec_path))
    try:
        result.write(result_path)
    except OSError as e:
        if not disk_full(e):
            raise
        try:  # the log is on the same full disk: the exit code is what surely reaches the runner
            print(f"cannot write the case result: {e}", file=sys.stderr)
        except OSError:
            pass
        return DISK_FULL_EXIT
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
