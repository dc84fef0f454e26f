"""Detection power and false alarms of `milestones compare` on this machine (a benchmark, not a test).

A real ~10 ms CPU workload (a loop of float32 matmuls) is timed with the harness's own timing loop at
its default settings (`TimingSettings()`: warm-up, then at least 10 iterations and 1 s), and the same
workload made 5% slower (one matmul more in every 20). Rounds of (A, A', B) are collected in one
process, alternating so that drift hits all three alike. Then, on the very same samples:
- A/B pairs (A_i, B_i): how often each rule calls B a regression (power; goal >= 95% for compare);
- A/A pairs (A_i, A'_i): how often each rule calls A' a regression (false alarms; goal <= 1%);
  both orders are tried, since a rule may be asymmetric.
The last line is the interleaved mode of docs/compare-and-report.md: 3 consecutive rounds of A against
the same rounds of B (sliding windows, so those pairs overlap and are not independent).
Rules: `compare` (milestones.harness.stats.compare_timeseries, the defaults of `milestones compare`), asv's
(factor 1.1 + Mann-Whitney p < 0.002, asv's own code), pytest-benchmark's
`--benchmark-compare-fail=mean:5%` (pytest-benchmark's own PercentageRegressionCheck).

    python benchmarks/detection_power.py --rounds 30 --out /tmp/dp.json     # collect + evaluate
    python benchmarks/detection_power.py --load /tmp/dp.json                 # evaluate saved samples
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_workload(extra: bool):
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 160, generator=g)
    w = torch.randn(160, 160, generator=g) / 160**0.5
    reps = 21 if extra else 20

    def step():
        y = x
        for _ in range(reps):
            y = torch.mm(y, w)
        return y

    return step


def calibrate(step, target_s: float = 0.010) -> int:
    """How many calls of `step` make one ~10 ms sample."""
    for _ in range(20):
        step()
    t0 = time.perf_counter()
    for _ in range(20):
        step()
    per = (time.perf_counter() - t0) / 20
    return max(1, round(target_s / per))


def collect(rounds: int, threads: int) -> dict:
    import torch

    from milestones.harness.measure.timing import TimingSettings, time_cpu

    torch.set_num_threads(threads)
    base, slow = make_workload(False), make_workload(True)
    inner = calibrate(base)

    def loop(fn):
        def run():
            for _ in range(inner):
                fn()
        return run

    fa, fb = loop(base), loop(slow)
    out = {"A": [], "A2": [], "B": [], "inner": inner, "threads": threads, "settings": "TimingSettings()",
           "loadavg_start": list(os.getloadavg())}
    for i in range(rounds):
        # Rotate the order within a round so no side always runs first.
        order = [("A", fa), ("A2", fa), ("B", fb)]
        order = order[i % 3:] + order[:i % 3]
        for name, fn in order:
            out[name].append(list(time_cpu(fn, TimingSettings()).samples_s))
        print(f"round {i + 1}/{rounds}: median A {statistics.median(out['A'][-1]) * 1e3:.2f} ms, "
              f"B {statistics.median(out['B'][-1]) * 1e3:.2f} ms", file=sys.stderr)
    out["loadavg_end"] = list(os.getloadavg())
    return out


def rule_compare(a, b) -> bool:
    from milestones.harness.stats import compare_timeseries

    return compare_timeseries(a, b, higher_is_better=False).verdict == "regressed"


def rule_asv(a, b) -> bool:
    from asv.commands.compare import _is_result_better
    from asv_runner.statistics import compute_stats

    ra, sa = compute_stats(a, 1)
    rb, sb = compute_stats(b, 1)
    # asv flags a regression when the old result is better than the new by the factor (and the stats differ).
    return bool(_is_result_better(ra, rb, (sa, a), (sb, b), 1.1))


def rule_pytest_benchmark(a, b) -> bool:
    from pytest_benchmark.utils import PercentageRegressionCheck

    check = PercentageRegressionCheck("mean", 5.0)
    return bool(check.fails({"mean": statistics.fmean(b)}, {"mean": statistics.fmean(a)}))


RULES = {"milestones compare (default)": rule_compare, "asv (factor 1.1, MWU p<0.002)": rule_asv,
         "pytest-benchmark mean:5%": rule_pytest_benchmark}


def evaluate(data: dict) -> list[dict]:
    n = len(data["B"])
    true_ratio = statistics.median([statistics.median(b) for b in data["B"]]) / \
        statistics.median([statistics.median(a) for a in data["A"]])
    cv = statistics.median([statistics.stdev(a) / statistics.fmean(a) for a in data["A"]])
    print(f"{n} rounds, {statistics.median(len(a) for a in data['A'])} samples per run, "
          f"median of per-run medians B/A = {true_ratio:.3f}, median within-run CV of A = {cv:.1%}, "
          f"{data['threads']} thread(s), load {data['loadavg_start'][0]:.2f} -> {data['loadavg_end'][0]:.2f}")
    rows = []
    for name, rule in RULES.items():
        power = sum(rule(a, b) for a, b in zip(data["A"], data["B"], strict=False)) / n
        fa = sum(rule(a, a2) for a, a2 in zip(data["A"], data["A2"], strict=False)) / n
        # The A/A pair is also taken the other way round: a rule may be asymmetric.
        fa2 = sum(rule(a2, a) for a, a2 in zip(data["A"], data["A2"], strict=False)) / n
        rows.append({"rule": name, "power_5pct": power, "false_alarms_aa": (fa + fa2) / 2, "pairs": n})
    # Interleaved A/B with 3 runs per side: rounds i..i+2 of A against the same rounds of B (or A').
    from milestones.harness.stats import compare_repeated_runs

    def rep(x, y):
        return compare_repeated_runs(x, y, higher_is_better=False).verdict == "regressed"

    w = [(i, i + 3) for i in range(0, n - 2)]
    power = sum(rep(data["A"][a:b], data["B"][a:b]) for a, b in w) / len(w)
    fa = sum(rep(data["A"][a:b], data["A2"][a:b]) + rep(data["A2"][a:b], data["A"][a:b]) for a, b in w) / (2 * len(w))
    rows.append({"rule": "compare, 3 interleaved runs per side", "power_5pct": power, "false_alarms_aa": fa,
                 "pairs": len(w)})
    print(f"{'rule':36} {'5% slower caught':>17} {'A/A false alarms':>17}")
    for r in rows:
        print(f"{r['rule']:36} {r['power_5pct']:>17.0%} {r['false_alarms_aa']:>17.1%}   ({r['pairs']} pairs)")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="save the raw samples (JSON)")
    ap.add_argument("--load", help="evaluate saved samples instead of collecting")
    args = ap.parse_args()
    if args.load:
        data = json.loads(Path(args.load).read_text())
    else:
        data = collect(args.rounds, args.threads)
        if args.out:
            Path(args.out).write_text(json.dumps(data))
    evaluate(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
