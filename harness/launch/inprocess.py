"""The in-process launcher: runs a case (or one kind function) in this interpreter. For tests, the asv
bridge and instruction counts, which need the declared step itself, not a record."""

from __future__ import annotations

from typing import Any

from milestones.harness.records import CaseOutput


def run_kind(fn: Any, params: Any, ctx: Any) -> CaseOutput:
    """Call a suite's kind function and measure what it declares (a SpeedPlan) as a case process would."""
    from milestones.harness.worker import measured

    return measured(fn(params, ctx), ctx)
