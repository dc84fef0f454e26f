"""The GPU acceptance check's pure parts: the Timer cross-check (on the CPU), the cross-check's step built
through the registry, and the summary that decides each condition from records. The records below are
hand-built inputs for the checker's rules (labelled as such in their env); no GPU figure is claimed from
them."""

from __future__ import annotations

import json

import pytest

from milestones.harness import gpu_check as G
from milestones.harness import published, store
from milestones.harness.records import SCHEMA_VERSION, Case, Metric, RunRecord

EXPECTED = [("resnet50-v1.5-speed", "fp32"), ("resnet50-v1.5-speed", "amp-bf16+channels-last"),
            ("resnet50-v1.5-speed", "amp-bf16+compile"), ("bert-base-paper", "amp-bf16+channels-last")]
GPU = "NVIDIA H100 80GB HBM3"


def rec(suite: str, config: str, *, kind: str = "speed", mode: str = "cast", status: str = "ok",
        metrics: dict | None = None, info: dict | None = None, artifacts: dict | None = None,
        device: str = "cuda", error: str | None = None, scale: str = "paper", batch: int = 256) -> RunRecord:
    case = Case(suite, config, kind, scale, device, "float32", batch, mode=mode)
    return RunRecord(SCHEMA_VERSION, "r1", f"r1/{case.slug}", "2026-01-01T00:00:00", "2026-01-01T00:00:01", 1.0,
                     case, {}, "1", {"note": "hand-built checker input, not a measurement", "gpu": GPU}, status,
                     error, metrics or {}, info or {}, artifacts or {})


def gpu_metrics(mfu=0.3, energy=0.5, thr=100.0, peak=2**30, compile_s=None) -> dict:
    m = {"train.mfu": Metric.single("train.mfu", "fraction", True, mfu),
         "train.energy_per_item": Metric.single("train.energy_per_item", "J", False, energy),
         "train.throughput": Metric.single("train.throughput", "images/s", True, thr),
         "train.peak_mem_allocated": Metric.single("train.peak_mem_allocated", "B", False, peak)}
    if compile_s is not None:
        m["train.compile_s"] = Metric.single("train.compile_s", "s", False, compile_s)
        m["train.graphs"] = Metric.single("train.graphs", "count", False, 2)
    return m


DECIDED = {"id": "degradation", "statement": "S.", "source": "src", "rule": "r", "strength": "as stated",
           "held": [1, 0], "seeds": [0, 1], "scale": "proxy"}


def passing() -> tuple[list[RunRecord], list[dict]]:
    rs = [rec("resnet", "resnet50-v1.5-speed", mode="fp32", metrics=gpu_metrics(thr=1000.0)),
          rec("resnet", "resnet50-v1.5-speed", mode="amp-bf16+channels-last", metrics=gpu_metrics(thr=3000.0)),
          rec("resnet", "resnet50-v1.5-speed", mode="amp-bf16+compile", metrics=gpu_metrics(thr=4000.0, compile_s=60),
              info={"execution_mode": {"compile": "default"}}),
          rec("bert", "bert-base-paper", mode="amp-bf16+channels-last", status="skipped",
              error="channels-last applies to conv nets: Bert has no 2-D convolution"),
          rec("resnet", "cifar-resnet20-smoke", metrics=gpu_metrics(), scale="smoke",
              artifacts={"train.kernels": [{"name": "sgemm", "self_time_us": 5.0}]}),
          rec("parallel", "parallel-alexnet-smoke", metrics=gpu_metrics(), scale="smoke",
              info={"backend": "nccl", "world_size": 1}),
          rec("resnet", "resnet-degradation", kind="quality", scale="proxy",
              metrics={"degradation.claim_held": Metric.single("degradation.claim_held", "bool", True, 1.0)})]
    cc = [{"config": "resnet50-v1.5-speed", "mode": "amp-bf16+channels-last", "ratio": 1.02},
          {"config": "resnet50-v1.5-speed", "mode": "fp32", "ratio": 0.97}]
    return rs, cc


def by_name(checks):
    return {c.name: c for c in checks}


CC = "CUDA events vs benchmark.Timer within 10%"
QUALITY = "proxy quality case on the GPU, claim decided"


def test_all_conditions_pass_and_the_table_says_so():
    rs, cc = passing()
    checks = G.summarize(rs, cc, EXPECTED)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    text = G.format_summary(checks, rs, published.load())
    assert "| MFU in (0, 1) | PASS |" in text and f"{len(checks)} passed, 0 failed" in text
    # 0.5 J/image x 100, 100, 1000, 3000, 4000 images/s: 50, 50, 500, 1500, 2000 W
    assert "median 500.0 W" in by_name(checks)["power not null"].detail
    assert "no 2-D convolution" in by_name(checks)["paper speed cases in the field preset"].detail
    assert "claim held" in by_name(checks)[QUALITY].detail
    # the execution-mode table: amp-bf16 + channels-last at 3x eager fp32, compile at 4x with its 60 s
    assert "| 3.00x |" in text and "| 4.00x |" in text and "| 60.0 |" in text
    # the published anchors: 3000 / 2470 beside NVIDIA's A100 mixed-precision figure, not comparable (GPU, data)
    assert "rn50v15-a100-80gb-amp" in text and "1.21x" in text and "not comparable: GPU NVIDIA H100" in text


@pytest.mark.parametrize("breaks,name", [
    (lambda rs, cc: rs.__setitem__(0, rec("resnet", "resnet50-v1.5-speed", mode="fp32", status="failed")),
     "paper speed cases in the field preset"),
    (lambda rs, cc: rs.pop(0), "paper speed cases in the field preset"),
    (lambda rs, cc: rs.pop(2), ("paper speed cases in the field preset", "compile cost measured apart")),
    (lambda rs, cc: rs[2].info.__setitem__("execution_mode", {"recompiled_during_timing": ["train"]}),
     "compile cost measured apart"),
    (lambda rs, cc: cc.__setitem__(0, {"config": "x", "mode": "fp32", "ratio": 1.15}), CC),
    (lambda rs, cc: rs.append(rec("gan", "g2", metrics=gpu_metrics(mfu=1.3))), "MFU in (0, 1)"),
    (lambda rs, cc: rs.append(rec("gan", "g3", metrics={
        "train.energy_per_item": Metric.missing("train.energy_per_item", "J", False, "NVML unavailable")})),
     ("NVML energy per item not null", "power not null")),
    (lambda rs, cc: rs.append(rec("gan", "g4", metrics=gpu_metrics(peak=0))), "CUDA memory peaks"),
    (lambda rs, cc: [r.artifacts.clear() for r in rs], "--profile kernel table"),
    (lambda rs, cc: [r.info.pop("backend", None) for r in rs], "NCCL torchrun case"),
    (lambda rs, cc: rs.pop(), QUALITY),
    (lambda rs, cc: rs.__setitem__(-1, rec("resnet", "resnet-degradation", kind="quality", scale="proxy", metrics={
        "degradation.claim_held": Metric.missing("degradation.claim_held", "bool", True, "undecided")})), QUALITY),
    # a claim stated in info["claims"] that no seed decided proves nothing either
    (lambda rs, cc: rs.__setitem__(-1, rec("resnet", "resnet-degradation", kind="quality", scale="proxy",
                                           info={"claims": [{**DECIDED, "held": [None, None]}]})), QUALITY),
])
def test_each_condition_can_fail(breaks, name):
    rs, cc = passing()
    breaks(rs, cc)
    checks = by_name(G.summarize(rs, cc, EXPECTED))
    names = {name} if isinstance(name, str) else set(name)
    assert {n for n, c in checks.items() if not c.passed} == names


def test_an_oom_at_the_paper_batch_is_said_and_allowed():
    rs, cc = passing()
    rs[0] = rec("resnet", "resnet50-v1.5-speed", mode="fp32", status="oom", error="CUDA out of memory")
    check = by_name(G.summarize(rs, cc, EXPECTED))["paper speed cases in the field preset"]
    assert check.passed and "do not fit at the paper's batch (oom) ['resnet50-v1.5-speed [fp32]']" in check.detail


def test_quick_leaves_out_the_full_only_checks():
    rs, cc = passing()
    names = {c.name for c in G.summarize(rs, cc, G.expected_cases(True), quick=True)}
    assert "--profile kernel table" not in names and QUALITY not in names and CC in names


def test_no_crosscheck_file_fails():
    rs, _ = passing()
    assert not by_name(G.summarize(rs, None, EXPECTED))[CC].passed


def test_the_plan_is_paper_configs_in_the_field_preset():
    quick = G.expected_cases(True)
    assert quick == [("resnet50-v1.5-speed", m) for m in ("fp32", "tf32", "amp-bf16+channels-last",
                                                           "amp-bf16+compile")]
    full = G.expected_cases(False)
    assert set(quick) < set(full) and {c for c, _ in full} >= {"bert-base-paper", "gpt3-small-paper"}
    from milestones.harness.registry import load_suites

    reg = load_suites()
    for config, _ in full:  # every config is a registered paper-scale speed config
        e = reg.config(config)
        assert "speed" in e.kinds and "paper" in e.scales


def test_plan_command_prints_config_and_modes(capsys):
    assert G.main(["plan", "--quick"]) == 0
    assert capsys.readouterr().out.split() == ["resnet50-v1.5-speed", "fp32,tf32,amp-bf16+channels-last,amp-bf16+compile"]


def test_crosscheck_step_comes_through_the_registry_in_the_mode(monkeypatch):
    import torch

    fn, what = G.crosscheck_step("resnet50-v1.5-speed", "amp-bf16+channels-last", device="cpu")
    assert what == "resnet50-v1.5-speed train step, batch 8, amp-bf16+channels-last"
    assert callable(fn)
    with pytest.raises(G.UsageError, match="compiles"):
        G.crosscheck_step("resnet50-v1.5-speed", "fp32+compile", device="cpu")
    with pytest.raises(G.UsageError, match="tf32"):
        G.crosscheck_step("resnet50-v1.5-speed", "tf32", device="cpu")
    assert torch.get_float32_matmul_precision() == "highest"


def test_the_harness_check_imports_no_suite():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(G.__file__).read_text())
    names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + \
        [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [n for n in names if n and "suites" in n]


def test_timer_crosscheck_on_the_cpu_reports_both_clocks():
    import torch

    from milestones.harness.measure.crosscheck import timer_crosscheck

    a = torch.randn(64, 64)
    r = timer_crosscheck(lambda: a @ a, "cpu", 5)
    assert r["harness_timer"] == "perf_counter_ns" and len(r["harness_samples_s"]) == 5
    assert len(r["benchmark_timer_samples_s"]) == 5 and r["ratio"] > 0
    assert r["ratio"] == pytest.approx(r["harness_median_s"] / r["benchmark_timer_median_s"])
    with pytest.raises(ValueError):
        timer_crosscheck(lambda: None, "cpu", 0)


@pytest.mark.slow
def test_summary_on_real_cpu_records_fails_the_gpu_conditions(cli, tmp_path, capsys):
    r = cli("run", "resnet18", "--kind", "fidelity", "--device", "cpu", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert G.main(["summary", str(tmp_path), "--quick"]) == 1
    out = capsys.readouterr().out
    assert "| paper speed cases in the field preset | FAIL | missing ['resnet50-v1.5-speed [fp32]'" in out
    assert (tmp_path / G.SUMMARY_FILE).read_text().strip() == out.strip()


def test_summary_command_passes_on_a_complete_folder_and_refuses_bad_input(tmp_path, monkeypatch, capsys):
    rs, cc = passing()
    folder = tmp_path / "m" / "r1"
    folder.mkdir(parents=True)
    for r in rs:
        store.write_record(folder, r)
    (tmp_path / G.CROSSCHECK_FILE).write_text("".join(json.dumps(c) + "\n" for c in cc))
    monkeypatch.setattr(G, "expected_cases", lambda quick: EXPECTED)
    assert G.main(["summary", str(tmp_path)]) == 0
    assert G.main(["summary", str(tmp_path / "nope")]) == 2
    assert G.main(["bogus"]) == 2
    assert G.main(["plan", "extra"]) == 2
    assert "no such results folder" in capsys.readouterr().err


def test_host_side_steps_do_not_fail_the_energy_check_but_a_zero_reading_does():
    rs, cc = passing()
    rs.append(rec("dqn", "dqn-nature-paper", metrics={**gpu_metrics(), "env.energy_per_item": Metric.missing(
        "env.energy_per_item", "J", False, "no energy counter on the CPU")}))
    check = by_name(G.summarize(rs, cc, EXPECTED))["NVML energy per item not null"]
    assert check.passed and "1 host-side steps not counted" in check.detail
    rs.append(rec("gan", "g5", metrics=gpu_metrics(energy=0.0)))
    assert not by_name(G.summarize(rs, cc, EXPECTED))["NVML energy per item not null"].passed
