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


def declared_plan(spec: Any) -> Any:
    """The SpeedPlan a speed case declares, built in this process (nothing timed): what the asv bridge,
    instruction counts and A/B step checks time. Raises SkipCase when the case skips itself here."""
    from milestones.harness.measure.plan import SpeedPlan
    from milestones.harness.registry import load_suite
    from milestones.harness.worker import context_for, resolved_params, seed_everything

    case = spec.case
    reg = load_suite(case.suite)
    params = resolved_params(reg.config(case.config).params, case.batch_size)
    seed_everything(spec.seed, spec.deterministic)
    plan = reg.suite(case.suite).kind_fn(case.kind, params)(params, context_for(spec, params))
    if not isinstance(plan, SpeedPlan):
        raise TypeError(f"{case.suite}/{case.config} {case.kind} does not declare a SpeedPlan")
    return plan
