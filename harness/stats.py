"""Pure statistics for regression verdicts: block bootstrap CI of a ratio of medians, Mann-Whitney on
block medians, Welch's test over seeds, and the verdict rule. Imports nothing else from the harness.

Why blocks: timing samples taken one after another on a shared machine drift, so consecutive samples
are not independent. A per-sample Mann-Whitney treats n autocorrelated samples as n independent
ones and raises false alarms on 13-18% of same-vs-same pairs (ARCHITECTURE.md). Here the samples of
each side are cut, in time order, into contiguous blocks; the test runs on the block medians (few,
nearly independent values) and the confidence interval resamples whole blocks, which keeps the
within-block dependence. The verdict rule is in `decide` and docs/compare-and-report.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

VERDICTS = ("regressed", "improved", "unchanged", "inconclusive", "not comparable")
DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.01          # speed: Mann-Whitney on block medians
DEFAULT_ALPHA_SEEDS = 0.05    # quality over a handful of seeds: Welch
DEFAULT_MIN_EFFECT = 0.5      # a verdict needs a point estimate of at least this fraction of the threshold
MAX_BLOCKS = 10
MIN_BLOCK = 5
N_BOOT = 2000


@dataclass(frozen=True)
class Comparison:
    """One metric, base vs new. `ratio` is new/base (of medians, or of means over seeds)."""

    verdict: str
    reason: str
    method: str
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    change: float | None = None      # signed change in the metric's bad direction: +0.07 = 7% worse
    base: float | None = None
    new: float | None = None
    n_base: int = 0
    n_new: int = 0
    threshold: float = DEFAULT_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def n_blocks(n: int, max_blocks: int = MAX_BLOCKS, min_block: int = MIN_BLOCK) -> int:
    """How many contiguous blocks `n` time-ordered samples are cut into (at least 1)."""
    return max(1, min(max_blocks, n // min_block))


def blocks(samples: Sequence[float], k: int) -> np.ndarray:
    """`k` contiguous blocks of equal size (k x m); up to k-1 samples at the end are dropped."""
    x = np.asarray(samples, dtype=float)
    m = len(x) // k
    return x[: k * m].reshape(k, m)


def block_medians(samples: Sequence[float], k: int | None = None) -> np.ndarray:
    k = n_blocks(len(samples)) if k is None else k
    return np.median(blocks(samples, k), axis=1)


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value (exact for small samples without ties)."""
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    if np.all(a == a[0]) and np.all(b == b[0]) and a[0] == b[0]:
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Welch's t-test: (p-value, difference of means b-a, its standard error). NaN when undefined."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float(b.mean() - a.mean()) if len(a) and len(b) else float("nan"), float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(b.mean() - a.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return (1.0 if diff == 0 else 0.0), diff, 0.0
    from scipy.stats import t as tdist

    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    p = 2 * float(tdist.sf(abs(diff) / se, df))
    return p, diff, se


def welch_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Welch confidence interval of mean(b) - mean(a)."""
    from scipy.stats import t as tdist

    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    diff = float(b.mean() - a.mean())
    if se == 0:
        return diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    q = float(tdist.ppf(0.5 + level / 2, df))
    return diff - q * se, diff + q * se


def block_bootstrap_ratio(a: Sequence[float], b: Sequence[float], *, level: float = 0.99, n_boot: int = N_BOOT,
                          seed: int = 0, k_a: int | None = None, k_b: int | None = None) -> tuple[float, float]:
    """Percentile CI of median(b)/median(a), resampling whole contiguous blocks of each side."""
    return _bootstrap([blocks(x, n_blocks(len(x)) if k is None else k) for x, k in ((a, k_a), (b, k_b))],
                      level=level, n_boot=n_boot, seed=seed)


def _bootstrap(sides: list[np.ndarray], *, level: float, n_boot: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    out = []
    for blk in sides:
        idx = rng.integers(0, blk.shape[0], size=(n_boot, blk.shape[0]))
        out.append(np.median(blk[idx].reshape(n_boot, -1), axis=1))
    ratios = out[1] / out[0]
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _bad(log_ratio: float, higher_is_better: bool) -> float:
    """Log change in the metric's bad direction (positive = worse)."""
    return -log_ratio if higher_is_better else log_ratio


def decide(change: float, ci_bad: tuple[float, float], p: float, alpha: float, threshold: float,
           min_effect: float = DEFAULT_MIN_EFFECT) -> tuple[str, str]:
    """The verdict from a change in the bad direction (log scale, + = worse), its CI and a p-value.

    - significant: p < alpha AND the CI excludes no-change;
    - regressed / improved: significant, the point estimate is at least `min_effect` x threshold, and
      the CI reaches the threshold (a change that large cannot be ruled out);
    - unchanged: the whole CI lies within +-threshold (any change is smaller than what matters);
    - inconclusive: everything else (too noisy to say either).
    """
    t = math.log1p(threshold)
    lo, hi = ci_bad
    sig = p < alpha and (lo > 0 or hi < 0)
    pct = f"{math.expm1(abs(change)) * 100:.1f}%"
    if sig and change > 0 and change >= min_effect * t and hi >= t:
        return "regressed", f"{pct} worse (p={p:.2g})"
    if sig and change < 0 and -change >= min_effect * t and lo <= -t:
        return "improved", f"{pct} better (p={p:.2g})"
    if -t < lo and hi < t:
        if sig:
            return "unchanged", f"significant but small: {pct} {'worse' if change > 0 else 'better'}, " \
                                f"CI within +-{threshold:.0%}"
        return "unchanged", f"CI within +-{threshold:.0%}"
    if sig:
        return "inconclusive", f"significant {pct} {'worse' if change > 0 else 'better'} (p={p:.2g}) " \
                               f"but below {min_effect:.0%} of the {threshold:.0%} threshold"
    return "inconclusive", f"not significant (p={p:.2g}) and the CI reaches +-{threshold:.0%}"


def _finite(xs: Sequence[float]) -> bool:
    return all(math.isfinite(x) for x in xs)


def compare_timeseries(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool,
                       threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA,
                       min_effect: float = DEFAULT_MIN_EFFECT, level: float = 0.99, n_boot: int = N_BOOT,
                       seed: int = 0) -> Comparison:
    """Speed samples (time order kept): block medians + block bootstrap, see the module docstring."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    common = dict(method="blocks", n_base=len(a), n_new=len(b), threshold=threshold)
    if not a or not b:
        return Comparison("not comparable", "no samples on the " + ("base" if not a else "new") + " side", **common)
    if not (_finite(a) and _finite(b)):
        return Comparison("not comparable", "non-finite samples", **common)
    ma, mb = float(np.median(a)), float(np.median(b))
    if ma <= 0 or mb <= 0:
        return Comparison("not comparable", "medians must be positive for a ratio", base=ma, new=mb, **common)
    ratio = mb / ma
    change = _bad(math.log(ratio), higher_is_better)
    if len(a) < 2 or len(b) < 2:
        if a == b:
            return Comparison("unchanged", "identical values", ratio=ratio, change=0.0, base=ma, new=mb, **common)
        return Comparison("inconclusive", f"{min(len(a), len(b))} sample(s): no test possible", ratio=ratio,
                          change=math.expm1(change), base=ma, new=mb, **common)
    ba, bb = block_medians(a), block_medians(b)
    p = mann_whitney(ba, bb)
    lo, hi = block_bootstrap_ratio(a, b, level=level, n_boot=n_boot, seed=seed)
    ci_bad = sorted((_bad(math.log(lo), higher_is_better), _bad(math.log(hi), higher_is_better)))
    verdict, reason = decide(change, (ci_bad[0], ci_bad[1]), p, alpha, threshold, min_effect)
    reason += f"; {len(ba)} vs {len(bb)} blocks"
    return Comparison(verdict, reason, ratio=ratio, ci_low=lo, ci_high=hi, p_value=p, change=math.expm1(change),
                      base=ma, new=mb, **common)


def compare_seeds(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool,
                  threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA_SEEDS,
                  min_effect: float = DEFAULT_MIN_EFFECT, level: float = 0.95) -> Comparison:
    """Quality metrics, one sample per seed: Welch's test and CI on the means; threshold relative."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    common = dict(method="welch", n_base=len(a), n_new=len(b), threshold=threshold)
    if not a or not b:
        return Comparison("not comparable", "no samples on the " + ("base" if not a else "new") + " side", **common)
    if not (_finite(a) and _finite(b)):
        return Comparison("not comparable", "non-finite values (diverged?)", **common)
    ma, mb = float(np.mean(a)), float(np.mean(b))
    if ma == 0:
        return Comparison("not comparable", "base mean is 0: no relative change", base=ma, new=mb, **common)
    ratio = mb / ma
    if len(a) < 2 or len(b) < 2:
        if ma == mb:
            return Comparison("unchanged", "identical values", ratio=ratio, change=0.0, base=ma, new=mb, **common)
        return Comparison("inconclusive", f"{min(len(a), len(b))} seed(s) on one side: Welch's test needs 2+",
                          ratio=ratio, base=ma, new=mb, **common)
    p, diff, se = welch(a, b)
    lo, hi = welch_ci(a, b, level)
    sign = -1.0 if higher_is_better else 1.0
    # Relative changes on the log scale so the rule in `decide` applies unchanged.
    rel = lambda d: math.log1p(max(d / abs(ma), -0.999999))  # noqa: E731
    change = sign * rel(diff)
    ci_bad = sorted((sign * rel(lo), sign * rel(hi)))
    verdict, reason = decide(change, (ci_bad[0], ci_bad[1]), p, alpha, threshold, min_effect)
    reason += f"; Welch over {len(a)} vs {len(b)} seeds"
    return Comparison(verdict, reason, ratio=ratio, ci_low=(ma + lo) / ma, ci_high=(ma + hi) / ma, p_value=p,
                      change=math.expm1(change), base=ma, new=mb, **common)


def compare_exact(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool,
                  threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Deterministic figures (parameter and FLOP counts): any difference is real, no test needed."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    common = dict(method="exact", n_base=len(a), n_new=len(b), threshold=threshold)
    if not a or not b:
        return Comparison("not comparable", "no value on the " + ("base" if not a else "new") + " side", **common)
    va, vb = float(np.median(a)), float(np.median(b))
    if va == vb:
        return Comparison("unchanged", "identical", ratio=1.0, change=0.0, base=va, new=vb, **common)
    if va == 0:
        return Comparison("inconclusive", "base is 0: no relative change", base=va, new=vb, **common)
    ratio = vb / va
    if ratio <= 0:
        return Comparison("inconclusive", "sign changed: no ratio", base=va, new=vb, ratio=ratio, **common)
    change = _bad(math.log(ratio), higher_is_better)
    pct = f"{math.expm1(abs(change)) * 100:.2f}%"
    if abs(change) < math.log1p(threshold):
        verdict, reason = "unchanged", f"deterministic value changed by {pct}, within {threshold:.0%}"
    else:
        verdict = "regressed" if change > 0 else "improved"
        reason = f"deterministic value {pct} {'worse' if change > 0 else 'better'}"
    return Comparison(verdict, reason, ratio=ratio, ci_low=ratio, ci_high=ratio, change=math.expm1(change),
                      base=va, new=vb, **common)


def compare_repeated_runs(runs_a: Sequence[Sequence[float]], runs_b: Sequence[Sequence[float]], *,
                          higher_is_better: bool, threshold: float = DEFAULT_THRESHOLD, alpha: float = 0.05,
                          min_effect: float = DEFAULT_MIN_EFFECT, level: float = 0.95, n_boot: int = N_BOOT,
                          seed: int = 0) -> Comparison:
    """Speed samples from 3+ separate runs (processes) per side: each run is one unit.

    Blocks inside one run cannot see the run-to-run variance (a busy minute, a different CPU
    frequency); with repeated runs the test uses the per-run medians, which carry it. The few units
    make an exact Mann-Whitney weak (3 vs 3 runs: p >= 0.1), so this path uses Welch's test on the log
    run medians, and a bootstrap over whole runs for the CI of the ratio of medians.
    """
    ra = [[float(x) for x in r] for r in runs_a if len(r)]
    rb = [[float(x) for x in r] for r in runs_b if len(r)]
    a = [x for r in ra for x in r]
    b = [x for r in rb for x in r]
    common = dict(method="runs", n_base=len(a), n_new=len(b), threshold=threshold)
    if not (_finite(a) and _finite(b)) or min(a + b, default=0) <= 0:
        return Comparison("not comparable", "non-finite or non-positive samples", **common)
    ma, mb = float(np.median(a)), float(np.median(b))
    ratio = mb / ma
    la = [math.log(float(np.median(r))) for r in ra]
    lb = [math.log(float(np.median(r))) for r in rb]
    p, _, _ = welch(la, lb)
    m = min(min(len(r) for r in ra), min(len(r) for r in rb))
    lo, hi = _bootstrap([np.array([r[:m] for r in ra]), np.array([r[:m] for r in rb])], level=level, n_boot=n_boot,
                        seed=seed)
    change = _bad(math.log(ratio), higher_is_better)
    ci_bad = sorted((_bad(math.log(lo), higher_is_better), _bad(math.log(hi), higher_is_better)))
    verdict, reason = decide(change, (ci_bad[0], ci_bad[1]), p, alpha, threshold, min_effect)
    reason += f"; {len(ra)} vs {len(rb)} runs"
    return Comparison(verdict, reason, ratio=ratio, ci_low=lo, ci_high=hi, p_value=p, change=math.expm1(change),
                      base=ma, new=mb, **common)
