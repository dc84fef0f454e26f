"""Recognising a slow machine from the canary each CPU speed case carries (harness/measure/canary.py).

A case whose canary ran slower than its reference (the base run's canary of the same case, or the
level of its canaries over the history) by more than CANARY_FLOOR and more than NOISE_Z times the
canary's own run-to-run noise was measured on a slow machine. Its timing regressions are then not
called: they become suspects for `milestones ab`, which measures both sides at the same time, and the
row says so. A change still beyond the gross bar after dividing out the canary's slowdown (a 2x step
on a machine 20% slow) is still called: large changes are never missed.

The canary never makes a verdict worse, and it is only read, never used to rescale a timing: machine
events slow different workloads differently (one night here: five cases 24-120% slower at once).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from milestones.harness import stats
from milestones.harness.measure import canary
from milestones.harness.records import RunRecord

# The canary must be this much slower before a case counts as measured on a slow machine: the smallest
# change a verdict acts on (5%), and twice the canary's own run-to-run noise (2-16% per case here). A
# low bar on purpose: a false "slow" only turns a regression into a suspect for `ab` (~2.5% of a case's
# nights at 2 sigma), while a missed slow machine fails a night of unchanged code.
CANARY_FLOOR = 0.05
NOISE_Z = 2.0
# At most this many of the latest reference canaries (the machine's speed, not the code's: no levels).
REFERENCE_RUNS = 30


@dataclass(frozen=True)
class CanaryCheck:
    ratio: float      # the new case's canary over its reference
    noise: float      # the canary's run-to-run noise (robust SD of log values), 0 when unknown
    n_ref: int

    @property
    def bar(self) -> float:
        return max(CANARY_FLOOR, NOISE_Z * self.noise)

    @property
    def slow(self) -> bool:
        return self.ratio - 1 > self.bar

    def describe(self) -> str:
        noise = f", its noise {self.noise:.1%} over {self.n_ref} runs" if self.n_ref > 1 else ""
        return f"machine canary {self.ratio - 1:+.0%}{noise}"


def case_canary(recs: Sequence[RunRecord]) -> float | None:
    xs = [v for r in recs if r.status == "ok" and (v := canary.median_total(r.info.get("canary"))) is not None]
    return statistics.median(xs) if xs else None


def check(reference: Sequence[float], new: float | None) -> CanaryCheck | None:
    """The new canary against reference canaries of the same case on the same machine (oldest first)."""
    ref = [x for x in reference if 0 < x < math.inf][-REFERENCE_RUNS:]
    if new is None or not 0 < new < math.inf or not ref:
        return None
    logs = [math.log(x) for x in ref]
    mid = statistics.median(logs)
    noise = 1.4826 * statistics.median(abs(x - mid) for x in logs) if len(ref) >= 5 else 0.0
    return CanaryCheck(math.exp(math.log(new) - mid), noise, len(ref))


def slowdown(result: stats.Comparison, higher_is_better: bool | None) -> float | None:
    """The change as a time factor (2.0: twice as slow), whatever the metric's direction."""
    r = result.ratio
    if r is None or not math.isfinite(r) or r <= 0:
        return None
    return 1 / r if higher_is_better else r


def excuse(row_result: stats.Comparison, higher_is_better: bool | None, c: CanaryCheck) -> stats.Comparison:
    """A timing regression measured on a slow machine -> a suspect for `ab`, unless gross beyond it.
    A result already excused (compare --history judges the latest run, then the history) is kept as is:
    the canary's note is said once."""
    if row_result.canary_ratio is not None:
        return row_result
    f = slowdown(row_result, higher_is_better)
    if f is not None and f / c.ratio - 1 >= stats.DEFAULT_GROSS:
        return dataclasses.replace(row_result, canary_ratio=c.ratio,
                                   reason=f"{row_result.reason}; {c.describe()}, and still a "
                                                      f"{f / c.ratio:.1f}x slowdown beyond it")
    return dataclasses.replace(
        row_result, verdict="inconclusive", suspect=True, canary_ratio=c.ratio,
        reason=f"not called: measured on a slow machine ({c.describe()}): confirm with `milestones ab`. "
               f"Judged alone: {row_result.reason}")
