"""`milestones ab`'s burst protocol: more paired measurements per round, at the cost of one start per side.

A round starts one case process per side (fresh interpreters: each round draws a new memory layout),
sets both up at once, and then alternates short bursts of steps between them, never at the same time:
burst k runs the sides in the order AB when k + round is even and BA when odd (ABBA), so a load that
rises or falls during the round cancels. Each burst pair gives one log ratio of medians; the round's
ratio is their trimmed mean, so a round that caught a load spike in one burst keeps its other bursts.
Rounds stay the unit of the sequential test (`stats.paired_verdict`): bursts of one round share a
process pair and its layout, so they are not independent of each other, and are never counted as rounds.

A burst's samples are kept in the record like any speed samples (`<step>.step_time`, `.cpu_time`,
`.sched_wait`), in burst order; `info["bursts"]` says how many samples each burst holds, which is what
lets `compare` and `report` rebuild the round's ratio from the record alone.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from milestones.harness.launch.burst import BurstFailed, BurstProcess
from milestones.harness.launch.process import CaseProcess, now
from milestones.harness.launch.spec import CaseResult, CaseSpec
from milestones.harness.records import Metric, RunRecord

DEFAULT_BURSTS = 10
DEFAULT_BURST_TIME = 0.2   # seconds of steps per burst: short enough that the load changes little within a pair
MAX_BURST_STEPS = 1000
BURST_TRIM = 0.2           # each end of the burst ratios, for the round's ratio


def burst_size(step_s: Sequence[float], burst_time: float) -> int:
    """Steps per burst: enough of the slower side's warm step to fill `burst_time`, at least 1."""
    slow = max((s for s in step_s if isinstance(s, (int, float)) and math.isfinite(s) and s > 0), default=0.0)
    if slow <= 0:
        return 1
    return max(1, min(MAX_BURST_STEPS, math.ceil(burst_time / slow)))


def trimmed_mean(xs: Sequence[float], trim: float = BURST_TRIM) -> float:
    ys = sorted(xs)
    k = int(len(ys) * trim)
    ys = ys[k:len(ys) - k] or ys
    return statistics.fmean(ys)


def _metrics(samples: Mapping[str, Mapping[str, list]]) -> dict[str, Metric]:
    from milestones.harness.measure.timing import TimingResult, contention_metrics

    out: dict[str, Metric] = {}
    for label, s in samples.items():
        wall = tuple(float(x) for x in s["wall"])
        out[f"{label}.step_time"] = Metric.from_values(f"{label}.step_time", "s", False, wall,
                                                       note="timed in bursts alternating with the other side")
        t = TimingResult(wall, 0, "burst", cpu_s=tuple(float(x) for x in s["cpu"]),
                         sched_wait_s=tuple(None if w is None else float(w) for w in s["wait"]))
        out.update(contention_metrics(label, t))
    return out


def run_round(launchers: Mapping[str, CaseProcess], specs: Mapping[str, CaseSpec], orders: Sequence[Sequence[str]],
              *, burst_time: float = DEFAULT_BURST_TIME, timeout: float = 900.0,
              process: Callable[[CaseProcess, CaseSpec], Any] = BurstProcess) -> dict[str, CaseResult]:
    """One round: a live process per side, `orders` giving each burst's order of sides. A CaseResult per
    side; when a side fails, it carries why and the other side is `skipped` (not timed without a partner).
    `timeout` bounds the set-up and each burst; KeyboardInterrupt propagates after every process is gone."""
    names = list(specs)
    started, t0 = now(), time.perf_counter()
    procs = {n: process(launchers[n], specs[n]) for n in names}
    ready: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    samples: dict[str, dict[str, dict[str, list]]] = {n: {} for n in names}
    failed: dict[str, BurstFailed] = {}
    n_steps = 0
    try:
        for n in names:  # both start before either is waited for: their set-ups overlap
            procs[n].start()
        for n in names:
            try:
                ready[n] = procs[n].ready(timeout)
            except BurstFailed as e:
                failed[n] = e
        if not failed:
            n_steps = burst_size([float(ready[n].get("step_s") or 0.0) for n in names], burst_time)
            try:
                for order in orders:
                    for n in order:
                        got = procs[n].burst(n_steps, timeout)
                        for label, s in got.items():
                            mine = samples[n].setdefault(label, {"wall": [], "cpu": [], "wait": []})
                            for k in mine:
                                mine[k].extend(s.get(k) or [])
            except BurstFailed as e:
                failed[n] = e
    finally:
        for n in names:
            ends[n] = procs[n].close()
    stamps = {"started_at": started, "ended_at": now(), "duration_s": time.perf_counter() - t0}
    out: dict[str, CaseResult] = {}
    for n in names:
        if n in failed:
            e = failed[n]
            out[n] = CaseResult(status=e.status, error=e.error, info=e.info, **stamps)
        elif failed:
            other = next(iter(failed))
            out[n] = CaseResult(status="skipped", error=f"not timed: the {other} side failed ({failed[other].error[:200]})",
                                info=dict(ready.get(n, {}).get("info") or {}), **stamps)
        else:
            info = dict(ready[n].get("info") or {})
            info.update(process_start="interpreter", peak_rss_bytes=ends[n].get("peak_rss_bytes"),
                        bursts={"sizes": [n_steps] * len(orders), "first": [o[0] for o in orders],
                                "burst_time_s": burst_time})
            out[n] = CaseResult(status="ok", metrics=_metrics(samples[n]), info=info, **stamps)
    return out


def sizes(rec: RunRecord) -> list[int] | None:
    b = rec.info.get("bursts")
    if not isinstance(b, dict) or not isinstance(b.get("sizes"), list):
        return None
    try:
        out = [int(x) for x in b["sizes"]]
    except (TypeError, ValueError):
        return None
    return out if out and all(x > 0 for x in out) else None


def _clean_burst(xs: Sequence[float], mask: Sequence[bool] | None) -> list[float]:
    """A burst's usable samples: finite, positive, not descheduled (all of them if every one was)."""
    keep = [x for k, x in enumerate(xs) if not (mask and mask[k])]
    keep = keep or list(xs)
    return [x for x in keep if math.isfinite(x) and x > 0]


def burst_log_ratios(base: RunRecord, new: RunRecord, metric: str) -> list[float] | None:
    """One log(median new / median base) per burst pair of a burst round; None for records of whole
    processes (or bursts that do not line up: the caller falls back to the processes' medians)."""
    from milestones.harness.compare import descheduled_mask

    sa, sb = sizes(base), sizes(new)
    ma, mb = base.metrics.get(metric), new.metrics.get(metric)
    if sa is None or sb is None or len(sa) != len(sb) or ma is None or mb is None:
        return None
    if len(ma.samples) != sum(sa) or len(mb.samples) != sum(sb):
        return None
    da, db = descheduled_mask(base, metric), descheduled_mask(new, metric)
    out, ia, ib = [], 0, 0
    for na, nb in zip(sa, sb, strict=True):
        a = _clean_burst(ma.samples[ia:ia + na], da[ia:ia + na] if da else None)
        b = _clean_burst(mb.samples[ib:ib + nb], db[ib:ib + nb] if db else None)
        ia, ib = ia + na, ib + nb
        if a and b:
            out.append(math.log(statistics.median(b) / statistics.median(a)))
    return out
