"""All formatting lives here: terminal tables (rich), Markdown and HTML. Nothing else formats."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from milestones.harness.records import SUCCESS_STATUSES, RunRecord

STATUS_STYLE = {"ok": "green", "skipped": "yellow", "failed": "red", "timeout": "red", "oom": "magenta",
                "diverged": "red", "interrupted": "yellow"}

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def fmt_value(v: float | None, unit: str = "") -> str:
    """Human-readable number with its unit: 3.86 GMAC/image, 12.3 ms, 45.1 images/s, 1.2 GiB."""
    if v is None:
        return "null"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if unit == "s":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
            if abs(v) >= scale or name == "ns":
                return f"{v / scale:.3g} {name}"
    if unit == "B":
        for scale, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(v) >= scale:
                return f"{v / scale:.3g} {name}"
        return f"{v:.0f} B"
    if unit == "bool":
        return "yes" if v >= 0.5 else "no"
    if unit == "count" and abs(v) < 1e15 and float(v).is_integer():
        return f"{int(v):,}"
    if unit in ("fraction", "ratio"):
        return f"{v:.4g}"
    for scale, p in _PREFIXES:
        if abs(v) >= scale:
            return f"{v / scale:.4g} {p}{unit}".rstrip()
    return f"{v:.4g} {unit}".rstrip()


def _console(file=None):
    import sys

    from rich.console import Console

    stream = file or sys.stdout
    # Logs (CI, pipes) get a wide fixed width so tables are not folded into unreadable columns.
    width = None if getattr(stream, "isatty", lambda: False)() else 200
    return Console(file=stream, soft_wrap=False, width=width)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], file=None,
                styles: dict[int, str] | None = None) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if x is None else str(x) for x in r))
    _console(file).print(t)


# ------------------------------------------------------------------------------------------ list, env
def print_suite_list(summaries: list[dict[str, Any]], file=None) -> None:
    rows = [(s["suite"], s["title"], s["arxiv"], s["year"], ", ".join(s["kinds"]), ", ".join(s["scales"]),
             len(s["configs"])) for s in summaries]
    print_table("Registered suites", ["suite", "title", "arXiv", "year", "kinds", "scales", "configs"], rows, file)


def print_config_list(configs: list[dict[str, Any]], file=None) -> None:
    rows = [(c["config"], c["suite"], ", ".join(c["kinds"]), ", ".join(c["scales"]), c["description"])
            for c in configs]
    print_table("Configs", ["config", "suite", "kinds", "scales", "description"], rows, file)


def print_env(env: dict[str, Any], file=None) -> None:
    nv = env.get("nvidia") or {}
    git = env.get("git") or {}
    rows = [
        ("machine id", env.get("machine_id")), ("host", env.get("hostname")),
        ("python", f"{env.get('python')} ({env.get('python_implementation')})"), ("os", env.get("platform")),
        ("cpu", env.get("cpu_model")), ("logical cores", env.get("logical_cores")),
        ("torch threads", f"{env.get('threads')} (interop {env.get('interop_threads')})"),
        ("torch", env.get("torch_full")), ("CUDA", env.get("cuda") or "none (CPU build)"),
        ("cuDNN", env.get("cudnn") or "none"), ("NCCL", env.get("nccl") or "none"),
        ("NVIDIA driver", nv.get("driver") if nv.get("available") else nv.get("reason")),
        ("git commit", f"{git.get('commit')}{' (dirty)' if git.get('dirty') else ''}"),
        ("load average", ", ".join(f"{x:.2f}" for x in (env.get("hygiene") or {}).get("loadavg") or [])),
        ("cpu governor", (env.get("hygiene") or {}).get("cpu_governor") or "not readable"),
    ]
    for g in nv.get("gpus", []):
        rows.append((f"GPU {g['index']}", f"{g['name']}, {fmt_value(g['memory_total_bytes'], 'B')}, "
                     f"SM {g['sm_clock_mhz']} MHz (max {g['max_sm_clock_mhz']}), mem {g['mem_clock_mhz']} MHz, "
                     f"power limit {g['power_limit_w']} W, compute capability {g['compute_capability']}"))
    print_table("Environment", ["", "value"], rows, file)


# ------------------------------------------------------------------------------------------ run summary
HEADLINE_METRICS = ("train.throughput", "infer.throughput", "train.step_time", "params", "macs")


def headline(rec: RunRecord, k: int = 3) -> str:
    names = [n for n in HEADLINE_METRICS if n in rec.metrics] + [n for n in rec.metrics
                                                               if n not in HEADLINE_METRICS]
    parts = []
    for n in names:
        m = rec.metrics[n]
        if m.value is None:
            continue
        parts.append(f"{n}={fmt_value(m.value, m.unit)}")
        if len(parts) >= k:
            break
    return "; ".join(parts)


def case_line(rec: RunRecord) -> str:
    c = rec.case
    err = f"  {rec.error}" if rec.error and rec.status not in ("ok",) else ""
    return f"[{STATUS_STYLE.get(rec.status, 'white')}]{rec.status:>11}[/] {c.suite}/{c.config} {c.kind} " \
           f"({rec.duration_s:.1f} s){err}"


def print_run_summary(records: list[RunRecord], folder: str, file=None) -> None:
    rows = []
    for r in records:
        c = r.case
        style = STATUS_STYLE.get(r.status, "white")
        rows.append((c.suite, c.config, c.kind, c.device, c.dtype, c.batch_size if c.batch_size is not None else "-",
                     f"[{style}]{r.status}[/]", f"{r.duration_s:.1f}",
                     headline(r) if r.status == "ok" else (r.error or "")[:120]))
    print_table("Run summary", ["suite", "config", "kind", "device", "dtype", "batch", "status", "s",
                                "headline / error"], rows, file)
    bad = [r for r in records if r.status not in SUCCESS_STATUSES]
    con = _console(file)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    con.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"; records in {folder}")
    if bad:
        con.print("[red]Not successful:[/] " + ", ".join(f"{r.case.suite}/{r.case.config} {r.case.kind} "
                                                         f"({r.status})" for r in bad))


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)


# ============================================================================ comparisons (issue 5)
# Terminal tables, Markdown and JSON for baselines, compare, group and kernel tables. The full
# HTML / Markdown report document is built in milestones.harness.html from the same row helpers.
VERDICT_STYLE = {"regressed": "red", "improved": "green", "unchanged": "white", "inconclusive": "yellow",
                 "not comparable": "magenta", "reproduced": "green", "not reproduced": "red",
                 "not measured": "yellow"}


def baseline_dict(b) -> dict[str, Any]:
    return {"id": b.id, "suite": b.suite, "metric": b.metric, "configs": list(b.configs), "kind": b.kind,
            "value": b.value, "unit": b.unit, "plus_minus": b.plus_minus, "dataset": b.dataset, "split": b.split,
            "protocol": b.protocol, "source": b.source, "confirmed": b.confirmed,
            "higher_is_better": b.higher_is_better, "tolerance": b.tolerance, "tolerance_kind": b.tolerance_kind,
            "scales": list(b.allowed_scales), "paper": b.paper.citation, "note": b.note}


def fmt_pm(value: float, unit: str, pm: float | None) -> str:
    return f"{value:g}{f' ± {pm:g}' if pm is not None else ''} {unit}".strip()


def baseline_rows(items) -> list[tuple]:
    return [(b.suite, b.id, b.metric, ", ".join(b.configs), b.kind, fmt_pm(b.value, b.unit, b.plus_minus),
             f"{b.dataset} / {b.split}", b.protocol, b.source, "yes" if b.confirmed else "unconfirmed")
            for b in items]


BASELINE_COLUMNS = ["suite", "id", "metric", "configs", "kind", "paper value", "dataset / split", "protocol",
                    "source", "confirmed"]


def print_baselines(items, file=None) -> None:
    print_table(f"Paper baselines ({len(items)})", BASELINE_COLUMNS, baseline_rows(items), file)


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None or not math.isfinite(r) else f"{r:.3f}"


def fmt_ci(lo: float | None, hi: float | None) -> str:
    return "-" if lo is None or hi is None else f"[{lo:.3f}, {hi:.3f}]"


def fmt_p(p: float | None) -> str:
    return "-" if p is None or not math.isfinite(p) else f"{p:.2g}"


COMPARE_COLUMNS = ["case", "scale", "device", "dtype", "batch", "metric", "base", "new", "ratio", "CI", "p",
                   "verdict", "why"]


def compare_row_cells(r) -> list[str]:
    c = r.result
    return [r.case, r.scale, r.device, r.dtype, "-" if r.batch_size is None else str(r.batch_size), r.metric,
            "-" if c.base is None else fmt_value(c.base, r.unit), "-" if c.new is None else fmt_value(c.new, r.unit),
            fmt_ratio(c.ratio), fmt_ci(c.ci_low, c.ci_high), fmt_p(c.p_value), c.verdict, c.reason]


def env_header(env_notes: Sequence[str]) -> str:
    if not env_notes:
        return "Environment: same GPU, driver, torch, CUDA, threads and CPU on both sides."
    return "NOTE: environments differ (" + "; ".join(env_notes) + "): differences may come from the environment."


def counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "no metrics compared"


def print_compare(rows, env_notes, counts, file=None, title: str = "Compare") -> None:
    con = _console(file)
    con.print(env_header(env_notes), markup=False, highlight=False)
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, title_justify="left", header_style="bold")
    cols = COMPARE_COLUMNS + (["env"] if env_notes else [])
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in rows:
        cells = compare_row_cells(r) + (["differs"] if env_notes else [])
        t.add_row(*[Text(x, style=VERDICT_STYLE.get(x, "")) if i == 11 else Text(x) for i, x in enumerate(cells)])
    con.print(t)
    con.print(counts_line(counts), markup=False, highlight=False)


def md_escape(s: Any) -> str:
    return str(s).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def md_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(md_escape(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(md_escape("" if x is None else x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def markdown_compare(rows, env_notes, counts, title: str = "Compare") -> str:
    cols = COMPARE_COLUMNS + (["env"] if env_notes else [])
    cells = [compare_row_cells(r) + (["differs"] if env_notes else []) for r in rows]
    return "\n\n".join([f"### {md_escape(title)}", md_escape(env_header(env_notes)), md_table(cols, cells),
                        f"**{md_escape(counts_line(counts))}**"]) + "\n"


def markdown_summary(rows, env_notes, counts, base: str, new: str) -> str:
    """A short CI job summary: verdict counts, then only the rows that need attention."""
    bad = [r for r in rows if r.verdict in ("regressed", "inconclusive", "not comparable")]
    head = "regressions found" if counts.get("regressed") else "no significant regression"
    parts = [f"## milestones compare: {head}", f"base `{md_escape(base)}` → new `{md_escape(new)}`",
             md_escape(env_header(env_notes)), f"**{md_escape(counts_line(counts))}**"]
    if bad:
        parts.append(md_table(COMPARE_COLUMNS, [compare_row_cells(r) for r in bad]))
    return "\n\n".join(parts) + "\n"


def compare_json(rows, env_notes, counts) -> str:
    return to_json({"env_differences": list(env_notes), "counts": counts, "rows": [r.to_dict() for r in rows]})


# ------------------------------------------------------------------------------------------- groups
def group_cells(r, groups: Sequence[str]) -> list[str]:
    cells = [f"{r.suite}/{r.config} {r.kind}", r.dtype, "-" if r.batch_size is None else str(r.batch_size), r.metric,
             fmt_value(r.ref_value, r.unit) if r.ref_value is not None else "-"]
    for g in groups:
        if g == r.reference:
            continue
        if r.ratios.get(g) is None:
            v = r.values.get(g)
            cells.append((f"{fmt_value(v, r.unit)} " if v is not None else "") + f"({r.notes.get(g, '-')})")
        else:
            ci = r.cis.get(g)
            cells.append(f"{r.ratios[g]:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""))
    return cells


def group_columns(reference: str, groups: Sequence[str], by: str) -> list[str]:
    return ["case", "dtype", "batch", "metric", f"{by} = {reference} (reference)"] + \
           [f"{g} / ref" for g in groups if g != reference]


GROUP_NOTE = "Ratios are medians over the reference group's median (95% block-bootstrap CI); " \
             "for time and memory lower is better, for throughput and MFU higher."


def print_groups(rows, groups, by: str, file=None) -> None:
    ref = rows[0].reference if rows else groups[0]
    print_table(f"By {by} (reference {ref})", group_columns(ref, groups, by), [group_cells(r, groups) for r in rows],
                file)
    _console(file).print(GROUP_NOTE, markup=False, highlight=False)


def markdown_groups(rows, groups, by: str) -> str:
    ref = rows[0].reference if rows else groups[0]
    return f"### By {md_escape(by)} (reference {md_escape(ref)})\n\n" + \
        md_table(group_columns(ref, groups, by), [group_cells(r, groups) for r in rows]) + f"\n\n{GROUP_NOTE}\n"


# ---------------------------------------------------------------------------------- paper, kernels
PAPER_COLUMNS = ["suite", "config", "scale", "metric", "paper", "ours", "verdict", "why", "source", "protocol",
                 "confirmed"]


def paper_cells(r) -> list[str]:
    b = r.baseline
    ours = "-" if r.ours is None else (f"{r.ours:.4g}" + (f" ± {r.ours_std:.2g}" if r.ours_std is not None else "")
                                       + f" {b.unit} (n={r.n})")
    return [b.suite, r.config, r.scale, b.metric, fmt_pm(b.value, b.unit, b.plus_minus), ours, r.verdict, r.reason,
            f"{b.paper.citation}, {b.source}", f"{b.protocol}; {b.dataset} {b.split}",
            "yes" if b.confirmed else "unconfirmed"]


def print_paper(rows, file=None) -> None:
    print_table("Against the paper", PAPER_COLUMNS, [paper_cells(r) for r in rows], file)


KERNEL_COLUMNS = ["kernel / op", "base µs", "new µs", "Δ µs", "ratio", "base calls", "new calls"]


def kernel_cells(d) -> list[str]:
    return [d.name, f"{d.base_us:.1f}", f"{d.new_us:.1f}", f"{d.delta_us:+.1f}", fmt_ratio(d.ratio),
            f"{d.base_calls:g}", f"{d.new_calls:g}"]


def print_kernel_diffs(diffs, file=None) -> None:
    for case, ds in diffs:
        print_table(f"Kernels that changed most: {case}", KERNEL_COLUMNS, [kernel_cells(d) for d in ds], file)


def markdown_kernel_diffs(diffs) -> str:
    return "\n\n".join(f"### Kernels that changed most: {md_escape(case)}\n\n" +
                       md_table(KERNEL_COLUMNS, [kernel_cells(d) for d in ds]) for case, ds in diffs) + "\n"


HISTORY_COLUMNS = ["case", "metric", "runs", "step at run", "started", "commit", "before", "after", "change", ""]


def history_cells(h) -> list[list[str]]:
    out = []
    for s in h.steps:
        out.append([f"{h.suite}/{h.config} {h.kind}", h.metric, str(len(h.run_ids)), s.run_id, s.started_at,
                    (s.commit or "-")[:10], fmt_value(s.before, h.unit), fmt_value(s.after, h.unit),
                    f"{s.change:+.1%}", ("worse" if s.worse else "better") + (" (tentative: one run)" if s.tentative
                                                                             else "")])
    return out


def print_history(hs, file=None) -> None:
    rows = [c for h in hs for c in history_cells(h)]
    print_table(f"Step changes ({len(rows)} in {len(hs)} series)", HISTORY_COLUMNS, rows, file)


# ------------------------------------------------------------------------------- interleaved A/B
def _ab_cells(row: dict[str, Any], max_ratios: int = 12) -> list[str]:
    ratios = row.get("round_ratios") or []
    shown = " ".join(f"{x:.3f}" for x in ratios[:max_ratios]) + (" ..." if len(ratios) > max_ratios else "")
    return [f"{row['config']} {row['kind']}", row["metric"], row["verdict"], fmt_ratio(row.get("ratio")),
            fmt_ci(row.get("ci_low"), row.get("ci_high")), str(row.get("rounds", 0)), shown, row.get("reason", "")]


AB_COLUMNS = ("case", "metric", "verdict", "new/base", "interval", "rounds", "per-round ratios", "why")


def text_ab(rows: Sequence[dict[str, Any]], stop: str, rounds: int) -> str:
    lines = [f"A/B: stopped ({stop}) after {rounds} round(s)"]
    lines += ["  ".join(_ab_cells(r)) for r in rows]
    return "\n".join(lines)


def markdown_ab(rows: Sequence[dict[str, Any]], stop: str, rounds: int) -> str:
    return f"### A/B: stopped ({stop}) after {rounds} round(s)\n\n" + md_table(AB_COLUMNS, [_ab_cells(r) for r in rows])
