"""Instruction counts of speed cases (`milestones instructions`): one valgrind process for all cases.

The parent starts `valgrind --tool=callgrind ... python -m milestones.harness.instructions SPEC RESULT`
once; inside, each case's step is built and counted (measure/callgrind.py), and the result file is
rewritten after every case, so a crash or timeout keeps what was counted. The parent turns each case's
count into a record with one metric, `step.instructions` (unit `instructions`, per step), which
`compare` judges on a tolerance (0.5% by default), never with a significance test.

Determinism: one torch thread (valgrind serialises threads, and an idle thread pool's spinning would
be counted), PYTHONHASHSEED=0 (dict and set layouts), and the same warm-up in every run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from milestones.harness.errors import UsageError
from milestones.harness.measure import callgrind
from milestones.harness.records import Case, Metric, RunRecord

METRIC = "step.instructions"
DEFAULT_ITERS = 5
SCALES_ALLOWED = ("smoke", "proxy")


def step_of(case: Case, registry: Any) -> Callable[[], Any]:
    """The headline step the speed case declares (its SpeedPlan's first step), set up and ready to call."""
    from milestones.harness.context import SkipCase
    from milestones.harness.launch.inprocess import declared_plan
    from milestones.harness.launch.spec import CaseSpec

    try:
        step = declared_plan(CaseSpec(case=case)).step()
    except SkipCase as e:
        raise NotImplementedError(f"case skipped: {e}") from None
    if step.setup is not None:
        step.setup()
    return step.fn


def serve(spec: dict[str, Any], result_path: Path) -> None:
    """Inside valgrind: count every case of `spec`, writing the results after each one."""
    import torch

    from milestones.harness.registry import load_suites

    torch.set_num_threads(1)
    reg = load_suites()
    out: dict[str, Any] = {}
    for c in spec["cases"]:
        case = Case(**c)
        t0 = time.perf_counter()
        try:
            step = step_of(case, reg)
            # Counted twice, the second kept: the first counted stretch of a process also carries one-off
            # work (measured: the first case of a run varied by 0.2% between runs, the second by 0.01%).
            settle = callgrind.count_instructions(step, int(spec["iters"]))
            n = callgrind.count_instructions(step, int(spec["iters"]), warmup=0)
            out[case.slug] = {"status": "ok", "instructions": n, "iters": int(spec["iters"]), "first_count": settle}
        except NotImplementedError as e:
            out[case.slug] = {"status": "skipped", "error": str(e)}
        except Exception as e:  # one case's failure is its record, the others go on
            out[case.slug] = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:500]}
        out[case.slug]["seconds_under_valgrind"] = time.perf_counter() - t0
        tmp = result_path.with_suffix(".partial")
        tmp.write_text(json.dumps(out))
        os.replace(tmp, result_path)


def count_cases(cases: Sequence[Case], *, iters: int = DEFAULT_ITERS, timeout: float = 3600.0,
                workdir: Path) -> tuple[dict[str, Any], str]:
    """Run one valgrind process over `cases`. Returns (slug -> result, log tail)."""
    for c in cases:
        if c.scale not in SCALES_ALLOWED or c.kind != "speed" or c.device != "cpu":
            raise UsageError(f"instruction counts are for CPU speed cases at smoke or proxy scale, not "
                             f"{c.config} ({c.kind}, {c.scale}, {c.device})")
    spec_path, result_path, log_path = workdir / "spec.json", workdir / "result.json", workdir / "valgrind.log"
    spec_path.write_text(json.dumps({"cases": [dataclasses.asdict(c) for c in cases], "iters": iters}))
    out_file = workdir / "callgrind.out"
    cmd = callgrind.valgrind_command(out_file, [sys.executable, "-m", "milestones.harness.instructions",
                                                str(spec_path), str(result_path)])
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    env[callgrind.OUT_ENV] = str(out_file)
    with open(log_path, "wb") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            from milestones.harness.launch.process import kill_group

            kill_group(p)
    tail = log_path.read_text(errors="replace")[-3000:]
    res = json.loads(result_path.read_text()) if result_path.exists() else {}
    for c in cases:
        res.setdefault(c.slug, {"status": "failed", "error": f"valgrind process ended (code {p.returncode}) before "
                                                             f"this case was counted"})
    return res, tail


def records(cases: Sequence[Case], results: dict[str, Any], *, run_id: str, registry: Any, env: dict[str, Any],
            started: str, ended: str) -> list[RunRecord]:
    from milestones.harness.records import SCHEMA_VERSION

    out = []
    for c in cases:
        r = results[c.slug]
        entry = registry.config(c.config)
        if r["status"] == "ok":
            per_step = r["instructions"] / r["iters"]
            metrics = {METRIC: Metric.single(METRIC, "instructions", False, per_step,
                                             note=f"callgrind Ir per step, mean of {r['iters']} steps, 1 thread")}
        else:
            metrics = {}
        out.append(RunRecord(
            schema_version=SCHEMA_VERSION, run_id=run_id, record_id=f"{run_id}/{c.slug}/instructions",
            started_at=started, ended_at=ended, duration_s=round(float(r.get("seconds_under_valgrind", 0.0)), 3),
            case=c, config=entry.params_dict(), suite_version=registry.suite(c.suite).version, env=env,
            status=r["status"], error=r.get("error"), metrics=metrics,
            info={"channel": "callgrind", "iters": r.get("iters"), "threads": 1,
                  "first_count": r.get("first_count")}, artifacts={}))
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    serve(spec, Path(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
