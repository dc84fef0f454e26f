"""`milestones baselines list [SUITE]`, `milestones baselines check [--records RESULTS...]` and
`milestones baselines appendix RESULTS...`."""

from __future__ import annotations

import argparse
import sys


def cmd_list(args: argparse.Namespace) -> int:
    from milestones.harness import baselines, report

    items = baselines.load(args.dir, args.suites or None)
    if args.json:
        print(report.to_json([report.baseline_dict(b) for b in items]))
    else:
        report.print_baselines(items)
    return 0


def record_metric_index(paths) -> dict[tuple[str, str, str], set[str]]:
    from milestones.harness import store

    index: dict[tuple[str, str, str], set[str]] = {}
    for rec in store.load_records(*paths):
        index.setdefault((rec.case.suite, rec.case.config, rec.case.kind), set()).update(rec.metrics)
    return index


def cmd_check(args: argparse.Namespace) -> int:
    from milestones.harness import baselines
    from milestones.harness.registry import load_suites

    paths = args.files or baselines.baseline_paths(args.dir)
    metrics = record_metric_index(args.records) if args.records else None
    warnings: list[str] = []
    files, errors = baselines.check(paths, load_suites(), metrics, warnings)
    for w in warnings:
        print(f"milestones: warning: {w} (not measurable until it does)", file=sys.stderr)
    n_published = 0
    if not args.files:  # the folder's published throughput figures too (baselines/published/)
        from milestones.harness import published
        from milestones.harness.errors import BaselineError

        try:
            items = published.load(args.dir)
            errors += published.check_configs(items, load_suites())
            n_published = len(items)
        except BaselineError as e:
            errors.append(str(e))
    for e in errors:
        print(f"milestones: error: {e}", file=sys.stderr)
    n = sum(len(f.baselines) for f in files)
    scope = "metric names checked against records" if metrics is not None else \
        "metric existence not checked (give --records RESULTS to check it)"
    if errors:
        print(f"{len(errors)} problem(s) in {len(paths)} file(s); {scope}", file=sys.stderr)
        return 2
    print(f"ok: {n} baselines in {len(files)} file(s), {n_published} published throughput figure(s); {scope}")
    return 0


def cmd_appendix(args: argparse.Namespace) -> int:
    """A reproduction appendix (Markdown) for the paper-baseline figures of the records under RESULTS."""
    import json
    from pathlib import Path

    from milestones.harness import baselines, compare, report, store

    recs, manifests = [], {}
    for f in store.iter_record_files(args.results):
        rec = store.read_record(f)
        recs.append(rec)
        man = Path(f).parent / store.RUN_MANIFEST
        if man.is_file() and rec.record_id not in manifests:
            try:
                manifests[rec.record_id] = json.loads(man.read_text()).get("options")
            except (OSError, ValueError):
                manifests[rec.record_id] = None
    by_id = {r.record_id: r for r in recs}
    rows = compare.compare_with_paper(recs, baselines.load(args.dir, args.suites or None))
    rows = [r for r in rows if r.scale == "paper" or args.all_scales]
    claims = report.all_claims(recs)
    if args.suites:
        claims = [c for c in claims if c.suite in args.suites]
    text = report.markdown_appendix([(r, by_id[r.record_id], manifests.get(r.record_id)) for r in rows], claims)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


def register(sub) -> None:
    p = sub.add_parser("baselines", help="list or validate the paper baselines (baselines/*.toml)")
    bs = p.add_subparsers(dest="baselines_command", metavar="ACTION", parser_class=type(p))
    sp = bs.add_parser("list", help="list the cited paper figures")
    sp.add_argument("suites", nargs="*", metavar="SUITE", help="only these suites")
    sp.add_argument("--baselines-dir", "--dir", dest="dir", help="baselines folder (default: the project's baselines/)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_list)
    sp = bs.add_parser("check", help="validate schema, suites, configs, ids (and metrics against records)")
    sp.add_argument("files", nargs="*", help="baselines files (default: every baselines/*.toml)")
    sp.add_argument("--baselines-dir", "--dir", dest="dir", help="baselines folder (default: the project's baselines/)")
    sp.add_argument("--records", nargs="+", metavar="RESULTS", help="check metric names against these records")
    sp.set_defaults(func=cmd_check)

    sp = bs.add_parser("appendix", help="a reproduction appendix (Markdown): paper vs ours, verdicts, claims, "
                       "commands, environments")
    sp.add_argument("results", nargs="+", metavar="RESULTS", help="results folders or record files")
    sp.add_argument("--suite", dest="suites", action="append", metavar="SUITE", help="only this suite (repeatable)")
    sp.add_argument("--baselines-dir", "--dir", dest="dir", help="baselines folder (default: the project's baselines/)")
    sp.add_argument("--all-scales", action="store_true", help="also list proxy/smoke records against the paper's "
                    "figures (not comparable); the claims table lists every scale either way")
    sp.add_argument("-o", "--output", "--out", dest="out", help="write the Markdown to this file instead of stdout")
    sp.set_defaults(func=cmd_appendix)

    def no_action(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=no_action)
