"""The GPU acceptance check's pure parts: the Timer cross-check (on the CPU) and the summary that decides
each condition from records. The records below are hand-built inputs for the checker's rules (labelled
as such in their env); no GPU figure is claimed from them."""

from __future__ import annotations

import json

import pytest

from milestones.harness import gpu_check as G
from milestones.harness import store
from milestones.harness.records import SCHEMA_VERSION, Case, Metric, RunRecord

SUITES = ("resnet", "gan")
CONFIGS = ("resnet-smoke", "gan-smoke", "cifar-resnet20-smoke")


def rec(suite: str, config: str, *, kind: str = "speed", dtype: str = "float32", status: str = "ok",
        metrics: dict | None = None, info: dict | None = None, artifacts: dict | None = None,
        device: str = "cuda", error: str | None = None) -> RunRecord:
    case = Case(suite, config, kind, "smoke", device, dtype, 8)
    return RunRecord(SCHEMA_VERSION, "r1", f"r1/{case.slug}", "2026-01-01T00:00:00", "2026-01-01T00:00:01", 1.0,
                     case, {}, "1", {"note": "hand-built checker input, not a measurement"}, status, error,
                     metrics or {}, info or {}, artifacts or {})


def gpu_metrics(mfu=0.3, energy=0.5, thr=100.0, peak=2**30) -> dict:
    return {"train.mfu": Metric.single("train.mfu", "fraction", True, mfu),
            "train.energy_per_item": Metric.single("train.energy_per_item", "J", False, energy),
            "train.throughput": Metric.single("train.throughput", "images/s", True, thr),
            "train.peak_mem_allocated": Metric.single("train.peak_mem_allocated", "B", False, peak)}


DECIDED = {"id": "degradation", "statement": "S.", "source": "src", "rule": "r", "strength": "as stated",
           "held": [1, 0], "seeds": [0, 1], "scale": "proxy"}


def passing() -> tuple[list[RunRecord], list[dict]]:
    rs = []
    for s in SUITES:
        for dt in G.DTYPES:
            rs.append(rec(s, f"{s}-smoke", dtype=dt, metrics=gpu_metrics()))
    for dt in G.DTYPES:
        rs.append(rec("resnet", "cifar-resnet20-smoke", metrics=gpu_metrics(), dtype=dt,
                      artifacts={"train.kernels": [{"name": "sgemm", "self_time_us": 5.0}]}))
    rs.append(rec("parallel", "parallel-alexnet-smoke", metrics=gpu_metrics(),
                  info={"backend": "nccl", "world_size": 1}))
    rs.append(rec("resnet", "resnet-degradation", kind="quality", metrics={}, info={"claims": [DECIDED]}))
    cc = [{"dtype": "float32", "ratio": 1.02}, {"dtype": "bfloat16", "ratio": 0.97}]
    return rs, cc


def by_name(checks):
    return {c.name: c for c in checks}


def test_all_conditions_pass_and_the_table_says_so():
    rs, cc = passing()
    checks = G.summarize(rs, cc, CONFIGS)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    text = G.format_summary(checks)
    assert "| MFU in (0, 1) | PASS |" in text and text.endswith(f"{len(checks)} passed, 0 failed")
    assert "50.0 W" in by_name(checks)["power not null"].detail  # 0.5 J/image x 100 images/s


@pytest.mark.parametrize("breaks,name", [
    (lambda rs, cc: rs.__setitem__(0, rec("resnet", "resnet-smoke", status="oom")), "speed cases on cuda, float32"),
    (lambda rs, cc: rs.pop(0), "speed cases on cuda, float32"),
    (lambda rs, cc: cc.__setitem__(0, {"dtype": "float32", "ratio": 1.6}), "CUDA events vs benchmark.Timer"),
    (lambda rs, cc: rs.append(rec("gan", "g2", metrics=gpu_metrics(mfu=1.3))), "MFU in (0, 1)"),
    (lambda rs, cc: rs.append(rec("gan", "g3", metrics={
        "train.energy_per_item": Metric.missing("train.energy_per_item", "J", False, "NVML unavailable")})),
     ("NVML energy per item not null", "power not null")),
    (lambda rs, cc: rs.append(rec("gan", "g4", metrics=gpu_metrics(peak=0))), "CUDA memory peaks"),
    (lambda rs, cc: [r.artifacts.clear() for r in rs], "--profile kernel table"),
    (lambda rs, cc: [r.info.clear() for r in rs if r.case.kind == "speed"], "NCCL torchrun case"),
    (lambda rs, cc: rs.pop(), "proxy quality case on the GPU"),
    # an ok quality record whose claim no seed decided proves nothing
    (lambda rs, cc: rs[-1].info["claims"].__setitem__(0, {**DECIDED, "held": [None, None]}),
     "proxy quality case on the GPU"),
    (lambda rs, cc: rs[-1].info.__setitem__("claims", []), "proxy quality case on the GPU"),
])
def test_each_condition_can_fail(breaks, name):
    rs, cc = passing()
    breaks(rs, cc)
    checks = by_name(G.summarize(rs, cc, CONFIGS))
    names = {name} if isinstance(name, str) else set(name)
    assert {n for n, c in checks.items() if not c.passed} == names


def test_bfloat16_skip_with_a_reason_is_allowed_but_float32_skip_is_not():
    rs, cc = passing()
    rs = [r for r in rs if not (r.case.suite == "gan" and r.case.dtype == "bfloat16")]
    rs.append(rec("gan", "gan-smoke", dtype="bfloat16", status="skipped", error="bf16 unsupported here"))
    checks = by_name(G.summarize(rs, cc, CONFIGS))
    assert checks["speed cases on cuda, bfloat16"].passed and "bf16 unsupported" in checks[
        "speed cases on cuda, bfloat16"].detail
    rs = [r for r in rs if not (r.case.suite == "gan" and r.case.dtype == "float32")]
    rs.append(rec("gan", "gan-smoke", status="skipped", error="x"))
    assert not by_name(G.summarize(rs, cc, CONFIGS))["speed cases on cuda, float32"].passed


def test_no_crosscheck_file_fails():
    rs, _ = passing()
    assert not by_name(G.summarize(rs, None, CONFIGS))["CUDA events vs benchmark.Timer"].passed


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


def test_summary_on_real_cpu_records_fails_the_gpu_conditions(cli, tmp_path, capsys, monkeypatch):
    r = cli("run", "resnet18", "--kind", "fidelity", "--device", "cpu", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    monkeypatch.setattr(G, "expected_speed_configs", lambda: ["cifar-resnet20-smoke"])
    assert G.main(["summary", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "| speed cases on cuda, float32 | FAIL | missing ['cifar-resnet20-smoke']" in out
    assert (tmp_path / G.SUMMARY_FILE).read_text().strip() == out.strip()


def test_summary_command_passes_on_a_complete_folder_and_refuses_bad_input(tmp_path, monkeypatch, capsys):
    rs, cc = passing()
    folder = tmp_path / "m" / "r1"
    folder.mkdir(parents=True)
    for r in rs:
        store.write_record(folder, r)
    (tmp_path / G.CROSSCHECK_FILE).write_text("".join(json.dumps(c) + "\n" for c in cc))
    monkeypatch.setattr(G, "expected_speed_configs", lambda: list(CONFIGS))
    assert G.main(["summary", str(tmp_path)]) == 0
    assert G.main(["summary", str(tmp_path / "nope")]) == 2
    assert G.main(["bogus"]) == 2
    assert "no such results folder" in capsys.readouterr().err


def test_host_side_steps_do_not_fail_the_energy_check_but_a_zero_reading_does():
    rs, cc = passing()
    rs.append(rec("dqn", "dqn-2013-smoke", metrics={**gpu_metrics(), "env.energy_per_item": Metric.missing(
        "env.energy_per_item", "J", False, "no energy counter on the CPU")}))
    check = by_name(G.summarize(rs, cc, CONFIGS))["NVML energy per item not null"]
    assert check.passed and "1 host-side steps not counted" in check.detail
    rs.append(rec("gan", "g5", metrics=gpu_metrics(energy=0.0)))
    assert not by_name(G.summarize(rs, cc, CONFIGS))["NVML energy per item not null"].passed
