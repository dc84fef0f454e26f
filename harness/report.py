"""All formatting lives here: terminal tables (rich), Markdown and HTML. Nothing else formats."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from harness.records import SUCCESS_STATUSES, RunRecord

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
