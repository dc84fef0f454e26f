"""The `milestones` command: list | env | run, plus the commands in `milestones.harness.commands`.

Bad input gets one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path
from typing import Any

from milestones.harness.errors import MilestonesError, UsageError

# When the command started (set again by each `main`, before torch and the suites are imported): budgets
# such as `ab --max-time` count from here, which is what the person who set them measures.
STARTED = time.monotonic()

# compare and ab: 0 pass, 1 regression, 2 bad input, 3 the tool failed (a bug, never a regression); run: 1 a
# case failed. 130: interrupted.
EXIT_OK, EXIT_CASES_FAILED, EXIT_USAGE, EXIT_TOOL_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + message)
        # main() prints "milestones: error: ": name the subcommand once, not "milestones" twice.
        sub = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        raise UsageError(f"{sub}: {message}" if sub else message)


# ---------------------------------------------------------------------------------------------- list
def cmd_list(args: argparse.Namespace) -> int:
    from milestones.harness import report

    if not args.configs:
        # The suite list from the catalog: no torch, no suite import (see milestones.harness.catalog).
        from milestones.harness import catalog

        entries = catalog.catalog()
        if entries is not None:
            by = {e["suite"]: e for e in entries}
            for n in args.names:
                if n not in by:
                    from milestones.harness.registry import UnknownNameError, did_you_mean

                    raise UnknownNameError(f"unknown suite {n!r}{did_you_mean(n, by)}")
            chosen = [by[n] for n in args.names] if args.names else entries
            costs = catalog.measured_costs(args.results)
            chosen = [{**e, "measured_s": costs.get(e["suite"], {})} for e in chosen]
            if args.json:
                print(report.to_json(chosen))
            else:
                report.print_suite_list(chosen, results=args.results)
            return EXIT_OK
    from milestones.harness.registry import load_suites

    reg = load_suites()
    if args.configs:
        rows = [{"config": c.name, "suite": c.suite, "kinds": list(c.kinds), "scales": list(c.scales),
                 "description": c.description, "params": c.params_dict()} for c in reg.resolve(args.names)]
        if args.json:
            print(report.to_json(rows))
        else:
            report.print_config_list(rows)
        return EXIT_OK
    suites = [reg.suite(n) for n in args.names] if args.names else list(reg.suites.values())
    summaries = [s.summary() for s in suites]
    if args.json:
        print(report.to_json(summaries))
    else:
        report.print_suite_list(summaries)
    return EXIT_OK


# ----------------------------------------------------------------------------------------------- env
def cmd_env(args: argparse.Namespace) -> int:
    from milestones.harness import env, report

    e = env.capture()
    if args.json:
        print(report.to_json(e))
    else:
        report.print_env(e)
    return EXIT_OK


# ----------------------------------------------------------------------------------------------- run
def build_run_options(args: argparse.Namespace):
    """RunOptions and suite names from `milestones run` arguments (the table in harness/options.py)."""
    from milestones.harness.options import from_namespace

    return from_namespace(args)


def _refuse_unknown_names(names: list[str]) -> None:
    """An unknown suite or config is refused from the catalog, before importing torch and every suite
    (8-15 s on a loaded machine); the registry still decides when the catalog cannot answer."""
    from milestones.harness import catalog
    from milestones.harness.registry import UnknownNameError, did_you_mean

    entries = catalog.catalog()
    if entries is None:
        return
    known = {e["suite"] for e in entries} | {c for e in entries for c in e.get("configs", [])}
    for n in names:
        if n not in known:
            raise UnknownNameError(f"unknown suite or config {n!r}{did_you_mean(n, known)}")


def _check_data_paths(data: dict[str, str]) -> None:
    for name, p in data.items():
        if not Path(p).exists():
            raise UsageError(f"--data {name}={p}: no such file or folder")
        if not _holds_a_readable_file(Path(p)):
            # Else every case that needs it skips, and the run exits 0 without naming the folder.
            raise UsageError(f"--data {name}={p}: holds no file this user can read (an empty or unreadable "
                             "folder?)")


def _holds_a_readable_file(p: Path) -> bool:
    """A readable file, or a folder with one somewhere inside (the walk stops at the first)."""
    if not p.is_dir():
        return os.access(p, os.R_OK)
    for root, _, files in os.walk(p, followlinks=True):
        if any(os.access(os.path.join(root, f), os.R_OK) and os.path.isfile(os.path.join(root, f)) for f in files):
            return True
    return False


def _busy_warning(env: dict[str, Any], idle: float | None, threads: int) -> str | None:
    hyg = env.get("hygiene") or {}
    load, busy = hyg.get("loadavg"), hyg.get("busy_processes") or []
    cores = env.get("logical_cores") or 1
    if (idle is not None and idle < cores - 0.75) or (load and load[0] > 0.5 * cores) or busy:
        procs = ", ".join(f"{p['name']} ({p['cpu']:.0%})" for p in busy[:3] if isinstance(p, dict) and "name" in p)
        free = f"{idle:.1f} of {cores} cores idle" if idle is not None else f"{cores} cores"
        return (f"warning: the machine is busy ({free}; 1-minute load average "
                f"{load[0] if load else float('nan'):.2f}{'; busy: ' + procs if procs else ''}); "
                f"cases run with {threads} thread(s) and timings may be biased")
    return None


def _resume_options(args: argparse.Namespace, opts):
    """The run folder and the options it was started with (the folder given, whatever --out says)."""
    from milestones.harness import store
    from milestones.harness.options import RunOptions

    folder, manifest = store.find_run(opts.out, args.resume)
    o = dict(manifest.get("options") or {})
    try:
        saved = RunOptions(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in o.items()
                              if k in RunOptions.__dataclass_fields__})
    except (TypeError, MilestonesError) as e:
        raise UsageError(f"run manifest {folder}/_run.json has options this milestones cannot use: {e}") from None
    # What a resume may change: where the process runs and where the data is, not what the run measures.
    keep_cli = {k: getattr(opts, k) for k in ("timeout", "threads") if getattr(args, k, None) is not None}
    data = {**saved.data, **(opts.data if getattr(args, "data", None) else {})}
    for name, p in data.items():
        if not Path(p).exists():
            raise UsageError(f"the run's --data {name} is recorded as {p!r} (records leave absolute paths out "
                             f"unless --record-host); resume with --data {name}=PATH")
    _check_data_paths(data)
    return folder, manifest, dataclasses.replace(saved, out=folder.parent.parent, data=data, **keep_cli)


def _plan_run(args: argparse.Namespace, reg: Any):
    """(options, specs, device, run id, folder) for a new run, or for the run being resumed."""
    from milestones.harness import runner
    from milestones.harness.records import Case

    opts, names = build_run_options(args)
    _check_data_paths(opts.data)
    if not args.resume:
        device = runner.resolve_device(opts.device)
        specs = runner.plan_specs(reg.resolve(names), opts, device)
        if not specs:
            raise UsageError(f"no cases to run: nothing registered matches kind {','.join(opts.kinds)} at scale "
                             f"{opts.scale!r}" + (f" for {', '.join(names)}" if names else ""))
        return opts, specs, device, None, None
    folder, manifest, opts = _resume_options(args, opts)
    by_key = {s.get("key"): s.get("batch_size_source") for s in manifest.get("specs", [])}
    cases = [Case(**c) for c in manifest["cases"]]
    for c in cases:
        reg.config(c.config)  # a case of a suite this milestones no longer has: one line, exit 2
    specs = [dataclasses.replace(sp, batch_size_source=by_key[sp.key]) if by_key.get(sp.key) else sp
             for sp in runner.specs_for_cases(cases, opts, reg)]
    device = cases[0].device if cases else opts.device
    return opts, specs, device, manifest["run_id"], folder


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from milestones.harness import env as envmod
    from milestones.harness import report, runner, store
    from milestones.harness.measure.timing import free_cores, usable_cores
    from milestones.harness.records import SUCCESS_STATUSES
    from milestones.harness.registry import load_suites

    build_run_options(args)  # bad option values are refused before torch is imported (seconds)
    if args.names and not args.resume:
        _refuse_unknown_names(args.names)
    reg = load_suites()
    opts, specs, device, run_id, folder = _plan_run(args, reg)
    store.ensure_writable(folder or Path(opts.out))  # before the busy warning and the plan: one line, exit 2
    err = Console(stderr=True)
    free, busy = free_cores()
    cores = usable_cores()
    idle = max(0.0, (os.cpu_count() or cores) - busy)
    threads = opts.threads or free
    specs = [dataclasses.replace(s, threads=threads) for s in specs]
    e = envmod.capture()
    e["threads_default"] = {"idle_cores_at_start": None if idle is None else round(idle, 2), "cores": cores,
                            "threads": threads, "chosen_by": "--threads" if opts.threads else "free cores"}
    warn = _busy_warning(e, idle, threads)
    if warn:
        err.print(f"[yellow]{warn}[/]")
    left = len(specs) - len(store.finished_keys(folder) & {s.key for s in specs}) if folder else len(specs)
    count = f"{left} of {len(specs)} case(s) left to run" if folder else f"{len(specs)} case(s)"
    err.print(f"milestones run{' --resume ' + run_id if folder else ''}: {count} on {device} ({opts.dtype}), "
              f"scale {opts.scale}, {threads} thread(s), timeout {opts.timeout_for():g} s each")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("starting", total=left)

        def on_start(case) -> None:
            progress.update(task, description=f"{case.suite}/{case.config} {case.kind}")

        def on_record(rec, path) -> None:
            progress.console.print(report.case_line(rec))
            progress.advance(task)

        result = runner.execute(specs, opts, reg, e, run_id=run_id, folder=folder, resume=bool(args.resume),
                                on_start=on_start, on_record=on_record)
    if args.json:
        print(report.to_json({"run_id": result.run_id, "folder": str(result.folder),
                              "records": [str(p) for p in result.paths],
                              "statuses": {r.record_id: r.status for r in result.records}}))
    else:
        report.print_run_summary(result.records, str(result.folder))
    if result.interrupted:
        print(f"milestones run: interrupted; {result.not_started} case(s) never started. "
              f"`{runner.resume_command(result, opts)}` runs them and any interrupted case", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if all(r.status in SUCCESS_STATUSES for r in result.records) else EXIT_CASES_FAILED


RUN_EPILOG = """examples:
  milestones run                                  every suite's smoke fidelity+speed cases (~3-15 min on a CPU)
  milestones run resnet --kind speed --repeat 3   ResNet's speed cases, three times each
  milestones run resnet-degradation --scale proxy --kind quality     the Fig. 6 claim on real small data
  milestones run resnet50 --scale paper --kind quality --data imagenet=/data/imagenet
  milestones run --resume 20261130T101500Z-ab12cd finish a killed run in its own folder

results: one JSON record per case under OUT/<machine-id>/<run-id>/ (OUT defaults to results/); the last
line says the folder. Exit code 0: every case ok or skipped; 1: a case failed, timed out, ran out of
memory or diverged; 2: bad input; 130: interrupted (resume with --resume RUN).

quality cases are not in the default job (--kind fidelity,speed): give --kind quality. The paper's claims
are checked at --scale proxy (minutes each on a CPU, offline data) or --scale paper (a GPU and the
paper's data); `milestones list` shows which configs have them. A quality case prints its claim and on
how many seeds it held.
"""


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="milestones", description="Benchmark and reproduce the deep-learning milestone papers.")
    from milestones.harness import __version__

    p.add_argument("--version", action="version", version=f"milestones {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    sp = sub.add_parser("list", help="list the suites: paper, the claims they check, cases and cost (or configs)",
                        description="The suites: each paper, the claims its proxy quality runs check, how many\n"
                                    "configs each scale runs, and what they cost on this machine (summed case\n"
                                    "durations of the newest run under --results; none until you run them).",
                        epilog="examples:\n  milestones list\n  milestones list resnet gan\n"
                               "  milestones list --configs resnet\n  milestones list --json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("names", nargs="*", help="suites to show")
    sp.add_argument("--configs", action="store_true", help="list configs instead of suites")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.add_argument("--results", default="results", help="results folder the measured cost is read from "
                                                         "(default results)")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("env", help="show the environment that records will carry")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_env)

    sp = sub.add_parser("run", help="run cases and write one record per case", epilog=RUN_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("names", nargs="*", metavar="SUITE|CONFIG", help="suites or configs (default: all)")
    from milestones.harness.options import add_flags

    add_flags(sp)
    sp.add_argument("--resume", metavar="RUN", help="finish a killed run (its id or folder): only missing and "
                    "interrupted cases run, in that run's folder")
    sp.add_argument("--config", metavar="FILE", help="TOML file of run options ([run] table; flags override it)")
    sp.add_argument("--json", action="store_true", help="print a JSON summary instead of a table")
    sp.set_defaults(func=cmd_run)

    import milestones.harness.commands as cmds

    for m in sorted(pkgutil.iter_modules(cmds.__path__), key=lambda m: m.name):
        if not m.name.startswith("_"):
            importlib.import_module(f"milestones.harness.commands.{m.name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    global STARTED
    STARTED = time.monotonic()
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        return int(args.func(args) or 0)
    except MilestonesError as e:
        print(f"milestones: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("milestones: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os._exit(0)
    except Exception as e:  # noqa: BLE001 - a bug must not read as a regression (exit 1)
        import traceback

        where = traceback.extract_tb(e.__traceback__)[-1]
        print(f"milestones: internal error: {type(e).__name__}: {str(e)[:300]} (at {Path(where.filename).name}:"
              f"{where.lineno}); exit 3: the tool failed, not the benchmark. MILESTONES_TRACEBACK=1 shows the traceback",
              file=sys.stderr)
        if os.environ.get("MILESTONES_TRACEBACK"):
            traceback.print_exc()
        return EXIT_TOOL_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
