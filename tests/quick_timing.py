"""Timing settings for tests that run a speed case to see that it runs and measures, not how well it times.

A smoke case's step functions then run 4 times each instead of SMOKE_TIMING's 17 (2 warm-up + 15 samples).
What the timer does with its settings, and SMOKE_TIMING itself, are pinned by tests/test_measure.py and
tests/test_mutation_kills_timing.py; tests/test_suites_smoke.py checks that a case given no settings gets
its scale's.
"""

import dataclasses

from milestones.harness.measure.timing import TimingSettings

QUICK = TimingSettings(warmup_iters=1, warmup_time=0.0, min_iters=3, min_time=0.0, max_time=10.0)


def quick(ctx):
    """The case context timed with QUICK."""
    return dataclasses.replace(ctx, timing=QUICK)
