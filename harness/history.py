"""Step changes over many runs of one case (nightly history): where did a metric shift, from which run?

Change points (`build`, `histories`) come from an E-Divisive-means search with a t-test, as Apache
Otava does it (`stats.change_points`: best split by a two-sample t statistic, kept at p < 0.001 after
a correction for the number of candidate splits, recursive, in windows of 50 runs, with a magnitude
floor of 2%). `judge_latest` is the nightly question: is the newest run off the level of the runs
before it, by more than their run-to-run noise, and has that persisted (two runs in a row)?

The older fit kept below (`segment`): a piecewise-constant fit to the per-run medians (on a log scale, so steps are relative), found exactly
by optimal partitioning (dynamic programming over all segmentations) with an L1 cost, which is robust
to a single odd run, and a penalty per step scaled by the run-to-run noise estimated from the data.
This is asv's idea (piecewise-constant fit, L1) with an exact solver; n is small (tens to hundreds
of nightly runs), so the O(n^2) search is cheap.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from milestones.harness.records import RunRecord

DEFAULT_PENALTY = 4.0      # x log(n), in units of the robust noise scale
DEFAULT_MIN_STEP = 0.02    # steps smaller than 2% are merged away: below what a nightly job acts on


@dataclass(frozen=True)
class Step:
    index: int              # first run of the new level (0-based, in time order)
    run_id: str
    started_at: str
    commit: str | None
    before: float
    after: float
    worse: bool             # in the metric's bad direction
    tentative: bool         # the new level rests on a single run so far

    @property
    def change(self) -> float:
        return self.after / self.before - 1 if self.before else float("nan")


@dataclass(frozen=True)
class History:
    suite: str
    config: str
    kind: str
    metric: str
    unit: str
    higher_is_better: bool
    run_ids: tuple[str, ...]
    started_at: tuple[str, ...]
    commits: tuple[str | None, ...]
    medians: tuple[float, ...]
    p10: tuple[float, ...]
    p90: tuple[float, ...]
    steps: tuple[Step, ...] = field(default=())
    levels: tuple[float, ...] = ()   # fitted level for each run

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "config": self.config, "kind": self.kind, "metric": self.metric,
                "unit": self.unit, "runs": len(self.run_ids),
                "steps": [{"run_id": s.run_id, "index": s.index, "started_at": s.started_at, "commit": s.commit,
                           "before": s.before, "after": s.after, "change": s.change, "worse": s.worse,
                           "tentative": s.tentative} for s in self.steps]}


def noise_scale(x: Sequence[float]) -> float:
    """Robust run-to-run noise: MAD of first differences / (0.6745 * sqrt 2); steps barely move it."""
    d = np.diff(np.asarray(x, float))
    if len(d) == 0:
        return 0.0
    return float(np.median(np.abs(d - np.median(d))) / 0.6745 / math.sqrt(2))


def _l1_costs(x: np.ndarray) -> np.ndarray:
    """cost[i, j] = sum |x[i:j] - median(x[i:j])| for all 0 <= i < j <= n."""
    n = len(x)
    cost = np.zeros((n + 1, n + 1))
    for i in range(n):
        for j in range(i + 1, n + 1):
            seg = x[i:j]
            cost[i, j] = np.abs(seg - np.median(seg)).sum()
    return cost


def segment(values: Sequence[float], penalty: float = DEFAULT_PENALTY, min_step: float = DEFAULT_MIN_STEP,
            scale: float | None = None) -> list[int]:
    """Start indices of the segments after the first (the step positions) of positive `values`."""
    x = np.log(np.asarray(values, float))
    n = len(x)
    if n < 3:
        return []
    # A floor on the noise keeps perfectly flat series from turning rounding into steps.
    s = max(scale if scale is not None else noise_scale(x), 1e-3)
    beta = penalty * math.log(n) * s
    cost = _l1_costs(x)
    best = np.full(n + 1, np.inf)
    best[0] = -beta
    prev = np.zeros(n + 1, dtype=int)
    for j in range(1, n + 1):
        cands = best[:j] + cost[:j, j] + beta
        i = int(np.argmin(cands))
        best[j], prev[j] = cands[i], i
    cuts = []
    j = n
    while j > 0:
        cuts.append(int(prev[j]))
        j = int(prev[j])
    starts = sorted(c for c in cuts if c > 0)
    # Merge steps smaller than min_step (relative): significant but too small to act on.
    changed = True
    while changed and starts:
        changed = False
        bounds = [0] + starts + [n]
        levels = [float(np.median(x[a:b])) for a, b in zip(bounds[:-1], bounds[1:], strict=False)]
        jumps = [abs(levels[k + 1] - levels[k]) for k in range(len(starts))]
        k = int(np.argmin(jumps))
        if jumps[k] < math.log1p(min_step):
            del starts[k]
            changed = True
    return starts


def build(suite: str, config: str, kind: str, metric: str, runs: Sequence[tuple[RunRecord, list[float]]],
          **kw: Any) -> History:
    runs = sorted(runs, key=lambda t: t[0].started_at)
    rec0 = runs[0][0]
    m = rec0.metrics[metric]
    meds = [statistics.median(xs) for _, xs in runs]
    q = [np.quantile(xs, [0.1, 0.9]) for _, xs in runs]
    starts = steps_at(meds, **kw) if all(v > 0 for v in meds) else []
    bounds = [0] + starts + [len(meds)]
    levels: list[float] = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=False):
        levels.extend([float(statistics.median(meds[a:b]))] * (b - a))
    steps = []
    for k, i in enumerate(starts):
        before, after = levels[i - 1], levels[i]
        rec = runs[i][0]
        worse = (after < before) if m.higher_is_better else (after > before)
        tentative = (bounds[k + 2] - i) == 1
        steps.append(Step(i, rec.run_id, rec.started_at, (rec.env.get("git") or {}).get("commit"), before, after,
                          worse, tentative))
    return History(suite, config, kind, metric, m.unit, m.higher_is_better, tuple(r.run_id for r, _ in runs),
                   tuple(r.started_at for r, _ in runs),
                   tuple((r.env.get("git") or {}).get("commit") for r, _ in runs), tuple(meds),
                   tuple(float(a) for a, _ in q), tuple(float(b) for _, b in q), tuple(steps), tuple(levels))


def histories(records: Iterable[RunRecord], metrics: Sequence[str] | None = None, min_runs: int = 3,
              **kw: Any) -> list[History]:
    """A History for every (case, metric) seen in at least `min_runs` different runs."""
    import fnmatch

    by: dict[tuple, dict[str, tuple[RunRecord, list[float]]]] = {}
    for r in records:
        if r.status != "ok":
            continue
        c = r.case
        for name, m in r.metrics.items():
            if not m.samples or (metrics and not any(fnmatch.fnmatchcase(name, p) for p in metrics)):
                continue
            if not all(math.isfinite(x) for x in m.samples):
                continue
            key = (c.suite, c.config_label, c.kind, c.scale, c.device.split(":")[0], c.dtype, c.batch_size,
                   r.suite_version, name)
            slot = by.setdefault(key, {})
            prev = slot.get(r.run_id)
            slot[r.run_id] = (r, (prev[1] if prev else []) + list(m.samples))
    out = []
    for key, runs in sorted(by.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        if len(runs) >= min_runs:
            out.append(build(key[0], key[1], key[2], key[8], list(runs.values()), **kw))
    return out


# ---------------------------------------------------------------------------- change points, t-test
DEFAULT_MAX_PVALUE = 0.001
DEFAULT_WINDOW = 50


def steps_at(values: Sequence[float], *, max_pvalue: float = DEFAULT_MAX_PVALUE, min_step: float = DEFAULT_MIN_STEP,
             window: int = DEFAULT_WINDOW, **_: Any) -> list[int]:
    """Indices where a new level starts in positive `values` (relative steps: on the log scale)."""
    from milestones.harness import stats

    x = np.log(np.asarray(values, float))
    if len(x) < 3:
        return []
    # A floor on the spread keeps a perfectly flat series from turning rounding into steps.
    x = x + np.random.default_rng(0).normal(0, 1e-6, len(x))
    cps = stats.change_points(x, max_pvalue=max_pvalue, min_magnitude=math.log1p(min_step), window=window)
    return [c.index for c in cps]


@dataclass(frozen=True)
class Judgement:
    """The newest run of one metric against the runs before it."""

    state: str               # "ok" | "suspect" | "confirmed" | "improved" | "too few runs"
    change: float            # relative change of the newest run against the level (+ = worse)
    z: float                 # in units of the run-to-run noise of the difference
    p_value: float
    level: float             # the reference level (median of the last segment of the history)
    noise: float             # run-to-run noise (SD of log per-run medians) estimated from the history
    runs: int                # history runs in the reference segment
    persisted: bool          # the run before the newest was off in the same direction too
    worst_seen: float = 0.0  # the worst earlier run of the segment, relative to the level (+ = worse)
    as_far: float = 0.0      # share of the level's runs as far out as the newest (within one noise SD)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


MIN_HISTORY = 5
NOISE_FLOOR = 0.002   # a history of identical values still has some noise: 0.2%
EMPIRICAL_TAIL = 0.05  # at most this share of the level's runs may be as far out as a run judged off it
MAD_EFFICIENCY = 0.37  # asymptotic efficiency of the MAD against the SD under normal noise


def judge_latest(history: Sequence[float], latest: float, *, higher_is_better: bool, alpha: float = 0.01,
                 min_change: float = 0.02, noise: float | None = None) -> Judgement:
    """Is `latest` (a per-run median) off the level of `history` (earlier per-run medians, time order)?

    Level: the median of the history after its last change point (at most DEFAULT_WINDOW runs); noise:
    the robust run-to-run SD of the log medians (`stats.run_noise`) unless given. The test is a z-test
    of the newest run against that level, two-sided at `alpha` (give it the Holm-adjusted share when
    many metrics are judged). `suspect`: off, in the bad direction, once; `confirmed`: the run before
    was off the same way as well (a regression that persisted over two runs).
    """
    from scipy.stats import t as student_t

    from milestones.harness import stats

    h = np.log(np.asarray([v for v in history if v > 0], float))
    if len(h) < MIN_HISTORY or latest <= 0:
        return Judgement("too few runs", float("nan"), float("nan"), float("nan"), float("nan"), float("nan"),
                         len(h), False)
    # min_size 2: one odd run does not make a new level (it is what persistence is judged on).
    cps = stats.change_points(h, max_pvalue=DEFAULT_MAX_PVALUE, min_magnitude=math.log1p(DEFAULT_MIN_STEP),
                              window=DEFAULT_WINDOW, min_size=2)
    idx = [c.index for c in cps]
    if idx and len(h) - idx[-1] == 2:
        # A last "level" of two runs whose first run sits with the level before it is one odd run that
        # min_size pulled a neighbour into: not a level (else a regression's second night would be judged
        # against a level half made of itself, and never confirmed).
        c = idx[-1]
        before = float(np.median(h[(idx[-2] if len(idx) > 1 else 0):c]))
        if abs(h[c] - before) < abs(h[c] - h[c + 1]):
            idx = idx[:-1]
    start = max(idx + [len(h) - DEFAULT_WINDOW, 0])
    seg = h[start:]
    sigma = max(noise if noise is not None else stats.run_noise(h), NOISE_FLOOR)

    def z_of(y: float, ref: np.ndarray) -> tuple[float, float]:
        lvl = float(np.median(ref))
        # The level is a median of k runs: its own error adds ~ (pi/2) sigma^2 / k.
        se = sigma * math.sqrt(1 + (math.pi / 2) / len(ref))
        d = (y - lvl) if not higher_is_better else (lvl - y)
        return d, d / se

    # The noise is estimated from the history itself: a t-test, with the degrees of freedom the robust
    # estimate is worth (a MAD keeps ~37% of the information of an SD). A short history whose noise came
    # out small by chance then cannot fail a night on its own (the whole-run A/A failed early nights so).
    df = max(1.0, MAD_EFFICIENCY * (len(h) - 2))
    y = math.log(latest)
    d, z = z_of(y, seg)
    p = float(2 * student_t.sf(abs(z), df))
    # Persistence: was the last history run itself off the level of the runs before it?
    prev_d, prev_z = z_of(float(seg[-1]), seg[:-1]) if len(seg) > MIN_HISTORY else (0.0, 0.0)
    prev_p = float(2 * student_t.sf(abs(prev_z), df))
    big = abs(d) >= math.log1p(min_change)

    def share_as_far(v: float, ref: np.ndarray, worse: bool) -> float:
        # The share of reference runs as far out as v, within one noise SD, in the direction judged.
        up = worse != higher_is_better
        bad = (ref >= v - sigma) if up else (ref <= v + sigma)
        return float(np.mean(bad)) if len(ref) else 0.0

    # Distribution-free guard: the run(s) judged must lie beyond (nearly) every run of the level, by more
    # than the noise. Under unchanged code the last two runs are both beyond all n runs before them with
    # chance ~2/n^2 whatever the noise's shape, which keeps a heavy-tailed or two-level metric (the
    # z-test's blind spot) from confirming a regression at a level it has shown before.
    worse = d > 0
    # A second night at the same new level is judged against the runs before the first.
    persisted = bool(prev_p < alpha ** 0.5 and np.sign(prev_d) == np.sign(d) and abs(prev_d) >= math.log1p(min_change)
                     and len(seg) > MIN_HISTORY and share_as_far(float(seg[-1]), seg[:-1], worse) <= EMPIRICAL_TAIL
                     and share_as_far(y, seg[:-1], worse) <= EMPIRICAL_TAIL)
    off = p < alpha and big and (persisted or share_as_far(y, seg, worse) <= EMPIRICAL_TAIL)
    if off and d > 0:
        state = "confirmed" if persisted else "suspect"
    elif off and d < 0:
        state = "improved"
    else:
        state = "ok"
    dev = (seg - np.median(seg)) if not higher_is_better else (np.median(seg) - seg)
    return Judgement(state, math.expm1(d), z, p, math.exp(float(np.median(seg))), sigma, len(seg), persisted,
                     math.expm1(max(float(dev.max()), 0.0)), share_as_far(y, seg, worse))
