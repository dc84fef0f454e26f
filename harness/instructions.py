"""Instruction counts of speed cases (`milestones instructions`): one valgrind process for all cases.

The parent starts `valgrind --tool=callgrind ... python -m milestones.harness.instructions SPEC RESULT`
once; inside, each case's step is built and counted (measure/callgrind.py), and the result file is
rewritten after every case, so a crash or timeout keeps what was counted. The parent turns each case's
count into a record with one metric, `step.instructions` (unit `instructions`, per step), which
`compare` judges on a tolerance (0.5% by default), never with a significance test.

Determinism: one torch thread (valgrind serialises threads, and an idle thread pool's spinning would
be counted), PYTHONHASHSEED=0 (dict and set layouts), the same warm-up in every run, and the same
folder, paths and environment in every run (fixed_workdir, fixed_environment).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
        # Fixed width: text of another length written between two cases moves the next case's count.
        out[case.slug]["seconds_under_valgrind"] = f"{time.perf_counter() - t0:012.3f}"
        tmp = result_path.with_suffix(".partial")
        tmp.write_text(json.dumps(out))
        os.replace(tmp, result_path)


LATE_ENV = "MILESTONES_CALLGRIND_LATE"


# What the valgrind process inherits from the caller's environment (nothing else: see fixed_workdir).
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "TMPDIR",
              "MILESTONES_EXTRA_SUITES")


@contextmanager
def fixed_workdir() -> Iterator[Path]:
    """The valgrind process's folder: the same path in every run (the first free slot of
    <tmp>/milestones-callgrind-<uid>/), not a fresh random one. The text of the paths and environment a
    process starts with moves its instruction counts: measured, two runs whose temporary folder names
    differed only in their random letters counted the same steps 0.1-0.2% apart; with the same names
    the counts were identical to the instruction."""
    import fcntl
    import shutil

    base = Path(tempfile.gettempdir()) / f"milestones-callgrind-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    slot = 0
    while True:
        lock = open(base / f"slot{slot}.lock", "w")  # held until the run ends
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:  # another `milestones instructions` is running: take the next slot
            lock.close()
            slot += 1
    work = base / f"slot{slot}"
    try:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        lock.close()


def compile_sources() -> None:
    """Byte-compile the project's modules (and extra suites) before valgrind starts. A module imported
    from source rather than from its cached .pyc allocates differently (the compiler runs), and that
    moves every later count: measured, the first run after an edit counted gan-smoke's step 0.16% away
    from the runs after it, which agreed to the instruction."""
    import compileall
    import importlib.util

    from milestones.harness.registry import EXTRA_SUITES_VAR

    for pkg in ("milestones.harness", "milestones.suites"):
        spec = importlib.util.find_spec(pkg)
        for where in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(where, quiet=2)
    for name in filter(None, os.environ.get(EXTRA_SUITES_VAR, "").split(",")):
        try:
            spec = importlib.util.find_spec(name.strip())
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            compileall.compile_file(spec.origin, quiet=2)


def fixed_environment(out_file: Path) -> dict[str, str]:
    """The valgrind process's environment: a fixed list of the caller's variables, in a fixed order."""
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update(PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    env[callgrind.OUT_ENV] = str(out_file)
    return env


def count_cases(cases: Sequence[Case], *, iters: int = DEFAULT_ITERS, timeout: float = 3600.0,
                workdir: Path) -> tuple[dict[str, Any], str]:
    """Run one valgrind process over `cases`. Returns (slug -> result, log tail)."""
    for c in cases:
        if c.scale not in SCALES_ALLOWED or c.kind != "speed" or c.device != "cpu":
            raise UsageError(f"instruction counts are for CPU speed cases at smoke or proxy scale, not "
                             f"{c.config} ({c.kind}, {c.scale}, {c.device})")
    spec_path, result_path, log_path = workdir / "spec.json", workdir / "result.json", workdir / "valgrind.log"
    spec_path.write_text(json.dumps({"cases": [dataclasses.asdict(c) for c in cases], "iters": iters}))
    compile_sources()
    out_file = workdir / "callgrind.out"
    # Instrumentation from the first counted step on (3x faster imports); MILESTONES_CALLGRIND_LATE=0: from the start.
    late = os.environ.get(LATE_ENV, "1") != "0" and callgrind.late_instrumentation_works()
    cmd = callgrind.valgrind_command(out_file, [sys.executable, "-m", "milestones.harness.instructions",
                                                str(spec_path), str(result_path)], late_instrumentation=late)
    with open(log_path, "wb") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=fixed_environment(out_file), cwd=workdir, start_new_session=True)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            from milestones.harness.launch.process import kill_group

            kill_group(p)
    tail = log_path.read_text(errors="replace")[-3000:]
    res = json.loads(result_path.read_text()) if result_path.exists() else {}
    for r in res.values():
        r["instrumentation"] = "from the first counted step" if late else "from the start"
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
                  "first_count": r.get("first_count"), "instrumentation": r.get("instrumentation")}, artifacts={}))
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    serve(spec, Path(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
