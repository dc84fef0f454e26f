"""`milestones report RESULTS... --out report.html|report.md`."""

from __future__ import annotations

import argparse

from milestones.harness.commands import add_reading_options, command


def cmd_report(args: argparse.Namespace) -> int:
    from milestones.harness import baselines, compare, html

    html.check_output(args.out)
    records = [x.record for x in compare.load(args.results, args.results_root, strict=args.strict)]
    base = [x.record for x in compare.load([args.base], args.results_root, strict=args.strict)] if args.base else None
    items = baselines.load(args.baselines_dir)
    title = args.title
    if any(html.is_synthetic(r) for r in records) and "synthetic" not in title.lower():
        title += " (synthetic records)"
    sections = html.build(records, items, base=base, title=title, plots=not args.no_plots,
                          claims_only=args.claims_only)
    out = html.write(sections, args.out, title)
    print(f"wrote {out}")
    return 0


def register(sub) -> None:
    p = command(sub, "report", "write a self-contained HTML or Markdown report of results",
                "A reproduction report: the paper claims our quality runs checked (held k/n\n"
                "seeds), the paper figures against ours (results, architecture and\n"
                "configuration apart), regressions against the previous run, GPU and version\n"
                "comparisons, history, and the environment of each run.",
                ("milestones report results/ --out report.html",
                 "milestones report results/mybox/RUN_ID --base results/mybox/OLD_RUN --out report.md",
                 "milestones report results/ --claims-only --out claims.html"))
    p.add_argument("results", nargs="+", metavar="RESULTS", help="result folders, record files or run ids")
    p.add_argument("-o", "--output", "--out", dest="out", required=True, help="the file to write: " + "report.html (self-contained) or report.md (+ <stem>_plots/)")
    p.add_argument("--base", metavar="RESULTS", help="compare against this run (default: the previous run on the "
                                                     "same machine, if the results hold one)")
    p.add_argument("--title", default="milestones report")
    add_reading_options(p)
    p.add_argument("--baselines-dir", help="baselines folder (default: the project's baselines/)")
    p.add_argument("--no-plots", action="store_true", help="tables only (faster)")
    p.add_argument("--claims-only", action="store_true",
                   help="only the claims table and its figures; exit 2 when no record states a claim")
    p.set_defaults(func=cmd_report)
