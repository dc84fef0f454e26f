"""Whole-run A/A: how often a compare of two runs of the SAME code fails a nightly job (a benchmark).

Make N runs of the same code in one results folder (separate `milestones run` processes, as N nights
would), then:

    for i in $(seq 100); do milestones run --out /tmp/aa; done     # the default job, 100 times
    python benchmarks/run_aa.py /tmp/aa --random-pairs 300

It reports, over all the runs in time order:
- `compare BASE NEW` on consecutive pairs: the fraction of pairs with any metric `regressed`
  (what `--fail-on regression` would fail), and which metrics were called;
- `compare NEW --history` for every run with 5+ earlier runs: the fraction of nights with a confirmed
  regression (fails the job) and with a suspect (would start an A/B confirmation);
- the CPU nightly workflow (`--fail-on untimed`): nights failed, and the configs `--suspects` would send
  to `milestones ab`, per night and by name (the job fails only if `ab` then calls one regressed).
Goal for a gate: <= 1% of nights failed. With N runs the resolution is 1/(N-1): 1% needs 100+ runs.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    from milestones.harness import compare
    from milestones.harness.store import load_records

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--min-history", type=int, default=5)
    ap.add_argument("--random-pairs", type=int, default=0, metavar="N",
                    help="also compare N random pairs of runs that are not consecutive")
    ap.add_argument("--write-suspects", metavar="DIR",
                    help="write each night's --suspects list to DIR/night-<index>.txt (to re-run them with `ab`)")
    ap.add_argument("--ignore-canary", action="store_true",
                    help="judge without the machine-speed canary (as compare --ignore-canary)")
    args = ap.parse_args()
    canary = not args.ignore_canary
    runs = compare._runs_in_order(load_records(*args.results))
    if len(runs) < 2:
        print(f"need 2+ runs, found {len(runs)}", file=sys.stderr)
        return 2
    called: Counter[str] = Counter()
    failed = 0
    for a, b in zip(runs[:-1], runs[1:], strict=False):
        rows, _ = compare.compare_runs(a, b, canary=canary)
        bad = [r for r in rows if r.verdict == "regressed"]
        failed += bool(bad)
        called.update(f"{r.config} {r.metric} ({r.result.method})" for r in bad)
    n_metrics = len([r for r in compare.compare_runs(runs[0], runs[1])[0] if r.result.method != "-"])
    print(f"{len(runs)} runs, {n_metrics} metrics per compare")
    print(f"compare BASE NEW, consecutive pairs: {failed}/{len(runs) - 1} would fail the job")
    for k, v in called.most_common(10):
        print(f"  {v}x {k}")
    if args.random_pairs:
        import random

        rng = random.Random(0)
        far = [(i, j) for i in range(len(runs)) for j in range(i + 2, len(runs))]
        pick = rng.sample(far, min(args.random_pairs, len(far)))
        bad_far: Counter[str] = Counter()
        n_bad = 0
        for i, j in pick:
            rows, _ = compare.compare_runs(runs[i], runs[j], canary=canary)
            bad = [r for r in rows if r.verdict == "regressed"]
            n_bad += bool(bad)
            bad_far.update(f"{r.config} {r.metric} ({r.result.method})" for r in bad)
        print(f"compare BASE NEW, {len(pick)} random non-consecutive pairs: {n_bad}/{len(pick)} would fail the job")
        for k, v in bad_far.most_common(10):
            print(f"  {v}x {k}")
    nights = confirmed = suspect = untimed = 0
    hist_called: Counter[str] = Counter()
    failed_nights: list[int] = []
    untimed_nights: list[int] = []
    suspect_configs: Counter[str] = Counter()
    per_night: list[int] = []
    held_nights: list[int] = []
    for i in range(args.min_history, len(runs)):
        rows, _ = compare.compare_history([r for rs in runs[:i] for r in rs], runs[i], canary=canary)
        nights += 1
        bad = [r for r in rows if r.verdict == "regressed"]
        confirmed += bool(bad)
        if bad:
            failed_nights.append(i)
        hist_called.update(f"{r.config} {r.metric} ({'at once' if 'at once' in r.result.reason else r.result.method})"
                           for r in bad)
        suspect += any(r.result.suspect for r in rows)
        if any(r.result.canary_ratio is not None and r.verdict != "regressed" for r in rows):
            held_nights.append(i)
        if compare.job_fails("untimed", rows):
            untimed += 1
            untimed_nights.append(i)
        configs = compare.suspects(rows)
        if args.write_suspects and configs:
            Path(args.write_suspects).mkdir(parents=True, exist_ok=True)
            (Path(args.write_suspects) / f"night-{i:03d}.txt").write_text("".join(c + "\n" for c in configs))
        suspect_configs.update(configs)
        per_night.append(len(configs))
    if nights:
        print(f"compare NEW --history: {confirmed}/{nights} nights failed (confirmed), {suspect}/{nights} with a "
              "suspect (an A/B confirmation would run)")
        print(f"  failed nights (run index): {failed_nights}")
        print(f"  nights where the machine canary held a timing regression back: {held_nights}")
        for k, v in hist_called.most_common(10):
            print(f"  {v}x {k}")
        # The CPU nightly workflow: `--fail-on untimed`, and every config in --suspects re-run by `ab`.
        print(f"compare NEW --history --fail-on untimed: {untimed}/{nights} nights failed {untimed_nights}")
        print(f"  configs sent to ab (--suspects): {sum(per_night)} over {nights} nights, "
              f"at most {max(per_night)} a night, {len(suspect_configs)} distinct")
        for k, v in suspect_configs.most_common():
            print(f"  {v}x {k}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
