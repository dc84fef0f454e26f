"""Execution modes side by side: per config, each mode's throughput, MFU, peak memory, compile time and
speedup over eager fp32, from the records (derived here, never stored). The report, the HTML chart and
the GPU check's summary read these rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from milestones.harness.records import DEFAULT_MODE, RunRecord

REFERENCE_MODE = "fp32"  # eager float32, TF32 off: what every speedup is over


@dataclass(frozen=True)
class ModeRow:
    suite: str
    config: str
    device: str
    gpu: str | None
    batch_size: int | None
    mode: str
    status: str
    error: str | None
    step: str | None  # the headline step (train when there is one)
    throughput: float | None
    unit: str | None
    mfu: float | None
    peak_mem: float | None  # bytes: CUDA allocated peak, or the CPU process's peak RSS
    compile_s: float | None
    speedup: float | None  # throughput / the reference mode's; None without a reference
    reference: str | None


def _headline_step(rec: RunRecord) -> str | None:
    labels = [n[: -len(".throughput")] for n in rec.metrics if n.endswith(".throughput")]
    return "train" if "train" in labels else (labels[0] if labels else None)


def _value(rec: RunRecord, name: str) -> float | None:
    m = rec.metrics.get(name)
    return None if m is None else m.value


def mode_rows(records: Sequence[RunRecord]) -> list[ModeRow]:
    """One row per speed record of every case group (config, device, GPU, batch) that ran in a mode other
    than the default cast; the latest record of each mode wins."""
    speed = [r for r in records if r.case.kind == "speed"]
    groups: dict[tuple, dict[str, RunRecord]] = {}
    for r in sorted(speed, key=lambda r: r.started_at):
        key = (r.case.suite, r.case.config, r.case.device.split(":")[0], r.env.get("gpu") if
               r.case.device.startswith("cuda") else None, r.case.batch_size)
        groups.setdefault(key, {})[r.case.mode] = r
    rows: list[ModeRow] = []
    for (suite, config, device, gpu, bs), by_mode in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if set(by_mode) == {DEFAULT_MODE}:
            continue
        ref = by_mode.get(REFERENCE_MODE)
        ref = ref if ref is not None and ref.status == "ok" else None
        for mode, r in by_mode.items():
            step = _headline_step(r) if r.status == "ok" else None
            thr = _value(r, f"{step}.throughput") if step else None
            ref_thr = _value(ref, f"{step}.throughput") if ref is not None and step else None
            peak = (_value(r, f"{step}.peak_mem_allocated") if device == "cuda" else _value(r, f"{step}.peak_rss")) \
                if step else None
            rows.append(ModeRow(
                suite, config, device, gpu, bs, mode, r.status, r.error, step, thr,
                r.metrics[f"{step}.throughput"].unit if step else None,
                _value(r, f"{step}.mfu") if step else None, peak,
                _value(r, f"{step}.compile_s") if step else None,
                thr / ref_thr if thr is not None and ref_thr else None,
                REFERENCE_MODE if ref_thr else None))
    order = {m: i for i, m in enumerate(("fp32", "tf32", "cast"))}
    rows.sort(key=lambda x: (x.suite, x.config, x.device, str(x.gpu), order.get(x.mode, 9), x.mode))
    return rows


COLUMNS = ["case", "device", "mode", "status", "step", "throughput", "speedup vs eager fp32", "MFU",
           "peak memory", "compile s"]


def _num(x: float | None, fmt: str) -> str:
    return "null" if x is None else format(x, fmt)


def cells(rows: Sequence[ModeRow]) -> list[list[Any]]:
    out = []
    for r in rows:
        where = r.gpu or r.device
        out.append([f"{r.suite}/{r.config}" + (f" b{r.batch_size}" if r.batch_size else ""), where, r.mode,
                    r.status if r.status == "ok" else f"{r.status}: {(r.error or '')[:120]}", r.step or "-",
                    "null" if r.throughput is None else f"{r.throughput:.4g} {r.unit}",
                    _num(r.speedup, ".2f") + ("x" if r.speedup is not None else ""),
                    _num(r.mfu, ".3f"), "null" if r.peak_mem is None else f"{r.peak_mem / 2**30:.2f} GiB",
                    _num(r.compile_s, ".1f") if r.mode and "compile" in r.mode else "-"])
    return out


def markdown(rows: Sequence[ModeRow]) -> str:
    if not rows:
        return "No speed case ran in an execution mode (milestones run ... --modes field)."
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in cells(rows)]
    return "\n".join(lines)
