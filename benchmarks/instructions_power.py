"""Repeatability of instruction counts, idle and under load, and whether a 1% change in a step's work is
called (a benchmark, not a test).

Each trial is one `milestones instructions` run (one valgrind process) over:
- abbench-conv100 and abbench-conv101: a conv-net training step with 100 conv layers, and with 101 (one
  16->16 layer more: about 1% more work; the measured difference is printed);
- real suite steps (default gan-smoke, seq2seq-smoke: small ones, as every step runs many times slower
  under valgrind): for repeatability only.
Trials marked busy run with one busy-looping process per core, and `--concurrent` runs the busy trials at
the same time as each other (more load). Then, over every pair of trials:
- repeatability: the relative difference of each case's count between the two trials;
- the 1% change: conv100 of one trial against conv101 of another (and of the same), decided by compare's
  instruction-count rule (`compare.compare_metric`, tolerance 0.5%): the goal is "regressed" every time;
- A/A: each case of one trial against the same case of another: the goal is "unchanged" every time.

    MILESTONES_EXTRA_SUITES=benchmarks.ab_suite python benchmarks/instructions_power.py --idle 1 --busy 3 \\
        --concurrent --out /tmp/ip
    python benchmarks/instructions_power.py --load /tmp/ip
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BASE, PLUS = "abbench-conv100", "abbench-conv101"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    extra = [x for x in env.get("MILESTONES_EXTRA_SUITES", "").split(",") if x]
    if "benchmarks.ab_suite" not in extra:
        extra.append("benchmarks.ab_suite")
    env["MILESTONES_EXTRA_SUITES"] = ",".join(extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *[p for p in [env.get("PYTHONPATH")] if p]])
    return env


def _start(out: Path, names: list[str]) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.txt", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(["milestones", "instructions", *names, "--out", str(out)], stdout=log,
                            stderr=subprocess.STDOUT, env=_env(), cwd=str(ROOT))


def collect(out: Path, names: list[str], idle: int, busy: int, concurrent: bool) -> None:
    for i in range(idle):
        t0 = time.time()
        rc = _start(out / f"idle{i}", names).wait()
        print(f"idle trial {i}: exit {rc}, {time.time() - t0:.0f} s, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    if not busy:
        return
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        t0 = time.time()
        if concurrent:
            procs = [_start(out / f"busy{i}", names) for i in range(busy)]
            rcs = [p.wait() for p in procs]
        else:
            rcs = [_start(out / f"busy{i}", names).wait() for i in range(busy)]
        print(f"busy trials: exits {rcs}, {time.time() - t0:.0f} s, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    finally:
        for p in loops:
            p.kill()
            p.wait()


def counts(out: Path) -> dict[str, dict[str, float]]:
    """trial -> config -> instructions per step."""
    from milestones.harness.store import load_records

    res: dict[str, dict[str, float]] = {}
    for trial in sorted(p for p in out.iterdir() if p.is_dir()):
        for r in load_records(trial):
            if r.status == "ok" and "step.instructions" in r.metrics:
                res.setdefault(trial.name, {})[r.case.config] = r.metrics["step.instructions"].samples[0]
    return res


def evaluate(c: dict[str, dict[str, float]]) -> None:
    from milestones.harness import compare

    def verdict(a: float, b: float) -> str:
        return compare.compare_metric("speed", "instructions", False, [a], [b], compare.INSTRUCTION_TOLERANCE).verdict

    trials = sorted(c)
    configs = sorted({k for v in c.values() for k in v})
    for t in trials:
        print(f"{t}: " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(c[t].items())))
    for cfg in configs:
        diffs = [(a, b, abs(c[b][cfg] / c[a][cfg] - 1)) for a, b in itertools.combinations(trials, 2)
                 if cfg in c[a] and cfg in c[b]]
        if diffs:
            worst = max(diffs, key=lambda x: x[2])
            idle_busy = [d for _, _, d in [x for x in diffs if x[0].startswith("idle") != x[1].startswith("idle")]]
            print(f"repeatability {cfg}: max difference over {len(diffs)} trial pairs {worst[2]:.4%} ({worst[0]} vs "
                  f"{worst[1]})" + (f"; idle vs busy max {max(idle_busy):.4%}" if idle_busy else ""))
    plus = [(a, b) for a in trials for b in trials if BASE in c[a] and PLUS in c[b]]
    if plus:
        effect = [c[b][PLUS] / c[a][BASE] - 1 for a, b in plus]
        called = sum(verdict(c[a][BASE], c[b][PLUS]) == "regressed" for a, b in plus)
        print(f"1% change ({BASE} -> {PLUS}): called regressed in {called}/{len(plus)} trial pairs; measured "
              f"change {min(effect):+.3%} .. {max(effect):+.3%}")
    aa = [(cfg, a, b) for cfg in configs for a, b in itertools.permutations(trials, 2) if cfg in c[a] and cfg in c[b]]
    if aa:
        changed = sum(verdict(c[a][cfg], c[b][cfg]) != "unchanged" for cfg, a, b in aa)
        print(f"A/A (same case, two trials): called changed in {changed}/{len(aa)} ordered pairs")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=int, default=1, help="trials without extra load")
    ap.add_argument("--busy", type=int, default=1, help="trials with one busy loop per core")
    ap.add_argument("--concurrent", action="store_true", help="run the busy trials at the same time")
    ap.add_argument("--names", default=f"{BASE},{PLUS},gan-smoke,seq2seq-smoke")
    ap.add_argument("--out", help="folder for the trials' results")
    ap.add_argument("--load", help="evaluate a folder collected before")
    args = ap.parse_args()
    if args.load:
        out = Path(args.load)
    else:
        if not args.out:
            print("--out or --load is needed", file=sys.stderr)
            return 2
        out = Path(args.out)
        collect(out, args.names.split(","), args.idle, args.busy, args.concurrent)
    c = counts(out)
    if len(c) < 2:
        print(f"need 2+ trials with counts in {out}, found {len(c)}", file=sys.stderr)
        return 2
    evaluate(c)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
