"""matplotlib figures from comparison rows and records. Headless (Agg); no figure touches the network.

Each function returns a matplotlib Figure; `save(fig, path)` writes PNG or SVG, `to_bytes` embeds.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from milestones.harness.errors import RecordError, UsageError  # noqa: E402

FORMATS = ("png", "svg")
# Offsets ("1e-18+9.99e-9") make a reader do arithmetic; plain tick labels instead.
matplotlib.rcParams["axes.formatter.useoffset"] = False
# Ten distinguishable colours (tab10 has two near-oranges next to reds in print); beyond ten, line styles.
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")


def _fig(w: float = 7.0, h: float = 3.6):
    fig, ax = plt.subplots(figsize=(w, h), dpi=100, layout="constrained")
    return fig, ax


def to_bytes(fig, fmt: str = "png") -> bytes:
    if fmt not in FORMATS:
        raise UsageError(f"plot format must be png or svg, not {fmt!r}")
    buf = io.BytesIO()
    # SVG text as paths would bloat the file; keep text (the report is read in a browser anyway).
    fig.savefig(buf, format=fmt, **({"metadata": {"Date": None}} if fmt == "svg" else {}))
    plt.close(fig)
    return buf.getvalue()


def save(fig, path: str | Path) -> Path:
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        plt.close(fig)
        raise UsageError(f"plot file must end in .png or .svg: {path}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(to_bytes(fig, fmt))
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def groups_bar(rows: Sequence[Any], groups: Sequence[str], metric: str, by: str):
    """Each group's median of `metric` as a ratio to the reference group's, per case, with the 95% CI.

    Horizontal bars (one block per case, so 50 cases stay readable) on a linear axis from zero: a bar
    twice as long is twice the value. The absolute median is written after each bar, so the ratio never
    hides the magnitude.
    """
    rows = [r for r in rows if r.metric == metric]
    if not rows:
        raise UsageError(f"no group rows for metric {metric!r}")
    from milestones.harness.report import fmt_value

    ref = rows[0].reference
    order = [ref] + [g for g in groups if g != ref]
    height = 0.8 / max(1, len(order))
    fig, ax = _fig(8.0, 0.28 * len(rows) * len(order) + 0.35 * len(rows) + 1.8)
    y = np.arange(len(rows))
    bars = []
    for g in order:
        ratios = [r.ratios.get(g) for r in rows]
        lo = [0.0 if v is None or not r.cis.get(g) else v - r.cis[g][0] for r, v in zip(rows, ratios, strict=False)]
        hi = [0.0 if v is None or not r.cis.get(g) else r.cis[g][1] - v for r, v in zip(rows, ratios, strict=False)]
        bars.append((g, ratios, lo, hi))
    top = max([(v or 0) + h for _, ratios, _, his in bars for v, h in zip(ratios, his, strict=False)] + [1.0])
    for i, (g, ratios, lo, hi) in enumerate(bars):
        ys = y + i * height
        ax.barh(ys, [v if v is not None else 0 for v in ratios], height, xerr=[lo, hi], capsize=2, label=g,
                color=_COLORS[i % len(_COLORS)], alpha=0.9, error_kw={"lw": 1})
        for yi, r, v, h in zip(ys, rows, ratios, hi, strict=False):
            val = r.values.get(g)
            text = "n/a: " + r.notes.get(g, "not measured") if v is None else fmt_value(val, r.unit)
            ax.text((v or 0) + h + 0.01 * top, yi, text, va="center", ha="left", fontsize=6.5)
    ax.axvline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xlim(0, top * 1.35)
    ax.set_yticks(y + height * (len(order) - 1) / 2,
                  [f"{r.config} ({r.dtype}, batch {r.batch_size})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric}: median / median of {ref}")
    better = "higher is better" if rows[0].higher_is_better else "lower is better"
    ax.set_title(f"{metric} by {by}: ratio to the reference, 95% CI ({better})", fontsize=9)
    fig.legend(fontsize=7, loc="outside lower center", ncols=min(3, len(order)), frameon=False)
    return fig


def modes_panels(rows: Sequence[Any]):
    """Execution modes per case (modes_report.ModeRow): speedup over eager fp32, MFU, peak memory and
    compile seconds, one horizontal bar per mode in four panels sharing the case axis. A mode that did not
    run, or a figure not measured, is written as such beside an empty bar, never drawn as zero."""
    if not rows:
        raise UsageError("no execution-mode rows to plot")
    cases = list(dict.fromkeys(f"{r.config} ({r.gpu or r.device})" for r in rows))
    modes = list(dict.fromkeys(r.mode for r in rows))
    panels = [("speedup over eager fp32 (x)", lambda r: r.speedup, "{:.2f}x"),
              ("MFU", lambda r: r.mfu, "{:.3f}"),
              ("peak memory (GiB)", lambda r: None if r.peak_mem is None else r.peak_mem / 2**30, "{:.2f}"),
              ("compile time (s)", lambda r: r.compile_s, "{:.1f}")]
    height = 0.8 / max(1, len(modes))
    fig, axes = plt.subplots(1, 4, figsize=(13.0, 0.3 * len(cases) * len(modes) + 0.4 * len(cases) + 1.6),
                             dpi=100, layout="constrained", sharey=True)
    index = {(f"{r.config} ({r.gpu or r.device})", r.mode): r for r in rows}
    y = np.arange(len(cases))
    for ax, (title, get, fmt) in zip(axes, panels, strict=True):
        vals = [get(r) for r in rows if get(r) is not None]
        top = max(vals) if vals else 1.0  # an empty panel keeps a readable axis and says why per bar
        for i, mode in enumerate(modes):
            ys = y + i * height
            for yi, case in zip(ys, cases, strict=True):
                r = index.get((case, mode))
                v = None if r is None else get(r)
                if v is not None:
                    ax.barh(yi, v, height, color=_COLORS[i % len(_COLORS)], alpha=0.9,
                            label=mode if case == cases[0] or yi == ys[0] else None)
                if v is not None:
                    text = fmt.format(v)
                elif r is None:
                    text = "not run"
                elif r.status != "ok":
                    text = r.status
                elif title.startswith("compile") and "compile" not in mode:
                    text = "eager"
                else:
                    text = "null (not measured)"
                ax.text((v or 0) + 0.02 * top, yi, text, va="center", ha="left", fontsize=6.5)
        if title.startswith("speedup"):
            ax.axvline(1.0, color="k", lw=0.8, ls=":")
        ax.set_xlim(0, top * 1.45)
        ax.set_title(title, fontsize=9)
    axes[0].set_yticks(y + height * (len(modes) - 1) / 2, cases, fontsize=7)
    axes[0].invert_yaxis()
    handles = [plt.Rectangle((0, 0), 1, 1, color=_COLORS[i % len(_COLORS)]) for i in range(len(modes))]
    fig.legend(handles, modes, fontsize=7, loc="outside lower center", ncols=min(5, len(modes)), frameon=False)
    fig.suptitle("Execution modes: each case's headline step (train where there is one)", fontsize=10)
    return fig


# Verdict colours of the run-vs-run chart (the report's verdict colours, as matplotlib names).
_VERDICT_COLORS = {"regressed": "#c0392b", "improved": "#27ae60", "unchanged": "#7f8c8d",
                   "inconclusive": "#e67e22", "not comparable": "#bdc3c7"}
RUN_RATIO_METRICS = (".step_time", ".cpu_time")
MAX_RUN_RATIO_ROWS = 40


def run_ratios(rows: Sequence[Any], title: str = "new / base"):
    """Run vs run: each case's timing as new/base with its interval, coloured by verdict, on a log axis
    (2x slower and 2x faster are equally far from 1). Timing rows only (step and CPU time per step);
    throughput and FLOP/s repeat the step time. The biggest changes first, at most 40 rows."""
    rows = [r for r in rows if r.metric.endswith(RUN_RATIO_METRICS) and r.result.ratio is not None
            and math.isfinite(r.result.ratio) and r.result.ratio > 0]
    if not rows:
        raise UsageError("no timing rows with a ratio to plot")
    rows = sorted(rows, key=lambda r: -abs(math.log(r.result.ratio)))[:MAX_RUN_RATIO_ROWS]
    fig, ax = _fig(8.0, 0.24 * len(rows) + 1.6)
    y = np.arange(len(rows))
    for yi, r in zip(y, rows, strict=True):
        c = r.result
        color = _VERDICT_COLORS.get(c.verdict, "k")
        lo = c.ci_low if c.ci_low is not None and c.ci_low > 0 else c.ratio
        hi = c.ci_high if c.ci_high is not None and c.ci_high > 0 else c.ratio
        ax.plot([lo, hi], [yi, yi], color=color, lw=2.2, alpha=0.6, solid_capstyle="butt")
        ax.plot([c.ratio], [yi], "o", color=color, ms=4.5)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    lo_x, hi_x = ax.get_xlim()
    ticks = [t for t in (0.25, 0.5, 0.67, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0) if lo_x <= t <= hi_x]
    ax.xaxis.set_major_locator(FixedLocator(ticks or [1.0]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.tick_params(axis="x", labelsize=7)
    ax.axvline(1.0, color="k", lw=0.8, ls=":")
    for t in (0.95, 1.05):
        ax.axvline(t, color="k", lw=0.5, ls="--", alpha=0.4)
    ax.set_yticks(y, [f"{r.config} {r.kind}: {r.metric}" for r in rows], fontsize=6.5)
    ax.invert_yaxis()
    ax.set_xlabel(f"{title} (log axis; > 1: slower; dashed: +-5%)", fontsize=8)
    ax.set_title("Timings, run vs run: ratio and interval per case, coloured by verdict", fontsize=9)
    seen = list(dict.fromkeys(r.result.verdict for r in rows))
    from matplotlib.lines import Line2D

    fig.legend([Line2D([], [], color=_VERDICT_COLORS.get(v, "k"), marker="o", lw=2) for v in seen], seen,
               fontsize=7, loc="outside lower center", ncols=len(seen), frameon=False)
    return fig


def _run_labels(run_ids: Sequence[str], commits: Sequence[str | None]) -> list[str]:
    """Short, distinct x labels: date and time of the run id (time only when all share a day), + commit."""
    stamps = [r.split("-")[0] for r in run_ids]
    same_day = len({s[:8] for s in stamps}) == 1
    out = []
    for rid, st, c in zip(run_ids, stamps, commits, strict=False):
        if len(st) >= 15 and st[8:9] == "T":
            lab = f"{st[9:11]}:{st[11:13]}:{st[13:15]}" if same_day else f"{st[4:6]}-{st[6:8]} {st[9:11]}:{st[11:13]}"
        else:
            lab = rid[-14:]
        out.append(lab + (f"\n{c[:7]}" if c and len(set(commits)) > 1 else ""))
    return out


def history(h: Any):
    """Per-run medians (with p10-p90) over time, fitted levels, and detected steps marked."""
    fig, ax = _fig(max(7.5, 0.45 * len(h.medians) + 2), 3.8)
    x = np.arange(len(h.medians))
    ax.fill_between(x, h.p10, h.p90, alpha=0.2, label="p10-p90 within run")
    ax.plot(x, h.medians, "o-", ms=4, label="run median")
    if h.levels:
        ax.step(x, h.levels, where="mid", color="k", lw=1, alpha=0.7, label="fitted levels")
    for s in h.steps:
        ax.axvline(s.index - 0.5, color="red" if s.worse else "green", ls="--", lw=1)
        ax.annotate(f"{s.change:+.1%}\nfrom {s.run_id}", (s.index - 0.5, max(h.p90)), fontsize=7,
                    ha="left", va="top", color="red" if s.worse else "green")
    ax.set_xticks(x, _run_labels(h.run_ids, h.commits), rotation=60, fontsize=7, ha="right")
    ax.set_xlabel("run (time of the run id; commit where they differ)", fontsize=8)
    ax.set_ylabel(f"{h.metric} ({h.unit})")
    ax.set_title(f"{h.suite}/{h.config} {h.kind}: {h.metric} over {len(x)} runs", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def quality_vs_paper(figs: Sequence[Any], title: str | None = None):
    """One compact chart of a suite's paper figures: ours / paper for each, on one axis.

    `figs` are report.PaperFigure rows (pooled over runs). Figures have different units, so each is
    drawn as its ratio to the paper's value (1 = the paper); the paper's ± and the tolerance are drawn
    as intervals around 1 and the numbers are written beside each row.
    """
    from milestones.harness.report import fmt_with_unit

    figs = [f for f in figs if f.ours is not None and f.baseline.value]
    if not figs:
        raise UsageError("no measured figures to plot against the paper")
    n = len(figs)
    fig, ax = plt.subplots(figsize=(8.0, 0.42 * n + 1.5), dpi=100, layout="constrained")
    colors = {"reproduced": "tab:green", "not reproduced": "tab:red", "mixed": "tab:orange"}
    # The axis spans the compared figures; a not-comparable one far off (a proxy run) would squash them,
    # so it sits at the edge as an arrow head, its value written beside it.
    spans = [abs(f.ours / f.baseline.value - 1) + (f.ours_std or 0) / abs(f.baseline.value) for f in figs
             if f.verdict in colors] + [f.baseline.tolerance_abs / abs(f.baseline.value) for f in figs]
    half = max(0.05, 1.25 * max(spans))
    used: set[tuple[str, str]] = set()
    for i, f in enumerate(figs):
        b = f.baseline
        y = n - 1 - i
        tol = b.tolerance_abs / abs(b.value)
        ax.plot([1 - tol, 1 + tol], [y, y], color="0.8", lw=7, solid_capstyle="butt")
        if b.plus_minus:
            ax.errorbar(1, y, xerr=b.plus_minus / abs(b.value), fmt="none", ecolor="k", capsize=3, lw=1)
        ax.plot(1, y, "s", color="k", ms=4)
        r = f.ours / b.value
        err = (f.ours_std or 0) / abs(b.value)
        c = colors.get(f.verdict, "tab:gray")
        # A check (architecture, configuration) "matches" the paper; only a result is "reproduced".
        used.add((f.verdict, f._word(f.verdict)) if f.verdict in colors else ("other", "other"))
        if abs(r - 1) > half:
            ax.plot(1 + half * 0.97 * (1 if r > 1 else -1), y, ">" if r > 1 else "<", color=c, ms=8)
        else:
            ax.errorbar(r, y, xerr=err or None, fmt="o", color=c, ms=6, capsize=3)
        ax.annotate(f"{fmt_with_unit(f.ours, b.unit)} vs {fmt_with_unit(b.value, b.unit)}: {f.shown_verdict}",
                    (1, y), xycoords=("axes fraction", "data"), xytext=(6, 0), textcoords="offset points",
                    fontsize=7, va="center", color=c if c != "tab:gray" else "0.35")
    ax.set_xlim(1 - half, 1 + half)
    ax.set_yticks(range(n), [f"{f.config}: {f.baseline.metric} [{f.scale}]" for f in reversed(figs)], fontsize=7)
    ax.set_ylim(-0.7, n - 0.3)
    ax.axvline(1, color="k", lw=0.6, ls=":")
    ax.set_xlabel("ours / paper (1 = the paper's figure; ours: mean over seeds and runs, bar ± std; "
                  "arrow: off the axis)", fontsize=8)
    ax.set_title(title or f"{figs[0].baseline.suite}: ours against the paper ({n} figures)", fontsize=10)
    handles = [plt.Line2D([], [], color="0.8", lw=7, label="paper ± tolerance"),
               plt.Line2D([], [], color="k", marker="s", ls="", label="paper")] + \
        [plt.Line2D([], [], color=colors[v], marker="o", ls="", label=label)
         for v, label in sorted(used, key=lambda t: (list(colors).index(t[0]) if t[0] in colors else 9, t[1]))
         if v in colors] + \
        ([plt.Line2D([], [], color="tab:gray", marker="o", ls="", label="not comparable / measured")]
         if ("other", "other") in used else [])
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.25 / max(n, 1)),
              ncols=6, frameon=False)
    return fig


_SEED_RE = re.compile(r"(?:^|[./_-])seed[_-]?(\d+)(?=$|[./_-])")
_X_KEYS = ("step", "eval_step", "seconds", "time", "epoch", "_x")


def _flat(s: dict) -> dict:
    """A curve in either form as {x key: xs, series: ys, ...}: `suite_api.curve(...)` nests its series
    under "series" with its x key named by "x"; older records keep them side by side with "step"."""
    if isinstance(s.get("series"), dict):
        x = s.get("x") or "step"
        return {"step": s.get(x), "_x": x, **s["series"]}
    return s


def curve_series(record: Any) -> dict[str, dict[int | None, dict[str, Any]]]:
    """{model: {seed: series}} from record.artifacts['curves']; the seed is read from the name."""
    cv = record.artifacts.get("curves")
    if not isinstance(cv, dict) or not cv:
        raise UsageError(f"record {record.record_id} has no curves")
    out: dict[str, dict[int | None, dict[str, Any]]] = {}
    for name, raw in cv.items():
        s = _flat(raw) if isinstance(raw, dict) else raw
        if not isinstance(s, dict) or not isinstance(s.get("step"), list) and not isinstance(s.get("eval_step"), list):
            raise RecordError(f"record {record.record_id}: curve {name!r} needs 'step' and values")
        m = _SEED_RE.search(str(name))
        seed = raw.get("seed") if isinstance(raw.get("seed"), int) else (int(m.group(1)) if m else None)
        model = raw.get("model") if isinstance(raw.get("model"), str) else \
            ((_SEED_RE.sub("", str(name)) if m else str(name)).strip("./_-") or "run")
        out.setdefault(model, {})[seed] = s
    return out


def _xy(record: Any, name: str, s: dict, key: str) -> tuple[list[float], list[float]] | None:
    ys = s.get(key)
    if ys is None:
        return None
    xs = s.get("eval_step") if isinstance(s.get("eval_step"), list) and len(s["eval_step"]) == len(ys) \
        and key != "loss" else s.get("step")
    if not isinstance(ys, list) or not isinstance(xs, list) or len(ys) != len(xs):
        raise RecordError(f"record {record.record_id}: curve {name!r}: step and {key} differ in length")
    return [float(x) for x in xs], [float(v) if isinstance(v, (int, float)) else math.nan for v in ys]


def curve_keys(record: Any) -> list[str]:
    """The quantities the record's curves hold, the evaluated ones (error, FD, return...) before loss."""
    keys: list[str] = []
    for models in curve_series(record).values():
        for s in models.values():
            keys += [k for k, v in s.items() if k not in _X_KEYS and isinstance(v, list) and k not in keys]
    return sorted(keys, key=lambda k: (k in ("loss", "value"), k))


def curves(record: Any, metric: str | None = None):
    """One line per model: the mean over seeds of `metric` (default: the evaluated quantity, else the
    loss), with a band from the lowest to the highest seed."""
    series = curve_series(record)
    keys = curve_keys(record)
    if metric is None:
        if not keys:
            raise RecordError(f"record {record.record_id}: curves hold no values")
        metric = keys[0]
    elif metric not in keys:
        raise UsageError(f"record {record.record_id} has no {metric!r} curve (it has: {', '.join(keys)})")
    fig, ax = _fig(7.5, 4.0)
    seeds_seen: set = set()
    drawn = 0
    def natural(kv):  # plain8 before plain20
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", kv[0])]

    for i, (model, by_seed) in enumerate(sorted(series.items(), key=natural)):
        runs = []
        for seed, s in by_seed.items():
            xy = _xy(record, f"{model}.seed{seed}", s, metric)
            if xy is not None:
                runs.append(xy)
                seeds_seen.add(seed)
        if not runs:
            continue
        n = min(len(x) for x, _ in runs)
        xs = np.asarray(runs[0][0][:n])
        ys = np.asarray([y[:n] for _, y in runs])
        if metric == "loss" and n > 200:
            # Per-step loss is noise at this zoom: a running mean over 2% of the steps, said in the title.
            w = max(1, n // 50)
            k = np.ones(w) / w
            ys = np.asarray([np.convolve(y, k, mode="valid") for y in ys])
            xs = xs[w - 1:]
        color = _COLORS[i % len(_COLORS)]
        ls = ("-", "--", ":", "-.")[(i // len(_COLORS)) % 4]
        ax.plot(xs, np.nanmean(ys, axis=0), color=color, ls=ls, lw=1.5,
                label=f"{model} (n={len(runs)})" if len(runs) > 1 else model)
        if len(runs) > 1:
            ax.fill_between(xs, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), color=color, alpha=0.15, lw=0)
        drawn += 1
    if not drawn:
        raise UsageError(f"record {record.record_id} has no {metric!r} curve")
    c = record.case
    smooth = " (running mean)" if metric == "loss" and any(len(s.get("loss", [])) > 200 for m in series.values()
                                                           for s in m.values()) else ""
    xname = next((s.get("_x") for m in series.values() for s in m.values() if s.get("_x")), "step")
    ax.set_xlabel(xname)
    ys_all = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.get_lines()])
    ys_all = ys_all[np.isfinite(ys_all)]
    log = ys_all.size > 0 and ys_all.min() > 0 and ys_all.max() / ys_all.min() > 20
    if log:
        # Errors and losses fall by orders of magnitude: on a linear axis the end, where claims are
        # decided, is a flat line at zero.
        ax.set_yscale("log")
        from matplotlib.ticker import FuncFormatter

        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    ax.set_ylabel(metric + smooth + (" (log scale)" if log else ""))
    nseeds = len(seeds_seen - {None}) or 1
    ax.set_title(f"{c.suite}/{c.config} {c.kind} ({c.scale}): {metric}{smooth}\n"
                 f"mean over {nseeds} seed{'s' if nseeds != 1 else ''}, band: lowest to highest seed", fontsize=9)
    ax.legend(fontsize=7, ncols=2 if drawn > 6 else 1)
    return fig


def kernels(table: Sequence[dict], title: str, other: Sequence[dict] | None = None, top: int = 12):
    """Top kernels by self time; with `other`, base and new side by side."""
    names = [r["name"] for r in sorted(table, key=lambda r: -r["self_time_us"])[:top]]
    if other:
        names += [r["name"] for r in sorted(other, key=lambda r: -r["self_time_us"])[:top] if r["name"] not in names]
    fig, ax = _fig(7.5, 0.32 * len(names) + 1.6)
    y = np.arange(len(names))
    a = {r["name"]: r for r in table}
    ax.barh(y - (0.2 if other else 0), [a.get(n, {}).get("self_time_us", 0) for n in names],
            height=0.4 if other else 0.7, label="base" if other else None)
    if other:
        b = {r["name"]: r for r in other}
        ax.barh(y + 0.2, [b.get(n, {}).get("self_time_us", 0) for n in names], height=0.4, label="new")
        ax.legend(fontsize=7)
    ax.set_yticks(y, [n[:60] for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("self time per step (µs)")
    ax.set_title(title)
    return fig
