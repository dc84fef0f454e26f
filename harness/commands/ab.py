"""`milestones ab NAMES... --base-python P --new-python P | --base-rev R --new-rev R`: interleaved A/B."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

EXIT_REGRESSION = 1
EXIT_INTERRUPTED = 130


def _resume_setup(args: argparse.Namespace):
    """Cases, sides, options and settings of the killed run in `args.resume` (its manifest)."""
    import json

    from milestones.harness import ab, store
    from milestones.harness.errors import UsageError
    from milestones.harness.records import Case

    folder = Path(args.resume)
    try:
        manifest = json.loads((folder / store.RUN_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"--resume {args.resume}: not the folder of a `milestones ab` run ({e})") from None
    if not manifest.get("ab"):
        raise UsageError(f"--resume {args.resume}: not the folder of a `milestones ab` run")
    try:
        cases = [Case(**c) for c in manifest["cases"]]
        sides = {s["name"]: s for s in manifest["sides"]}
        # The interpreters as given (the manifest's paths are scrubbed for sharing).
        given = folder / ab.AB_RESUME
        if given.exists():
            for s in json.loads(given.read_text(encoding="utf-8")).get("sides", []):
                if s.get("name") in sides:
                    sides[s["name"]] = {**sides[s["name"]], "python": s.get("python"), "rev": s.get("rev")}
        settings = ab.Settings(**{k: (tuple(v) if isinstance(v, list) else v)
                                  for k, v in manifest["settings"].items()})
    except (KeyError, TypeError) as e:
        raise UsageError(f"--resume {args.resume}: its manifest lacks {e}") from None
    return folder, manifest, cases, sides, settings


def cmd_ab(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console

    from milestones.harness import ab, report, runner
    from milestones.harness.cli import STARTED
    from milestones.harness.compare import parse_percent
    from milestones.harness.errors import UsageError
    from milestones.harness.registry import load_suites

    started = min(STARTED, time.monotonic())
    err = Console(stderr=True)
    repo = Path(args.repo).resolve()
    # What killed runs left behind: their worktrees and case workdirs (never a live run's).
    for gone in ab.clean_leftovers(repo):
        err.print(f"removed a leftover of a killed ab run: {gone}", markup=False, highlight=False)
    reg = load_suites()
    resume = None
    if args.resume:
        if args.names or any((args.base_python, args.new_python, args.base_rev, args.new_rev)):
            raise UsageError("--resume continues a run with its own cases and sides (from its manifest): give "
                             "no NAME and no --base-*/--new-*")
        resume, manifest, cases, saved, settings = _resume_setup(args)
        o = manifest.get("options") or {}
        opts = runner.RunOptions(kinds=tuple(o.get("kinds") or ("speed",)), scale=o.get("scale", "smoke"),
                                 device=o.get("device", "auto"), dtype=o.get("dtype", "float32"),
                                 out=resume.parent.parent, timeout=o.get("timeout") or args.timeout,
                                 threads=o.get("threads") or 1, seed=o.get("seed") or 0)
        side_args = {f"{n}_{k}": (saved[n].get(k) if not (k == "python" and saved[n].get("current")) else None)
                     for n in ("base", "new") for k in ("python", "rev")}
    else:
        settings = ab.Settings(metrics=tuple(args.metric or ab.DEFAULT_METRICS),
                               threshold=parse_percent(args.threshold), alpha=args.alpha,
                               max_rounds=args.max_rounds, max_time=args.max_time, protocol=args.protocol,
                               **{k: v for k, v in (("bursts", args.bursts), ("burst_time", args.burst_time))
                                  if v is not None})
        device = runner.resolve_device(args.device)
        # One thread per case on a CPU: a 2-thread step's CPU time is not contention-proof (OpenMP threads
        # spin while a sibling is descheduled: 32 ms became 550 ms of CPU time when a neighbour started).
        threads = args.threads or (1 if device == "cpu" else _free_cores())
        opts = runner.RunOptions(kinds=tuple(args.kind.split(",")), scale=args.scale, device=args.device,
                                 dtype=args.dtype, out=Path(args.out), timeout=args.timeout, threads=threads,
                                 seed=args.seed)
        if not args.names:
            raise UsageError("ab needs the cases to run: suite or config names (e.g. resnet20-smoke)")
        cases = runner.plan(reg.resolve(args.names), opts, device)
        if not cases:
            raise UsageError(f"no cases to run: nothing matches kind {args.kind} at scale {args.scale!r}")
        side_args = {"base_python": args.base_python, "new_python": args.new_python,
                     "base_rev": args.base_rev, "new_rev": args.new_rev}
    with tempfile.TemporaryDirectory(prefix=ab.WORK_PREFIX) as tmp:
        work = ab.claim_workdir(Path(tmp))
        sides = ab.make_sides(**side_args, repo=repo, work=work)
        try:
            p0 = time.monotonic()
            sides = [ab.probe(s) for s in sides]
            probed = time.monotonic() - p0
            err.print(f"milestones ab: {len(cases)} case(s), base = {sides[0].label}, new = {sides[1].label}; "
                      f"{opts.threads} thread(s); up to {settings.max_rounds} rounds / {settings.max_time:g} s"
                      + (f"; resuming {resume}" if resume else ""))

            def on_round(i, tracks) -> None:
                open_ = sum(not t.done for t in tracks)
                err.print(f"round {i + 1}: {len(tracks) - open_} of {len(tracks)} metric(s) decided")

            res = ab.execute(cases, opts, reg, sides, settings, on_round=on_round, started=started, work=work,
                             resume=resume, first_round_estimate=probed)
        finally:
            for s in sides:
                if s.rev:
                    ab.remove_worktree(repo, work / f"rev-{s.name}")
    rows = ab.rows_from_tracks(res.tracks)
    err.print(f"stopped: {res.stop} after {res.rounds} round(s), {res.elapsed_s:.0f} s; records in {res.folder}"
              + (f" (continue with: milestones ab --resume {res.folder})" if res.stop == "interrupted" else ""))
    if res.rounds == 0 and res.stop == "max time":
        err.print(f"the time budget (--max-time {settings.max_time:g}) is too small for one round on this machine: "
                  f"starting the two sides took {probed:.0f} s, and a round starts both again", markup=False,
                  highlight=False)
    summary = ab.summary_rows(res.tracks)
    if args.format == "json":
        print(report.to_json({"run_id": res.run_id, "folder": str(res.folder), "rounds": res.rounds,
                              "stop": res.stop, "elapsed_s": res.elapsed_s, "rows": summary}))
    else:
        print(report.markdown_ab(summary, res.stop, res.rounds) if args.format == "markdown"
              else report.text_ab(summary, res.stop, res.rounds))
    if res.stop == "interrupted":
        return EXIT_INTERRUPTED
    if args.fail_on == "regression" and any(r.verdict == "regressed" for r in rows):
        return EXIT_REGRESSION
    return 0


def _free_cores() -> int:
    from milestones.harness.measure.timing import free_cores

    return free_cores()[0]


def _records(paths):
    from milestones.harness import store

    return [store.read_record(p) for p in paths]


def _positive_int(s: str) -> int:
    from milestones.harness.errors import UsageError

    try:
        v = int(s)
    except ValueError:
        raise UsageError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise UsageError(f"a budget must be positive, got {s!r}")
    return v


def _positive_float(s: str) -> float:
    from milestones.harness.errors import UsageError

    try:
        v = float(s)
    except ValueError:
        raise UsageError(f"expected a number of seconds, got {s!r}") from None
    if not v > 0 or v == float("inf"):
        raise UsageError(f"a budget must be positive, got {s!r}")
    return v


def register(sub) -> None:
    p = sub.add_parser("ab", help="interleaved A/B: the same cases under two interpreters or revisions",
                       description="Runs each case alternately under two environments (a fresh process per side "
                                   "and round, order alternating; speed cases: the two processes take turns "
                                   "timing short bursts of steps) and adds rounds until a paired, sequential test "
                                   "is conclusive or the budget is spent.")
    p.add_argument("names", nargs="*", metavar="NAME", help="suites or configs")
    p.add_argument("--resume", metavar="DIR", help="continue a killed ab run (its folder): same cases, sides and "
                                                   "budget, from its last complete round")
    p.add_argument("--base-python", help="interpreter of the base side (e.g. venv-a/bin/python)")
    p.add_argument("--new-python", help="interpreter of the new side")
    p.add_argument("--base-rev", help="git revision of the base side (checked out as a worktree)")
    p.add_argument("--new-rev", help="git revision of the new side")
    p.add_argument("--repo", default=".", help="the git checkout revisions are taken from (default .)")
    p.add_argument("--kind", default="speed", help="kinds to run (default speed)")
    p.add_argument("--scale", default="smoke")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=_positive_int,
                   help="torch threads in each case process (default 1 on a CPU, the free cores on a GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=_positive_float, default=900.0, help="seconds per case process")
    p.add_argument("--metric", action="append", metavar="GLOB",
                   help="metrics to decide on (default *.cpu_time: CPU time per step, or *.step_time "
                        "where there is none, as on a GPU); repeatable")
    p.add_argument("--threshold", default="5%", help="smallest change that matters (default 5%%)")
    p.add_argument("--alpha", type=float, default=0.01,
                   help="chance of a false call over all metrics and looks (default 0.01)")
    p.add_argument("--max-rounds", type=_positive_int, default=256, help="budget: rounds (default 256)")
    p.add_argument("--max-time", type=_positive_float, default=600.0, help="budget: seconds (default 600)")
    p.add_argument("--protocol", choices=("bursts", "processes"), default="bursts",
                   help="bursts (default): a round keeps both sides' processes alive and alternates short bursts "
                        "of steps between them; processes: one whole case process per side and round (what "
                        "non-speed cases and revisions without the burst worker always use)")
    p.add_argument("--bursts", type=_positive_int, help="burst pairs per round (default 10)")
    p.add_argument("--burst-time", type=_positive_float, help="seconds of steps per burst (default 0.2)")
    p.add_argument("--out", default="results", help="results folder (default results)")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument("--fail-on", choices=("regression", "never"), default="never",
                   help="exit 1 when a metric is called regressed (default never). Exit codes: 0 pass, 1 regression, "
                        "2 bad input, 3 the tool failed, 130 interrupted")
    p.set_defaults(func=cmd_ab)
