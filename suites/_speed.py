"""The speed kinds' shared guard: a case that trains in float16 runs on a GPU only."""

from __future__ import annotations

from milestones.harness.context import CaseContext, SkipCase


def skip_float16_on_cpu(ctx: CaseContext) -> None:
    """Torch has no supported float16 training path on the CPU: such a case ends as `skipped`, pointing to
    bfloat16, before any model is built."""
    if ctx.case.dtype == "float16" and not ctx.on_gpu:
        raise SkipCase("float16 training on the CPU is not a supported torch path; use bfloat16")
