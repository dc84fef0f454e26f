"""`milestones plot WHAT RESULTS... --out FIG.png|svg`: one figure.

WHAT: by (a metric by GPU / torch / CUDA ..., ratio to a reference with CIs), history (per-run medians
with detected steps), paper (ours / paper for each figure, with tolerances), curves (a quality record's
curves, mean over seeds per model), kernels (kernel breakdown; with --base, base and new side by side).
When the results hold more than one thing to draw, the choice is printed with how to pick another.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys

WHATS = ("by", "history", "paper", "curves", "kernels")


def _say(msg: str) -> None:
    print(f"milestones plot: {msg}", file=sys.stderr)


def _pick(records, config: str | None, what: str, pred):
    from milestones.harness.errors import UsageError

    cands = [r for r in records if r.status == "ok" and pred(r) and (config is None or r.case.config == config)]
    if not cands:
        raise UsageError(f"no record{' of config ' + repr(config) if config else ''} has what `plot {what}` needs")
    cands = sorted(cands, key=lambda r: r.started_at)
    chosen = cands[-1]
    others = sorted({r.case.config for r in cands} - {chosen.case.config})
    if others:
        _say(f"drawing {chosen.record_id} (the latest); also possible: {', '.join(others)} (pick with --config)")
    return chosen


def _check_metric(records, pattern: str) -> None:
    """A metric no record has is bad input, said as such (not 'nothing to plot')."""
    from milestones.harness.errors import UsageError

    names = sorted({n for r in records for n in r.metrics})
    if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
        from milestones.harness.registry import did_you_mean

        shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
        raise UsageError(f"no record has a metric matching {pattern!r}{did_you_mean(pattern, names)} "
                         f"(metrics here: {shown or 'none'})")


def cmd_plot(args: argparse.Namespace) -> int:
    from milestones.harness import baselines, compare, plots, report
    from milestones.harness import history as H
    from milestones.harness.errors import UsageError

    records = [x.record for x in compare.load(args.results, args.results_root)]
    if args.what == "by":
        metric = args.metric or "*.throughput"
        _check_metric(records, metric)
        rows, groups = compare.compare_by(records, args.by, args.reference, metrics=[metric])
        rows = [r for r in rows if args.config is None or r.config == args.config]
        names = sorted({r.metric for r in rows})
        if not names:
            have = sorted({compare.group_label(r, args.by) for r in records if r.status == "ok"})
            raise UsageError(f"no metric matching {metric!r} is measured in two or more {args.by} groups "
                             f"(groups here: {', '.join(have)})")
        if len(names) > 1:
            _say(f"drawing {names[0]}; also: {', '.join(names[1:])} (pick with --metric)")
        fig = plots.groups_bar(rows, groups, names[0], args.by)
    elif args.what == "history":
        metric = args.metric or "*.step_time"
        _check_metric(records, metric)
        hs = [h for h in H.histories(records, metrics=[metric]) if args.config is None or h.config == args.config]
        if not hs:
            per_case: dict[tuple, set] = {}
            for r in records:
                c = r.case
                per_case.setdefault((c.suite, c.config, c.kind, c.scale, c.device.split(":")[0], c.dtype,
                                     c.batch_size, r.suite_version), set()).add(r.run_id)
            most = max((len(v) for v in per_case.values()), default=0)
            raise UsageError(f"history needs one case with {metric!r} measured in 3 or more runs (same device, "
                             f"dtype, batch size and suite version); the most any case has here is {most}")
        h = next((h for h in hs if h.steps), hs[0])
        if len(hs) > 1:
            _say(f"drawing {h.suite}/{h.config} {h.metric}; {len(hs) - 1} other series (pick with --config, --metric)")
        fig = plots.history(h)
    elif args.what == "paper":
        if args.metric:
            _check_metric(records, args.metric)
        rows = compare.compare_with_paper(records, baselines.load(args.baselines_dir))
        rows = [r for r in rows if (args.config is None or r.config == args.config)
                and (args.metric is None or fnmatch.fnmatchcase(r.baseline.metric, args.metric))]
        figs = report.aggregate_paper(rows)
        if not any(f.ours is not None for f in figs):
            raise UsageError("no record measures a paper figure (see `milestones baselines list` for what the "
                             "baselines cover)")
        suites = sorted({f.baseline.suite for f in figs})
        fig = plots.quality_vs_paper(figs, title=None if len(suites) == 1 else
                                     f"{', '.join(suites)}: ours against the paper")
    elif args.what == "curves":
        rec = _pick(records, args.config, "curves", lambda r: bool(r.artifacts.get("curves")))
        fig = plots.curves(rec, args.metric)
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
    p = sub.add_parser("plot", help="write one figure (PNG or SVG) from results",
                       description=__doc__.split("\n\n", 1)[1],
                       epilog="examples:\n"
                              "  milestones plot curves results/ --config resnet-degradation --out degradation.png\n"
                              "  milestones plot paper results/ --out paper.png\n"
                              "  milestones plot by results/a100 results/h100 --by gpu --metric train.throughput "
                              "--out gpus.png\n"
                              "  milestones plot history results/nightly/ --metric train.step_time --out history.svg\n"
                              "  milestones plot kernels results/m/NEW --base results/m/OLD --config resnet50-smoke "
                              "--out kernels.png",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=WHATS, help="by | history | paper | curves | kernels")
    p.add_argument("results", nargs="+", metavar="RESULTS", help="result folders, record files or run ids")
    p.add_argument("-o", "--output", "--out", dest="out", required=True, help="the file to write: " + "FIG.png or FIG.svg")
    p.add_argument("--metric", help="metric name or glob (default: throughput for by, step time for history); "
                                    "for curves, the curve quantity (default: the evaluated one, else loss)")
    p.add_argument("--config", help="only this config")
    p.add_argument("--by", choices=("gpu", "torch", "cuda", "commit", "machine"), default="gpu")
    p.add_argument("--reference", help="reference group for `by`")
    p.add_argument("--base", metavar="RESULTS", help="kernels: the base run to draw beside")
    p.add_argument("--results", "--results-root", dest="results_root", default="results",
                   help="where run ids are looked up (default results); the same flag as compare's")
    p.add_argument("--baselines-dir", help="baselines folder (default: the project's baselines/)")
    p.set_defaults(func=cmd_plot)
