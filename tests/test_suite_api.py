"""The typed suite contract: kinds dispatched by params type, the direction table, curves, progress."""

import json
from dataclasses import dataclass

import pytest

from milestones.harness.context import PROGRESS_FILE, CaseContext
from milestones.harness.records import Case
from milestones.harness.registry import DuplicateNameError, Registry, UnknownNameError
from milestones.harness.suite_api import Metrics, Params, curve, direction


@dataclass(frozen=True)
class ProxyP(Params):
    steps: int = 10


@dataclass(frozen=True)
class EvalP(Params):
    path: str = ""


@dataclass(frozen=True)
class DeeperP(ProxyP):
    depth: int = 2


def _suite():
    reg = Registry()
    s = reg.add_suite("toy", title="t", arxiv="0", year=2000, source_file=__file__)
    return reg, s


def test_kinds_dispatch_on_the_params_type_and_its_bases():
    _, s = _suite()
    s.kind("quality", params=ProxyP)(lambda p, c: "proxy")
    s.kind("quality", params=EvalP)(lambda p, c: "eval")
    s.kind("speed")(lambda p, c: "any")
    assert s.kind_fn("quality", ProxyP())(None, None) == "proxy"
    assert s.kind_fn("quality", EvalP())(None, None) == "eval"
    assert s.kind_fn("quality", DeeperP())(None, None) == "proxy"  # a subclass uses its base's function
    assert s.kind_fn("speed", EvalP())(None, None) == "any"
    with pytest.raises(UnknownNameError, match="no 'quality' function for Params"):
        s.kind_fn("quality", Params())
    with pytest.raises(UnknownNameError, match="no 'fidelity' kind"):
        s.kind_fn("fidelity", ProxyP())


def test_a_second_function_for_one_kind_and_type_raises():
    _, s = _suite()
    s.kind("quality", params=ProxyP)(lambda p, c: 1)
    with pytest.raises(DuplicateNameError, match="for ProxyP"):
        s.kind("quality", params=ProxyP)(lambda p, c: 2)
    s.kind("quality", params=EvalP)(lambda p, c: 3)  # another type is fine


def test_params_fields_are_keyword_only_and_frozen():
    p = ProxyP(5, batch_size=8, n_seeds=3)
    assert (p.steps, p.batch_size, p.cpu_batch_size, p.n_seeds) == (5, 8, None, 3)
    with pytest.raises(TypeError):
        ProxyP(5, 8)  # batch_size positionally


@pytest.mark.parametrize("name,hib", [
    ("train.step_time", False), ("infer.throughput", True), ("train.mfu", True), ("params", False),
    ("train_error.plain8", False), ("test_accuracy.relu", True), ("bleu.reversed", True),
    ("claim_held", True), ("steps_to_target.resnet32", False), ("macs_within_tolerance", True),
    ("params_rel_error", False), ("eval_return.seed0", True), ("perplexity.small", False),
    ("train.instructions", False), ("fd.generator", False), ("dropout_gap.with", False),
])
def test_direction_table(name, hib):
    assert direction(name) is hib


def test_unknown_direction_must_be_declared():
    with pytest.raises(KeyError, match="no direction known"):
        direction("frobnication")
    m = Metrics()
    m.add("frobnication", "x", [1.0], higher_is_better=True)
    assert m["frobnication"].higher_is_better is True


def test_metrics_builder_keys_by_name():
    m = Metrics()
    m.add("train_error.plain8", "fraction", [0.1, 0.2])
    m.single("params", "count", 61)
    m.missing("train.energy_per_item", "J", "no energy counter on the CPU")
    assert set(m) == {"train_error.plain8", "params", "train.energy_per_item"}
    assert m["train_error.plain8"].samples == (0.1, 0.2) and m["train_error.plain8"].higher_is_better is False
    assert m["train.energy_per_item"].samples == () and "no energy" in m["train.energy_per_item"].note


def test_curve_names_its_series_and_checks_lengths():
    c = curve("plain32", 1, [1, 2, 3], loss=[3, 2, 1], train_error=[0.9, 0.5, 0.4])
    assert c["model"] == "plain32" and c["seed"] == 1 and c["x"] == "step" and c["step"] == [1.0, 2.0, 3.0]
    assert c["series"]["train_error"] == [0.9, 0.5, 0.4]
    with pytest.raises(ValueError, match="has 2 points for 3"):
        curve("m", 0, [1, 2, 3], loss=[1, 2])


def _ctx(**kw):
    case = Case("toy", "c", "quality", "proxy", "cpu", "float32", None)
    return CaseContext.for_case(case, **kw)


def test_quality_seeds_single_explicit_seed_is_honoured():
    assert _ctx(seeds=(7,)).quality_seeds(3) == (7,)
    assert _ctx(seed=4).quality_seeds(3) == (4, 5, 6)
    assert _ctx(seed=4, options={"n_seeds": "2"}).quality_seeds(3) == (4, 5)


def test_progress_and_seed_done_are_logged_and_kept(tmp_path, capsys):
    ctx = _ctx(workdir=str(tmp_path))
    ctx.progress("eval", step=100, error=0.25)
    ctx.seed_done(1, {"train_error.plain8": 0.1}, {"train_error.plain8": "fraction"})
    lines = [json.loads(x) for x in (tmp_path / PROGRESS_FILE).read_text().splitlines()]
    assert [x["event"] for x in lines] == ["progress", "seed_done"]
    assert lines[1]["seed"] == 1 and lines[1]["metrics"] == {"train_error.plain8": 0.1}
    assert "[progress]" in capsys.readouterr().err


@pytest.mark.slow
def test_declared_plan_is_built_without_timing_and_its_steps_run():
    from milestones.harness.launch.inprocess import declared_plan
    from milestones.harness.launch.spec import CaseSpec

    case = Case("resnet", "cifar-resnet20", "speed", "smoke", "cpu", "float32", 2)
    plan = declared_plan(CaseSpec(case=case, workdir=None))
    assert [s.label for s in plan.steps] == ["train", "infer"] and plan.step().label == "train"
    assert plan.steps[0].items_per_step == 2
    plan.steps[0].setup()
    plan.steps[0].fn()  # one real training step
    with pytest.raises(KeyError, match="no step 'decode'"):
        plan.step("decode")


def test_claim_builds_the_recorded_dict():
    from milestones.harness.suite_api import claim, curve_table

    c = claim("degradation", "The deep plain nets ...", "He et al. 2015, Fig. 6", "per seed: ...",
              [1.0, 0.0, True], (0, 1, 2), "proxy", strength="as stated")
    assert c == {"id": "degradation", "statement": "The deep plain nets ...", "source": "He et al. 2015, Fig. 6",
                 "rule": "per seed: ...", "strength": "as stated", "tests": None, "quoted": True,
                 "held": [1, 0, 1], "seeds": [0, 1, 2], "scale": "proxy"}
    assert claim("x", "s", "src", "r", None, [3], "paper", strength="as stated")["held"] is None  # undecided
    assert claim("x", "s", "src", "r", [None, 1.0], [3, 4], "proxy", strength="weaker analogue",
                 tests="less")["held"] == [None, 1]
    t = curve_table("m", 0, {"step": [1, 2], "loss": [3.0, 2.0], "valid_bleu": [None, None]})
    assert t["series"] == {"loss": [3.0, 2.0]}  # a column with no value at all is left out
