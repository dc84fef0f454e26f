"""The in-process launcher: runs a case (or one kind function) in this interpreter. For tests, the asv
bridge and instruction counts, which need the declared step itself, not a record."""

from __future__ import annotations

from typing import Any

from milestones.harness.records import CaseOutput


def run_kind(fn: Any, params: Any, ctx: Any) -> CaseOutput:
    """Call a suite's kind function and measure what it declares (a SpeedPlan) as a case process would."""
    from milestones.harness.worker import measured

    return measured(fn(params, ctx), ctx)


class InProcess:
    """Runs a CaseSpec in this interpreter (no isolation, no timeout): for tests and quick checks."""

    def run(self, spec: Any) -> Any:
        import time

        from milestones.harness.launch.process import now
        from milestones.harness.worker import run_spec

        started, t0 = now(), time.perf_counter()
        res = run_spec(spec)
        return res.replace(started_at=started, ended_at=now(), duration_s=time.perf_counter() - t0)
