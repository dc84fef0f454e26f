import json

import pytest

from milestones.harness import store
from milestones.harness.errors import RecordError, UsageError
from milestones.harness.records import SCHEMA_VERSION, Case, Metric, RunRecord


def make_record(run_id="r1", config="resnet50-smoke", samples=(0.1, 0.12, 0.11), status="ok", **kw):
    case = Case("resnet", config, "speed", "smoke", "cpu", "float32", 2)
    return RunRecord(
        schema_version=SCHEMA_VERSION, run_id=run_id, record_id=f"{run_id}/{case.slug}",
        started_at="2026-11-23T00:00:00+00:00", ended_at="2026-11-23T00:00:01+00:00", duration_s=1.0, case=case,
        config={"depth": 50}, suite_version="abc123", env={"machine_id": "m1", "torch": "2.13.0", "git": {}},
        status=status, error=None,
        metrics={"train.step_time": Metric.from_values("train.step_time", "s", False, samples),
                 "train.mfu": Metric.missing("train.mfu", "fraction", True, "no peak known")}, **kw)


def test_round_trip_through_files_and_frame(tmp_path):
    rec = make_record()
    p = store.write_record(tmp_path / "m1" / "r1", rec)
    back = store.read_record(p)
    assert back == rec
    df = store.load_frame(tmp_path)
    assert len(df) == 2
    row = df[df.metric == "train.step_time"].iloc[0]
    assert row["median"] == pytest.approx(0.11) and row["n"] == 3 and row["samples"] == [0.1, 0.12, 0.11]
    assert row["higher_is_better"] == False  # noqa: E712
    mfu = df[df.metric == "train.mfu"].iloc[0]
    assert mfu["n"] == 0 and mfu["note"] == "no peak known"


def test_frame_from_many_folders(tmp_path):
    store.write_record(tmp_path / "a" / "m1" / "r1", make_record("r1"))
    store.write_record(tmp_path / "b" / "m2" / "r2", make_record("r2"))
    df = store.load_frame(tmp_path / "a", tmp_path / "b")
    assert set(df.run_id) == {"r1", "r2"}


def test_nothing_existing_is_overwritten(tmp_path):
    rec = make_record()
    p1 = store.write_record(tmp_path, rec)
    before = p1.read_text()
    p2 = store.write_record(tmp_path, make_record(samples=(9.0,)))
    assert p1 != p2 and p1.read_text() == before
    assert not list(tmp_path.glob(".tmp-*"))


def test_newer_schema_is_refused(tmp_path):
    d = make_record().to_dict()
    d["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "x.json").write_text(json.dumps(d))
    with pytest.raises(RecordError, match="newer than this milestones understands"):
        store.load_frame(tmp_path)


@pytest.mark.parametrize("text,msg", [
    ("{not json", "not valid JSON"), ("[]", "must be a JSON object"), ('{"schema_version": 1}', "missing field"),
])
def test_malformed_records_give_one_line_errors(tmp_path, text, msg):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(RecordError, match=msg) as e:
        store.load_frame(tmp_path)
    assert "\n" not in str(e.value)


def test_bad_metric_fields(tmp_path):
    d = make_record().to_dict()
    d["metrics"]["train.step_time"]["samples"] = ["fast"]
    (tmp_path / "x.json").write_text(json.dumps(d))
    with pytest.raises(RecordError, match="not a number"):
        store.load_frame(tmp_path)


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(UsageError, match="no result records"):
        store.load_frame(tmp_path)
    with pytest.raises(UsageError, match="no such results path"):
        store.load_frame(tmp_path / "nope")


def test_non_finite_samples_survive_as_json(tmp_path):
    rec = make_record(samples=(float("nan"), 1.0))
    p = store.write_record(tmp_path, rec)
    assert "NaN" not in p.read_text()
    back = store.read_record(p)
    assert back.metrics["train.step_time"].samples[1] == 1.0
    assert back.metrics["train.step_time"].samples[0] != back.metrics["train.step_time"].samples[0]


def test_unwritable_target_is_a_usage_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError, match="cannot write results"):
        store.ensure_writable(f / "sub")
