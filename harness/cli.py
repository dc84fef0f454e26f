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
from pathlib import Path
from typing import Any

from milestones.harness.errors import MilestonesError, UsageError

EXIT_OK, EXIT_CASES_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + message)
        raise UsageError(f"{self.prog}: {message}")


def _csv(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def _kv(s: str) -> tuple[str, str]:
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {s!r}")
    k, v = s.split("=", 1)
    return k.strip(), v


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def _seeds(s: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in _csv(s))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return out


# ---------------------------------------------------------------------------------------------- list
def cmd_list(args: argparse.Namespace) -> int:
    from milestones.harness import report
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
RUN_FILE_KEYS = {"suites", "kind", "scale", "device", "dtype", "batch_size", "out", "timeout", "profile",
                 "peak_tflops", "seed", "seeds", "deterministic", "threads", "data", "option", "repeat"}


def load_run_config(path: str) -> dict[str, Any]:
    """A TOML file of `milestones run` options (never executed, only parsed)."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read config file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config file {path} is not valid TOML: {e}") from None
    run = raw.get("run", raw)
    if not isinstance(run, dict):
        raise UsageError(f"config file {path}: [run] must be a table")
    unknown = set(run) - RUN_FILE_KEYS
    if unknown:
        from milestones.harness.registry import did_you_mean

        k = sorted(unknown)[0]
        raise UsageError(f"config file {path}: unknown key {k!r}{did_you_mean(k, RUN_FILE_KEYS)}")
    types = {"suites": list, "kind": (str, list), "scale": str, "device": str, "dtype": str, "batch_size": int,
             "out": str, "timeout": (int, float), "profile": bool, "peak_tflops": (int, float), "seed": int,
             "seeds": list, "deterministic": bool, "threads": int, "data": dict, "option": dict, "repeat": int}
    for k, v in run.items():
        if not isinstance(v, types[k]) or (isinstance(v, bool) and types[k] in (int, (int, float))):
            raise UsageError(f"config file {path}: {k!r} has the wrong type ({type(v).__name__})")
        if k in ("suites", "seeds") or (k == "kind" and isinstance(v, list)):
            want = int if k == "seeds" else str
            if not all(isinstance(x, want) and not isinstance(x, bool) for x in v):
                raise UsageError(f"config file {path}: {k!r} must be a list of {want.__name__}s")
        if k in ("data", "option") and not all(isinstance(x, str) for x in v.values()):
            raise UsageError(f"config file {path}: [{k}] values must be strings")
    return run


def build_run_options(args: argparse.Namespace):
    from milestones.harness.runner import RunOptions

    fc: dict[str, Any] = load_run_config(args.config) if args.config else {}

    def pick(name: str, default: Any) -> Any:
        v = getattr(args, name, None)
        return v if v is not None else fc.get(name, default)

    kind = pick("kind", ("fidelity", "speed"))
    kinds = _csv(kind) if isinstance(kind, str) else tuple(kind)
    data = dict(fc.get("data", {}))
    data.update(dict(args.data or []))
    options = dict(fc.get("option", {}))
    options.update(dict(args.option or []))
    seeds = args.seeds if args.seeds is not None else (tuple(fc["seeds"]) if "seeds" in fc else None)
    return RunOptions(
        kinds=kinds, scale=pick("scale", "smoke"), device=pick("device", "auto"), dtype=pick("dtype", "float32"),
        batch_size=pick("batch_size", None), out=Path(pick("out", "results")), timeout=float(pick("timeout", 900)),
        profile=bool(args.profile or fc.get("profile", False)), peak_tflops=pick("peak_tflops", None),
        seed=pick("seed", 0), seeds=seeds, deterministic=bool(args.deterministic or fc.get("deterministic", False)),
        threads=pick("threads", None), data=data, options=options, repeat=pick("repeat", 1),
        nproc=getattr(args, "nproc", None) or 1, torchrun_args=_torchrun_args(args),
        find_max_batch=getattr(args, "find_max_batch", None),
    ), (list(args.names) or list(fc.get("suites", [])))


def _torchrun_args(args: argparse.Namespace) -> tuple[str, ...]:
    from milestones.harness.distributed import rendezvous_args

    return rendezvous_args(args)


def _check_data_paths(data: dict[str, str]) -> None:
    for name, p in data.items():
        if not Path(p).exists():
            raise UsageError(f"--data {name}={p}: no such file or folder")


def _busy_warning(env: dict[str, Any]) -> str | None:
    hyg = env.get("hygiene") or {}
    load, busy = hyg.get("loadavg"), hyg.get("busy_processes") or []
    from milestones.harness.measure.timing import usable_cores

    cores = usable_cores()  # what this process may use (affinity / cpuset), not what the machine has
    if (load and load[0] > 0.5 * cores) or busy:
        procs = ", ".join(f"{p['name']} ({p['cpu']:.0%})" for p in busy[:3])
        return (f"warning: the machine is busy (1-minute load average {load[0] if load else float('nan'):.2f} on "
                f"{cores} cores{'; busy: ' + procs if procs else ''}); timings may be biased")
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from milestones.harness import env as envmod
    from milestones.harness import report, runner, store
    from milestones.harness.records import SUCCESS_STATUSES
    from milestones.harness.registry import load_suites

    opts, names = build_run_options(args)
    _check_data_paths(opts.data)
    reg = load_suites()
    entries = reg.resolve(names)
    skip: set[str] = set()
    run_id = None
    if args.resume:
        folder, manifest = store.find_run(opts.out, args.resume)
        run_id = manifest["run_id"]
        o = manifest.get("options", {})
        opts = dataclasses.replace(
            opts, kinds=tuple(o.get("kinds", opts.kinds)), scale=o.get("scale", opts.scale),
            dtype=o.get("dtype", opts.dtype), batch_size=o.get("batch_size"), repeat=o.get("repeat", 1),
            seed=o.get("seed", 0), out=Path(opts.out))
        from milestones.harness.records import Case

        cases = [Case(**c) for c in manifest["cases"]]
        skip = store.finished_keys(folder)
    device = runner.resolve_device(opts.device)
    if not args.resume:
        cases = runner.plan(entries, opts, device)
    if not cases:
        raise UsageError(f"no cases to run: nothing registered matches kind {','.join(opts.kinds)} at scale "
                         f"{opts.scale!r}" + (f" for {', '.join(names)}" if names else ""))
    store.ensure_writable(Path(opts.out))
    err = Console(stderr=True)
    e = envmod.capture()
    warn = _busy_warning(e)
    if warn:
        err.print(f"[yellow]{warn}[/]")
    todo = sum(opts.repeat for _ in cases) - len(skip)
    err.print(f"milestones run: {todo} case(s) on {device} ({opts.dtype}), scale {opts.scale}, "
              f"timeout {opts.timeout:g} s each")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("starting", total=max(todo, 0))

        def on_start(case) -> None:
            progress.update(task, description=f"{case.suite}/{case.config} {case.kind}")

        def on_record(rec, path) -> None:
            progress.console.print(report.case_line(rec))
            progress.advance(task)

        result = runner.execute(cases, opts, reg, e, run_id=run_id, on_start=on_start, on_record=on_record,
                                skip=skip)
    if args.json:
        print(report.to_json({"run_id": result.run_id, "folder": str(result.folder),
                              "records": [str(p) for p in result.paths],
                              "statuses": {r.record_id: r.status for r in result.records}}))
    else:
        report.print_run_summary(result.records, str(result.folder))
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if all(r.status in SUCCESS_STATUSES for r in result.records) else EXIT_CASES_FAILED


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="milestones", description="Benchmark and reproduce the deep-learning milestone papers.")
    from milestones.harness import __version__

    p.add_argument("--version", action="version", version=f"milestones {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    sp = sub.add_parser("list", help="list registered suites (or configs)")
    sp.add_argument("names", nargs="*", help="suites to show")
    sp.add_argument("--configs", action="store_true", help="list configs instead of suites")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("env", help="show the environment that records will carry")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_env)

    sp = sub.add_parser("run", help="run cases and write one record per case")
    sp.add_argument("names", nargs="*", metavar="SUITE|CONFIG", help="suites or configs (default: all)")
    sp.add_argument("--kind", help="comma-separated kinds: fidelity,speed,quality (default fidelity,speed)")
    sp.add_argument("--scale", help="smoke | proxy | paper (default smoke)")
    sp.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    sp.add_argument("--dtype", help="float32 | bfloat16 | float16 (default float32)")
    sp.add_argument("--batch-size", type=_positive_int, help="override every speed case's batch size")
    sp.add_argument("--out", help="results folder (default results)")
    sp.add_argument("--timeout", type=_positive_float, help="seconds per case before it is killed (default 900)")
    sp.add_argument("--profile", action="store_true", default=None, help="record a kernel table per speed case")
    sp.add_argument("--peak-tflops", type=_positive_float, help="the device's peak TFLOP/s for MFU")
    sp.add_argument("--seed", type=int, help="base seed (default 0)")
    sp.add_argument("--seeds", type=_seeds, help="comma-separated seeds for quality cases")
    sp.add_argument("--deterministic", action="store_true", default=None,
                    help="seed everything and turn on torch's deterministic algorithms")
    sp.add_argument("--threads", type=_positive_int, help="torch threads in each case process")
    sp.add_argument("--data", type=_kv, action="append", metavar="NAME=PATH", help="user data, e.g. imagenet=/data")
    sp.add_argument("--option", type=_kv, action="append", metavar="KEY=VALUE", help="suite-specific option")
    sp.add_argument("--repeat", type=_positive_int, help="run each case N times")
    sp.add_argument("--find-max-batch", type=_positive_int, nargs="?", const=4096, metavar="CAP",
                    help="search (doubling from 1, up to CAP) for the largest batch that runs; recorded")
    sp.add_argument("--resume", metavar="RUN", help="finish a killed run (its id or folder): only missing cases")
    sp.add_argument("--config", metavar="FILE", help="TOML file of run options (flags override it)")
    sp.add_argument("--nproc", type=_positive_int, help="run speed cases on N ranks per node under torchrun "
                    "(DistributedDataParallel; NCCL on GPUs, gloo on CPUs)")
    for flag in ("--nnodes", "--node-rank", "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id", "--master-addr",
                 "--master-port"):
        sp.add_argument(flag, help=f"passed to torchrun as {flag} (several nodes)")
    sp.add_argument("--json", action="store_true", help="print a JSON summary instead of a table")
    sp.set_defaults(func=cmd_run)

    import milestones.harness.commands as cmds

    for m in sorted(pkgutil.iter_modules(cmds.__path__), key=lambda m: m.name):
        if not m.name.startswith("_"):
            importlib.import_module(f"milestones.harness.commands.{m.name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
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


if __name__ == "__main__":
    raise SystemExit(main())
