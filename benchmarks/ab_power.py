"""Detection power and false alarms of `milestones ab` with separate processes (a benchmark, not a test).

The workload is a real conv-net training step (benchmarks/ab_suite.py, 1 thread), and the same step
made 5% slower (one conv layer more in 20). The two sides are two "interpreters": small wrapper
scripts around this Python that set the side's environment, exactly as two virtualenvs would be
given to `milestones ab --base-python/--new-python`. Every round starts a fresh case process per side.

Trials:
- slow: base = 20 layers, new = 21 layers: how often `ab` says regressed (goal >= 95%);
- A/A: both sides 20 layers: how often `ab` calls anything changed (goal <= 1%);
each a whole sequential `ab` run (`harness.ab.execute`) with its budget, reporting the rounds and
seconds used. On the very same samples, asv's rule (factor 1.1 + Mann-Whitney p < 0.002) and
pytest-benchmark's `mean:5%` judge each round's pair of processes, as a CI job running the two
environments once each would.

`--busy N` starts N busy-looping processes per core for the whole collection (killed at the end;
`--busy` alone: 1 per core). `--base-rev R1 --new-rev R2 --config NAME` runs the trials on two git
revisions of this repository instead (a real suite, e.g. `cifar-resnet20-smoke`; `--new-rev` = the
base for A/A trials): as the nightly job runs `ab`.
`--replay N` estimates the rates over N trials by replaying the sequential rule on rounds resampled
(with replacement, in blocks of 4 rounds to keep drift) from the collected trials' per-round ratios
(A/A trials centred at 0 and mirrored first: their own location is noise, and would otherwise be
replayed as an effect). `--trim 0` replays the mean's interval instead of the trimmed mean's. The
replay runs both error rules on the same resampled series: O'Brien-Fleming-type error spending (what
`ab` uses) and Bonferroni over the looks (the older rule).

    MILESTONES_EXTRA_SUITES=benchmarks.ab_suite python benchmarks/ab_power.py --trials 20 --aa-trials 20 \\
        --max-rounds 96 --max-time 600 --out /tmp/ab_power.json [--busy]
    python benchmarks/ab_power.py --load /tmp/ab_power.json --replay 2000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MILESTONES_EXTRA_SUITES", "benchmarks.ab_suite")
CONFIG = "abbench-conv20"
# `ab` decides on METRIC (its default, CPU time); the wall-time ratios are kept for comparison.
METRIC, OTHER = "cpu_time", "step_time"


def _wrapper(folder: Path, name: str, extra_layer: bool) -> str:
    path = folder / name
    env = "AB_BENCH_EXTRA_LAYER=1 " if extra_layer else ""
    path.write_text(f"#!/bin/sh\n{env}exec {sys.executable} \"$@\"\n")
    path.chmod(0o755)
    return str(path)


def _busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def trial(kind: str, *, max_rounds: int, max_time: float, out: Path, work: Path,
          revs: tuple[str, str] | None = None, config: str = CONFIG, protocol: dict | None = None) -> dict:
    """One whole `ab` run; returns its verdict, rounds, time and the raw per-round samples. `revs`:
    (base, new) git revisions of this repository (an A/A trial runs the base on both sides)."""
    from milestones.harness import ab
    from milestones.harness.registry import load_suites
    from milestones.harness.runner import RunOptions, plan

    started = time.monotonic()  # the budget counts from here, as `milestones ab` counts from its start
    reg = load_suites()
    opts = RunOptions(kinds=("speed",), scale="smoke", device="cpu", out=out, threads=1, timeout=300)
    cases = plan(reg.resolve([config]), opts, "cpu")
    if revs is None:
        base = _wrapper(work, "py-base", False)
        new = _wrapper(work, "py-new", kind == "slow")
        sides = ab.make_sides(base_python=base, new_python=new, base_rev=None, new_rev=None, repo=ROOT, work=work)
    else:
        ab.claim_workdir(work)
        sides = ab.make_sides(base_python=None, new_python=None, base_rev=revs[0],
                              new_rev=revs[1] if kind == "slow" else revs[0], repo=ROOT, work=work)
    try:
        p0 = time.monotonic()
        sides = [ab.probe(s) for s in sides]
        settings = ab.Settings(max_rounds=max_rounds, max_time=max_time, **(protocol or {}))
        res = ab.execute(cases, opts, reg, sides, settings, work=work, started=started,
                         first_round_estimate=time.monotonic() - p0)
    finally:
        for s in sides:
            if s.rev:
                ab.remove_worktree(ROOT, work / f"rev-{s.name}")
    names = [t.metric for t in res.tracks]
    (t,) = [t for t in res.tracks if t.metric == (f"train.{METRIC}" if f"train.{METRIC}" in names else names[0])]
    from milestones.harness import store

    samples: dict[str, list[list[float]]] = {"base": [], "new": []}
    cpu: dict[str, list[list[float]]] = {"base": [], "new": []}
    layers: dict[str, list[int]] = {"base": [], "new": []}
    bursts = 0
    for p in res.paths:
        r = store.read_record(p)
        if r.status == "ok":
            side = r.info["ab"]["side"]
            bursts += len((r.info.get("bursts") or {}).get("sizes") or []) if side == "base" else 0
            samples[side].append(list(r.metrics["train.step_time"].samples) if "train.step_time" in r.metrics else [])
            if "train.cpu_time" in r.metrics and "train.step_time" in r.metrics:
                cpu[side].append(list(r.metrics["train.cpu_time"].samples))
            layers[side].append(r.info.get("layers"))
    return {"kind": kind, "metric": METRIC, "verdict": t.result.comparison.verdict if t.result else "none",
            "rounds": res.rounds, "bursts": bursts, "protocol": settings.protocol, "stop": res.stop, "elapsed_s": res.elapsed_s, "log_ratios": t.ratios,
            "other_metric": OTHER, "other_verdict": None, "samples": samples, "cpu_samples": cpu,
            "other_log_ratios": [math.log(statistics.median(b) / statistics.median(a))
                                 for a, b in zip(samples["base"], samples["new"], strict=False)],
            "layers": layers, "loadavg": list(os.getloadavg())}


def rule_asv(a, b) -> bool:
    from asv.commands.compare import _is_result_better
    from asv_runner.statistics import compute_stats

    ra, sa = compute_stats(a, 1)
    rb, sb = compute_stats(b, 1)
    return bool(_is_result_better(ra, rb, (sa, a), (sb, b), 1.1))


def rule_pytest_benchmark(a, b) -> bool:
    from pytest_benchmark.utils import PercentageRegressionCheck

    return bool(PercentageRegressionCheck("mean", 5.0).fails({"mean": statistics.fmean(b)}, {"mean": statistics.fmean(a)}))


def evaluate(trials: list[dict]) -> None:
    for kind in ("slow", "aa"):
        ts = [t for t in trials if t["kind"] == kind]
        if not ts:
            continue
        called = sum(t["verdict"] == "regressed" for t in ts) if kind == "slow" else \
            sum(t["verdict"] in ("regressed", "improved") for t in ts)
        rounds = [t["rounds"] for t in ts]
        secs = [t["elapsed_s"] for t in ts]
        ratio = statistics.median(math.exp(x) for t in ts for x in t["log_ratios"]) if any(t["log_ratios"] for t in ts) \
            else float("nan")
        sds = [statistics.stdev(t["log_ratios"]) for t in ts if len(t["log_ratios"]) > 2]
        if ts[0].get("other_metric"):
            o = [t for t in ts if t.get("other_log_ratios")]
            if o:
                sds_other = [round(statistics.stdev(t["other_log_ratios"]), 3) for t in o
                             if len(t["other_log_ratios"]) > 1]
                print(f"ab, {kind:4}, {ts[0]['other_metric']} of the same processes (not decided on): "
                      f"median per-round ratio {statistics.median(math.exp(x) for t in o for x in t['other_log_ratios']):.3f}, "
                      f"per-round log-ratio SD {sds_other}")
        what = "called regressed" if kind == "slow" else "called changed"
        print(f"ab ({ts[0].get('protocol', 'processes')}), {kind:4}: {called}/{len(ts)} {what}; verdicts "
              f"{[t['verdict'] for t in ts]}; rounds median {statistics.median(rounds)} (max {max(rounds)}), burst pairs "
              f"median {statistics.median(t.get('bursts', 0) for t in ts)}, seconds median {statistics.median(secs):.0f} "
              f"(max {max(secs):.0f}); median per-round ratio {ratio:.3f} (log-ratio SD {[round(x, 3) for x in sds]}); "
              f"load at end "
              f"{[round(t['loadavg'][0], 1) for t in ts]}")
        pairs = [(a, b) for t in ts for a, b in zip(t["samples"]["base"], t["samples"]["new"], strict=False)]
        if pairs:
            for name, rule in (("asv (1.1, MWU p<0.002)", rule_asv), ("pytest-benchmark mean:5%", rule_pytest_benchmark)):
                try:
                    hits = sum(rule(a, b) for a, b in pairs)
                except ImportError as e:
                    print(f"  {name}: not available ({e.name} not installed)")
                    continue
                print(f"  {name} on the same {len(pairs)} per-round process pairs: {hits / len(pairs):.0%} "
                      f"{'regressed' if kind == 'slow' else 'false alarms'}")


def replay(trials: list[dict], n: int, max_rounds: int, seed: int = 0, trim: float | None = None) -> None:
    for spending in (True, False):
        print(f"-- {'error spending (O Brien-Fleming type)' if spending else 'Bonferroni over the looks'}")
        _replay(trials, n, max_rounds, seed, trim, spending)


def _replay(trials: list[dict], n: int, max_rounds: int, seed: int, trim: float | None, spending: bool) -> None:
    """Resample rounds (blocks of 4) from the collected ratios and rerun the sequential rule."""
    import numpy as np

    from milestones.harness import stats

    rng = np.random.default_rng(seed)
    for kind in ("slow", "aa"):
        pool = [np.asarray(t["log_ratios"]) for t in trials if t["kind"] == kind and len(t["log_ratios"]) >= 4]
        if kind == "aa":
            # An A/A trial's own location is noise, not an effect. Under A/A with alternating order the
            # per-round ratio is symmetric about 0 (the sides are exchangeable), so replay each trial's
            # rounds centred and mirrored: a true A/A for any location estimate (mean or trimmed mean).
            pool = [np.concatenate([p - np.median(p), np.median(p) - p]) for p in pool]
        if not pool:
            continue
        called, cleared, used = 0, 0, []
        for _ in range(n):
            src = pool[rng.integers(len(pool))]
            seq: list[float] = []
            while len(seq) < max_rounds:
                i = int(rng.integers(0, len(src) - 3))
                seq.extend(src[i:i + 4].tolist())
            r = stats.sequential_verdict(seq[:max_rounds], planned=max_rounds, higher_is_better=False,
                                         spending=spending, trim=stats.PAIRED_TRIM if trim is None else trim)
            verdict, k = r.comparison.verdict, r.rounds
            called += verdict == "regressed" if kind == "slow" else verdict in ("regressed", "improved")
            cleared += verdict == "unchanged"
            used.append(k)
        print(f"replay {kind:4} ({n} trials from {len(pool)} collected): {called / n:.1%} "
              f"{'regressed' if kind == 'slow' else 'changed'}, {cleared / n:.1%} unchanged, "
              f"rounds median {statistics.median(used)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20, help="slow (5%%) trials")
    ap.add_argument("--aa-trials", type=int, default=20, help="A/A trials")
    ap.add_argument("--max-rounds", type=int, default=96)
    ap.add_argument("--max-time", type=float, default=600.0)
    ap.add_argument("--busy", type=float, nargs="?", const=1.0, default=0.0, metavar="N",
                    help="N busy processes per core during the collection (default 0; --busy alone: 1)")
    ap.add_argument("--base-rev", help="two-revision mode: the base git revision (with --new-rev, --config)")
    ap.add_argument("--new-rev", help="two-revision mode: the new revision (the slow trials' new side)")
    ap.add_argument("--config", default=CONFIG, help=f"the case to run (default {CONFIG}; with revisions: a "
                                                     "real suite's config, e.g. cifar-resnet20-smoke)")
    ap.add_argument("--protocol", choices=("bursts", "processes"), default="bursts",
                    help="ab's round protocol (default bursts, ab's default)")
    ap.add_argument("--bursts", type=int, help="burst pairs per round (default: ab's)")
    ap.add_argument("--burst-time", type=float, help="seconds per burst (default: ab's)")
    ap.add_argument("--out", help="save the trials (JSON)")
    ap.add_argument("--load", help="evaluate saved trials")
    ap.add_argument("--replay", type=int, default=0, metavar="N")
    ap.add_argument("--trim", type=float, default=None,
                    help="replay with this trimming (default: the rule's own, stats.PAIRED_TRIM; 0: the mean)")
    args = ap.parse_args()
    if args.load:
        trials = json.loads(Path(args.load).read_text())["trials"]
    else:
        if bool(args.base_rev) != bool(args.new_rev):
            ap.error("--base-rev and --new-rev go together")
        revs = (args.base_rev, args.new_rev) if args.base_rev else None
        procs = _busy(round(args.busy * (os.cpu_count() or 1)))
        trials = []
        try:
            with tempfile.TemporaryDirectory(prefix="ab-power-") as tmp:
                # Alternate the kinds so both see the same stretches of load.
                order = [k for i in range(max(args.trials, args.aa_trials))
                         for k, n in (("slow", args.trials), ("aa", args.aa_trials)) if i < n]
                for i, kind in enumerate(order):
                    work = Path(tmp) / f"t{i}"
                    work.mkdir()
                    t0 = time.time()
                    protocol = {"protocol": args.protocol, **{k: v for k, v in (("bursts", args.bursts),
                                                                                 ("burst_time", args.burst_time)) if v}}
                    trials.append(trial(kind, max_rounds=args.max_rounds, max_time=args.max_time,
                                        out=Path(tmp) / "results", work=work, revs=revs, config=args.config,
                                        protocol=protocol))
                    print(f"trial {i + 1}/{len(order)} {kind}: {trials[-1]['verdict']} after {trials[-1]['rounds']} "
                          f"rounds ({trials[-1]['bursts']} burst pairs), {time.time() - t0:.0f} s, load "
                          f"{os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
                    if args.out:  # kept as it goes: a long collection that is stopped keeps its trials
                        Path(args.out).write_text(json.dumps({"trials": trials, "busy": args.busy, "revs": revs,
                                                              "config": args.config}))
        finally:
            for p in procs:
                p.kill()
                p.wait()
        if args.out:
            Path(args.out).write_text(json.dumps({"trials": trials, "busy": args.busy, "revs": revs,
                                                  "config": args.config}))
    evaluate(trials)
    if args.replay:
        replay(trials, args.replay, args.max_rounds, trim=args.trim)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
