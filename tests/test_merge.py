"""Results from many machines: `milestones merge` and load_frame over several machines' folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from milestones.harness import store
from milestones.harness.cli import main
from milestones.harness.errors import RecordError
from milestones.harness.records import SCHEMA_VERSION, Case, Metric, RunRecord


def fake_record(machine: str, gpu: str, run_id: str, samples: tuple[float, ...]) -> RunRecord:
    case = Case("resnet", "resnet50-smoke", "speed", "smoke", "cuda", "float32", 8)
    return RunRecord(
        schema_version=SCHEMA_VERSION, run_id=run_id, record_id=f"{run_id}/{case.slug}",
        started_at="2026-01-01T00:00:00+00:00", ended_at="2026-01-01T00:00:01+00:00", duration_s=1.0, case=case,
        config={}, suite_version="abc", env={"machine_id": machine, "gpu": gpu, "hostname": machine},
        status="ok", error=None,
        metrics={"train.step_time": Metric.from_values("train.step_time", "s", False, samples)})


def write_machine(root: Path, machine: str, gpu: str, run_id: str, samples) -> Path:
    folder = store.run_dir(root, machine, run_id)
    store.write_manifest(folder, {"run_id": run_id, "cases": []})
    store.write_record(folder, fake_record(machine, gpu, run_id, samples))
    return root


def test_merge_two_machines_into_one_tree_without_overwriting(tmp_path, capsys):
    a = write_machine(tmp_path / "a", "host-a", "NVIDIA H100", "20260101T000000Z-aaaaaa", (0.10, 0.11))
    b = write_machine(tmp_path / "b", "host-b", "NVIDIA A100", "20260101T000000Z-bbbbbb", (0.20, 0.21))
    direct = store.load_frame(a, b)
    assert sorted(direct["machine_id"]) == ["host-a", "host-b"]
    assert sorted(direct["gpu"]) == ["NVIDIA A100", "NVIDIA H100"]

    out = tmp_path / "merged"
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 0
    assert "merged 2 record(s) from 2 machine(s)" in capsys.readouterr().out
    df = store.load_frame(out)
    assert dict(zip(df["gpu"], df["median"])) == {"NVIDIA H100": pytest.approx(0.105), "NVIDIA A100": pytest.approx(0.205)}
    assert (out / "host-a" / "20260101T000000Z-aaaaaa" / store.RUN_MANIFEST).exists()

    # Merging again adds nothing; a different record under the same name is kept beside the first.
    assert main(["merge", str(a), "--out", str(out)]) == 0
    assert "merged 0 record(s)" in capsys.readouterr().out
    c = write_machine(tmp_path / "c", "host-a", "NVIDIA H100", "20260101T000000Z-aaaaaa", (0.30,))
    assert main(["merge", str(c), "--out", str(out)]) == 0
    files = sorted(p.name for p in (out / "host-a" / "20260101T000000Z-aaaaaa").glob("*.json") if p.name != "_run.json")
    assert len(files) == 2 and any(f.endswith("-2.json") for f in files)
    assert sorted(store.load_frame(out)["median"]) == pytest.approx([0.105, 0.205, 0.30])


def test_merge_refuses_a_malformed_record_before_writing_anything(tmp_path):
    a = write_machine(tmp_path / "a", "host-a", "NVIDIA H100", "r1", (0.1,))
    (a / "host-a" / "r1" / "broken.json").write_text("{not json")
    out = tmp_path / "merged"
    with pytest.raises(RecordError):
        from milestones.harness.commands.merge import merge

        merge([str(a)], out)
    assert not out.exists() or not any(out.rglob("*.json"))
    assert main(["merge", str(a), "--out", str(out)]) == 2
