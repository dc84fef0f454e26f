"""The case process: `python -m milestones.harness.worker SPEC.json RESULT.json`.

Runs one case of one suite in a fresh interpreter (clean memory peaks, no global flags leaking from
other models), and writes what happened to RESULT.json. The parent turns that into a record; if this
process dies without writing, the parent records the crash.
"""

from __future__ import annotations

import json
import os
import random
import sys
import traceback
from pathlib import Path
from typing import Any


def _is_oom(e: BaseException) -> bool:
    import torch

    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    return isinstance(e, oom_types) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


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


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from milestones.harness.context import CaseContext, Diverged, SkipCase
    from milestones.harness.measure.memory import peak_rss_bytes
    from milestones.harness.measure.timing import TimingSettings
    from milestones.harness.records import Case
    from milestones.harness.registry import load_suite

    threads = spec.get("threads")
    threads_source = None
    if threads:
        torch.set_num_threads(int(threads))
    elif spec["case"]["kind"] == "speed":
        from milestones.harness.measure.timing import default_threads

        n, threads_source = default_threads()
        torch.set_num_threads(n)
    info: dict[str, Any] = {"threads": torch.get_num_threads()}
    if threads_source:
        info["threads_source"] = threads_source
    try:
        info["loadavg_at_start"] = list(os.getloadavg())  # what could bias this case's timings
    except OSError:
        pass
    info.update(seed_everything(int(spec.get("seed", 0)), bool(spec.get("deterministic", False))))
    case = Case(**spec["case"])
    reg = load_suite(case.suite)
    suite = reg.suite(case.suite)
    entry = reg.config(case.config)
    fn = suite.kinds[case.kind]
    kw: dict[str, Any] = {k: spec[k] for k in ("profile", "peak_tflops", "seed", "deterministic", "workdir")
                          if k in spec}
    kw["data"] = dict(spec.get("data") or {})
    kw["options"] = dict(spec.get("options") or {})
    kw["seeds"] = tuple(spec.get("seeds") or (kw.get("seed", 0),))
    if spec.get("timing"):
        kw["timing"] = TimingSettings(**spec["timing"])
    ctx = CaseContext.for_case(case, **kw)
    out: dict[str, Any] = {"status": "ok", "error": None, "metrics": {}, "info": info, "artifacts": {}}
    try:
        if case.kind == "quality":
            res = _run_quality_with_mllog(fn, entry.params, ctx)
        else:
            res = fn(entry.params, ctx)
        out["metrics"] = {k: m.to_dict() for k, m in res.metrics.items()}
        out["info"].update(res.info)
        out["artifacts"] = res.artifacts
    except SkipCase as e:
        out.update(status="skipped", error=str(e))
    except Diverged as e:
        out.update(status="diverged", error=str(e))
        out["info"]["diverged_at_step"] = e.step
    except KeyboardInterrupt:
        out.update(status="interrupted", error="interrupted (SIGINT)")
    except Exception as e:
        status = "oom" if _is_oom(e) else "failed"
        out.update(status=status, error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500])
        out["info"]["traceback"] = traceback.format_exc()[-4000:]
    out["info"]["peak_rss_bytes"] = peak_rss_bytes()
    return out


def die_with_parent() -> None:
    """If the runner is SIGKILLed, its case process must not run on as an orphan (Linux prctl)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    die_with_parent()
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    out = run_spec(spec)
    tmp = result_path.with_suffix(".partial")
    tmp.write_text(json.dumps(out, default=str))
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
