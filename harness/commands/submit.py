"""`milestones submit`: the suite matrix as Slurm jobs (submitit), one per machine type and case group;
`milestones jobs`: where a submission stands (re-attach with --wait, stop with --cancel).

Each job writes ordinary records to OUT/<machine id>/<run id>/, so `milestones merge` and `compare --by
gpu|machine` read them as they read any run's (harness/launch/slurm.py).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from milestones.harness.errors import UsageError

EXIT_OK, EXIT_NOT_ALL_OK = 0, 1


def _print_state(job, s) -> None:
    rep = s.report or {}
    what = s.state + (f" ({s.reason})" if s.reason else "")
    if s.blocked:
        what += ": will not start until that changes (Slurm's reason)"
    line = f"  job {job.job_id} [{job.machine_type}] {len(job.cases)} case(s): {what}"
    if rep.get("folder"):
        line += f"; records in {rep['folder']}"
    if rep.get("statuses"):
        counts: dict[str, int] = {}
        for st in rep["statuses"].values():
            counts[st] = counts.get(st, 0) + 1
        line += " [" + ", ".join(f"{n} {st}" for st, n in sorted(counts.items())) + "]"
    if rep.get("stopped_by"):
        line += f"; stopped by {rep['stopped_by']}" + (f", {rep['requeue']}" if rep.get("requeue") else "")
    print(line, flush=True)


def _outcome(sub, final) -> int:
    from milestones.harness.records import SUCCESS_STATUSES

    ok = True
    for j, s in zip(sub.jobs, final):
        statuses = (s.report or {}).get("statuses") or {}
        if s.state != "COMPLETED" or len(statuses) < len(j.cases) or any(
                st not in SUCCESS_STATUSES for st in statuses.values()):
            ok = False
    blocked = [s for s in final if s.blocked]
    if blocked:
        print(f"milestones jobs: {len(blocked)} job(s) will not start: "
              + "; ".join(f"{s.job_id}: {s.reason}" for s in blocked), file=sys.stderr)
    print(f"records: {sub.out}/<machine id>/<run id>/ (merge: milestones merge {sub.out} --out merged; "
          f"compare: milestones compare --by machine merged)")
    return EXIT_OK if ok else EXIT_NOT_ALL_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from milestones.harness import runner
    from milestones.harness.launch import slurm
    from milestones.harness.options import from_namespace, slurm_from_namespace
    from milestones.harness.registry import load_suites

    opts, names = from_namespace(args)
    settings = slurm_from_namespace(args)
    for name, p in opts.data.items():
        from pathlib import Path

        if not Path(p).exists():
            raise UsageError(f"--data {name}={p}: no such file or folder (jobs read it from the shared file system)")
    slurm.machine_types(settings)  # bad machine types: one line before anything is planned
    if opts.torchrun_args:
        raise UsageError("milestones submit runs each job on one node (--nproc ranks there); several nodes per job "
                         f"({' '.join(opts.torchrun_args)}) need the sbatch script in docs/scale-out.md")
    reg = load_suites()
    # The login node may have no GPU: the device is resolved in each job; here it only picks batch sizes
    # for planning, which the job plans again on its node.
    device = opts.device if opts.device != "auto" else ("cuda" if slurm.gpus_per_job(settings, opts) else "cpu")
    specs = runner.plan_specs(reg.resolve(names), opts, device)
    refs = list(dict.fromkeys(slurm.CaseRef(s.case.config, s.case.kind) for s in specs))
    if not refs:
        raise UsageError(f"no cases to submit: nothing registered matches kind {','.join(opts.kinds)} at scale "
                         f"{opts.scale!r}" + (f" for {', '.join(names)}" if names else ""))

    def on_job(j) -> None:
        print(f"  job {j.job_id} [{j.machine_type}] {len(j.cases)} case(s), ~{j.estimate_s / 60:.1f} min: "
              f"records to {opts.out}/<machine id>/{j.run_id}/", flush=True)

    machines = slurm.machine_types(settings)
    print(f"milestones submit: {len(refs)} case(s) x {len(machines)} machine type(s) "
          f"({', '.join(m.name for m in machines)}), {settings['time_min']} min per job", flush=True)
    sub = slurm.submit(refs, opts, settings, on_job=on_job)
    print(f"submission {sub.id}: {len(sub.jobs)} job(s); re-attach: milestones jobs {sub.folder} --wait", flush=True)
    if not args.wait:
        return EXIT_OK
    final = slurm.watch(sub, poll_s=args.poll, on_change=_print_state)
    return _outcome(sub, final)


def cmd_jobs(args: argparse.Namespace) -> int:
    from milestones.harness.launch import slurm

    sub = slurm.load(args.submission, args.out)
    if args.cancel:
        slurm.cancel(sub)
        print(f"cancelled {len(sub.jobs)} job(s) of submission {sub.id}; their cases are recorded as interrupted")
    if args.wait:
        final = slurm.watch(sub, poll_s=args.poll, on_change=_print_state)
    else:
        final = slurm.states(sub)
        for j, s in zip(sub.jobs, final):
            _print_state(j, s)
    if args.json:
        import json

        print(json.dumps([{"job_id": s.job_id, "state": s.state, "reason": s.reason, "report": s.report}
                          for s in final], indent=1))
    if args.cancel and not args.wait:
        return EXIT_OK
    return _outcome(sub, final) if all(s.final or s.blocked for s in final) else EXIT_OK


def _poll(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {s!r}")
    return v


SUBMIT_EPILOG = """examples:
  milestones submit resnet bert --scale smoke --slurm-partition a100=gpu-a100,h100=gpu-h100 --wait
  milestones submit --config cluster.toml          [run] options and a [slurm] table
  milestones submit gpt --nproc 8 --slurm-gpus 8 --slurm-constraint h100=h100 --slurm-time 120
  milestones jobs results/.slurm/<id> --wait        re-attach after the submitting command exited

Each job runs one group of cases of one machine type (grouped to fit --slurm-time) and writes ordinary
records to OUT/<machine id>/<run id>/ on the shared file system. Exit code with --wait: 0 when every
job completed and every case is ok or skipped; 1 otherwise (a job that will not start is named with
Slurm's reason); 2: bad input or sbatch refused the job.
"""


def register(sub: Any) -> None:
    from milestones.harness.options import add_flags, add_slurm_flags

    sp = sub.add_parser("submit", help="run cases as Slurm jobs, one per machine type and case group",
                        epilog=SUBMIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("names", nargs="*", metavar="SUITE|CONFIG", help="suites or configs (default: all)")
    add_flags(sp)
    add_slurm_flags(sp)
    sp.add_argument("--config", metavar="FILE", help="TOML run file: a [run] table and a [slurm] table "
                                                     "(flags override it)")
    sp.add_argument("--wait", action="store_true", help="wait for the jobs, printing each change of state")
    sp.add_argument("--poll", type=_poll, default=5.0, metavar="S", help="seconds between queue checks (default 5)")
    sp.set_defaults(func=cmd_submit)

    sp = sub.add_parser("jobs", help="where a submission's Slurm jobs stand (re-attach with --wait)")
    sp.add_argument("submission", metavar="SUBMISSION", help="the folder `submit` printed, or its id")
    sp.add_argument("--out", default="results", metavar="DIR", help="results folder an id is looked up in")
    sp.add_argument("--wait", action="store_true", help="wait until every job has ended or cannot start")
    sp.add_argument("--cancel", action="store_true", help="cancel the submission's jobs (records say interrupted)")
    sp.add_argument("--poll", type=_poll, default=5.0, metavar="S", help="seconds between queue checks (default 5)")
    sp.add_argument("--json", action="store_true", help="print the states as JSON too")
    sp.set_defaults(func=cmd_jobs)
