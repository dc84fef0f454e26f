"""`milestones instructions NAMES...`: instruction counts of CPU speed cases under callgrind."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_instructions(args: argparse.Namespace) -> int:
    import json

    from milestones.harness import env as envmod
    from milestones.harness import instructions, report, runner, store
    from milestones.harness.errors import UsageError
    from milestones.harness.launch.process import now
    from milestones.harness.measure import callgrind
    from milestones.harness.registry import load_suites

    if callgrind.valgrind_path() is None:
        raise UsageError("valgrind is not installed: instruction counts need it (apt-get install valgrind)")
    if args.iters < 1:
        raise UsageError(f"--iters must be a positive integer, not {args.iters}")
    opts = runner.RunOptions(kinds=("speed",), scale=args.scale, device="cpu", out=Path(args.out))
    reg = load_suites()
    cases = runner.plan(reg.resolve(args.names), opts, "cpu")
    if not cases:
        raise UsageError(f"no CPU speed cases at scale {args.scale!r}" + (f" in {', '.join(args.names)}"
                                                                           if args.names else ""))
    e = envmod.capture()
    if args.into:
        folder = Path(args.into)
        manifest = folder / store.RUN_MANIFEST
        if not manifest.is_file():
            raise UsageError(f"--into {args.into}: not a run folder (no {store.RUN_MANIFEST})")
        run_id = json.loads(manifest.read_text())["run_id"]
    else:
        run_id = store.new_run_id()
        folder = store.run_dir(opts.out, e["machine_id"], run_id)
        store.ensure_writable(folder)
        store.write_manifest(folder, {"run_id": run_id, "machine_id": e["machine_id"], "channel": "callgrind",
                                      "cases": [c.__dict__ for c in cases]})
    started = now()
    with instructions.fixed_workdir() as work:
        results, tail = instructions.count_cases(cases, iters=args.iters, timeout=args.timeout, workdir=work)
    from rich.console import Console

    con = Console()
    recs = instructions.records(cases, results, run_id=run_id, registry=reg, env=e, started=started,
                                ended=now())
    for r in recs:
        path = store.write_record(folder / "instructions", r)
        con.print(report.case_line(r) + f"  ({path})")
    if any(r.status not in ("ok", "skipped") for r in recs) and tail.strip():
        print(tail[-1500:])
    return 0 if all(r.status in ("ok", "skipped") for r in recs) else 1


def register(sub) -> None:
    p = sub.add_parser("instructions", help="instruction counts of CPU speed cases under valgrind's callgrind",
                       description="Counts the instructions of each case's step (one valgrind process for all "
                                   "cases) and writes one record per case with the metric step.instructions.")
    p.add_argument("names", nargs="*", metavar="NAME", help="suites or configs (default: all)")
    p.add_argument("--scale", default="smoke", choices=("smoke", "proxy"))
    p.add_argument("--iters", type=int, default=5, help="counted steps per case (default 5)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole valgrind process")
    p.add_argument("--out", default="results", help="results folder for a new run (default results)")
    p.add_argument("--into", metavar="RUN_FOLDER", help="add the records to this existing run folder")
    p.set_defaults(func=cmd_instructions)
