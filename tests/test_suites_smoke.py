"""Every registered suite's smoke configs, parametrized from the registry (like timm's test_models).

Each case runs through the same code path as a case process (`milestones.harness.worker.run_spec`), in-process.
"""


import pytest

from milestones.harness.launch.spec import CaseSpec
from milestones.harness.registry import load_suites
from milestones.harness.runner import RunOptions, plan
from milestones.harness.worker import run_spec

REG = load_suites()
CASES = [c for c in plan(REG.resolve([]), RunOptions(kinds=("fidelity", "speed"), scale="smoke", device="cpu"),
                         "cpu") if c.suite != "fake"]


def test_every_suite_has_smoke_cases():
    suites = {s for s in REG.suites if s != "fake"}
    assert suites == {c.suite for c in CASES}, "every suite must have smoke-scale cases"


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[f"{c.config}-{c.kind}" for c in CASES])
def test_smoke_case(case):
    out = run_spec(CaseSpec(case=case, seed=0, threads=1))
    assert out.status == "ok", out.error or out.info.get("traceback")
    assert out.metrics, "a case must measure something"
    for name, m in out.metrics.items():
        assert m.samples or m.note, f"{name}: no samples and no reason"
    if case.kind == "speed":
        assert any(n.endswith(".step_time") or n.endswith("_time") for n in out.metrics)
