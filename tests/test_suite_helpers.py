"""The checks the suites share (issue 25): the fidelity check against a paper figure, the float16-on-CPU
skip of speed kinds, the opening of paper-scale cases, and the GAN suites' time-to-target bookkeeping."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.records import Case
from milestones.harness.suite_api import Metrics
from milestones.suites import _generative_eval as ev
from milestones.suites import _paper
from milestones.suites._fidelity import against_paper
from milestones.suites._speed import skip_float16_on_cpu


def _ctx(device: str = "cpu", dtype: str = "float32", kind: str = "speed", **kw) -> CaseContext:
    return CaseContext.for_case(Case("toy", "toy-config", kind, "paper", device, dtype, 2), **kw)


# ------------------------------------------------------------------------------------------ fidelity
def test_against_paper_reports_the_relative_error_and_the_tolerance_verdict():
    m, info = Metrics(), {}
    assert against_paper(m, info, "params", 104.0, 100.0, 0.05) is True
    assert m["params_rel_error"].samples == pytest.approx((0.04,))
    assert m["params_within_tolerance"].samples == (1.0,)
    assert info == {"paper_params": 100.0}
    against_paper(m, info, "macs", 80.0, 100.0, 0.05)  # 20% below: the error is absolute
    assert m["macs_rel_error"].samples == pytest.approx((0.2,))
    assert m["macs_within_tolerance"].samples == (0.0,)


def test_against_paper_adds_nothing_where_the_paper_states_no_figure():
    m, info = Metrics(), {}
    assert against_paper(m, info, "params", 105.0, None, 0.05) is False
    assert not m and not info


# --------------------------------------------------------------------------------------------- speed
def test_float16_training_is_skipped_on_the_cpu_only():
    with pytest.raises(SkipCase, match="float16 training on the CPU is not a supported torch path; use bfloat16"):
        skip_float16_on_cpu(_ctx(dtype="float16"))
    for device, dtype in (("cpu", "bfloat16"), ("cpu", "float32"), ("cuda:0", "float16")):
        skip_float16_on_cpu(_ctx(device, dtype))  # no exception


# --------------------------------------------------------------------------------------- paper scale
def test_prepare_applies_overrides_then_names_the_overridden_run_in_the_guard():
    from milestones.suites.gan import GANPaperConfig  # any paper config: a dataclass with an epochs field

    cfg = GANPaperConfig()
    what = lambda c: f"GAN training ({c.epochs} epochs)"  # noqa: E731
    with pytest.raises(SkipCase, match=r"GAN training \(3 epochs\) needs a GPU"):
        _paper.prepare(cfg, _ctx(kind="quality", options={"epochs": "3"}), what)
    got, over = _paper.prepare(cfg, _ctx(kind="quality", options={"epochs": "3"}, requested_device="cpu"), what)
    assert (got.epochs, over) == (3, {"epochs": 3})
    with pytest.raises(SkipCase, match="^a fixed reason needs a GPU"):
        _paper.prepare(cfg, _ctx(kind="quality"), "a fixed reason")


# ------------------------------------------------------------------------------------ GAN bookkeeping
def _run(step_to_target: int | None) -> ev.AdversarialRun:
    log = SimpleNamespace(steps=[10, 20], values=[5.0, 3.0], seconds=[0.5, 1.0], step_to_target=step_to_target,
                          seconds_to_target=None if step_to_target is None else 1.0)
    return ev.AdversarialRun(log, {"step": [10, 20], "d_loss": [0.7, 0.6], "g_loss": [1.1, 0.9]}, 2.5)


def test_adversarial_run_records_time_to_target_only_where_reached_and_names_its_curves():
    out = {"train_seconds": [], "steps_to_target": [], "seconds_to_target": []}
    _run(20).record(out)
    _run(None).record(out)
    assert out == {"train_seconds": [2.5, 2.5], "steps_to_target": [20], "seconds_to_target": [1.0]}
    curves = _run(None).curves("gan", 3)
    assert list(curves) == ["gan.seed3.losses", "gan.seed3"]
    assert curves["gan.seed3"]["series"]["fd"] == [5.0, 3.0]
    assert curves["gan.seed3.losses"]["series"]["g_loss"] == [1.1, 0.9]


def test_time_to_target_metrics_count_the_seeds_that_missed_and_say_why_none_reached():
    m = Metrics()
    ev.time_to_target_metrics(m, {"steps_to_target": [20], "seconds_to_target": [1.0]}, 3, 90.0, 600)
    assert m["steps_to_target"].samples == (20,) and m["steps_to_target"].note == "2 of 3 seeds did not reach the target"
    ev.time_to_target_metrics(m, {"steps_to_target": [20, 30], "seconds_to_target": [1.0, 2.0]}, 2, 90.0, 600)
    assert m["seconds_to_target"].note is None
    ev.time_to_target_metrics(m, {"steps_to_target": [], "seconds_to_target": []}, 2, 90.0, 600)
    assert m["steps_to_target"].samples == ()
    assert m["steps_to_target"].note == "FD target 90.0 (our own proxy target) not reached in 600 steps"
    ev.time_to_target_metrics(m, {"steps_to_target": [], "seconds_to_target": []}, 2, None, 600)
    assert m["seconds_to_target"].note == "no FD target set"
