"""The reproduction / regression report as a document: self-contained HTML or Markdown.

`build(records, ...)` collects the sections (summary, against the paper, regressions, by GPU /
torch / CUDA, kernel diffs, history with steps, environments, per-suite plots) as neutral blocks;
`to_html` and `to_markdown` render them. In HTML every string goes through `html.escape` and plots are
embedded as base64 PNG, so the file opens offline and no record content can inject markup.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milestones.harness import compare, report
from milestones.harness.errors import MilestonesError, UsageError
from milestones.harness.records import RunRecord, env_part
from milestones.harness.registry import natural_key

MAX_CLAIM_PLOTS = 12
MAX_HISTORY_PLOTS = 8


@dataclass
class Block:
    kind: str                       # p | h3 | table | img | pre
    text: str = ""                  # for img: the alt text
    columns: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = ()
    image: bytes = b""
    name: str = ""                  # file name stem for Markdown's image files
    classes: Sequence[str] = ()     # per-row CSS class (verdict colouring)
    caption: str = ""               # for img: what the figure shows (metric, cases)


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


def _img(fig, name: str, alt: str, caption: str = "") -> Block:
    from milestones.harness import plots

    return Block("img", text=alt, image=plots.to_bytes(fig, "png"), name=name, caption=caption or alt)


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s).strip("-")[:60] or "plot"


def _runs(records: Sequence[RunRecord]) -> list[tuple[str, list[RunRecord]]]:
    by: dict[str, list[RunRecord]] = {}
    for r in records:
        by.setdefault(r.run_id, []).append(r)
    return sorted(by.items(), key=lambda kv: min(r.started_at for r in kv[1]))


def _previous_pair(records: Sequence[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]] | None:
    """The latest run and the most recent earlier run on the same machine sharing a case with it."""
    runs = _runs(records)
    if len(runs) < 2:
        return None
    _, last = runs[-1]
    mid = last[0].env.get("machine_id")
    keys = {compare._case_key(r) for r in last}
    for _rid, recs in reversed(runs[:-1]):
        if recs[0].env.get("machine_id") == mid and keys & {compare._case_key(r) for r in recs}:
            return recs, last
    return None


def _no_pair_reason(records: Sequence[RunRecord]) -> str:
    runs = _runs(records)
    if len(runs) < 2:
        return "One run in these results: nothing to compare it with (give a second run, or --base)."
    rid, last = runs[-1]
    mid = last[0].env.get("machine_id")
    same = [r for r, recs in runs[:-1] if recs[0].env.get("machine_id") == mid]
    if not same:
        return (f"The latest run ({rid}) is the only run on machine {mid}: timings from other machines are not "
                "compared run against run (see GPU and library versions; or give --base).")
    return (f"No earlier run on machine {mid} shares a case with the latest run ({rid}): nothing to compare "
            "(give --base).")


def _run_label(recs: Sequence[RunRecord]) -> str:
    ids = sorted({r.run_id for r in recs})
    return ids[0] if len(ids) == 1 else f"{len(ids)} runs ({ids[0]} ... {ids[-1]})"


def is_synthetic(r: RunRecord) -> bool:
    return isinstance(r.info, dict) and r.info.get("synthetic") is True


def _threads(recs: Sequence[RunRecord]) -> str:
    # The threads a case ran with (--threads, set in the worker) over the parent's default.
    ts = sorted({str(r.info["threads"]) for r in recs if isinstance(r.info, dict) and r.info.get("threads")})
    return "/".join(ts) if ts else str(recs[0].env.get("threads"))


def claims_section(records: Sequence[RunRecord], plots: bool, baselines: Sequence[Any] = ()
                   ) -> tuple[Section, list[report.Claim]]:
    import dataclasses

    # A record that states no source still names its suite: cite the suite's paper from the baselines.
    papers = {b.suite: b.paper.citation for b in baselines}
    claims = [c if c.source or c.suite not in papers else dataclasses.replace(c, source=papers[c.suite])
              for c in report.all_claims(records)]
    sec = Section("Claims: what the paper says, and whether our runs show it")
    if not claims:
        sec.blocks.append(Block("p", text="No quality record in these results states a paper claim. Claims come "
                                          "from quality runs, e.g. `milestones run resnet-degradation --kind "
                                          "quality --scale proxy`; speed and fidelity runs check numbers, not "
                                          "claims."))
        return sec, claims
    sec.blocks.append(Block("p", text="Each row quotes the paper's sentence, the rule our run applies to decide it "
                                      "at the given scale, the rule's strength and on how many seeds it held. "
                                      "\"As stated\": the rule tests what the sentence says (on the scale's data); "
                                      "\"weaker analogue\": it tests less, and says what (blue rows, never the "
                                      "green of a claim held as stated). A proxy-scale claim checks the paper's "
                                      "qualitative finding on a smaller problem, not its numbers."))
    sec.blocks.append(Block("table", columns=report.CLAIM_COLUMNS, rows=[report.claim_cells(c) for c in claims],
                            classes=[_cls(c.status) for c in claims]))
    if plots:
        from milestones.harness import plots as P

        seen: set[str] = set()
        for r in records:
            if r.record_id in seen or len(seen) >= MAX_CLAIM_PLOTS or not report.claims_of(r) \
                    or r.status != "ok" or r.case.kind != "quality" or not r.artifacts.get("curves"):
                continue
            seen.add(r.record_id)
            try:
                fig = P.curves(r)
            except MilestonesError as e:
                sec.blocks.append(Block("p", text=f"curves of {r.record_id} not plotted: {e}"))
                continue
            heads = "; ".join(report.claim_headline(c) for c in report.claims_of(r))
            metric = fig.axes[0].get_ylabel()
            sec.blocks.append(_img(fig, f"claim-{_slug(r.case.config)}", f"{r.case.suite}/{r.case.config}: {metric} "
                                   "per model, mean over seeds", f"{heads}. {metric} of each model, mean over "
                                   f"seeds with the range of seeds shaded ({r.case.scale} scale, {r.run_id})."))
    return sec, claims


def paper_section(records: Sequence[RunRecord], baselines: Sequence[Any], plots: bool
                  ) -> tuple[Section, list[report.PaperFigure]]:
    figs = report.aggregate_paper(compare.compare_with_paper(records, baselines))
    sec = Section("Against the paper")
    if not figs:
        sec.blocks.append(Block("p", text="No record matches a paper figure (see `milestones baselines list`)."))
        return sec, figs
    sec.blocks.append(Block("p", text="One row per paper figure: ours is the mean ± std over every seed and run "
                                      "that measured it (n). A figure from a different scale or protocol is never "
                                      "compared: it is marked not comparable with the reason. Only results are "
                                      "reproductions; architecture and configuration rows check that we build and "
                                      "train what the paper describes."))
    for cat in ("result", "architecture", "configuration"):
        fs = [f for f in figs if f.category == cat]
        if fs:
            sec.blocks.append(Block("h3", text=f"{report.CATEGORY_TITLES[cat]} ({len(fs)})"))
            sec.blocks.append(Block("table", columns=report.PAPER_COLUMNS, rows=[report.paper_cells(f) for f in fs],
                                    classes=[_cls(f.verdict) for f in fs]))
    papers = {f.baseline.suite: f.baseline.paper.citation for f in figs}
    sec.blocks.append(Block("p", text="Papers: " + "; ".join(f"{k}: {v}" for k, v in sorted(papers.items())) + "."))
    if plots:
        from milestones.harness import plots as P

        for suite in sorted({f.baseline.suite for f in figs}):
            fs = [f for f in figs if f.baseline.suite == suite and f.ours is not None and f.baseline.value]
            # An exact architecture or configuration match is a dot on the line: the table says it.
            exact = [f for f in fs if f.category != "result" and f.exact]
            fs = [f for f in fs if f not in exact]
            if fs:
                left = (f"; {len(exact)} exact architecture/configuration "
                        f"{'match is' if len(exact) == 1 else 'matches are'} in the table only") if exact else ""
                sec.blocks.append(_img(P.quality_vs_paper(fs), f"{suite}-paper", f"{suite}: ours against the paper",
                                       f"{suite}: each paper figure ({', '.join(sorted({f.baseline.metric for f in fs}))}) "
                                       "as ours / paper, with the paper's tolerance; the numbers are written "
                                       f"beside each row{left}."))
    return sec, figs


def _digest_blocks(rows, env_notes) -> list[Block]:
    d = report.digest(rows)
    out = [Block("p", text=d.counts_line() + ".")]
    if (slow := report.slow_machine_line(rows)) is not None:
        out.append(Block("p", text=slow))
    for verdict, rs in d.sections:
        if rs:
            out.append(Block("h3", text=report.section_title(verdict, len(rs))))
            out.append(Block("table", columns=report.ACTION_COLUMNS, rows=[report.action_cells(r) for r in rs],
                             classes=[_cls(r.verdict) for r in rs]))
    lines = report.design_lines(d)
    if lines:
        out.append(Block("p", text=lines[0] + " " + "; ".join(x.strip() for x in lines[1:]) + "."))
    out.append(Block("p", text=f"Unchanged: {d.unchanged} rows within the threshold (`milestones compare BASE NEW "
                               "--all` lists every row)."))
    return out


def build(records: Sequence[RunRecord], baselines: Sequence[Any], *, base: Sequence[RunRecord] | None = None,
          title: str = "milestones report", plots: bool = True, claims_only: bool = False) -> list[Section]:
    if not records:
        raise UsageError("no records to report on")
    secs: list[Section] = []
    runs = _runs(records)
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    claims_sec, claims = claims_section(records, plots, baselines)
    if claims_only and not claims:
        raise UsageError("no record in these results states a paper claim: claims come from quality runs "
                         "(e.g. milestones run resnet-degradation --kind quality --scale proxy)")
    summary = Section("Summary")
    secs.append(summary)
    synth = [r for r in records if is_synthetic(r)]
    if synth:
        summary.blocks.append(Block("p", text=f"SYNTHETIC: {len(synth)} of {len(records)} records are marked synthetic "
                                              "(made up for tests, info.synthetic); no figure from them is a "
                                              "measurement."))
    summary.blocks.append(Block("p", text=f"{len(records)} record{'' if len(records) == 1 else 's'} from "
                                          f"{len(runs)} run(s) on "
                                          f"{len({r.env.get('machine_id') for r in records})} machine(s); statuses: "
                                          + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + "."))
    if claims:
        summary.blocks.append(Block("p", text=f"Paper claims: {report.claim_counts_line(claims)}. A weaker "
                                    "analogue tests less than the paper's sentence (its strength column says what)."))
    secs.append(claims_sec)
    if claims_only:
        return secs
    failed = [r for r in records if r.status not in ("ok", "skipped")]
    if failed:
        summary.blocks.append(Block("table", columns=["case", "run", "status", "error"],
                                    rows=[(f"{r.case.suite}/{r.case.config} {r.case.kind}", r.run_id, r.status,
                                           (r.error or "")[:300]) for r in failed]))

    sec, figs = paper_section(records, baselines, plots)
    if figs:
        summary.blocks.append(Block("p", text="Against the paper: " + report.paper_counts_line(figs) + "."))
    secs.append(sec)

    sections, diffs = _regression_sections(records, base, summary, plots)
    secs += sections
    secs += _ab_sections(records)
    secs += _kernel_diff_sections(diffs)
    secs += _modes_sections(records, plots)
    secs += _group_sections(records, plots)
    secs += _history_sections(records, plots)
    secs += _kernel_breakdown_sections(records, plots)
    secs += _record_sections(records)
    secs += _environment_sections(runs)
    return secs


def _regression_sections(records: Sequence[RunRecord], base: Sequence[RunRecord] | None,
                         summary: Section, plots: bool = True) -> tuple[list[Section], list]:
    """Run vs run (with the summary's line) and the kernel diffs it found."""
    out: list[Section] = []
    # Regressions: an explicit base, else the latest run against the previous one on the same machine.
    # Records of an A/B run are paired by round: their own section below, never a run-vs-run pair.
    plain = [r for r in records if not compare.is_ab(r)]
    pair = (list(base), plain) if base and plain else (_previous_pair(plain) if plain else None)
    sec = Section("Regressions")
    diffs: list = []
    if pair:
        a, b = pair
        rows, env_notes = compare.compare_runs(a, b)
        d = report.digest(rows)
        la, lb = _run_label(a), _run_label(b)
        summary.blocks.append(Block("p", text=f"Run vs run ({la} → {lb}): {d.counts_line()}."))
        sec.blocks.append(Block("p", text=f"Base {la} → new {lb}. " + report.env_header(env_notes)))
        from milestones.harness import plots as P

        if plots and any(r.metric.endswith(P.RUN_RATIO_METRICS) and r.result.ratio for r in rows):
            sec.blocks.append(_img(P.run_ratios(rows), "run-vs-run", "run vs run timing ratios",
                                   f"Each case's step and CPU time per step, {lb} over {la}: the ratio of medians "
                                   "with its interval, coloured by verdict; the biggest changes first."))
        sec.blocks.extend(_digest_blocks(rows, env_notes))
        diffs = compare.kernel_diffs(a, b)
    else:
        sec.blocks.append(Block("p", text=_no_pair_reason(records)))
    out.append(sec)
    return out, diffs


def _ab_sections(records: Sequence[RunRecord]) -> list[Section]:
    """One section per interleaved A/B run: per-round ratios and verdicts."""
    out: list[Section] = []
    ab_recs = [r for r in records if compare.is_ab(r)]
    if ab_recs:
        from milestones.harness import ab

        for run_id in dict.fromkeys(r.run_id for r in ab_recs):
            _, tracks = ab.compare_rows([r for r in ab_recs if r.run_id == run_id])
            rows_ab = ab.summary_rows(tracks)
            sec = Section(f"Interleaved A/B {run_id}")
            sec.blocks.append(Block("p", text="Each round: one fresh process per side, order alternating; the "
                                              "ratio is new/base of the two processes' medians."))
            sec.blocks.append(Block("table", columns=report.AB_COLUMNS_RATIOS, rows=[report._ab_cells(r, 64) for r in rows_ab],
                                    classes=[_cls(r["verdict"]) for r in rows_ab]))
            out.append(sec)
    return out


def _kernel_diff_sections(diffs: list) -> list[Section]:
    """Kernel changes per case between the compared runs."""
    out: list[Section] = []
    if diffs:
        sec = Section("Kernel diffs")
        for case, ds in diffs:
            sec.blocks.append(Block("h3", text=case))
            sec.blocks.append(Block("table", columns=report.KERNEL_COLUMNS, rows=[report.kernel_cells(d) for d in ds]))
        out.append(sec)
    return out


def _modes_sections(records: Sequence[RunRecord], plots: bool) -> list[Section]:
    """Execution modes side by side, and the published throughput anchors beside GPU records."""
    from milestones.harness import modes_report, published

    rows = modes_report.mode_rows(records)
    try:
        anchors = published.anchor_rows(records, published.load())
    except MilestonesError as e:  # a broken published file must not cost the rest of the report
        anchors, broken = [], str(e)
    else:
        broken = ""
    if not rows and not anchors and not broken:
        return []
    sec = Section("Execution modes")
    if rows:
        sec.blocks.append(Block("p", text="Each speed case in each execution mode (precision, memory format, "
                                          "torch.compile; docs/modes.md). Speedup is the headline step's median "
                                          "throughput over the same case in eager fp32; compile time is measured "
                                          "apart and never in the step times."))
        sec.blocks.append(Block("table", columns=modes_report.COLUMNS, rows=modes_report.cells(rows)))
        if plots:
            from milestones.harness import plots as P

            sec.blocks.append(_img(P.modes_panels(rows), "execution-modes", "execution modes per case",
                                   "Per case and mode: speedup over eager fp32, MFU, peak memory (CUDA allocated; on a CPU the "
                                   "process's peak RSS), compile time."))
    if anchors:
        sec.blocks.append(Block("h3", text="Published throughput (not paper results)"))
        sec.blocks.append(Block("p", text="Vendors' and the field's published figures beside ours: ours/published "
                                          "is shown either way; 'not comparable' names every difference of setup."))
        sec.blocks.append(Block("table", columns=published.ROW_HEADER, rows=published.format_rows(anchors)))
    if broken:
        sec.blocks.append(Block("p", text=f"Published baselines not read: {broken}"))
    return [sec]


def _group_sections(records: Sequence[RunRecord], plots: bool) -> list[Section]:
    """By GPU / torch / CUDA where the records hold more than one."""
    out: list[Section] = []
    # By GPU / torch / CUDA where the records hold more than one.
    sec = Section("GPU and library versions")
    for by in ("gpu", "torch", "cuda"):
        ok = [r for r in records if r.status == "ok" and r.case.kind == "speed"]
        groups = sorted({compare.group_label(r, by) for r in ok})
        if len(groups) < 2:
            continue
        grows, groups = compare.compare_by(ok, by)
        if not grows:
            continue
        sec.blocks.append(Block("p", text=f"By {by}, reference {grows[0].reference}. {report.GROUP_NOTE}"))
        sec.blocks.append(Block("table", columns=report.group_columns(grows[0].reference, groups, by),
                                rows=[report.group_cells(r, groups) for r in grows]))
        if plots:
            from milestones.harness import plots as P

            for metric in sorted({r.metric for r in grows if r.metric.endswith(".throughput")}):
                cases = sorted({r.config for r in grows if r.metric == metric}, key=natural_key)
                sec.blocks.append(_img(P.groups_bar(grows, groups, metric, by), f"by-{by}-{_slug(metric)}",
                                       f"{metric} by {by}", f"{metric} by {by} for {', '.join(cases)}: each group's "
                                       f"median as a ratio to {grows[0].reference} with a 95% CI; medians on the bars."))
    if not sec.blocks:
        sec.blocks.append(Block("p", text=_one_group_text([r for r in records if r.status == "ok"
                                                            and r.case.kind == "speed"])))
    out.append(sec)
    return out


def _one_group_text(speed: Sequence[RunRecord]) -> str:
    """What the speed records share, said truthfully: a CPU-only machine has no GPU to share."""
    if not speed:
        return "No speed records: nothing to compare by GPU or library version."
    torch = "/".join(sorted({compare.group_label(r, "torch") for r in speed}))
    if all(not r.case.device.startswith("cuda") for r in speed):
        cpus = "/".join(sorted({str(r.env.get("cpu_model") or "unknown CPU") for r in speed}))
        return f"All speed records ran on the CPU ({cpus}), torch {torch}: no GPU or library versions to compare."
    return "All speed records share one GPU, torch and CUDA version."


def _history_sections(records: Sequence[RunRecord], plots: bool) -> list[Section]:
    """Step changes over runs."""
    out: list[Section] = []
    # History.
    from milestones.harness import history as H

    hs = H.histories(records, metrics=["*.step_time", "*.throughput"])
    if hs:
        sec = Section("History")
        rows = [c for h in hs for c in report.history_cells(h)]
        sec.blocks.append(Block("p", text=f"{len(hs)} series with 3+ runs; {len(rows)} step change(s) detected "
                                          "(piecewise-constant fit to per-run medians)."))
        if rows:
            sec.blocks.append(Block("table", columns=report.HISTORY_COLUMNS, rows=rows))
        if plots:
            from milestones.harness import plots as P

            for h in [h for h in hs if h.steps][:MAX_HISTORY_PLOTS] or hs[:1]:
                sec.blocks.append(_img(P.history(h), f"history-{_slug(h.config + '-' + h.metric)}",
                                       f"history of {h.metric} for {h.config}",
                                       f"{h.suite}/{h.config} {h.kind}: {h.metric} median per run over {len(h.run_ids)} "
                                       "runs, with the fitted levels; a dashed line marks each detected step."))
        out.append(sec)
    return out


def _kernel_breakdown_sections(records: Sequence[RunRecord], plots: bool) -> list[Section]:
    """Top kernels per suite."""
    out: list[Section] = []
    if plots:
        from milestones.harness import plots as P

        sec = Section("Kernel breakdown")
        for suite in sorted({r.case.suite for r in records}):
            kr = next((r for r in records if r.case.suite == suite and compare.kernel_tables(r)), None)
            if kr is not None:
                label, table = next(iter(compare.kernel_tables(kr).items()))
                sec.blocks.append(_img(P.kernels(table, f"{kr.case.config} {label}: top kernels"),
                                       f"{suite}-kernels", f"kernel breakdown of {kr.case.config}",
                                       f"Top kernels by self time per step of {kr.record_id} ({label})."))
        if sec.blocks:
            out.append(sec)
    return out


def _record_sections(records: Sequence[RunRecord]) -> list[Section]:
    """Every record, so nothing measured is left out of the report."""
    out: list[Section] = []
    # Every record, so nothing measured is left out of the report.
    sec = Section("Records")
    sec.blocks.append(Block("table", columns=["case", "scale", "device", "dtype", "batch", "run", "status",
                                              "headline / error"],
                            rows=[(f"{r.case.suite}/{r.case.config} {r.case.kind}", r.case.scale, r.case.device,
                                   r.case.dtype, "-" if r.case.batch_size is None else r.case.batch_size, r.run_id,
                                   r.status, report.headline(r) if r.status == "ok" else (r.error or "")[:300])
                                  for r in sorted(records, key=lambda r: (r.case.suite, natural_key(r.case.config),
                                                                         r.started_at))]))
    out.append(sec)
    return out


def _environment_sections(runs: list) -> list[Section]:
    """The environment of each run."""
    out: list[Section] = []
    # Environments.
    sec = Section("Environment of each run")
    cols = ["run", "machine", "GPU", "driver", "torch", "CUDA", "CPU", "threads", "python", "commit", "records"]
    env_rows = []
    for rid, recs in runs:
        e = recs[0].env
        git = env_part(e, "git")
        syn = " (synthetic)" if any(is_synthetic(r) for r in recs) else ""
        env_rows.append((rid + syn, e.get("machine_id"), e.get("gpu") or "none",
                         env_part(e, "nvidia").get("driver") or "-", e.get("torch_full") or e.get("torch"),
                         e.get("cuda") or "none", e.get("cpu_model"), _threads(recs), e.get("python"),
                         f"{(git.get('commit') or '-')[:10]}{' dirty' if git.get('dirty') else ''}", len(recs)))
    sec.blocks.append(Block("table", columns=cols, rows=env_rows))
    out.append(sec)
    return out


def _cls(verdict: str) -> str:
    return "v-" + verdict.replace(" ", "-")


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:110em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}
tr.v-regressed td,tr.v-not-reproduced td{background:#fde2e2}
tr.v-improved td,tr.v-reproduced td{background:#e2f5e2}
tr.v-inconclusive td,tr.v-not-measured td{background:#fff6d6}
tr.v-not-comparable td{background:#efe6f7}
tr.v-held td{background:#e2f5e2}
tr.v-analogue-held td{background:#e4eef9}
tr.v-mixed td,tr.v-undecided td{background:#fff6d6}
tr.v-not-held td{background:#fde2e2}
h3{margin:1.2em 0 .3em;font-size:1.05em}
figure{margin:.8em 0}
figcaption{color:#444;font-size:.85em;max-width:60em}
.synthetic{background:#fff0c0;border:1px solid #d9b600;padding:.4em .6em;font-weight:bold}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.meta{color:#666;font-size:.85em}
"""


def to_html(sections: Sequence[Section], title: str = "milestones report") -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           # No network: inline CSS, data: images, and a policy that forbids fetching anything else.
           '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
           'style-src \'unsafe-inline\'">',
           f"<title>{e(title)}</title><style>{CSS}</style></head><body>", f"<h1>{e(title)}</h1>",
           f'<p class="meta">generated {e(dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))} '
           f"by milestones</p>"]
    # A contents line: the page is long, and a reader jumps to the claims or the paper table.
    out.append('<nav class="meta">' + " · ".join(f'<a href="#{e(_slug(s.title).lower())}">{e(s.title.split(":")[0])}</a>'
                                               for s in sections) + "</nav>")
    for s in sections:
        sid = _slug(s.title).lower()
        out.append(f'<section id="{e(sid)}"><h{s.level}>{e(s.title)}</h{s.level}>')
        for b in s.blocks:
            if b.kind == "p":
                cls = ' class="synthetic"' if b.text.startswith("SYNTHETIC:") else ""
                out.append(f"<p{cls}>{e(b.text)}</p>")
            elif b.kind == "h3":
                out.append(f"<h3>{e(b.text)}</h3>")
            elif b.kind == "pre":
                out.append(f"<pre>{e(b.text)}</pre>")
            elif b.kind == "img":
                data = base64.b64encode(b.image).decode("ascii")
                out.append(f'<figure><img alt="{e(b.text)}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{e(b.caption or b.text)}</figcaption></figure>")
            elif b.kind == "table":
                out.append("<table><thead><tr>" + "".join(f"<th>{e(str(c))}</th>" for c in b.columns)
                           + "</tr></thead><tbody>")
                for i, row in enumerate(b.rows):
                    cls = f' class="{e(b.classes[i])}"' if b.classes else ""
                    out.append(f"<tr{cls}>" + "".join(f"<td>{e('' if x is None else str(x))}</td>" for x in row)
                               + "</tr>")
                out.append("</tbody></table>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def to_markdown(sections: Sequence[Section], out_path: Path, title: str = "milestones report") -> str:
    """Markdown with plots written as PNG files in `<stem>_plots/` next to the report."""
    plot_dir = out_path.parent / f"{out_path.stem}_plots"
    parts = [f"# {report.md_escape(title)}"]
    for s in sections:
        parts.append(f"{'#' * s.level} {report.md_escape(s.title)}")
        for b in s.blocks:
            if b.kind in ("p", "pre"):
                parts.append(report.md_escape(b.text))
            elif b.kind == "h3":
                parts.append(f"### {report.md_escape(b.text)}")
            elif b.kind == "table":
                parts.append(report.md_table(b.columns, b.rows))
            elif b.kind == "img":
                plot_dir.mkdir(parents=True, exist_ok=True)
                f = plot_dir / f"{_slug(b.name)}.png"
                f.write_bytes(b.image)
                parts.append(f"![{report.md_escape(b.text)}]({plot_dir.name}/{f.name})\n\n"
                             f"*{report.md_escape(b.caption or b.text)}*")
    return "\n\n".join(parts) + "\n"


def check_output(out: str | Path) -> Path:
    """The report file, refused (one line) unless it is HTML or Markdown: before any record is read."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm", ".md"):
        raise UsageError(f"the report file (-o/--output) must end in .html or .md: {out}")
    return out


def write(sections: Sequence[Section], out: str | Path, title: str = "milestones report") -> Path:
    out = check_output(out)
    suffix = out.suffix.lower()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        text = to_html(sections, title) if suffix in (".html", ".htm") else to_markdown(sections, out, title)
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write report {out}: {e.strerror or e}") from None
    return out
