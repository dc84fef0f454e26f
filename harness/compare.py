"""Comparison rows from records: run vs run, run vs paper, by group (GPU, torch, ...), kernel diffs.

Pure data in, dataclasses out; statistics come from milestones.harness.stats, formatting is in milestones.harness.report.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milestones.harness import slow_machine, stats
from milestones.harness.baselines import Baseline
from milestones.harness.errors import RecordError, UsageError
from milestones.harness.records import DEFAULT_MODE, SUCCESS_STATUSES, CaseFields, RunRecord

# Environment fields whose difference makes timings of two sides not like-for-like; shown in every table.
ENV_FIELDS = (("gpu", "GPU"), ("driver", "driver"), ("torch", "torch"), ("cuda", "CUDA"), ("threads", "threads"),
              ("cpu_model", "CPU"))
GROUP_KEYS = ("gpu", "torch", "cuda", "commit", "machine")
# What a group comparison shows: throughput, latency, memory, MFU, energy per sample.
GROUP_METRIC_PATTERNS = ("*.throughput", "*.step_time", "*.peak_mem_allocated", "*.peak_mem_reserved",
                         "*.peak_rss", "*.mfu", "*.energy_per_item")
EXACT_UNITS = ("count", "FLOP", "MAC", "MAC/image")
# Near-deterministic figures: one value per run, compared on a tolerance (the metric's threshold).
TOLERANCE_UNITS = ("B", "instructions")
# Instruction counts repeat to ~0.1% whatever the load: 0.5% unless a --threshold-for says otherwise.
INSTRUCTION_TOLERANCE = 0.005
# A CPU case process's peak RSS is not near-deterministic: over 17 A/A runs of the default job its
# max/min spread reached 11.7% (gpt, bert, adam smoke). Twice that, so a 3x (or 1.5x) peak is still
# called and allocator noise is not; CUDA allocator peaks (peak_mem_*) keep the ordinary threshold.
RSS_TOLERANCE = 0.25
# Metrics computed from one timing (the step time): tested once, as the step time, in the family.
DERIVED_FROM_STEP = (".throughput", ".flops_per_s", ".mfu", ".bytes_per_s")
# Figures read off a clock besides the per-sample timings: what `--fail-on untimed` leaves to `ab`.
CLOCK_SUFFIXES = (".energy_per_item", "_time_ratio", "_time", "_seconds", ".seconds_to_target", ".seconds_to_best",
                  ".seconds_to_common_target")
# Diagnostics recorded beside the timings, not compared.
NOT_COMPARED = (".sched_wait",)
FAMILY_ALPHA = stats.DEFAULT_ALPHA
# History mode calls a gross change at once only if it is also this much beyond the worst run of the level.
GROSS_BEYOND_WORST = 0.25
# ... and only against a level of at least this many runs: two runs after a change point show no tails.
MATURE_LEVEL = 10


# ---------------------------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class Loaded:
    path: str
    record: RunRecord


def load(paths: Iterable[str | os.PathLike], results_root: str | os.PathLike = "results", *,
         strict: bool = False, on_skip=None) -> list[Loaded]:
    """Records from folders, files or run ids (looked up under `results_root`). UsageError if none.

    An unreadable record is named on stderr (or through `on_skip`) and skipped; `strict` raises instead.
    """
    from milestones.harness import store

    out: list[Loaded] = []
    specs = list(paths)
    for spec in specs:
        p = Path(spec)
        if not p.exists():
            p, _ = store.find_run(results_root, str(spec))
        files = list(store.iter_record_files([p]))
        if not files:
            raise UsageError(f"no result records found in {spec}")
        read = store.read_records(files, strict=strict, on_skip=on_skip or store.warn_skipped)
        if not read:
            raise UsageError(f"no readable result records in {spec} ({len(files)} unreadable, skipped)")
        out.extend(Loaded(str(f), rec) for f, rec in read)
    return out


def env_value(rec: RunRecord, key: str) -> Any:
    env = rec.env
    if key == "gpu":
        return env.get("gpu") if rec.case.device.startswith("cuda") else None
    if key in ("driver", "commit"):
        # A hand-edited or foreign record may hold anything here (a list, a string): not a driver then.
        part = env.get("nvidia" if key == "driver" else "git")
        return part.get(key) if isinstance(part, dict) else None
    if key == "machine":
        return env.get("machine_id")
    return env.get(key)


def env_differences(base: Sequence[RunRecord], new: Sequence[RunRecord]) -> list[str]:
    """'GPU A vs B' lines for environment fields that differ between the two sides."""
    out = []
    def val(r: RunRecord, key: str) -> str:
        # The machine's GPU, whatever device a case ran on: a CPU case on a GPU host is still there.
        return str(r.env.get("gpu") if key == "gpu" else env_value(r, key))

    for key, label in ENV_FIELDS:
        a = sorted({val(r, key) for r in base})
        b = sorted({val(r, key) for r in new})
        if a != b:
            out.append(f"{label} {'/'.join(a)} vs {'/'.join(b)}")
    return out


# ------------------------------------------------------------------------------------------ run vs run
@dataclass(frozen=True)
class CompareRow(CaseFields):
    metric: str
    unit: str
    higher_is_better: bool | None
    result: stats.Comparison
    env_note: str = ""
    mode: str = DEFAULT_MODE
    key: tuple = ()           # case_key of the row's case (rows and records are matched on it)

    @property
    def verdict(self) -> str:
        return self.result.verdict

    @property
    def case(self) -> str:
        mode = "" if self.mode == DEFAULT_MODE else f" ({self.mode})"  # brackets would be rich markup
        return f"{self.suite}/{self.config} {self.kind}{mode}"

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "config": self.config, "kind": self.kind, "scale": self.scale,
                "device": self.device, "dtype": self.dtype, "batch_size": self.batch_size, "metric": self.metric,
                "unit": self.unit, "higher_is_better": self.higher_is_better, **self.result.to_dict(),
                "env_note": self.env_note, "mode": self.mode}


@dataclass(frozen=True)
class Thresholds:
    default: float = stats.DEFAULT_THRESHOLD
    per_metric: tuple[tuple[str, float], ...] = ()

    def for_metric(self, metric: str) -> float:
        # The last matching pattern wins, so a specific rule can follow a broad one.
        t = self.default
        for pattern, v in self.per_metric:
            if fnmatch.fnmatchcase(metric, pattern):
                t = v
        return t


def parse_percent(s: str) -> float:
    """'5%' or '0.05' or '5' (read as percent) -> 0.05. UsageError on anything else."""
    raw = s.strip()
    try:
        v = float(raw.rstrip("%"))
    except ValueError:
        raise UsageError(f"threshold {s!r} is not a number (write e.g. 5%)") from None
    if raw.endswith("%") or v >= 1:
        v /= 100
    if not (0 < v < 10) or v != v:
        raise UsageError(f"threshold {s!r} must be a positive percentage")
    return v


def case_key(case: Any) -> tuple:
    """THE key of a case: records, compare rows and histories are matched on it (and nowhere else is
    one built), so a new field of the case is one line here. The device's index is left out: cuda:0
    and cuda:1 of one machine are the same case."""
    return (case.suite, case.config, case.kind, case.scale, case.device.split(":")[0],
            getattr(case, "mode", DEFAULT_MODE), case.dtype, case.batch_size)


# The fields of the key an unmatched case is paired on, so that a dtype or batch-size change is said,
# not hidden (the key's first six: suite, config, kind, scale, device, mode). The execution mode is in
# it: records of two modes are never paired, not even as "not comparable" (a compiled amp-bf16 case is
# a different workload, not a change of the eager one).
LOOSE_KEY = 6


def _case_key(r: RunRecord) -> tuple:
    return case_key(r.case)



def _samples(recs: Sequence[RunRecord], metric: str) -> list[float]:
    # Time order: repeated records of one case are concatenated by start time.
    out: list[float] = []
    for r in sorted(recs, key=lambda r: r.started_at):
        m = r.metrics.get(metric)
        if m is not None:
            out.extend(m.samples)
    return out


def timing_label(metric: str) -> str | None:
    """'train' for 'train.step_time', 'train.throughput', ...: the timing a per-sample metric comes from."""
    for suffix in (".step_time", ".cpu_time") + DERIVED_FROM_STEP:
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return None


def read_off_a_clock(metric: str) -> bool:
    """A timing, a rate or ratio of timings, or an energy: a figure a busy machine moves."""
    return timing_label(metric) is not None or metric.endswith(CLOCK_SUFFIXES)


def descheduled_mask(rec: RunRecord, metric: str) -> list[bool] | None:
    """Per sample of `metric`: was the process descheduled (from `<label>.sched_wait`)? None: unknown."""
    from milestones.harness.measure.timing import descheduled_flags

    label = timing_label(metric)
    if label is None:
        return None
    wait, wall, m = (rec.metrics.get(f"{label}.sched_wait"), rec.metrics.get(f"{label}.step_time"),
                     rec.metrics.get(metric))
    if wait is None or wall is None or m is None or not wait.samples:
        return None
    if not (len(wait.samples) == len(wall.samples) == len(m.samples)):
        return None  # e.g. a throughput that dropped a zero-time sample: alignment unknown, keep all
    return list(descheduled_flags(wall.samples, wait.samples))


def clean_samples(rec: RunRecord, metric: str) -> tuple[list[float], int]:
    """The samples of `metric` a verdict uses (descheduled ones left out) and how many were left out.
    When every sample was descheduled all are kept: a verdict on them says so through its count."""
    m = rec.metrics.get(metric)
    if m is None:
        return [], 0
    mask = descheduled_mask(rec, metric)
    if not mask or all(mask):
        return list(m.samples), 0
    return [x for x, d in zip(m.samples, mask, strict=False) if not d], sum(mask)


def _method(kind: str, unit: str) -> str:
    if kind == "fidelity" or unit in EXACT_UNITS:
        return "exact"
    if unit in TOLERANCE_UNITS:
        return "tolerance"
    return "seeds" if kind == "quality" else "blocks"


def compare_metric(kind: str, unit: str, higher_is_better: bool, a: Sequence[float], b: Sequence[float],
                   threshold: float, **kw: Any) -> stats.Comparison:
    method = _method(kind, unit)
    if method == "exact":
        return stats.compare_exact(a, b, higher_is_better=higher_is_better, threshold=threshold)
    if method == "tolerance":
        return stats.compare_tolerance(a, b, higher_is_better=higher_is_better, tolerance=threshold)
    if method == "blocks":
        big = stats.gross_change(a, b, higher_is_better=higher_is_better)
        if big is not None:
            return big
    if method == "seeds":
        return stats.compare_seeds(a, b, higher_is_better=higher_is_better, threshold=threshold,
                                   **{k: v for k, v in kw.items() if k in ("min_effect",)})
    return stats.compare_timeseries(a, b, higher_is_better=higher_is_better, threshold=threshold, **kw)


def _nc(case_recs: Sequence[RunRecord], metric: str, unit: str, hib: bool | None, why: str,
        note: str) -> CompareRow:
    c = case_recs[0].case
    return CompareRow(c.suite, c.config, c.kind, c.scale, c.device, c.dtype, c.batch_size, metric, unit, hib,
                      stats.Comparison("not comparable", why, method="-"), note, mode=c.mode, key=case_key(c))


def _not_comparable_reason(base: Sequence[RunRecord], new: Sequence[RunRecord]) -> str | None:
    a, b = base[0], new[0]
    parts = []
    va, vb = {r.suite_version for r in base}, {r.suite_version for r in new}
    if va != vb:
        parts.append(f"suite version {'/'.join(sorted(va))} vs {'/'.join(sorted(vb))}")
    if a.case.batch_size != b.case.batch_size:
        parts.append(f"batch size {a.case.batch_size} vs {b.case.batch_size}")
    if a.case.dtype != b.case.dtype:
        parts.append(f"dtype {a.case.dtype} vs {b.case.dtype}")
    # The batch size of a --nproc run is per rank: N ranks are a different workload from one.
    wa, wb = a.info.get("world_size", 1), b.info.get("world_size", 1)
    if wa != wb:
        parts.append(f"world size {wa} vs {wb}")
    return "; ".join(parts) or None


def _pair_cases(base: Sequence[RunRecord], new: Sequence[RunRecord]
                ) -> list[tuple[list[RunRecord] | None, list[RunRecord] | None]]:
    """Records grouped by case on each side and paired; an unmatched case is paired on the reduced key so
    that a batch-size or dtype change is said, not hidden, else it stands alone."""
    group_a: dict[tuple, list[RunRecord]] = {}
    group_b: dict[tuple, list[RunRecord]] = {}
    for r in base:
        group_a.setdefault(_case_key(r), []).append(r)
    for r in new:
        group_b.setdefault(_case_key(r), []).append(r)
    pairs: list[tuple[list[RunRecord] | None, list[RunRecord] | None]] = [
        (group_a[k], group_b[k]) for k in group_a if k in group_b]
    left_a = {k: v for k, v in group_a.items() if k not in group_b}
    left_b = {k: v for k, v in group_b.items() if k not in group_a}
    used_b: set[tuple] = set()
    for ka, va in left_a.items():
        match = next((kb for kb in left_b if kb[:LOOSE_KEY] == ka[:LOOSE_KEY] and kb not in used_b), None)
        if match is not None:
            used_b.add(match)
            pairs.append((va, left_b[match]))
        else:
            pairs.append((va, None))
    pairs.extend((None, vb) for kb, vb in left_b.items() if kb not in used_b)
    return pairs


def _case_problem(ra: list[RunRecord] | None, rb: list[RunRecord] | None, note: str) -> CompareRow | None:
    """The one row saying why a pair of cases cannot be compared at all, or None when it can."""
    if ra is None or rb is None:
        recs = ra or rb
        assert recs is not None
        return _nc(recs, "*", "", None, f"case only in {'base' if rb is None else 'new'}", note)
    bad = [r for r in ra + rb if r.status not in SUCCESS_STATUSES]
    if bad:
        r = bad[0]
        side = "base" if r in ra else "new"
        return _nc(ra, "*", "", None, f"{side} status {r.status}: {(r.error or '')[:200]}", note)
    why = _not_comparable_reason(ra, rb)
    return _nc(ra, "*", "", None, why, note) if why else None


def process_starts(recs: Sequence[RunRecord]) -> list[str]:
    """How the records' case processes started: a peak RSS includes what the process held at its start."""
    return sorted({str(r.info.get("process_start", "interpreter")) for r in recs})


def _metric_row(ra: list[RunRecord], rb: list[RunRecord], name: str, thresholds: Thresholds, note: str,
                kw: dict[str, Any]) -> CompareRow | None:
    """One metric of one pair of cases -> its row (None for metrics that are never compared)."""
    ma = next((r.metrics[name] for r in ra if name in r.metrics), None)
    mb = next((r.metrics[name] for r in rb if name in r.metrics), None)
    m = ma or mb
    assert m is not None
    if ma is None or mb is None:
        return _nc(ra, name, m.unit, m.higher_is_better, f"metric missing in {'base' if ma is None else 'new'}", note)
    if ma.unit != mb.unit or ma.higher_is_better != mb.higher_is_better:
        return _nc(ra, name, m.unit, m.higher_is_better, f"unit or direction differs ({ma.unit} vs {mb.unit})", note)
    if name.endswith(NOT_COMPARED):
        return None
    if name.endswith(".peak_rss") and (sa := process_starts(ra)) != (sb := process_starts(rb)):
        return _nc(ra, name, m.unit, m.higher_is_better,
                   f"case processes started differently ({'/'.join(sa)} vs {'/'.join(sb)}): their RSS baselines differ",
                   note)
    a, b = _samples(ra, name), _samples(rb, name)
    if not a or not b:
        side_note = (ma if not a else mb).note or "not measured"
        return _nc(ra, name, m.unit, m.higher_is_better,
                   f"not measured in {'base' if not a else 'new'}: {side_note}", note)
    thr = thresholds.for_metric(name)
    if not any(fnmatch.fnmatchcase(name, pt) for pt, _ in thresholds.per_metric):
        if m.unit == "instructions":
            thr = INSTRUCTION_TOLERANCE
        elif name.endswith(".peak_rss"):
            thr = max(thr, RSS_TOLERANCE)
    clean_a = [clean_samples(r, name) for r in sorted(ra, key=lambda r: r.started_at)]
    clean_b = [clean_samples(r, name) for r in sorted(rb, key=lambda r: r.started_at)]
    dropped = sum(k for _, k in clean_a + clean_b)
    runs_a = [xs for xs, _ in clean_a if xs]
    runs_b = [xs for xs, _ in clean_b if xs]
    a, b = [x for xs in runs_a for x in xs], [x for xs in runs_b for x in xs]
    blocks = _method(ra[0].case.kind, m.unit) == "blocks"
    big = stats.gross_change(a, b, higher_is_better=m.higher_is_better) if blocks else None
    if big is None and blocks and min(len(runs_a), len(runs_b)) >= 3 and min(len(x) for x in runs_a + runs_b) >= 2:
        res = stats.compare_repeated_runs(runs_a, runs_b, higher_is_better=m.higher_is_better, threshold=thr)
    else:
        res = big or compare_metric(ra[0].case.kind, m.unit, m.higher_is_better, a, b, thr, **kw)
    if dropped:
        res = dataclasses.replace(res, n_descheduled=dropped, reason=f"{res.reason}; {dropped} descheduled sample(s) left out")
    all_bad = [r.run_id for r in ra + rb if (mk := descheduled_mask(r, name)) and all(mk)]
    if all_bad:
        res = dataclasses.replace(res, reason=f"{res.reason}; every sample of {len(all_bad)} record(s) was "
                                              "descheduled (kept: no clean sample; the machine was busy)")
    c = ra[0].case
    return CompareRow(c.suite, c.config, c.kind, c.scale, c.device, c.dtype, c.batch_size, name, m.unit,
                      m.higher_is_better, res, note, mode=c.mode, key=case_key(c))


def compare_runs(base: Sequence[RunRecord], new: Sequence[RunRecord], thresholds: Thresholds = Thresholds(),
                 *, metrics: Sequence[str] | None = None, canary: bool = True, **kw: Any
                 ) -> tuple[list[CompareRow], list[str]]:
    """Every metric of every case present on either side -> a row. Returns (rows, environment notes)."""
    if not base or not new:
        raise UsageError("compare needs records on both sides")
    check_not_mixed(base, new)
    env_notes = env_differences(base, new)
    note = "; ".join(env_notes)
    rows: list[CompareRow] = []
    checks: dict[tuple, slow_machine.CanaryCheck] = {}
    for ra, rb in _pair_cases(base, new):
        problem = _case_problem(ra, rb, note)
        if problem is not None:
            rows.append(problem)
            continue
        assert ra is not None and rb is not None
        ref = slow_machine.case_canary(ra)
        if canary and (c := slow_machine.check([ref] if ref else [], slow_machine.case_canary(rb))) is not None:
            checks[_case_key(rb[0])] = c
        names = list(dict.fromkeys([n for r in ra + rb for n in r.metrics]))
        if metrics:
            names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in metrics)]
        rows.extend(row for name in names if (row := _metric_row(ra, rb, name, thresholds, note, kw)) is not None)
    rows = _hold_back_descheduled(control_family(rows), _by_case(new))
    return _excuse_slow_machine(rows, checks), env_notes


# A wall-time regression is not called when at least this share of the new run's samples of that timing
# were descheduled: the wall time then measured the scheduler (its CPU time is still judged).
MOSTLY_DESCHEDULED = 0.5


def descheduled_share(recs: Sequence[RunRecord], metric: str) -> float | None:
    """The share of `metric`'s timing samples in `recs` taken while the process was descheduled."""
    label = timing_label(metric)
    masks = [m for r in recs if label and (m := descheduled_mask(r, f"{label}.step_time"))]
    n = sum(len(m) for m in masks)
    return sum(sum(m) for m in masks) / n if n else None


def _hold_back_descheduled(rows: list[CompareRow], new_by_case: dict[tuple, list[RunRecord]]) -> list[CompareRow]:
    """Wall-time regressions measured while the machine was too busy to run the case become suspects."""
    out = []
    for row in rows:
        share = None
        if row.verdict == "regressed" and timing_label(row.metric) is not None and not row.metric.endswith(".cpu_time"):
            share = descheduled_share(new_by_case.get(_row_case_key(row), []), row.metric)
        if share is not None and share >= MOSTLY_DESCHEDULED:
            row = dataclasses.replace(row, result=dataclasses.replace(
                row.result, verdict="inconclusive", suspect=True,
                reason=f"not called: {share:.0%} of the new run's samples were descheduled (the wall time measured "
                       "a busy machine; its CPU time is judged on its own row): confirm with `milestones ab`. "
                       f"Judged alone: {row.result.reason}"))
        out.append(row)
    return out


def _by_case(recs: Sequence[RunRecord]) -> dict[tuple, list[RunRecord]]:
    out: dict[tuple, list[RunRecord]] = {}
    for r in recs:
        out.setdefault(_case_key(r), []).append(r)
    return out


def _row_case_key(row: CompareRow) -> tuple:
    # Set from `case_key` where the row is made; () for a row built by hand matches no case.
    return row.key


def _excuse_slow_machine(rows: list[CompareRow], checks: dict[tuple, slow_machine.CanaryCheck]) -> list[CompareRow]:
    """Timing regressions of cases whose canary ran slow become suspects (harness/slow_machine.py)."""
    out = []
    for row in rows:
        c = checks.get(_row_case_key(row))
        if c is not None and c.slow and row.verdict == "regressed" and read_off_a_clock(row.metric):
            row = dataclasses.replace(row, result=slow_machine.excuse(row.result, row.higher_is_better, c))
        out.append(row)
    return out


# ------------------------------------------------------------------------------ against a history
def _runs_in_order(records: Sequence[RunRecord]) -> list[list[RunRecord]]:
    by: dict[str, list[RunRecord]] = {}
    for r in records:
        by.setdefault(r.run_id, []).append(r)
    return sorted(by.values(), key=lambda rs: min(r.started_at for r in rs))


def _run_median(recs: Sequence[RunRecord], metric: str) -> float | None:
    xs = [x for r in recs if r.status == "ok" for x in clean_samples(r, metric)[0]]
    xs = [x for x in xs if math.isfinite(x)]
    return statistics.median(xs) if xs and min(xs) > 0 else None


def compare_history(history: Sequence[RunRecord], new: Sequence[RunRecord], thresholds: Thresholds = Thresholds(),
                    *, alpha: float = FAMILY_ALPHA, metrics: Sequence[str] | None = None, canary: bool = True
                    ) -> tuple[list[CompareRow], list[str]]:
    """The newest run against a history of runs (any number of earlier runs of the same cases).

    Timing metrics: `history.judge_latest` per metric (level after the last change point, run-to-run
    noise from the history, persistence over two runs), with Holm over the judged metrics. Everything
    else (exact, tolerance, quality), and any change beyond the gross threshold, is compared with the
    latest history run by `compare_runs`. Metrics with fewer than history.MIN_HISTORY earlier runs
    keep the `compare_runs` row, which says so.
    """
    from milestones.harness import history as hist

    if not history or not new:
        raise UsageError("compare --history needs a history and a new run")
    check_not_mixed(history, new)
    runs = _runs_in_order(history)
    rows, env_notes = compare_runs(runs[-1], new, thresholds, metrics=metrics, canary=canary)
    keyed: dict[tuple, list[RunRecord]] = {}
    for rs in runs:
        for r in rs:
            keyed.setdefault((_case_key(r), r.suite_version, r.run_id), []).append(r)
    new_by_case = _by_case(new)
    judged: list[tuple[int, list[float], float, CompareRow]] = []
    for i, row in enumerate(rows):
        # A gross change is judged against the history too: small CPU steps can move 1.5-2x between
        # runs of the same code, and only the history knows whether this metric does.
        if row.result.method not in ("blocks", "runs", "gross") or row.metric.endswith(DERIVED_FROM_STEP):
            continue
        recs_new = new_by_case.get(_row_case_key(row))
        if not recs_new:
            continue
        version = recs_new[0].suite_version
        series = []
        for rs in runs:
            mine = [r for r in rs if _case_key(r) == _case_key(recs_new[0]) and r.suite_version == version]
            v = _run_median(mine, row.metric) if mine else None
            if v is not None:
                series.append(v)
        latest = _run_median(recs_new, row.metric)
        if latest is None or len(series) < hist.MIN_HISTORY:
            continue
        judged.append((i, series, latest, row))
    checks: dict[tuple, slow_machine.CanaryCheck] = {}
    for key, recs in new_by_case.items() if canary else ():
        ref = [v for rs in runs if (v := slow_machine.case_canary([r for r in rs if _case_key(r) == key]))]
        if (c := slow_machine.check(ref, slow_machine.case_canary(recs))) is not None:
            checks[key] = c
    if not judged:
        return _excuse_slow_machine(_hold_back_descheduled(rows, new_by_case), checks), env_notes
    raw = [hist.judge_latest(s, y, higher_is_better=bool(row.higher_is_better), alpha=1.0) for _, s, y, row in judged]
    adj = stats.holm([j.p_value for j in raw])
    out = list(rows)
    for (i, series, latest, row), j0, pa in zip(judged, raw, adj, strict=True):
        # Holm through the per-test level: p < eff exactly when the adjusted p < alpha.
        eff = alpha * j0.p_value / pa if pa > 0 else alpha
        j = hist.judge_latest(series, latest, higher_is_better=bool(row.higher_is_better), alpha=eff)
        pct = f"{abs(j.change):.1%} {'worse' if j.change > 0 else 'better'}"
        base = (f"{pct} than the level of {j.runs} run(s) (run-to-run noise {j.noise:.1%}, z={j.z:.1f}, "
                f"adjusted p={pa:.2g})")
        state = j.state
        if state == "suspect" and j.change >= stats.DEFAULT_GROSS and j.runs >= MATURE_LEVEL \
                and 1 + j.change >= (1 + j.worst_seen) * (1 + GROSS_BEYOND_WORST):
            # Far beyond the noise, large, AND well beyond the worst run the level has seen: called at once.
            # Without the last condition a metric with heavy tails (a small 2-thread step that sometimes
            # runs 2x slower) failed nights of unchanged code; such a jump stays a suspect for `ab`.
            state = "gross"
        verdict = {"confirmed": "regressed", "gross": "regressed", "suspect": "inconclusive", "improved": "improved",
                   "ok": "unchanged"}[state]
        reason = {"confirmed": f"{base}; persisted over two runs",
                  "gross": f"{base}; a large change beyond the history's noise and its worst run "
                           f"({j.worst_seen:+.0%}): called at once",
                  "suspect": f"suspect: {base}; confirm with `milestones ab` or the next run",
                  "improved": base,
                  "ok": (f"not called: {base}, but {j.as_far:.0%} of the level's runs were as far out (heavy tails)"
                         if j.p_value < eff and abs(j.change) >= 0.02 and j.as_far > hist.EMPIRICAL_TAIL
                         else f"within the history's noise: {base}")}[state]
        ratio = latest / j.level
        res = stats.Comparison(verdict, reason, method="history", ratio=ratio, p_value=j0.p_value, p_adjusted=pa,
                               change=j.change, base=j.level, new=latest, n_base=len(series), n_new=1,
                               threshold=row.result.threshold, suspect=j.state == "suspect",
                               n_descheduled=row.result.n_descheduled)
        out[i] = dataclasses.replace(row, result=res)
        # The derived views of this timing follow it.
        for k, other in enumerate(out):
            if other is not row and _family_key(other) == _family_key(row) and other.metric != row.metric \
                    and other.metric.endswith(DERIVED_FROM_STEP):
                out[k] = dataclasses.replace(other, result=dataclasses.replace(
                    res, reason=f"as {row.metric}: {res.reason}", ratio=(1 / ratio if other.higher_is_better else ratio),
                    base=None, new=None))
    return _excuse_slow_machine(_hold_back_descheduled(out, new_by_case), checks), env_notes


def job_fails(fail_on: str, rows: Sequence[CompareRow]) -> bool:
    """Whether `compare --fail-on FAIL_ON` fails the job on these rows."""
    bad = [r for r in rows if r.verdict == "regressed"]
    if fail_on == "untimed":
        # Whatever a busy machine moves (timings, their rates and ratios, seconds, energy): `ab` decides those.
        bad = [r for r in bad if not read_off_a_clock(r.metric)]
    return fail_on != "never" and bool(bad)


def held_back(row: CompareRow, alpha: float = FAMILY_ALPHA) -> bool:
    """A large timing change that a rule kept from being called: at least the threshold worse, and either
    significant on its own (p < alpha before Holm or a guard held it back) or beyond the gross bar.
    A 2.8x slower step left inconclusive by Holm (p = 0.00018, adjusted 0.013) is one."""
    res = row.result
    if row.verdict in ("regressed", "improved", "not comparable") or not read_off_a_clock(row.metric):
        return False
    if res.change is None or not math.isfinite(res.change) or res.change < res.threshold:
        return False
    return (res.p_value is not None and res.p_value < alpha) or res.change >= stats.DEFAULT_GROSS


def suspects(rows: Sequence[CompareRow]) -> list[str]:
    """Configs to re-run with `milestones ab` before a job fails: a suspect or regressed metric, or a
    large change held back (`held_back`): every large change is either called or confirmed by `ab`."""
    return list(dict.fromkeys(r.config for r in rows if r.result.suspect or r.verdict == "regressed"
                              or held_back(r)))


def is_ab(rec: RunRecord) -> bool:
    return isinstance(rec.info.get("ab"), dict)


def check_not_mixed(*sides: Sequence[RunRecord]) -> None:
    """Records of an interleaved A/B run are paired by round; compared against ordinary records they
    would be read as two unrelated runs. Mixing them is bad input."""
    flags = {is_ab(r) for side in sides for r in side}
    if len(flags) > 1:
        raise UsageError("records from `milestones ab` are mixed with ordinary records; compare an ab run on "
                         "its own (milestones compare AB_RUN) or ordinary runs with each other")


def _family_key(row: CompareRow) -> tuple:
    """Rows that are one measurement share a key: `train.throughput` is `train.step_time` again."""
    metric = row.metric
    for suffix in DERIVED_FROM_STEP:
        if metric.endswith(suffix):
            metric = metric[: -len(suffix)] + ".step_time"
    return (row.suite, row.config, row.kind, row.scale, row.device, row.mode, row.dtype, row.batch_size, metric)


def control_family(rows: Sequence[CompareRow], alpha: float = FAMILY_ALPHA) -> list[CompareRow]:
    """Run-level error control: Holm over every tested measurement of the compare, so that the chance
    that ANY metric is falsely called regressed or improved stays <= `alpha`. A derived metric
    (throughput, FLOP/s, MFU from one step time) is counted once, with the step time; a row whose
    adjusted p-value misses `alpha` keeps its raw p and is downgraded to inconclusive. Rows decided
    without a test (exact, tolerance, gross changes) are not part of the family."""
    tested: dict[tuple, float] = {}
    for r in rows:
        p = r.result.p_value
        if p is None or not math.isfinite(p) or r.result.method not in ("blocks", "runs", "welch"):
            continue
        k = _family_key(r)
        # One measurement, several views: the view with the smallest p speaks for it (its p is the one
        # any of the views could be called on).
        tested[k] = min(tested.get(k, 1.0), p)
    if not tested:
        return list(rows)
    keys = list(tested)
    adj = dict(zip(keys, stats.holm([tested[k] for k in keys]), strict=True))
    m = len(keys)
    out = []
    for r in rows:
        k = _family_key(r)
        if k not in adj or r.result.p_value is None or r.result.method not in ("blocks", "runs", "welch"):
            out.append(r)
            continue
        res = dataclasses.replace(r.result, p_adjusted=adj[k])
        if res.verdict in ("regressed", "improved") and adj[k] >= alpha:
            res = dataclasses.replace(res, verdict="inconclusive",
                                      reason=f"{res.reason}; not significant over the run (Holm over {m} "
                                             f"measurement(s): adjusted p={adj[k]:.2g} >= {alpha:g})")
        out.append(dataclasses.replace(r, result=res))
    return out


def verdict_counts(rows: Iterable[CompareRow]) -> dict[str, int]:
    out = {v: 0 for v in stats.VERDICTS}
    for r in rows:
        out[r.verdict] += 1
    return out


# -------------------------------------------------------------------------------------- run vs paper
@dataclass(frozen=True)
class PaperRow:
    baseline: Baseline
    config: str
    scale: str
    verdict: str          # reproduced | not reproduced | not comparable | not measured
    reason: str
    ours: float | None = None
    ours_std: float | None = None
    n: int = 0
    unit: str = ""
    delta: float | None = None
    record_id: str = ""
    samples: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        b = self.baseline
        return {"id": b.id, "suite": b.suite, "config": self.config, "kind": b.kind, "scale": self.scale,
                "metric": b.metric, "paper": b.value, "plus_minus": b.plus_minus, "unit": b.unit,
                "ours": self.ours, "ours_std": self.ours_std, "n": self.n, "delta": self.delta,
                "verdict": self.verdict, "reason": self.reason, "confirmed": b.confirmed,
                "citation": b.citation, "protocol": b.protocol, "dataset": b.dataset, "split": b.split}


CONFIG_ECHO_PREFIXES = ("hparam.",)


def is_config_echo(metric: str) -> bool:
    """Metrics that only repeat a config value (hparam.*): comparing them with a paper checks a setting."""
    return metric.startswith(CONFIG_ECHO_PREFIXES)


def paper_verdict(b: Baseline, rec: RunRecord) -> PaperRow:
    c = rec.case
    common = dict(baseline=b, config=c.config, scale=c.scale, record_id=rec.record_id)
    if getattr(b, "cited", False):  # a comparison row of the paper's table: no case measures it
        return PaperRow(verdict="not measured", reason="cited, not measured: a comparison row of the paper", **common)
    if rec.status != "ok":
        return PaperRow(verdict="not comparable", reason=f"record status {rec.status}", **common)
    m = rec.metrics.get(b.metric)
    if m is None:
        return PaperRow(verdict="not measured", reason=f"metric {b.metric!r} not in the record", **common)
    if not m.samples:
        return PaperRow(verdict="not measured", reason=m.note or "not measured", unit=m.unit, **common)
    xs = [x * b.record_factor for x in m.samples]
    ours = statistics.fmean(xs)
    std = statistics.stdev(xs) if len(xs) > 1 else None
    base = dict(ours=ours, ours_std=std, n=len(xs), unit=b.unit, samples=tuple(xs), **common)
    if not all(math.isfinite(x) for x in xs):
        return PaperRow(verdict="not comparable", reason="non-finite values", **base)
    if c.scale not in b.allowed_scales:
        return PaperRow(verdict="not comparable",
                        reason=f"record scale {c.scale}, figure needs {'/'.join(b.allowed_scales)}", **base)
    if b.protocol_ours:
        return PaperRow(verdict="not comparable", reason=f"protocol differs: {b.protocol_ours}", **base)
    if b.record_factor == 1.0 and m.unit != b.unit:
        return PaperRow(verdict="not comparable", reason=f"unit {m.unit} vs paper {b.unit}", **base)
    delta = ours - b.value
    rel = f" ({delta / b.value:+.1%})" if b.value else ""
    if is_config_echo(b.metric):  # the record repeats a setting: agreement is a config check, not a result
        same = abs(delta) <= b.tolerance_abs * (1 + 1e-12)
        # The verdict word stays the usual one; the baseline's category (configuration) is what keeps it out of
        # the results, and the reason says so wherever the row is shown.
        return PaperRow(verdict="reproduced" if same else "not reproduced",
                        reason=("the setting matches the paper's" if same else
                                f"the setting differs from the paper's by {delta:+.4g} {b.unit}")
                        + "; the metric echoes the config, so this is a configuration check, not a reproduction",
                        delta=delta, **base)
    if abs(delta) <= b.tolerance_abs * (1 + 1e-12):
        return PaperRow(verdict="reproduced", reason=f"within tolerance {_tol(b)}", delta=delta, **base)
    better = (delta > 0) == b.higher_is_better
    return PaperRow(verdict="not reproduced",
                    reason=f"off by {delta:+.4g} {b.unit}{rel}, {'better' if better else 'worse'} than the paper; "
                           f"tolerance {_tol(b)}", delta=delta, **base)


def _tol(b: Baseline) -> str:
    # .2g, not .0%: a 0.1% tolerance must not read "+-0%"
    unit = "" if b.unit in ("1", "value", "") else f" {b.unit}"  # dimensionless: "+-0", not "+-0 1"
    return f"+-{float(f'{100 * b.tolerance:.2g}'):g}%" if b.tolerance_kind == "relative" else \
        f"+-{b.tolerance:g}{unit}"


def compare_with_paper(records: Sequence[RunRecord], baselines: Sequence[Baseline]) -> list[PaperRow]:
    """A row per (record, baseline) that applies; a record without the metric gives `not measured`."""
    rows = []
    for rec in records:
        c = rec.case
        for b in baselines:
            if b.suite == c.suite and c.config in b.configs and b.kind == c.kind:
                rows.append(paper_verdict(b, rec))
    return rows


# ----------------------------------------------------------------------------------------- by group
def group_label(rec: RunRecord, by: str) -> str:
    if by not in GROUP_KEYS:
        raise UsageError(f"--by must be one of {', '.join(GROUP_KEYS)}, not {by!r}")
    if by == "gpu":
        g = env_value(rec, "gpu")
        return g if g else f"CPU: {rec.env.get('cpu_model') or 'unknown'}"
    v = env_value(rec, by)
    if by == "commit" and v:
        return str(v)[:10]
    if by == "cuda" and not v:
        return "none"
    return str(v) if v is not None else "unknown"


@dataclass(frozen=True)
class GroupRow:
    suite: str
    config: str
    kind: str
    scale: str
    dtype: str
    batch_size: int | None
    metric: str
    unit: str
    higher_is_better: bool
    reference: str
    ref_value: float | None
    values: dict[str, float | None]                       # group -> median
    ratios: dict[str, float | None]                       # group -> value / reference value
    cis: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)   # group -> why no ratio

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "config": self.config, "kind": self.kind, "scale": self.scale,
                "dtype": self.dtype, "batch_size": self.batch_size, "metric": self.metric, "unit": self.unit,
                "higher_is_better": self.higher_is_better, "reference": self.reference,
                "ref_value": self.ref_value, "values": self.values, "ratios": self.ratios,
                "cis": {k: list(v) if v else None for k, v in self.cis.items()}, "notes": self.notes}


def compare_by(records: Sequence[RunRecord], by: str, reference: str | None = None,
               metrics: Sequence[str] = GROUP_METRIC_PATTERNS, n_boot: int = 1000) -> tuple[list[GroupRow], list[str]]:
    """Ratios of each group's median to the reference group's, per case and metric. Returns (rows, groups)."""
    ok = [r for r in records if r.status == "ok"]
    if not ok:
        raise UsageError("no successful records to compare by group")
    groups = sorted({group_label(r, by) for r in ok})
    if reference is None:
        # The group with the most records: usually the machine the others are measured against.
        counts = {g: sum(group_label(r, by) == g for r in ok) for g in groups}
        reference = max(groups, key=lambda g: counts[g])
    elif reference not in groups:
        from milestones.harness.registry import did_you_mean

        raise UsageError(f"--reference {reference!r} is not a {by} in these records "
                         f"(have: {', '.join(groups)}){did_you_mean(reference, groups)}")
    cases: dict[tuple, dict[str, list[RunRecord]]] = {}
    for r in ok:
        c = r.case
        key = (c.suite, c.config_label, c.kind, c.scale, c.dtype, c.batch_size)
        cases.setdefault(key, {}).setdefault(group_label(r, by), []).append(r)
    rows = []
    for key, by_group in sorted(cases.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        names = list(dict.fromkeys(n for rs in by_group.values() for r in rs for n in r.metrics))
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in metrics)]
        for name in names:
            m = next(r.metrics[name] for rs in by_group.values() for r in rs if name in r.metrics)
            values: dict[str, float | None] = {}
            samples: dict[str, list[float]] = {}
            notes: dict[str, str] = {}
            for g in groups:
                rs = by_group.get(g, [])
                xs = _samples(rs, name)
                samples[g] = xs
                values[g] = statistics.median(xs) if xs and all(math.isfinite(x) for x in xs) else None
                if not rs:
                    notes[g] = "not run"
                elif not xs:
                    mm = next((r.metrics[name] for r in rs if name in r.metrics), None)
                    notes[g] = (mm.note if mm and mm.note else "not measured")
            versions = {g: {r.suite_version for r in by_group.get(g, [])} for g in groups}
            ref_v = values.get(reference)
            ratios: dict[str, float | None] = {}
            cis: dict[str, tuple[float, float] | None] = {}
            for g in groups:
                if values[g] is None or not ref_v:
                    ratios[g] = None
                    if g not in notes and not ref_v:
                        notes[g] = "reference not measured"
                    continue
                if g != reference and versions[g] and versions[reference] and versions[g] != versions[reference]:
                    ratios[g] = None
                    notes[g] = "not comparable: suite version differs from the reference"
                    continue
                ratios[g] = values[g] / ref_v
                if g != reference and len(samples[g]) > 1 and len(samples[reference]) > 1:
                    cis[g] = stats.block_bootstrap_ratio(samples[reference], samples[g], level=0.95, n_boot=n_boot)
            if sum(v is not None for v in values.values()) < 2:
                continue  # measured in one group only: nothing to compare
            rows.append(GroupRow(*key, name, m.unit, m.higher_is_better, reference, ref_v, values, ratios, cis, notes))
    return rows, groups


# ------------------------------------------------------------------------------------------ kernels
@dataclass(frozen=True)
class KernelDelta:
    name: str
    base_us: float
    new_us: float
    base_calls: float
    new_calls: float

    @property
    def delta_us(self) -> float:
        return self.new_us - self.base_us

    @property
    def ratio(self) -> float | None:
        return self.new_us / self.base_us if self.base_us else None


def kernel_tables(rec: RunRecord) -> dict[str, list[dict[str, Any]]]:
    """label -> kernel table, validated (a malformed table is a RecordError, never a wrong diff)."""
    out = {}
    for k, v in rec.artifacts.items():
        if not k.endswith(".kernels"):
            continue
        if not isinstance(v, list) or not all(isinstance(r, dict) and isinstance(r.get("name"), str)
                                              and isinstance(r.get("self_time_us"), (int, float)) for r in v):
            raise RecordError(f"record {rec.record_id}: artifact {k!r} is not a kernel table")
        out[k[: -len(".kernels")]] = v
    return out


def kernel_diff(base: RunRecord, new: RunRecord, label: str | None = None, top: int = 10) -> list[KernelDelta]:
    """Kernels whose time per step changed most (by absolute time), with call counts."""
    ta, tb = kernel_tables(base), kernel_tables(new)
    labels = [label] if label else sorted(set(ta) & set(tb))
    out: list[KernelDelta] = []
    for lb in labels:
        if lb not in ta or lb not in tb:
            raise UsageError(f"kernel table {lb!r} missing in {'base' if lb not in ta else 'new'} record")
        a = {r["name"]: r for r in ta[lb]}
        b = {r["name"]: r for r in tb[lb]}
        for n in dict.fromkeys(list(a) + list(b)):
            ra, rb = a.get(n, {}), b.get(n, {})
            out.append(KernelDelta(n if len(labels) == 1 else f"{lb}: {n}", float(ra.get("self_time_us", 0.0)),
                                   float(rb.get("self_time_us", 0.0)), float(ra.get("calls", 0)),
                                   float(rb.get("calls", 0))))
    out.sort(key=lambda d: abs(d.delta_us), reverse=True)
    return out[:top]


def kernel_diffs(base: Sequence[RunRecord], new: Sequence[RunRecord], top: int = 10) -> list[tuple[str, list[KernelDelta]]]:
    """For every case with kernel tables on both sides: (case, its top kernel changes)."""
    idx = {_case_key(r): r for r in base if kernel_tables(r)}
    out = []
    for r in new:
        k = _case_key(r)
        if k in idx and kernel_tables(r) and idx[k].suite_version == r.suite_version:
            ds = kernel_diff(idx[k], r, top=top)
            if any(d.delta_us or d.base_calls != d.new_calls for d in ds):
                out.append((f"{r.case.suite}/{r.case.config} {r.case.kind}", ds))
    return out

