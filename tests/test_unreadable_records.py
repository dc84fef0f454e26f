"""Issue 12, item 8: one unreadable record no longer makes `compare` and `report` refuse the whole
input. By default it is named (one line on stderr, with its path) and skipped; `--strict` refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from milestones.harness import compare, store
from milestones.harness.cli import main
from milestones.harness.errors import RecordError

F = Path(__file__).parent / "fixtures" / "records"


def _spoil(folder: Path) -> tuple[Path, Path]:
    """A copy's resnet50 record made invalid JSON, and its resnet18 record given a metric of the wrong type."""
    bad_json = next(folder.rglob("resnet.resnet50-smoke*.json"))
    bad_json.write_text("{not json")
    bad_metric = next(folder.rglob("resnet.resnet18-smoke*.json"))
    d = json.loads(bad_metric.read_text())
    d["metrics"]["train.step_time"] = 5
    bad_metric.write_text(json.dumps(d))
    return bad_json, bad_metric


@pytest.fixture
def spoiled(tmp_path):
    new = tmp_path / "new"
    shutil.copytree(F / "regress" / "new", new)
    return new, *_spoil(new)


def test_a_metric_of_the_wrong_type_is_reported_with_its_file(spoiled):
    _, _, bad_metric = spoiled
    with pytest.raises(RecordError) as e:
        store.read_record(bad_metric)
    assert str(e.value).startswith(str(bad_metric)) and "metric 'train.step_time' is not an object" in str(e.value)


def test_load_names_and_skips_unreadable_records(spoiled):
    new, bad_json, bad_metric = spoiled
    skipped: list[str] = []
    loaded = compare.load([new], on_skip=skipped.append)
    assert len(skipped) == 2 and any(str(bad_json) in s for s in skipped) and any(str(bad_metric) in s for s in skipped)
    good = sorted(p for p in new.rglob("*.json") if p.name != store.RUN_MANIFEST and p not in (bad_json, bad_metric))
    assert sorted(Path(x.path) for x in loaded) == good and len(good) == 5
    with pytest.raises(RecordError, match="not valid JSON|is not an object"):
        compare.load([new], strict=True)


def test_compare_goes_on_and_names_each_skipped_file(capsys, spoiled):
    new, bad_json, bad_metric = spoiled
    code = main(["compare", str(F / "regress" / "base"), str(new), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(ln.startswith("milestones: warning: skipped ") for ln in lines)
    assert str(bad_json) in err and str(bad_metric) in err and "Traceback" not in err
    configs = {r["config"] for r in json.loads(out)["rows"]}
    assert {"resnet34-smoke", "resnet152-smoke", "cifar-resnet20-smoke"} <= configs


def test_compare_strict_refuses_with_one_line(capsys, spoiled):
    new, bad_json, bad_metric = spoiled
    code = main(["compare", str(F / "regress" / "base"), str(new), "--strict"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(bad_json) in err or str(bad_metric) in err


def test_compare_by_group_skips_too(capsys, spoiled):
    new, bad_json, _ = spoiled
    code = main(["compare", "--by", "gpu", str(new), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0 and str(bad_json) in err and json.loads(out)["groups"]


def test_report_goes_on_and_strict_refuses(capsys, spoiled, tmp_path):
    new, bad_json, bad_metric = spoiled
    out = tmp_path / "r.md"
    assert main(["report", str(new), "--out", str(out), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert str(bad_json) in err and str(bad_metric) in err and out.exists()
    assert "resnet34-smoke" in out.read_text()
    out2 = tmp_path / "r2.md"
    assert main(["report", str(new), "--out", str(out2), "--no-plots", "--strict"]) == 2
    assert not out2.exists() and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_nothing_readable_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.json").write_text("[]")
    assert main(["compare", "--by", "gpu", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no readable result records" in err and str(tmp_path / "x" / "a.json") in err
