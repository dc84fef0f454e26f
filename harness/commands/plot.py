"""`milestones plot WHAT RESULTS... --out FIG.png|svg`: one figure.

WHAT: by (a metric by GPU / torch / CUDA ...), history (per-run medians with detected steps),
paper (ours against the paper, error bars), curves (loss curves of a quality record),
kernels (kernel breakdown; with --base, base and new side by side).
"""

from __future__ import annotations

import argparse
import fnmatch

WHATS = ("by", "history", "paper", "curves", "kernels")


def _pick(records, config: str | None, what: str, pred):
    from milestones.harness.errors import UsageError

    cands = [r for r in records if r.status == "ok" and pred(r) and (config is None or r.case.config == config)]
    if not cands:
        raise UsageError(f"no record{' of config ' + repr(config) if config else ''} has what `plot {what}` needs")
    return sorted(cands, key=lambda r: r.started_at)[-1]


def cmd_plot(args: argparse.Namespace) -> int:
    from milestones.harness import baselines, compare, plots
    from milestones.harness import history as H
    from milestones.harness.errors import UsageError

    records = [x.record for x in compare.load(args.results, args.results_root)]
    if args.what == "by":
        metric = args.metric or "*.throughput"
        rows, groups = compare.compare_by(records, args.by, args.reference, metrics=[metric])
        rows = [r for r in rows if args.config is None or r.config == args.config]
        names = sorted({r.metric for r in rows})
        if not names:
            raise UsageError(f"no metric matching {metric!r} measured in two or more {args.by} groups")
        fig = plots.groups_bar(rows, groups, names[0], args.by)
    elif args.what == "history":
        metric = args.metric or "*.step_time"
        hs = [h for h in H.histories(records, metrics=[metric]) if args.config is None or h.config == args.config]
        if not hs:
            raise UsageError(f"no case has {metric!r} in 3 or more runs{' for ' + args.config if args.config else ''}")
        fig = plots.history(hs[0])
    elif args.what == "paper":
        rows = compare.compare_with_paper(records, baselines.load(args.baselines_dir))
        rows = [r for r in rows if (args.config is None or r.config == args.config)
                and (args.metric is None or fnmatch.fnmatchcase(r.baseline.metric, args.metric))]
        fig = plots.quality_vs_paper(rows)
    elif args.what == "curves":
        fig = plots.curves(_pick(records, args.config, "curves", lambda r: bool(r.artifacts.get("curves"))))
    else:
        rec = _pick(records, args.config, "kernels", lambda r: bool(compare.kernel_tables(r)))
        label, table = next(iter(compare.kernel_tables(rec).items()))
        other = None
        if args.base:
            base = [x.record for x in compare.load([args.base], args.results_root)]
            match = [b for b in base if compare._case_key(b) == compare._case_key(rec) and compare.kernel_tables(b)]
            if not match:
                raise UsageError(f"no record of {rec.case.config} with kernel tables in {args.base}")
            other, table = table, compare.kernel_tables(match[-1]).get(label, [])
        fig = plots.kernels(table, f"{rec.case.config} {label}: top kernels" + (" (base vs new)" if other else ""),
                            other)
    out = plots.save(fig, args.out)
    print(f"wrote {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("plot", help="write one figure (PNG or SVG) from results")
    p.add_argument("what", choices=WHATS, help="by | history | paper | curves | kernels")
    p.add_argument("results", nargs="+", metavar="RESULTS", help="result folders, record files or run ids")
    p.add_argument("--out", required=True, help="FIG.png or FIG.svg")
    p.add_argument("--metric", help="metric name or glob (default: throughput for by, step time for history)")
    p.add_argument("--config", help="only this config")
    p.add_argument("--by", choices=("gpu", "torch", "cuda", "commit", "machine"), default="gpu")
    p.add_argument("--reference", help="reference group for `by`")
    p.add_argument("--base", metavar="RESULTS", help="kernels: the base run to draw beside")
    p.add_argument("--results-root", default="results", help="where run ids are looked up (default results)")
    p.add_argument("--baselines-dir", help="baselines folder (default: the project's baselines/)")
    p.set_defaults(func=cmd_plot)
