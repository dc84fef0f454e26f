"""Published throughput baselines (baselines/published/) and the execution-mode report rows and chart.
The records are hand-built inputs of the comparison rules (labelled so in their env), not measurements."""

from __future__ import annotations

import pytest

from milestones.harness import modes_report, plots, published
from milestones.harness.errors import BaselineError
from milestones.harness.records import SCHEMA_VERSION, Case, Metric, RunRecord
from milestones.harness.registry import load_suites


def rec(mode: str, thr: float | None, *, gpu: str = "NVIDIA A100-SXM4-80GB", batch: int = 256,
        config: str = "resnet50-v1.5-speed", device: str = "cuda", status: str = "ok", when: str = "00",
        compile_s: float | None = None) -> RunRecord:
    case = Case("resnet", config, "speed", "paper", device, "float32", batch, mode=mode)
    metrics = {} if thr is None else {
        "train.throughput": Metric.single("train.throughput", "images/s", True, thr),
        "train.mfu": Metric.single("train.mfu", "fraction", True, 0.4),
        "train.peak_mem_allocated": Metric.single("train.peak_mem_allocated", "B", False, 2**31)}
    if compile_s is not None:
        metrics["train.compile_s"] = Metric.single("train.compile_s", "s", False, compile_s)
    return RunRecord(SCHEMA_VERSION, "r1", f"r1/{case.slug}", f"2026-01-01T00:00:{when}", "2026-01-01T00:01:00", 1.0,
                     case, {}, "1", {"note": "hand-built rule input, not a measurement", "gpu": gpu}, status,
                     None if status == "ok" else "why", metrics)


def test_the_shipped_figures_load_with_source_and_setup_and_name_registered_configs():
    items = published.load()
    ids = {p.id for p in items}
    assert {"rn50v15-a100-80gb-amp", "rn50v15-a100-80gb-tf32", "rn50v15-v100-16gb-fp32"} <= ids
    a100 = next(p for p in items if p.id == "rn50v15-a100-80gb-amp")
    assert (a100.value, a100.batch, a100.precision, a100.channels_last, a100.synthetic) == (2470, 256, "amp-fp16",
                                                                                          True, False)
    assert "pytorch-21.03" in a100.software and a100.url.startswith("https://github.com/NVIDIA/DeepLearningExamples")
    assert all(p.source and p.data and p.software for p in items)
    assert published.check_configs(items, load_suites()) == []


def test_same_setup_is_a_comparable_ratio():
    p = next(x for x in published.load() if x.id == "rn50v15-a100-80gb-tf32")
    # a hypothetical record on the same GPU, batch, precision and format; only the data pipeline differs
    r = rec("tf32", 469.0)
    rows = published.anchor_rows([r], [p])
    assert len(rows) == 1 and rows[0].ratio == pytest.approx(0.5)
    assert rows[0].differences == ("data: synthetic batch on the device vs " + p.data,)
    same = published.Published(**{**p.__dict__, "synthetic": True})
    assert published.anchor_rows([r], [same])[0].setup == "same setup"


@pytest.mark.parametrize("mode,gpu,batch,expect", [
    ("amp-bf16+channels-last", "NVIDIA H100 80GB HBM3", 256, ["GPU NVIDIA H100 80GB HBM3 vs A100 80GB",
                                                              "precision amp-bf16 vs amp-fp16"]),
    ("amp-fp16", "NVIDIA A100-SXM4-80GB", 128, ["batch 128 vs 256", "memory format NCHW vs NHWC"]),
    ("amp-fp16+channels-last+compile", "NVIDIA A100-SXM4-80GB", 256, ["torch.compile vs eager"]),
])
def test_each_difference_of_setup_is_named(mode, gpu, batch, expect):
    p = next(x for x in published.load() if x.id == "rn50v15-a100-80gb-amp")
    row = published.anchor_rows([rec(mode, 2470.0, gpu=gpu, batch=batch)], [p])[0]
    assert row.setup.startswith("not comparable: ") and row.ratio == pytest.approx(1.0)
    for e in expect:
        assert any(d.startswith(e) for d in row.differences), row.differences
    assert any(d.startswith("data: synthetic") for d in row.differences)


def test_only_the_same_precision_family_and_ok_gpu_records_stand_beside_a_figure():
    p = next(x for x in published.load() if x.id == "rn50v15-a100-80gb-amp")
    recs = [rec("fp32", 900.0), rec("amp-bf16", 2000.0, status="failed"), rec("amp-bf16", 2000.0, device="cpu"),
            rec("amp-bf16", 2000.0, config="resnet50-paper")]
    assert published.anchor_rows(recs, [p]) == []


def test_a_malformed_published_file_is_one_clear_error(tmp_path):
    d = tmp_path / "published"
    d.mkdir()
    (d / "x.toml").write_text('[source]\nid = "s"\ntitle = "t"\nurl = "u"\n[[published]]\nid = "a"\nvalue = -1\n')
    with pytest.raises(BaselineError, match="missing"):
        published.load(tmp_path)
    (d / "x.toml").write_text((published.folder_of() / "resnet.toml").read_text().replace('value = 2470', 'value = "2470"'))
    with pytest.raises(BaselineError, match="'value' has the wrong type"):
        published.load(tmp_path)


def test_mode_rows_give_speedup_over_eager_fp32_and_the_chart_renders(tmp_path):
    recs = [rec("fp32", 1000.0), rec("amp-bf16+channels-last", 2500.0),
            rec("amp-bf16+compile", 3000.0, compile_s=75.0), rec("tf32", None, status="skipped"),
            rec("fp32", 800.0, when="30")]  # a later fp32 record of the same case wins
    rows = modes_report.mode_rows(recs)
    by = {r.mode: r for r in rows}
    assert [r.mode for r in rows][:2] == ["fp32", "tf32"]
    assert by["fp32"].throughput == 800.0 and by["amp-bf16+channels-last"].speedup == pytest.approx(2500 / 800)
    assert by["amp-bf16+compile"].compile_s == 75.0 and by["tf32"].speedup is None
    cells = {c[2]: c for c in modes_report.cells(rows)}
    assert cells["tf32"][3].startswith("skipped") and cells["amp-bf16+compile"][-1] == "75.0"
    # cases that only ran in the default cast are not an execution-mode comparison
    assert modes_report.mode_rows([rec("cast", 10.0)]) == []
    out = plots.save(plots.modes_panels(rows), tmp_path / "modes.png")
    assert out.stat().st_size > 10_000
    with pytest.raises(plots.UsageError):
        plots.modes_panels([])


def test_compare_by_gpu_prints_the_published_anchors(tmp_path, capsys):
    import argparse
    import dataclasses

    from milestones.harness import store
    from milestones.harness.commands import compare as C

    for i, (gpu, thr) in enumerate((("NVIDIA A100-SXM4-80GB", 2000.0), ("NVIDIA H100 80GB HBM3", 3000.0))):
        folder = tmp_path / f"m{i}" / "r1"
        folder.mkdir(parents=True)
        r = rec("amp-bf16+channels-last", thr, gpu=gpu)
        store.write_record(folder, dataclasses.replace(r, env={**r.env, "machine_id": f"m{i}"}, run_id=f"r{i}",
                                                       record_id=f"r{i}/x"))
    from milestones.harness.cli import build_parser

    ns = build_parser().parse_args(["compare", "--by", "gpu", str(tmp_path), "--format", "markdown"])
    assert C.cmd_compare(ns) == 0
    out = capsys.readouterr().out
    assert "## Published throughput (not paper results)" in out
    assert "| 2000.0 | 0.81x | not comparable: precision amp-bf16 vs amp-fp16; data: synthetic" in out
    assert C.cmd_compare(argparse.Namespace(**{**vars(ns), "format": "json"})) == 0
    assert '"ratio": 1.2145' in capsys.readouterr().out
