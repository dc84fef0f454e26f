"""How the nightly history judgement (`history.judge_latest`) does on series built from real run-to-run
noise, with and without an injected 5% step (a benchmark, not a test).

Real noise: the per-process medians of separate runs of one case, from a `benchmarks/ab_power.py`
output (each round's base process is one run) or from result folders (each record one run). Their
log residuals around their median are resampled (with replacement) into series of `--runs` nightly
runs; in half of the series every run from `--step-at` on is 5% slower. The judgement is replayed
night by night, as the nightly job would run it (history = the nights before), and counts:
- steps found within 2 runs: the step's first or second night is `suspect` or `confirmed`;
  confirmed within 2 runs: the second night is `confirmed` (persisted);
- false steps: `confirmed` (and, separately, `suspect`) nights per 100 nights of series without a step.

    python benchmarks/history_power.py --from-ab /tmp/ab_power.json --series 500
    python benchmarks/history_power.py --from-results results/ci-a100 --metric 'train.*_time'   # a glob
    python benchmarks/history_power.py --sigma 0.01      # synthetic normal noise, for comparison
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def noise_from_ab(path: str) -> list[float]:
    trials = json.loads(Path(path).read_text())["trials"]
    meds = [statistics.median(s) for t in trials for s in t["samples"]["base"] if s]
    return [math.log(m) for m in meds]


def noise_from_results(paths: list[str], metric: str) -> dict[str, list[float]]:
    """config/metric -> log per-run medians, for every metric matching the glob `metric` (one record per run)."""
    import fnmatch

    from milestones.harness.store import load_records

    out: dict[str, list[tuple[str, float]]] = {}
    for r in load_records(*paths):
        if r.status != "ok":
            continue
        for name, m in r.metrics.items():
            if fnmatch.fnmatchcase(name, metric) and m.samples and min(m.samples) > 0:
                out.setdefault(f"{r.case.config} {name}", []).append((r.started_at, statistics.median(m.samples)))
    return {k: [math.log(v) for _, v in sorted(xs)] for k, xs in sorted(out.items())}


def simulate(logs: np.ndarray | None, sigma: float | None, *, n_series: int, runs: int, step_at: int,
             step: float, seed: int) -> dict:
    from milestones.harness.history import judge_latest

    rng = np.random.default_rng(seed)
    resid = None if logs is None else logs - np.median(logs)
    found2 = confirmed2 = 0
    false_conf = false_susp = nights = 0
    for s in range(n_series):
        with_step = s % 2 == 0
        noise = rng.choice(resid, runs) if resid is not None else rng.normal(0, sigma, runs)
        y = np.exp(noise + np.where(np.arange(runs) >= step_at, math.log1p(step), 0.0) * with_step)
        start = 10 if with_step else 10
        states = {}
        for i in range(start, runs if not with_step else min(runs, step_at + 2)):
            states[i] = judge_latest(list(y[:i]), float(y[i]), higher_is_better=False).state
        if with_step:
            found2 += any(states.get(i) in ("suspect", "confirmed") for i in (step_at, step_at + 1))
            confirmed2 += states.get(step_at + 1) == "confirmed"
        else:
            nights += len(states)
            false_conf += sum(v == "confirmed" for v in states.values())
            false_susp += sum(v == "suspect" for v in states.values())
    n_step = (n_series + 1) // 2
    return {"found_within_2": found2 / n_step, "confirmed_within_2": confirmed2 / n_step,
            "false_confirmed_per_100": 100 * false_conf / max(1, nights),
            "false_suspects_per_100": 100 * false_susp / max(1, nights), "series_with_step": n_step,
            "nights_without_step": nights}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-ab", metavar="JSON")
    src.add_argument("--from-results", nargs="+", metavar="DIR")
    src.add_argument("--sigma", type=float, help="synthetic normal noise (SD of log per-run medians)")
    ap.add_argument("--metric", default="train.step_time", help="a glob: each matching config/metric is a source")
    ap.add_argument("--series", type=int, default=400)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--step-at", type=int, default=40)
    ap.add_argument("--step", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sources: dict[str, np.ndarray | None] = {"synthetic": None}
    if args.from_ab:
        sources = {"ab base processes": np.asarray(noise_from_ab(args.from_ab))}
    elif args.from_results:
        sources = {k: np.asarray(v) for k, v in noise_from_results(args.from_results, args.metric).items()}
        if not sources:
            print(f"no metric matching {args.metric!r} in {' '.join(args.from_results)}", file=sys.stderr)
            return 2
    for name, logs in sources.items():
        if logs is not None:
            if len(logs) < 5:
                print(f"{name}: only {len(logs)} runs of real noise: need 5+", file=sys.stderr)
                continue
            from milestones.harness.stats import run_noise

            print(f"{name}: real noise from {len(logs)} runs, SD of log medians {np.std(logs, ddof=1):.2%}, robust "
                  f"{run_noise(logs):.2%}")
        res = simulate(logs, args.sigma, n_series=args.series, runs=args.runs, step_at=args.step_at, step=args.step,
                       seed=args.seed)
        print(f"  {args.step:.0%} steps found within 2 runs: {res['found_within_2']:.1%} "
              f"(confirmed within 2 runs: {res['confirmed_within_2']:.1%}; {res['series_with_step']} series); "
              f"false confirmed steps per 100 runs: {res['false_confirmed_per_100']:.2f}, false suspects per 100 "
              f"runs: {res['false_suspects_per_100']:.2f} ({res['nights_without_step']} nights without a step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
