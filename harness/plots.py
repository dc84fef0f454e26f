"""matplotlib figures from comparison rows and records. Headless (Agg); no figure touches the network.

Each function returns a matplotlib Figure; `save(fig, path)` writes PNG or SVG, `to_bytes` embeds.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from milestones.harness.errors import RecordError, UsageError  # noqa: E402

FORMATS = ("png", "svg")


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
    """Median of `metric` per group for each case (GroupRow list from compare.compare_by)."""
    rows = [r for r in rows if r.metric == metric]
    if not rows:
        raise UsageError(f"no group rows for metric {metric!r}")
    fig, ax = _fig(max(6.0, 1.6 * len(rows) + 2), 3.8)
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(rows))
    for i, g in enumerate(groups):
        vals = [r.values.get(g) for r in rows]
        ax.bar(x + i * width, [v if v is not None else 0 for v in vals], width, label=g,
               hatch=None, alpha=0.9)
        for xi, v in zip(x, vals, strict=False):
            if v is None:
                ax.text(xi + i * width, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x + width * (len(groups) - 1) / 2, [f"{r.config}\n{r.dtype} b{r.batch_size}" for r in rows],
                  fontsize=8)
    ax.set_ylabel(f"{metric} ({rows[0].unit})")
    ax.set_yscale("log")
    ax.set_title(f"{metric} by {by} (median; log scale)")
    ax.legend(fontsize=7)
    return fig


def history(h: Any):
    """Per-run medians (with p10-p90) over time, fitted levels, and detected steps marked."""
    fig, ax = _fig(7.5, 3.6)
    x = np.arange(len(h.medians))
    ax.fill_between(x, h.p10, h.p90, alpha=0.2, label="p10-p90 within run")
    ax.plot(x, h.medians, "o-", ms=4, label="run median")
    if h.levels:
        ax.step(x, h.levels, where="mid", color="k", lw=1, alpha=0.7, label="fitted levels")
    for s in h.steps:
        ax.axvline(s.index - 0.5, color="red" if s.worse else "green", ls="--", lw=1)
        ax.annotate(f"{s.change:+.1%}\n{s.run_id[:15]}", (s.index - 0.5, max(h.medians)), fontsize=7,
                    ha="left", va="top", color="red" if s.worse else "green")
    ax.set_xticks(x, [r[:8] for r in h.run_ids], rotation=60, fontsize=7)
    ax.set_ylabel(f"{h.metric} ({h.unit})")
    ax.set_title(f"{h.suite}/{h.config} {h.kind}: {h.metric} over {len(x)} runs")
    ax.legend(fontsize=7)
    return fig


def quality_vs_paper(rows: Sequence[Any]):
    """Ours (mean ± std over seeds) against the paper's figure (± where given, tolerance band).

    One panel per figure: the figures have different units and magnitudes.
    """
    rows = [r for r in rows if r.ours is not None]
    if not rows:
        raise UsageError("no measured figures to plot against the paper")
    fig, axes = plt.subplots(len(rows), 1, figsize=(7.0, 0.9 * len(rows) + 0.9), dpi=100, layout="constrained",
                             squeeze=False)
    for i, (r, ax) in enumerate(zip(rows, axes[:, 0], strict=False)):
        b = r.baseline
        ax.axvspan(b.value - b.tolerance_abs, b.value + b.tolerance_abs, color="0.88",
                   label="paper ± tolerance" if i == 0 else None)
        ax.errorbar(b.value, 0, xerr=b.plus_minus or 0, fmt="s", color="k", ms=5, capsize=3,
                    label="paper (± as given)" if i == 0 else None)
        color = {"reproduced": "tab:green", "not reproduced": "tab:red"}.get(r.verdict, "tab:gray")
        ax.errorbar(r.ours, 0, xerr=r.ours_std or 0, fmt="o", color=color, ms=6, capsize=3, alpha=0.85,
                    label="ours (mean ± std over seeds)" if i == 0 else None)
        ax.set_yticks([])
        ax.set_ylabel(f"{r.config}\n{b.metric} [{r.scale}]", rotation=0, ha="right", va="center", fontsize=7)
        ax.set_xlabel(f"{b.unit} ({r.verdict})", fontsize=7, labelpad=1)
        ax.tick_params(axis="x", labelsize=7)
    axes[0, 0].set_title("Ours against the paper")
    fig.legend(fontsize=7, loc="outside lower center", ncols=3)
    return fig


def curve_series(c: Any) -> tuple[Any, dict[str, Any]]:
    """(x values, {series name: values}) of one stored curve, in either shape: named series
    ({"x": "step", "step": [...], "series": {"loss": [...], ...}}, suite_api.curve) or the older
    {"step": [...], "loss"|"value": [...]}. Nothing is validated here."""
    if not isinstance(c, dict):
        return None, {}
    if isinstance(c.get("series"), dict):
        return c.get(c.get("x", "step")), dict(c["series"])
    return c.get("step"), {k: c[k] for k in ("loss", "value") if k in c}


def curves(record: Any):
    """One series per stored curve (its loss when it has one) from record.artifacts['curves']."""
    cv = record.artifacts.get("curves")
    if not isinstance(cv, dict) or not cv:
        raise UsageError(f"record {record.record_id} has no curves")
    fig, ax = _fig(7.0, 3.6)
    shown: set[str] = set()
    for name, s in cv.items():
        xs, series = curve_series(s)
        if xs is None or not series:
            raise RecordError(f"record {record.record_id}: curve {name!r} needs x values and a named series")
        key = "loss" if "loss" in series else next(iter(series))
        ys = series[key]
        if not isinstance(ys, list) or not isinstance(xs, list) or len(ys) != len(xs):
            raise RecordError(f"record {record.record_id}: curve {name!r}: step and values differ in length")
        ys = [float(v) if isinstance(v, (int, float)) else math.nan for v in ys]
        ax.plot(xs, ys, label=str(name), lw=1)
        shown.add(key)
    ax.set_xlabel("step")
    ax.set_ylabel(", ".join(sorted(shown)))
    c = record.case
    ax.set_title(f"{c.suite}/{c.config} {c.kind} ({c.scale})")
    ax.legend(fontsize=7)
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
