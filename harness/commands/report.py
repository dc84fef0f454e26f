"""`milestones report RESULTS... --out report.html|report.md`."""

from __future__ import annotations

import argparse


def cmd_report(args: argparse.Namespace) -> int:
    from milestones.harness import baselines, compare, html

    records = [x.record for x in compare.load(args.results, args.results_root, strict=args.strict)]
    base = [x.record for x in compare.load([args.base], args.results_root, strict=args.strict)] if args.base else None
    items = baselines.load(args.baselines_dir)
    sections = html.build(records, items, base=base, title=args.title, plots=not args.no_plots)
    out = html.write(sections, args.out, args.title)
    print(f"wrote {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML or Markdown report of results")
    p.add_argument("results", nargs="+", metavar="RESULTS", help="result folders, record files or run ids")
    p.add_argument("--out", required=True, help="report.html (self-contained) or report.md (+ <stem>_plots/)")
    p.add_argument("--base", metavar="RESULTS", help="compare against this run (default: the previous run on the "
                                                     "same machine, if the results hold one)")
    p.add_argument("--title", default="milestones report")
    p.add_argument("--results-root", default="results", help="where run ids are looked up (default results)")
    p.add_argument("--baselines-dir", help="baselines folder (default: the project's baselines/)")
    p.add_argument("--no-plots", action="store_true", help="tables only (faster)")
    p.add_argument("--strict", action="store_true",
                   help="refuse the whole input when one record is unreadable (default: name it, skip it)")
    p.set_defaults(func=cmd_report)
