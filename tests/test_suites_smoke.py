"""Every registered suite's smoke configs, parametrized from the registry (like timm's test_models).

Each case runs through the same code path as a case process (`milestones.harness.worker.run_spec`), in-process.
"""

import dataclasses
from pathlib import Path

import pytest

from milestones.harness import catalog
from milestones.harness.launch.spec import CaseSpec
from milestones.harness.measure.timing import TimingSettings
from milestones.harness.registry import load_suites
from milestones.harness.runner import RunOptions, plan
from milestones.harness.worker import run_spec
from tests.quick_timing import QUICK

REG = load_suites()
SUITES_DIR = Path(catalog.suites_dir()).resolve()
# The project's own suites only: the tests' fault-injecting suites (registered in this process by other
# test modules) kill their parent or cap the file size, which in-process would be this test run's.
OURS = {name for name, s in REG.suites.items() if Path(s.source_file).resolve().parent == SUITES_DIR}
CASES = [c for c in plan(REG.resolve(sorted(OURS)), RunOptions(kinds=("fidelity", "speed"), scale="smoke",
                                                                device="cpu"), "cpu")]


def test_every_suite_has_smoke_cases():
    suites = OURS
    assert {"resnet", "alexnet", "gpt", "dqn"} <= suites
    assert suites == {c.suite for c in CASES}, "every suite must have smoke-scale cases"


def test_a_case_without_timing_settings_gets_its_scales():
    """What the smoke cases below leave out by passing QUICK: a case process given no timing times a
    smoke case with SMOKE_TIMING and any other scale with the defaults."""
    from milestones.harness.context import CaseContext
    from milestones.harness.measure.timing import SMOKE_TIMING

    case = next(c for c in CASES if c.kind == "speed")
    assert CaseContext.for_case(case).timing == SMOKE_TIMING != TimingSettings()
    proxy = dataclasses.replace(case, scale="proxy")
    assert CaseContext.for_case(proxy).timing == TimingSettings()
    assert CaseContext.for_case(case, timing=QUICK).timing == QUICK


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[f"{c.config}-{c.kind}" for c in CASES])
def test_smoke_case(case):
    # QUICK: a speed case's steps run 4 times, not the smoke scale's 17 (tests/quick_timing.py says why)
    out = run_spec(CaseSpec(case=case, seed=0, threads=1, timing=QUICK))
    assert out.status == "ok", out.error or out.info.get("traceback")
    assert out.metrics, "a case must measure something"
    for name, m in out.metrics.items():
        assert m.samples or m.note, f"{name}: no samples and no reason"
    if case.kind == "speed":
        assert any(n.endswith(".step_time") or n.endswith("_time") for n in out.metrics)
