"""Execution modes (harness/measure/modes.py): parsing, the case key, and each mode's plumbing on a CPU
with a cheap compile backend (inductor in one slow test)."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from milestones.harness.compare import _case_key, compare_runs
from milestones.harness.errors import UsageError
from milestones.harness.measure import modes
from milestones.harness.measure.modes import Mode, ModeError, ModeUnsupported, parse_modes
from milestones.harness.measure.plan import SpeedPlan, Step
from milestones.harness.measure.speed import MeasureSettings, classifier_plan, measure_plan
from milestones.harness.measure.timing import TimingSettings
from milestones.harness.options import RunOptions
from milestones.harness.records import Case, Metric, RunRecord
from milestones.harness.registry import load_suites
from milestones.harness.runner import plan

QUICK = TimingSettings(warmup_iters=1, warmup_time=0.0, min_iters=3, min_time=0.0, max_time=5.0)


# ------------------------------------------------------------------------------------------ parsing
@settings(derandomize=True, max_examples=60)
@given(st.sampled_from(modes.PRECISIONS), st.booleans(), st.sampled_from(modes.COMPILE_MODES),
       st.sampled_from(modes.BACKENDS))
def test_every_mode_round_trips_through_its_text(precision, cl, comp, backend):
    if comp == "off":
        backend = "inductor"
    m = Mode(precision, cl, comp, backend)
    assert Mode.parse(str(m)) == m
    assert str(Mode.parse(str(m))) == str(m)


def test_canonical_forms_and_order_independence():
    assert str(Mode.parse("channels-last+amp-bf16")) == "amp-bf16+channels-last"
    assert str(Mode.parse("compile:max-autotune+fp32@aot_eager")) == "fp32+compile:max-autotune@aot_eager"
    assert str(Mode.parse("compile")) == "cast+compile"
    assert str(Mode()) == "cast" == modes.DEFAULT


@pytest.mark.parametrize("text,msg", [
    ("amp-bf61", "did you mean 'amp-bf16'"),
    ("fp32+chanels-last", "did you mean 'channels-last'"),
    ("fp32+compile:max-autotun", "did you mean 'max-autotune'"),
    ("fp32+compile@inducter", "did you mean 'inductor'"),
    ("fp32@eager", r"needs \+compile"),
    ("fp32+tf32", "two precisions"),
    ("feild", "did you mean 'field'"),
])
def test_bad_modes_say_what_they_meant(text, msg):
    with pytest.raises(ModeError, match=msg):
        parse_modes(text)


def test_presets_expand_in_order_without_duplicates():
    assert parse_modes("field") == ("fp32", "tf32", "amp-bf16+channels-last", "amp-bf16+compile")
    assert parse_modes("fp32,field,cpu") == ("fp32", "tf32", "amp-bf16+channels-last", "amp-bf16+compile",
                                              "fp32+compile", "amp-bf16")


def test_option_parses_modes_and_refuses_a_cast_dtype_under_a_mixed_mode():
    assert RunOptions(modes="field").modes == parse_modes("field")
    assert RunOptions().modes == ("cast",)
    with pytest.raises(UsageError, match="did you mean"):
        RunOptions(modes="amp-bf61")
    with pytest.raises(UsageError, match="--dtype float32"):
        RunOptions(modes="amp-bf16", dtype="bfloat16")
    assert RunOptions(modes="cast", dtype="bfloat16").dtype == "bfloat16"


def test_each_mode_is_its_own_speed_case_and_other_kinds_run_once():
    reg = load_suites()
    entries = [reg.config("cifar-resnet20-smoke"), reg.config("resnet50")]
    cases = plan(entries, RunOptions(modes="fp32,amp-bf16+compile", kinds=("fidelity", "speed")), "cpu")
    speed = [c for c in cases if c.kind == "speed"]
    assert [c.mode for c in speed] == ["fp32", "amp-bf16+compile"]
    assert all(c.mode == "cast" for c in cases if c.kind == "fidelity")
    assert len({c.slug for c in cases}) == len(cases)


# ------------------------------------------------------------------------------------ records, compare
def _rec(mode: str, value: float, run: str = "r1") -> RunRecord:
    case = Case("s", "c", "speed", "smoke", "cpu", "float32", 8, mode=mode)
    return RunRecord(1, run, f"{run}/{case.slug}", "2026-01-01T00:00:00", "2026-01-01T00:00:01", 1.0, case, {}, "v",
                     {"machine_id": "m"}, "ok", None,
                     {"train.step_time": Metric.from_values("train.step_time", "s", False, [value] * 15)})


def test_default_mode_keeps_old_slugs_and_old_records_read_as_cast():
    c = Case("resnet", "resnet50-smoke", "speed", "smoke", "cpu", "float32", 8)
    assert c.slug == "resnet.resnet50-smoke.speed.smoke.cpu.float32-b8"
    assert Case(**{**c.__dict__, "mode": "amp-bf16"}).slug.endswith("-b8.amp-bf16")
    d = _rec("cast", 0.1).to_dict()
    del d["case"]["mode"]  # a record written before modes existed
    old = RunRecord.from_dict(json.loads(json.dumps(d)))
    assert old.case.mode == "cast" and old.case == _rec("cast", 0.1).case


def test_compare_never_pairs_two_modes():
    base = [_rec("fp32", 0.1), _rec("amp-bf16", 0.05)]
    new = [_rec("fp32", 0.1, "r2"), _rec("amp-bf16+compile", 0.01, "r2")]
    assert _case_key(base[0]) != _case_key(base[1])
    rows, _ = compare_runs(base, new)
    by_mode = {}
    for r in rows:
        by_mode.setdefault(r.mode, set()).add(r.result.reason if r.verdict == "not comparable" else r.verdict)
    # the fp32 cases compare; the two different mixed modes stand alone, never judged against each other
    assert "fp32" in by_mode and not any("case only" in x for x in by_mode["fp32"])
    assert any("case only in base" in x for x in by_mode["amp-bf16"])
    assert any("case only in new" in x for x in by_mode["amp-bf16+compile"])


# ----------------------------------------------------------------------------------------- applying
class Net(torch.nn.Module):  # a conv net with a 4-D input: every mode applies
    def __init__(self, record: bool):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 8 * 8, 4)
        self.record = record

    def forward(self, x):
        if self.record:  # under compile, a guard on len(seen) fails on every call: a recompile each time
            seen.append((x.dtype, torch.is_autocast_enabled("cpu"), self.conv.weight.dtype,
                         self.conv.weight.is_contiguous(memory_format=torch.channels_last)))
        return self.fc(torch.relu(self.conv(x)).flatten(1))


seen: list = []


def _plan(record: bool = True):
    torch.manual_seed(0)
    model = Net(record)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
    return classifier_plan(model, opt, x, y, 4), x


def _measure(mode: str, device: str = "cpu", record: bool = True):
    seen.clear()
    p, x = _plan(record)
    metrics, artifacts, info = measure_plan(p, MeasureSettings(device=device, timing=QUICK, mode=mode))
    return metrics, artifacts, info, x, p


def test_amp_bf16_runs_the_forward_under_autocast_with_float32_master_weights():
    metrics, _, info, _, p = _measure("amp-bf16")
    assert seen and all(autocast and wdt == torch.float32 for _, autocast, wdt, _ in seen)
    assert p.model.conv.weight.dtype == torch.float32
    assert "backward outside" in info["execution_mode"]["autocast"]["train"]
    assert metrics["train.step_time"].stats.n >= 3 and metrics["train.flops"].value > 0


def test_fp32_runs_without_autocast_and_restores_the_tf32_flags():
    before = torch.get_float32_matmul_precision()
    _measure("fp32")
    assert seen and not any(autocast for _, autocast, _, _ in seen)
    assert torch.get_float32_matmul_precision() == before


def test_channels_last_converts_the_model_and_the_declared_input_in_place():
    _, _, info, x, p = _measure("fp32+channels-last")
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert p.model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert info["execution_mode"]["channels_last_inputs"] == 2  # the train and infer steps' x (one tensor)
    assert all(cl for *_, cl in seen)


def test_compile_with_a_cheap_backend_measures_compile_cost_apart():
    metrics, artifacts, info, _, _ = _measure("fp32+compile@eager", record=False)
    assert info["execution_mode"]["compiled"].startswith("model in place")
    for label in ("train", "infer"):
        assert metrics[f"{label}.graphs"].value >= 1
        assert metrics[f"{label}.first_step_s"].value >= metrics[f"{label}.compile_s"].value >= 0
        assert metrics[f"{label}.recompiles"].value == 0
        assert metrics[f"{label}.flops"].value > 0  # counted eagerly, before compiling
        c = artifacts[f"{label}.compile"]
        assert c["after_timing"]["graphs"] == c["after_warmup"]["graphs"]
    assert "recompiled_during_timing" not in info["execution_mode"]
    # the compile call is not among the timed samples: each is far below the first call
    assert max(metrics["train.step_time"].samples) < metrics["train.first_step_s"].value


def test_compile_of_a_plan_without_a_model_compiles_each_step():
    calls = []

    def fn():
        calls.append(1)
        return torch.ones(3).sin()

    p = SpeedPlan(steps=(Step("f", fn, 1, count_flops=False),))
    m, _, info = measure_plan(p, MeasureSettings(timing=QUICK, mode="fp32+compile@eager"))
    assert info["execution_mode"]["compiled"].startswith("each step function")
    assert m["f.graphs"].value >= 1 and m["f.step_time"].stats.n >= 3


def test_a_recompile_during_timing_is_said():
    metrics, artifacts, info, _, _ = _measure("fp32+compile@eager", record=True)
    assert metrics["train.recompiles"].value >= 1
    c = artifacts["train.compile"]
    assert c["after_timing"]["graphs"] > c["after_warmup"]["graphs"]
    assert "train" in info["execution_mode"]["recompiled_during_timing"]


@pytest.mark.parametrize("mode,why", [("tf32", "CUDA tensor-core"), ("amp-fp16", "GPU mode"),
                                      ("fp32+channels-last", "no 2-D convolution")])
def test_a_mode_the_plan_cannot_run_is_skipped_with_one_line(mode, why):
    lin = torch.nn.Linear(3, 3)
    p = SpeedPlan(steps=(Step("f", lambda: lin(torch.ones(1, 3)), 1),), model=lin)
    with pytest.raises(ModeUnsupported, match=why) as e:
        measure_plan(p, MeasureSettings(timing=QUICK, mode=mode))
    assert "\n" not in str(e.value)


def test_amp_fp16_builds_a_grad_scaler_step_only_from_a_declared_loss(monkeypatch):
    # The fp16 path cannot run on a CPU here; its construction is checked through apply_eager directly.
    p, _ = _plan()
    monkeypatch.setattr(torch.amp, "GradScaler", lambda dev: ("scaler", dev))
    out, info = modes.apply_eager(p, Mode("amp-fp16"), "cuda")
    assert info["autocast"]["train"].endswith("GradScaler")
    assert "no GradScaler" in info["autocast"]["infer"]  # an opaque step: said, not hidden
    assert "GradScaler" not in modes.apply_eager(_plan()[0], Mode("amp-bf16"), "cuda")[1]["autocast"]["train"]


def test_structured_step_must_declare_both_loss_and_optimizer():
    with pytest.raises(ValueError, match="both loss and optimizer"):
        Step("t", lambda: None, 1, loss=lambda: None)


def test_mfu_uses_the_modes_peak_dtype():
    assert Mode.parse("amp-bf16").peak_dtype("float32") == "bfloat16"
    assert Mode.parse("tf32").peak_dtype("float32") == "tfloat32"
    assert Mode.parse("cast").peak_dtype("float16") == "float16"


@pytest.mark.slow
def test_a_mode_applies_to_a_real_suite_through_the_worker(tmp_path):
    from milestones.harness.launch.inprocess import InProcess
    from milestones.harness.runner import specs_for_cases

    reg = load_suites()
    case = Case("resnet", "cifar-resnet20-smoke", "speed", "smoke", "cpu", "float32", 4, mode="amp-bf16")
    spec = specs_for_cases([case], RunOptions(batch_size=4, modes="amp-bf16"), reg)[0]
    import dataclasses

    spec = dataclasses.replace(spec, timing=QUICK, workdir=str(tmp_path))
    res = InProcess().run(spec)
    assert res.status == "ok", res.error
    assert res.info["execution_mode"]["precision"] == "amp-bf16"
    skipped = InProcess().run(dataclasses.replace(spec, case=dataclasses.replace(case, mode="tf32")))
    assert skipped.status == "skipped" and "tf32" in skipped.error


@pytest.mark.slow
def test_inductor_compiles_a_small_conv_net_on_the_cpu():
    import torch

    # An earlier test in this process may have compiled the same step's code: dynamo would reuse that graph
    # and count no new frame (a case process is fresh, so the harness itself never meets this).
    torch._dynamo.reset()
    metrics, _, info, _, _ = _measure("fp32+compile", record=False)
    assert info["execution_mode"]["backend"] == "inductor"
    assert metrics["train.graphs"].value >= 1 and metrics["train.compile_s"].value > 0
    assert metrics["train.recompiles"].value == 0


def test_by_gpu_tables_keep_each_mode_its_own_row():
    from milestones.harness.compare import compare_by

    recs = []
    for gpu, base in (("NVIDIA H100 80GB HBM3", 0.1), ("NVIDIA H200", 0.08)):
        for mode, f in (("fp32", 1.0), ("amp-bf16+compile", 0.25)):
            r = _rec(mode, base * f, run=gpu[-4:])
            recs.append(RunRecord(**{**r.__dict__, "env": {"machine_id": gpu, "gpu": gpu},
                                     "case": Case(**{**r.case.__dict__, "device": "cuda"})}))
    rows, groups = compare_by(recs, "gpu")
    configs = sorted({row.config for row in rows if row.metric == "train.step_time"})
    assert configs == ["c (amp-bf16+compile)", "c (fp32)"] and len(groups) == 2
