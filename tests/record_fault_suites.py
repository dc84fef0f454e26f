"""A suite whose case succeeds but returns what strict JSON cannot hold (issue 12, item 1): NaN and
infinity nested in info and artifacts, as a dict value, a list item and a key. Loaded through
$MILESTONES_EXTRA_SUITES by tests/test_record_safety.py only."""

from __future__ import annotations

from dataclasses import dataclass

from milestones.harness.context import CaseContext
from milestones.harness.records import CaseOutput, Metric
from milestones.harness.registry import register_suite

SUITE = register_suite("recfault", title="Record faults (tests only)", arxiv="0000.00000", year=2000)


@dataclass(frozen=True)
class RecFaultConfig:
    batch_size: int = 2


SUITE.config("recfault-nonfinite", RecFaultConfig(), scales=("smoke",), kinds=("speed",))


@SUITE.kind("speed")
def _nonfinite(cfg: RecFaultConfig, ctx: CaseContext) -> CaseOutput:
    inf, nan = float("inf"), float("nan")
    return CaseOutput(metrics={"value": Metric.from_values("value", "unit", True, [1.0, 2.0])},
                      info={"loss_curve": [0.5, nan, inf], "grad": {"norm": -inf}},
                      artifacts={"": inf, "nested": {"deeper": [1, {"x": nan}]}})
