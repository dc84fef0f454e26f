"""Pure statistics for regression verdicts: block bootstrap CI of a ratio of medians, Mann-Whitney on
block medians, Welch's test over seeds, and the verdict rule. Imports nothing else from the harness.

Why blocks: timing samples taken one after another on a shared machine drift, so consecutive samples
are not independent. A per-sample Mann-Whitney treats n autocorrelated samples as n independent
ones and raises false alarms on 13-18% of same-vs-same pairs (measured on a shared machine). Here the samples of
each side are cut, in time order, into contiguous blocks; the test runs on the block medians (few,
nearly independent values) and the confidence interval resamples whole blocks, which keeps the
within-block dependence. The verdict rule is in `decide` and docs/compare-and-report.md.

Below the block rule: gross changes, tolerances, Holm / Benjamini-Hochberg, the paired sequential
rule of `milestones ab`, and t-test change points for histories (docs/verdicts.md says why each).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

VERDICTS = ("regressed", "improved", "unchanged", "inconclusive", "not comparable")
DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.01          # speed: Mann-Whitney on block medians
DEFAULT_ALPHA_SEEDS = 0.05    # quality over a handful of seeds: Welch
DEFAULT_MIN_EFFECT = 0.5      # a verdict needs a point estimate of at least this fraction of the threshold
MAX_BLOCKS = 10
MIN_BLOCK = 3
N_BOOT = 2000


# Ratios of 1e-300 or 1e300 are no measurements, but they must give a verdict, never an OverflowError.
def _safe_exp(x: float) -> float:
    return math.exp(max(-700.0, min(700.0, x))) if x == x else x


def _safe_expm1(x: float) -> float:
    return math.expm1(max(-700.0, min(700.0, x))) if x == x else x


def _safe_log(x: float) -> float:
    x = float(x)
    if x != x:
        return x
    if x <= 0:
        return -745.0
    return math.log(x) if math.isfinite(x) else 710.0


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
    # Run-level error control: the p-value adjusted over every tested metric of the compare (Holm).
    p_adjusted: float | None = None
    # Samples left out of the verdict because the process was descheduled (kept in the record).
    n_descheduled: int = 0
    # Against a history: off the history's level once, not yet confirmed (by persistence or an A/B run).
    suspect: bool = False
    # The case's machine canary over its reference, where it ran slow (harness/slow_machine.py).
    canary_ratio: float | None = None

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


# The bootstrap resamples whole blocks; with millions of samples a block is large, and indexing
# (n_boot, k, m) at once took 49 GiB for a 3.3 M-sample record. Each block is therefore summarised by at
# most SKETCH evenly spaced order statistics (blocks have equal sizes, so the union of the sketches
# has the union's quantiles to within 1/SKETCH of a block's spread), and replicates are drawn in
# chunks of at most BOOT_CHUNK_ELEMS values: memory is bounded whatever the sample count.
SKETCH = 512
BOOT_CHUNK_ELEMS = 1 << 21


def block_sketch(blk: np.ndarray, size: int = SKETCH) -> np.ndarray:
    """k x min(m, size): each block (row) cut down to evenly spaced order statistics of itself."""
    k, m = blk.shape
    if m <= size:
        return blk
    srt = np.sort(blk, axis=1)
    idx = np.round(np.linspace(0, m - 1, size)).astype(int)
    return srt[:, idx]


def _bootstrap(sides: list[np.ndarray], *, level: float, n_boot: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    out = []
    for blk in sides:
        blk = block_sketch(blk)
        k, m = blk.shape
        meds = np.empty(n_boot)
        chunk = max(1, BOOT_CHUNK_ELEMS // max(1, k * m))
        for s0 in range(0, n_boot, chunk):
            n = min(chunk, n_boot - s0)
            idx = rng.integers(0, k, size=(n, k))
            meds[s0:s0 + n] = np.median(blk[idx].reshape(n, -1), axis=1)
        out.append(meds)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = out[1] / out[0]
    ratios = ratios[np.isfinite(ratios)]
    if not len(ratios):
        return float("nan"), float("nan")
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
    pct = f"{_safe_expm1(abs(change)) * 100:.1f}%"
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


def _sides(a: Sequence[float], b: Sequence[float], method: str, threshold: float, what: str,
           nonfinite: str | None) -> tuple[list[float], list[float], dict[str, Any], Comparison | None]:
    """Both sides as floats, the fields every Comparison of them carries, and the `not comparable`
    answer when a side is empty or (unless `nonfinite` is None) holds a non-finite value."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    common: dict[str, Any] = dict(method=method, n_base=len(a), n_new=len(b), threshold=threshold)
    why = None
    if not a or not b:
        why = f"no {what} on the " + ("base" if not a else "new") + " side"
    elif nonfinite is not None and not (_finite(a) and _finite(b)):
        why = nonfinite
    return a, b, common, (Comparison("not comparable", why, **common) if why else None)


def compare_timeseries(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool,
                       threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA,
                       min_effect: float = DEFAULT_MIN_EFFECT, level: float = 0.99, n_boot: int = N_BOOT,
                       seed: int = 0) -> Comparison:
    """Speed samples (time order kept): block medians + block bootstrap, see the module docstring."""
    a, b, common, bad = _sides(a, b, "blocks", threshold, "samples", "non-finite samples")
    if bad is not None:
        return bad
    ma, mb = float(np.median(a)), float(np.median(b))
    if ma <= 0 or mb <= 0:
        return Comparison("not comparable", "medians must be positive for a ratio", base=ma, new=mb, **common)
    ratio = mb / ma
    change = _bad(_safe_log(ratio), higher_is_better)
    if len(a) < 2 or len(b) < 2:
        if a == b:
            return Comparison("unchanged", "identical values", ratio=ratio, change=0.0, base=ma, new=mb, **common)
        return Comparison("inconclusive", f"{min(len(a), len(b))} sample(s): no test possible", ratio=ratio,
                          change=_safe_expm1(change), base=ma, new=mb, **common)
    ba, bb = block_medians(a), block_medians(b)
    p = mann_whitney(ba, bb)
    lo, hi = block_bootstrap_ratio(a, b, level=level, n_boot=n_boot, seed=seed)
    ci_bad = sorted((_bad(_safe_log(lo), higher_is_better), _bad(_safe_log(hi), higher_is_better)))
    verdict, reason = decide(change, (ci_bad[0], ci_bad[1]), p, alpha, threshold, min_effect)
    reason += f"; {len(ba)} vs {len(bb)} blocks"
    return Comparison(verdict, reason, ratio=ratio, ci_low=lo, ci_high=hi, p_value=p, change=_safe_expm1(change),
                      base=ma, new=mb, **common)


def compare_seeds(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool,
                  threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA_SEEDS,
                  min_effect: float = DEFAULT_MIN_EFFECT, level: float = 0.95) -> Comparison:
    """Quality metrics, one sample per seed: Welch's test and CI on the means; threshold relative."""
    a, b, common, bad = _sides(a, b, "welch", threshold, "samples", "non-finite values (diverged?)")
    if bad is not None:
        return bad
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
                      change=_safe_expm1(change), base=ma, new=mb, **common)


def compare_exact(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool,
                  threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Deterministic figures (parameter and FLOP counts): any difference is real, no test needed."""
    a, b, common, bad = _sides(a, b, "exact", threshold, "value", None)
    if bad is not None:
        return bad
    va, vb = float(np.median(a)), float(np.median(b))
    if va == vb:
        return Comparison("unchanged", "identical", ratio=1.0, change=0.0, base=va, new=vb, **common)
    if va == 0:
        return Comparison("inconclusive", "base is 0: no relative change", base=va, new=vb, **common)
    ratio = vb / va
    if ratio <= 0:
        return Comparison("inconclusive", "sign changed: no ratio", base=va, new=vb, ratio=ratio, **common)
    return _band_verdict(va, vb, threshold, higher_is_better, common, inclusive=False,
                         within=f"deterministic value changed by {{pct}}, within {threshold:.0%}",
                         beyond="deterministic value {pct} {way}")


def _band_verdict(va: float, vb: float, band: float, higher_is_better: bool, common: dict[str, Any], *,
                  inclusive: bool, within: str, beyond: str) -> Comparison:
    """A positive ratio vb/va against a fixed band, no test (one value per side carries no variance):
    unchanged inside +-band (its edge counts as inside when `inclusive`), else regressed or improved.
    `within` and `beyond` are the reasons, with {pct} and {way} (worse/better) filled in."""
    ratio = vb / va
    change = _bad(_safe_log(ratio), higher_is_better)
    pct = f"{_safe_expm1(abs(change)) * 100:.2f}%"
    edge = math.log1p(band)
    if abs(change) < edge or (inclusive and abs(change) == edge):
        verdict, reason = "unchanged", within.format(pct=pct)
    else:
        verdict = "regressed" if change > 0 else "improved"
        reason = beyond.format(pct=pct, way="worse" if change > 0 else "better")
    return Comparison(verdict, reason, ratio=ratio, ci_low=ratio, ci_high=ratio, change=_safe_expm1(change),
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
    if not ra or not rb:
        return Comparison("not comparable", "no run on the " + ("base" if not ra else "new") + " side", **common)
    if not (_finite(a) and _finite(b)) or min(a + b, default=0) <= 0:
        return Comparison("not comparable", "non-finite or non-positive samples", **common)
    ma, mb = float(np.median(a)), float(np.median(b))
    ratio = mb / ma
    la = [_safe_log(float(np.median(r))) for r in ra]
    lb = [_safe_log(float(np.median(r))) for r in rb]
    p, _, _ = welch(la, lb)
    m = min(min(len(r) for r in ra), min(len(r) for r in rb))
    lo, hi = _bootstrap([np.array([r[:m] for r in ra]), np.array([r[:m] for r in rb])], level=level, n_boot=n_boot,
                        seed=seed)
    change = _bad(_safe_log(ratio), higher_is_better)
    ci_bad = sorted((_bad(_safe_log(lo), higher_is_better), _bad(_safe_log(hi), higher_is_better)))
    verdict, reason = decide(change, (ci_bad[0], ci_bad[1]), p, alpha, threshold, min_effect)
    reason += f"; {len(ra)} vs {len(rb)} runs"
    return Comparison(verdict, reason, ratio=ratio, ci_low=lo, ci_high=hi, p_value=p, change=_safe_expm1(change),
                      base=ma, new=mb, **common)


# ------------------------------------------------------------------------------------ gross changes
# A change this large is called whatever the sample count (a 2x slower step must never be
# "inconclusive" because a smoke case kept 3 samples). 1.5 = 50% worse: above anything run-to-run noise
# on a shared machine does to a median once descheduled samples are left out.
DEFAULT_GROSS = 0.5


def gross_change(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool,
                 gross: float = DEFAULT_GROSS) -> Comparison | None:
    """`regressed`/`improved` when the medians differ by more than `gross` AND the two sides do not
    overlap (every new sample beyond every base sample); None otherwise (the ordinary rule decides)."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    if not a or not b or not (_finite(a) and _finite(b)) or min(a + b) <= 0:
        return None
    ma, mb = float(np.median(a)), float(np.median(b))
    change = _bad(_safe_log(mb / ma), higher_is_better)
    if abs(change) < math.log1p(gross):
        return None
    worse_side = b if change > 0 else a
    better_side = a if change > 0 else b
    # "beyond" in the bad direction: larger for lower-is-better metrics.
    separated = (min(worse_side) > max(better_side)) if not higher_is_better else (max(worse_side) < min(better_side))
    if not separated:
        return None
    verdict = "regressed" if change > 0 else "improved"
    return Comparison(verdict, f"large change: {_safe_expm1(abs(change)):.0%} {'worse' if change > 0 else 'better'}, "
                               f"beyond the {gross:.0%} gross threshold with no overlap",
                      method="gross", ratio=mb / ma, ci_low=min(b) / max(a), ci_high=max(b) / min(a), p_value=None,
                      change=_safe_expm1(change), base=ma, new=mb, n_base=len(a), n_new=len(b))


# ------------------------------------------------------------------------------- near-deterministic
def compare_tolerance(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool,
                      tolerance: float) -> Comparison:
    """Near-deterministic figures (memory peaks, instruction counts): a change beyond `tolerance`
    is real, within it is not; no significance test (one value per run carries no variance)."""
    a, b, common, bad = _sides(a, b, "tolerance", tolerance, "value", "non-finite values")
    if bad is not None:
        return bad
    va, vb = float(np.median(a)), float(np.median(b))
    if va <= 0 or vb <= 0:
        if va == vb:
            return Comparison("unchanged", "identical", ratio=1.0, change=0.0, base=va, new=vb, **common)
        return Comparison("inconclusive", "non-positive value: no ratio", base=va, new=vb, **common)
    return _band_verdict(va, vb, tolerance, higher_is_better, common, inclusive=True,
                         within=f"changed by {{pct}}, within the {tolerance:.2%} tolerance",
                         beyond=f"{{pct}} {{way}}, beyond the {tolerance:.2%} tolerance")


# ------------------------------------------------------------------------------------- multiplicity
def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: calling every adjusted p < alpha keeps the chance of ANY
    false call among the family <= alpha, whatever the dependence between the tests."""
    p = np.asarray(pvalues, float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return [float(x) for x in adj]


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate; independent or positively dependent tests)."""
    p = np.asarray(pvalues, float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p)[::-1]
    adj = np.empty(m)
    running = 1.0
    for k, i in enumerate(order):
        rank = m - k
        running = min(running, p[i] * m / rank)
        adj[i] = running
    return [float(min(1.0, x)) for x in adj]


# ------------------------------------------------------------------------- paired sequential (A/B)
# Looks at these round counts (then every 64), and at the budget's last round. The error rate is spent
# over the looks by a Lan-DeMets O'Brien-Fleming-type spending function (`obf_spent`): almost nothing at
# the early looks, most of it at the last ones, where Bonferroni over looks (the older rule, still
# available through `n_looks`) left a 99.94% interval at round 17. Each look's level is the increment
# of the spending function, so the levels of all looks sum to at most alpha (a union bound: no
# assumption on the correlation between looks), and stopping at the first clear look keeps the rates.
LOOKS = (6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256)
# A log ratio beyond this (a factor e^50) is no measurement: clipped so that no arithmetic overflows.
MAX_LOG_RATIO = 50.0


def looks_until(max_rounds: int) -> tuple[int, ...]:
    """The scheduled looks up to `max_rounds`, which is always a look (the budget's last word)."""
    out = [n for n in LOOKS if n < max_rounds]
    extra = LOOKS[-1] + 64
    while extra < max_rounds:
        out.append(extra)
        extra += 64
    return tuple(out) + (max_rounds,)


def obf_spent(frac: float, alpha: float) -> float:
    """Two-sided error spent by information fraction `frac` (Lan-DeMets, O'Brien-Fleming type):
    2 (1 - Phi(z_{1-alpha/2} / sqrt(frac))); 0 at frac 0, alpha at frac 1."""
    from scipy.stats import norm

    if not frac > 0:
        return 0.0
    frac = min(1.0, float(frac))
    return float(min(alpha, 2 * norm.sf(norm.isf(alpha / 2) / math.sqrt(frac))))


@dataclass
class Spending:
    """The error spent so far by one sequential test. `level(n, planned)` is the next look's level:
    the spending function at n / planned rounds (or all of alpha at the final look) less what earlier
    looks spent. `planned` may change between looks (a time budget's rounds are estimated as they
    go): the levels still sum to at most alpha."""

    alpha: float
    spent: float = 0.0
    looks: list[tuple[int, float]] = field(default_factory=list)

    def level(self, n: int, planned: int, final: bool = False) -> float:
        target = self.alpha if final else obf_spent(n / max(planned, n, 1), self.alpha)
        lvl = max(0.0, target - self.spent)
        self.spent += lvl
        self.looks.append((n, lvl))
        return lvl


@dataclass(frozen=True)
class PairedResult:
    """One look at the per-round log ratios of an interleaved A/B run."""

    comparison: Comparison
    decided: bool              # a conclusive verdict: stop adding rounds
    rounds: int
    alpha_per_look: float


# The paired A/B rule's location is the 20%-trimmed mean of the per-round log ratios (Tukey-McLaughlin /
# Yuen: winsorized SE, t with n - 2g - 1 df). One round in which a machine event hit one side (a ratio
# of 0.55 among 1.0 +- 2%) widens a mean's interval for the rest of the run; it barely moves a trimmed
# one. On A/A the per-round ratio is symmetric about 0 (alternating order), so the trimmed mean is
# centred where the mean is. Replayed on the collected rounds, docs/verdicts.md.
PAIRED_TRIM = 0.2


def trimmed_location(x: Sequence[float], trim: float = PAIRED_TRIM) -> tuple[float, float, int]:
    """(trimmed mean, its standard error, degrees of freedom) of a sample (Tukey-McLaughlin)."""
    a = np.sort(np.asarray(x, float))
    n = len(a)
    g = int(math.floor(trim * n))
    if n - 2 * g < 2:
        g = max(0, (n - 2) // 2)
    w = a.copy()
    if g:
        w[:g], w[n - g:] = a[g], a[n - g - 1]
    se = float(w.std(ddof=1)) / ((1 - 2 * g / n) * math.sqrt(n))
    return float(a[g:n - g].mean()), se, n - 2 * g - 1


def paired_verdict(log_ratios: Sequence[float], *, higher_is_better: bool, threshold: float = DEFAULT_THRESHOLD,
                   alpha: float = DEFAULT_ALPHA, min_effect: float = DEFAULT_MIN_EFFECT,
                   n_looks: int = 1, final: bool = False, trim: float = PAIRED_TRIM,
                   level: float | None = None) -> PairedResult:
    """The paired, sequential rule of `milestones ab` at one look.

    `log_ratios`: one per round, log(median new / median base) of that round's two fresh processes
    (non-finite ones are left out, the rest clipped to +-MAX_LOG_RATIO).
    A two-sided t interval at level 1 - a on their trimmed mean (`trim`; 0: the mean), where a is
    `level` (this look's share of the error, from a `Spending`) or else alpha/n_looks (Bonferroni):
    - regressed / improved: the interval excludes 0 and the estimate is >= min_effect x threshold;
    - unchanged: the whole interval lies within +-threshold (equivalence, as two one-sided tests);
    - otherwise undecided: add rounds; at the budget's end (`final`) it is inconclusive.
    Each error (a false change on A/A, a false "unchanged" on a change >= threshold) is <= a at this
    look, so <= alpha over all the looks whose levels sum to alpha. Never raises.
    """
    from scipy.stats import t as tdist

    x = np.asarray([v for v in (float(v) for v in log_ratios) if math.isfinite(v)], float)
    x = np.clip(x, -MAX_LOG_RATIO, MAX_LOG_RATIO)
    n = len(x)
    a_look = float(level) if level is not None else alpha / max(1, n_looks)
    a_look = min(max(a_look, 0.0), 1.0)
    common = dict(method="paired", n_base=n, n_new=n, threshold=threshold)
    if n < 2:
        return PairedResult(Comparison("inconclusive", f"{n} usable round(s): a paired test needs 2+", **common),
                            False, n, a_look)
    mean, se, df = trimmed_location(x, trim)
    if not math.isfinite(se):
        se = math.inf
    # isf, not ppf(1 - a/2): the early looks' levels (1e-10 and below) vanish next to 1.0.
    q = float(tdist.isf(a_look / 2, df)) if a_look > 0 else math.inf
    if se > 0:
        lo, hi = mean - q * se, mean + q * se
        p = float(2 * tdist.sf(abs(mean) / se, df))
    else:
        lo, hi = mean, mean
        p = 1.0 if mean == 0 else 0.0
    if not (lo <= hi):  # nan from inf - inf: nothing is known
        lo, hi = -math.inf, math.inf
    change = _bad(mean, higher_is_better)
    ci_bad = sorted((_bad(lo, higher_is_better), _bad(hi, higher_is_better)))
    t = math.log1p(threshold)
    sig = ci_bad[0] > 0 or ci_bad[1] < 0
    pct = f"{_safe_expm1(abs(change)) * 100:.1f}%"
    where = f"{n} rounds, interval at {1 - a_look:.4%}"
    if sig and abs(change) >= min_effect * t:
        verdict = "regressed" if change > 0 else "improved"
        reason, decided = f"{pct} {'worse' if change > 0 else 'better'} (p={p:.2g}); {where}", True
    elif -t < ci_bad[0] and ci_bad[1] < t:
        verdict, reason, decided = "unchanged", f"interval within +-{threshold:.0%}; {where}", True
    else:
        verdict, decided = "inconclusive", False
        reason = (f"budget spent before a clear answer: {pct} {'worse' if change > 0 else 'better'}, interval "
                  f"reaches {'0' if not sig else 'the threshold'}; {where}") if final else f"undecided; {where}"
    return PairedResult(Comparison(verdict, reason, ratio=_safe_exp(mean), ci_low=_safe_exp(lo),
                                   ci_high=_safe_exp(hi), p_value=p, change=_safe_expm1(change), **common),
                        decided, n, a_look)


def sequential_verdict(log_ratios: Sequence[float], *, planned: int, higher_is_better: bool,
                       alpha: float = DEFAULT_ALPHA, spending: bool = True, **kw: Any) -> PairedResult:
    """The whole sequential rule on a finished series of rounds: look at the scheduled looks up to
    `planned` rounds (the budget), stop at the first decided look; the last round is the final look.
    `spending`: O'Brien-Fleming-type error spending; False: Bonferroni over the looks (the older rule)."""
    n_all = len(log_ratios)
    planned = max(planned, 2)
    looks = [k for k in looks_until(planned) if k <= n_all]
    if not looks or looks[-1] != n_all:
        looks.append(n_all)
    spend = Spending(alpha)
    n_looks = len(looks_until(planned))
    r: PairedResult | None = None
    for k in looks:
        final = k == looks[-1]
        lvl = spend.level(k, planned, final=final) if spending else None
        r = paired_verdict(log_ratios[:k], higher_is_better=higher_is_better, alpha=alpha, n_looks=n_looks,
                           final=final, level=lvl, **kw)
        if r.decided:
            return r
    assert r is not None
    return r


# --------------------------------------------------------------------------- change points (history)
@dataclass(frozen=True)
class ChangePoint:
    index: int          # first point of the new level
    p_value: float
    before: float       # mean of the window before (log scale when the input is)
    after: float


def _t_split(x: np.ndarray, min_size: int) -> tuple[int, float] | None:
    """The split of `x` with the largest two-sample Student t statistic, and its two-sided p-value."""
    from scipy.stats import t as tdist

    n = len(x)
    if n < 2 * min_size:
        return None
    best_i, best_t = -1, -1.0
    cs, cs2 = np.cumsum(x), np.cumsum(x * x)
    for i in range(min_size, n - min_size + 1):
        n1, n2 = i, n - i
        s1, s2 = cs[i - 1], cs[-1] - cs[i - 1]
        q1, q2 = cs2[i - 1], cs2[-1] - cs2[i - 1]
        m1, m2 = s1 / n1, s2 / n2
        ss = (q1 - n1 * m1 * m1) + (q2 - n2 * m2 * m2)
        df = n - 2
        if df <= 0:
            continue
        sp = math.sqrt(max(ss, 0.0) / df)
        tt = abs(m2 - m1) / (sp * math.sqrt(1 / n1 + 1 / n2)) if sp > 0 else (math.inf if m1 != m2 else 0.0)
        if tt > best_t:
            best_i, best_t = i, tt
    if best_i < 0:
        return None
    p = 0.0 if math.isinf(best_t) else float(2 * tdist.sf(best_t, n - 2))
    # The best of n-1 splits is a maximum: Bonferroni over the candidate splits keeps p honest.
    return best_i, min(1.0, p * (n - 2 * min_size + 1))


def change_points(x: Sequence[float], *, max_pvalue: float = 0.001, min_magnitude: float = 0.0,
                  window: int = 50, min_size: int = 1) -> list[ChangePoint]:
    """E-Divisive-means style change points with a t-test (Apache Otava's variant): split the series at
    the point that best separates two means, keep the split if its (split-corrected) p-value is below
    `max_pvalue` and the jump is at least `min_magnitude`, recurse into both halves. Windows of
    `window` points keep an old level from masking a recent step."""
    xs = np.asarray(x, float)
    found: dict[int, ChangePoint] = {}

    def recurse(lo: int, hi: int) -> None:
        seg = xs[lo:hi]
        r = _t_split(seg, min_size)
        if r is None:
            return
        i, p = r
        before, after = float(seg[:i].mean()), float(seg[i:].mean())
        if p >= max_pvalue or abs(after - before) < min_magnitude:
            return
        found[lo + i] = ChangePoint(lo + i, p, before, after)
        recurse(lo, lo + i)
        recurse(lo + i, hi)

    step = max(window // 2, 1)
    starts = range(0, max(1, len(xs) - window + 1), step) if len(xs) > window else [0]
    for s in starts:
        recurse(s, min(len(xs), s + window))
    if len(xs) > window:
        recurse(len(xs) - window, len(xs))
    # Windows overlap: one step seen from two windows may land on neighbouring indices; keep the stronger.
    out: list[ChangePoint] = []
    for cp in sorted(found.values(), key=lambda c: c.index):
        if out and cp.index - out[-1].index <= min_size and cp.index != out[-1].index:
            if cp.p_value < out[-1].p_value:
                out[-1] = cp
            continue
        out.append(cp)
    return out


def run_noise(log_values: Sequence[float]) -> float:
    """Robust run-to-run noise (SD) of a series of per-run log medians: MAD of first differences / sqrt 2,
    which a few steps barely move."""
    d = np.diff(np.asarray(log_values, float))
    if len(d) == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))
