"""`milestones compare BASE NEW` (run vs run), `--by gpu|torch|...` (groups), `--paper` (against baselines)."""

from __future__ import annotations

import argparse
from pathlib import Path

from milestones.harness.commands import add_reading_options, command

# Exit codes: 0 pass, 1 regression (--fail-on), 2 bad input, 3 the tool failed (cli.main).
EXIT_REGRESSION = 1


def _thresholds(args: argparse.Namespace):
    from milestones.harness.compare import Thresholds, parse_percent
    from milestones.harness.errors import UsageError

    per = []
    for item in args.threshold_for or []:
        if "=" not in item:
            raise UsageError(f"--threshold-for expects METRIC=PCT (e.g. train.step_time=3%), got {item!r}")
        k, v = item.split("=", 1)
        per.append((k.strip(), parse_percent(v)))
    return Thresholds(parse_percent(args.threshold), tuple(per))


def _published_anchors(records) -> list:
    """Vendors' published throughput beside the GPU records (baselines/published/), for `--by gpu`."""
    from milestones.harness import published

    return published.anchor_rows(records, published.load())


def _anchors_markdown(anchors) -> str:
    from milestones.harness import published

    if not anchors:
        return ""
    return "\n\n## Published throughput (not paper results)\n\n" + published.markdown(anchors) + "\n"


def cmd_compare(args: argparse.Namespace) -> int:
    from milestones.harness import compare, report
    from milestones.harness.errors import UsageError

    metrics = args.metric or None
    if args.by:
        loaded = compare.load(args.inputs, args.results_root, strict=args.strict)
        rows, groups = compare.compare_by([x.record for x in loaded], args.by, args.reference,
                                          **({"metrics": metrics} if metrics else {}))
        anchors = _published_anchors([x.record for x in loaded]) if args.by == "gpu" else []
        if args.format == "json":
            print(report.to_json({"by": args.by, "groups": groups, "rows": [r.to_dict() for r in rows],
                                  "published": [{"id": a.published.id, "published": a.published.value,
                                                 "unit": a.published.unit, "config": a.record.case.config,
                                                 "mode": a.record.case.mode, "gpu": a.record.env.get("gpu"),
                                                 "ours": a.ours, "ratio": a.ratio, "setup": a.setup}
                                                for a in anchors]}))
        elif args.format == "markdown":
            print(report.markdown_groups(rows, groups, args.by) + _anchors_markdown(anchors))
        else:
            report.print_groups(rows, groups, args.by)
            if anchors:
                print(_anchors_markdown(anchors))
        if args.summary:
            Path(args.summary).write_text(report.markdown_groups(rows, groups, args.by) + _anchors_markdown(anchors),
                                          encoding="utf-8")
        return 0
    if getattr(args, "history", None):
        return _compare_history(args)
    if len(args.inputs) == 1:
        return _compare_ab(args)
    if len(args.inputs) != 2:
        raise UsageError(f"compare needs exactly two inputs, BASE and NEW (got {len(args.inputs)}); "
                         "use --by to compare many result folders by group")
    base = [x.record for x in compare.load([args.inputs[0]], args.results_root, strict=args.strict)]
    new = [x.record for x in compare.load([args.inputs[1]], args.results_root, strict=args.strict)]
    rows, env_notes = compare.compare_runs(base, new, _thresholds(args), metrics=metrics, canary=not args.ignore_canary)
    counts = compare.verdict_counts(rows)
    # JSON keeps every row; the table and Markdown lead with what needs action (--all: every row).
    if args.format == "json":
        print(report.compare_json(rows, env_notes, counts))
    elif args.format == "markdown":
        print(report.markdown_compare(rows, env_notes, counts, f"{args.inputs[0]} → {args.inputs[1]}", full=args.all))
    else:
        report.print_compare(rows, env_notes, counts, title=f"{args.inputs[0]} -> {args.inputs[1]}", full=args.all)
    diffs = compare.kernel_diffs(base, new, top=args.kernels) if args.kernels else []
    if diffs and args.format != "json":
        if args.format == "markdown":
            print(report.markdown_kernel_diffs(diffs))
        else:
            report.print_kernel_diffs(diffs)
    if args.summary:
        text = report.markdown_summary(rows, env_notes, counts, args.inputs[0], args.inputs[1],
                                       fails=compare.job_fails(args.fail_on, rows))
        if diffs:
            text += "\n" + report.markdown_kernel_diffs(diffs)
        Path(args.summary).write_text(text, encoding="utf-8")
    if compare.job_fails(args.fail_on, rows):
        return EXIT_REGRESSION
    return 0


def _compare_history(args: argparse.Namespace) -> int:
    """NEW against a history of earlier runs (`--history DIR...`)."""
    from milestones.harness import compare, report
    from milestones.harness.errors import UsageError

    if len(args.inputs) != 1:
        raise UsageError(f"with --history give one input, the NEW run (got {len(args.inputs)})")
    hist = [x.record for x in compare.load(args.history, args.results_root, strict=args.strict)]
    new = [x.record for x in compare.load(args.inputs, args.results_root, strict=args.strict)]
    new_ids = {r.run_id for r in new}
    hist = [r for r in hist if r.run_id not in new_ids]  # the new run may sit inside the history folder
    if not hist:
        raise UsageError("the history holds no run other than the new one")
    rows, env_notes = compare.compare_history(hist, new, _thresholds(args), metrics=args.metric or None,
                                               canary=not args.ignore_canary)
    counts = compare.verdict_counts(rows)
    n_runs = len({r.run_id for r in hist})
    title = f"history ({n_runs} run{'' if n_runs == 1 else 's'}) -> {args.inputs[0]}"
    if args.format == "json":
        print(report.compare_json(rows, env_notes, counts))
    elif args.format == "markdown":
        print(report.markdown_compare(rows, env_notes, counts, title, full=args.all))
    else:
        report.print_compare(rows, env_notes, counts, title=title, full=args.all)
    if args.summary:
        Path(args.summary).write_text(report.markdown_summary(rows, env_notes, counts, "history", args.inputs[0],
                                                              fails=compare.job_fails(args.fail_on, rows)),
                                      encoding="utf-8")
    if args.suspects:
        Path(args.suspects).write_text("".join(c + "\n" for c in compare.suspects(rows)), encoding="utf-8")
    if compare.job_fails(args.fail_on, rows):
        return EXIT_REGRESSION
    return 0


def _compare_ab(args: argparse.Namespace) -> int:
    """One input: the records of a `milestones ab` run, base and new paired by round."""
    from milestones.harness import ab, compare, report
    from milestones.harness.errors import UsageError

    records = [x.record for x in compare.load(args.inputs, args.results_root, strict=args.strict)]
    if not any(compare.is_ab(r) for r in records):
        raise UsageError("compare needs exactly two inputs, BASE and NEW (or the folder of one `milestones ab` run)")
    rows, tracks = ab.compare_rows(records)
    summary = ab.summary_rows(tracks)
    rounds = max((t.result.rounds for t in tracks if t.result), default=0)
    if args.format == "json":
        print(report.to_json({"ab": True, "rows": summary}))
    elif args.format == "markdown":
        print(report.markdown_ab(summary, "read back", rounds))
    else:
        print(report.text_ab(summary, "read back", rounds))
    if args.summary:
        Path(args.summary).write_text(report.markdown_ab(summary, "read back", rounds), encoding="utf-8")
    if compare.job_fails(args.fail_on, rows):
        return EXIT_REGRESSION
    return 0


def register(sub) -> None:
    p = command(sub, "compare", "compare two runs (BASE NEW), or many results by GPU / torch / ...",
                "Run vs run: ratio of medians with a block-bootstrap CI and a Mann-Whitney\n"
                "test on block medians per metric (Welch over seeds for quality). The table\n"
                "and Markdown list what needs action first (regressions, improvements,\n"
                "inconclusive with why, not comparable) and count the rest; JSON has every row.",
                ("milestones compare results/m/RUN_A results/m/RUN_B",
                 "milestones compare RUN_A RUN_B --fail-on regression --summary \"$GITHUB_STEP_SUMMARY\"",
                 "milestones compare RUN_A RUN_B --format json > diff.json",
                 "milestones compare --by gpu results/a100/ results/h100/ --reference \"NVIDIA A100-SXM4-80GB\""))
    p.add_argument("inputs", nargs="+", metavar="RESULTS", help="BASE NEW (folders, record files or run ids); "
                                                                "with --by: any number of result folders")
    add_reading_options(p)
    p.add_argument("--threshold", default="5%", help="smallest change that matters (default 5%%)")
    p.add_argument("--threshold-for", action="append", metavar="METRIC=PCT",
                   help="per-metric threshold, METRIC may be a glob (e.g. '*.peak_rss=10%%'); repeatable")
    p.add_argument("--metric", action="append", metavar="GLOB", help="only these metrics (repeatable)")
    p.add_argument("--by", choices=("gpu", "torch", "cuda", "commit", "machine"),
                   help="one table of ratios per group against --reference")
    p.add_argument("--reference", help="the reference group for --by (default: the group with the most records)")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument("--summary", metavar="FILE", help="also write a Markdown summary (for a CI job page)")
    p.add_argument("--fail-on", choices=("regression", "untimed", "never"), default="never",
                   help="exit 1 when a significant regression is found (default never); 'untimed': only when a "
                        "metric that is not a timing or energy regressed (memory, counts, quality), leaving timings to "
                        "`milestones ab` through --suspects (for shared CPU runners). Exit codes: 0 pass, 1 regression, "
                        "2 bad input, 3 the tool failed")
    p.add_argument("--kernels", type=int, default=10, metavar="N",
                   help="top N kernel changes per case with kernel tables (0: none; default 10)")
    p.add_argument("--all", action="store_true", help="table/markdown: every row in one table, unchanged and "
                                                      "derived FLOP/s rows included")
    p.add_argument("--ignore-canary", action="store_true",
                   help="judge timings without the machine-speed canary (by default a case measured while the "
                        "canary ran slow has its timing regressions held back as suspects)")
    p.add_argument("--history", action="append", metavar="RESULTS",
                   help="judge the one input (NEW) against the earlier runs in this folder (repeatable): level and run-to-run noise from "
                        "the history, regressions confirmed when they persist over two runs")
    p.add_argument("--suspects", metavar="FILE",
                   help="with --history: write the configs with a suspect, regressed or held-back large timing "
                        "change, one per line (to confirm with milestones ab)")
    p.set_defaults(func=cmd_compare)
