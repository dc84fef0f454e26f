"""Tests that bite on harness/records.py and harness/store.py: each checks a behaviour that a small
change of the code (a flipped comparison, a constant off by one, a dropped check) would break.
Written against what `nox -s mutation -- records store` showed surviving."""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import json
import math
import re

import pytest

from milestones.harness import records, store
from milestones.harness.errors import RecordError, UsageError
from milestones.harness.records import Case, Metric, RunRecord, Stats
from tests.test_store import make_record as _make


def make_record(**kw) -> RunRecord:
    return dataclasses.replace(_make(), **kw)


# ------------------------------------------------------------------------------------------- records
def test_stats_of_one_two_and_three_samples():
    assert Stats.from_samples([]) is None
    one = Stats.from_samples([4.0])
    assert (one.n, one.median, one.mean, one.std, one.iqr, one.min, one.max) == (1, 4.0, 4.0, 0.0, 0.0, 4.0, 4.0)
    assert one.ci95_low is None and one.ci95_high is None and one.olympic_mean is None and one.cv == 0.0
    two = Stats.from_samples([1.0, 3.0])
    assert two.std == pytest.approx(math.sqrt(2)) and two.median == 2.0
    half = 12.706 * math.sqrt(2) / math.sqrt(2)  # t(0.975, df=1) * std / sqrt(n)
    assert (two.ci95_low, two.ci95_high) == pytest.approx((2.0 - half, 2.0 + half))
    three = Stats.from_samples([9.0, 1.0, 5.0])
    assert three.olympic_mean == 5.0 and three.median == 5.0 and (three.min, three.max) == (1.0, 9.0)
    assert three.p10 == pytest.approx(1.8) and three.p90 == pytest.approx(8.2) and three.iqr == pytest.approx(4.0)
    assert Stats.from_samples([-1.0, 1.0]).cv is None  # mean 0: no coefficient of variation
    assert Stats.from_samples([-2.0, -4.0]).cv == pytest.approx(math.sqrt(2) / 3)  # |mean|


def test_student_t_beyond_the_table_is_the_normal_quantile():
    xs = [float(i % 7) for i in range(40)]  # df = 39, past the table
    s = Stats.from_samples(xs)
    assert s.ci95_high - s.mean == pytest.approx(1.96 * s.std / math.sqrt(40))
    xs = [float(i % 7) for i in range(31)]  # df = 30, the table's last entry
    s = Stats.from_samples(xs)
    assert s.ci95_high - s.mean == pytest.approx(2.042 * s.std / math.sqrt(31))


def test_metric_constructors_and_value():
    m = Metric.single("a", "s", False, None)
    assert m.samples == () and m.note == "not measured" and m.value is None and m.stats is None
    assert Metric.single("a", "s", False, None, note="no GPU").note == "no GPU"
    assert Metric.single("a", "s", False, 2, note="x").samples == (2.0,)
    assert Metric.from_values("a", "s", True, [3, 1, 2]).value == 2.0
    d = Metric.from_values("a", "s", True, [float("nan"), 1.0]).to_dict()
    assert d["samples"] == ["nan", 1.0] and d["stats"]["mean"] == "nan" and d["stats"]["n"] == 2
    assert d["unit"] == "s" and d["higher_is_better"] is True and d["note"] is None
    assert Metric.missing("a", "s", True, "why").to_dict()["stats"] is None


@pytest.mark.parametrize("raw,msg", [
    (5, "is not an object"), ({"unit": "s", "higher_is_better": True}, "lacks field 'samples'"),
    ({"unit": 1, "higher_is_better": True, "samples": []}, "unit must be a string"),
    ({"unit": "s", "higher_is_better": 1, "samples": []}, "unit must be a string"),
    ({"unit": "s", "higher_is_better": True, "samples": {}}, "unit must be a string"),
    ({"unit": "s", "higher_is_better": True, "samples": [True]}, "is not a number"),
    ({"unit": "s", "higher_is_better": True, "samples": [None]}, "is not a number"),
    ({"unit": "s", "higher_is_better": True, "samples": ["x"]}, "is not a number"),
    ({"unit": "s", "higher_is_better": True, "samples": [], "note": 3}, "note must be a string"),
])
def test_metric_from_dict_rejects(raw, msg):
    with pytest.raises(RecordError, match=msg):
        Metric.from_dict("m", raw)


def test_metric_from_dict_accepts_numbers_and_number_strings():
    m = Metric.from_dict("m", {"unit": "s", "higher_is_better": False, "samples": [1, 2.5, "inf"], "note": "n"})
    assert m.samples == (1.0, 2.5, math.inf) and m.note == "n" and m.higher_is_better is False


def _d(**changes):
    d = _make().to_dict()
    for k, v in changes.items():
        if v is KeyError:
            del d[k]
        else:
            d[k] = v
    return d


@pytest.mark.parametrize("d,msg", [
    ([], "must be a JSON object"),
    (_d(schema_version=KeyError), "missing or non-integer schema_version"),
    (_d(schema_version=True), "missing or non-integer schema_version"),
    (_d(schema_version="1"), "missing or non-integer schema_version"),
    (_d(schema_version=0), "unknown schema_version 0"),
    (_d(schema_version=records.SCHEMA_VERSION + 1), "newer than"),
    *[(_d(**{k: KeyError}), f"missing field '{k}'") for k in
      ("run_id", "record_id", "started_at", "ended_at", "case", "suite_version", "env", "status", "metrics")],
    (_d(case=[]), "field 'case' must be an object"),
    *[(_d(run_id=1), "field 'run_id' must be a string"), (_d(status=1), "field 'status' must be a string")],
    (_d(status="great"), "unknown status 'great'"),
    (_d(metrics=[]), "'metrics' and 'env' must be objects"), (_d(env=[]), "'metrics' and 'env' must be objects"),
    (_d(duration_s="1"), "duration_s must be a finite number"), (_d(duration_s=True), "duration_s must be"),
    (_d(duration_s=float("nan")), "duration_s must be"),
    (_d(error=5), "error must be a string or null"),
    (_d(config=[]), "field 'config' must be an object"), (_d(info=1), "field 'info' must be an object"),
    (_d(artifacts="x"), "field 'artifacts' must be an object"),
])
def test_record_from_dict_rejects(d, msg):
    with pytest.raises(RecordError, match=re.escape(msg) if "'" in msg else msg):
        RunRecord.from_dict(d, source="src.json")


@pytest.mark.parametrize("field,value,msg", [
    ("suite", None, "case lacks field 'suite'"), ("batch_size", None, "case lacks field 'batch_size'"),
    ("kind", 3, "case.kind must be a string"), ("dtype", None, "case.dtype must be a string"),
    ("batch_size", True, "case.batch_size must be an integer or null"),
    ("batch_size", "2", "case.batch_size must be an integer or null"),
])
def test_record_case_fields(field, value, msg):
    d = _make().to_dict()
    if value is None and "lacks" in msg:
        del d["case"][field]
    else:
        d["case"][field] = value
    with pytest.raises(RecordError, match=re.escape(msg)):
        RunRecord.from_dict(d)


def test_record_from_dict_defaults_and_every_status():
    d = _make().to_dict()
    for k in ("duration_s", "config", "info", "artifacts", "error"):
        del d[k]
    r = RunRecord.from_dict(d)
    assert (r.duration_s, r.config, r.info, r.artifacts, r.error) == (0.0, {}, {}, {}, None)
    d["case"]["batch_size"] = None
    assert RunRecord.from_dict(d).case.batch_size is None
    for st in records.STATUSES:
        d["status"] = st
        assert RunRecord.from_dict(d).status == st
    assert records.SUCCESS_STATUSES == ("ok", "skipped")


def test_from_json_errors():
    with pytest.raises(RecordError, match="x.json: not valid JSON"):
        RunRecord.from_json("{", source="x.json")
    with pytest.raises(RecordError, match="nested too deeply"):
        RunRecord.from_json("[" * 100000 + "]" * 100000)


def test_case_slug():
    assert Case("s", "c", "speed", "smoke", "cpu", "float32", 4).slug == "s.c.speed.smoke.cpu.float32-b4"
    assert Case("s", "c", "fidelity", "smoke", "cpu", "float32", None).slug == "s.c.fidelity.smoke.cpu.float32"
    assert Case("s", "c", "speed", "smoke", "cpu", "float32", 0).slug.endswith("-b0")


def test_json_safe_walks_everything_and_merges_notes():
    notes: list[str] = []
    out = records.json_safe({"a": (1.0, float("-inf")), True: None, 3: [float("nan")], None: 1.5}, "x", notes)
    assert out == {"a": [1.0, "-inf"], True: None, 3: ["nan"], None: 1.5}
    assert notes == ["x['a'][1] = -inf", "x[3][0] = nan"]
    info = records._with_nonfinite_note({"k": 1, records.NONFINITE_KEY: {"where": ["old"]}}, ["new", "old"])
    assert info[records.NONFINITE_KEY]["where"] == ["old", "new"] and info["k"] == 1
    assert records._with_nonfinite_note({"k": 1}, []) == {"k": 1}
    assert records._with_nonfinite_note({records.NONFINITE_KEY: "junk"}, ["n"])[records.NONFINITE_KEY]["where"] == ["n"]


class Unprintable:
    def __str__(self):
        raise RuntimeError("no")

    __repr__ = __str__


def test_failed_for_unserialisable_keeps_what_it_can():
    rec = make_record(env={"x": Unprintable(), "machine_id": "m9"}, config={"c": Unprintable()},
                      status="diverged", error="was bad", duration_s=3.5)
    f = records.failed_for_unserialisable(rec, ValueError("first line\nsecond line"))
    assert f.status == "failed" and f.error == "record could not be serialised (ValueError: first line)"
    assert f.env == {"machine_id": "m9"} and f.config == {} and f.duration_s == 3.5 and f.metrics == rec.metrics
    assert f.info["status_before_serialisation"] == "diverged" and f.info["error_before_serialisation"] == "was bad"
    assert f.info["serialisation_dropped"] == ["config (RuntimeError)", "env (RuntimeError)"]
    g = records.failed_for_unserialisable(make_record(env={"x": Unprintable()}), TypeError(""))
    assert g.env == {} and g.error == "record could not be serialised (TypeError: )"
    h = records.failed_for_unserialisable(make_record(duration_s=math.inf), ValueError("v"))
    assert h.duration_s == 0.0


def test_minimal_failed_is_the_last_resort(tmp_path):
    rec = make_record(started_at=Unprintable())
    written, p = store.save_record(tmp_path, rec)
    assert written.status == "failed" and written.metrics == {} and written.config == {}
    assert written.started_at == "<unprintable Unprintable>" and written.env == {"machine_id": "m1"}
    assert written.duration_s == 0.0 and written.error.startswith("record could not be serialised (")
    assert store.read_record(p).record_id == rec.record_id


# --------------------------------------------------------------------------------------------- store
def test_new_run_id_format():
    rid = store.new_run_id(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    assert re.fullmatch(r"20260102T030405Z-[0-9a-f]{6}", rid)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", store.new_run_id())


def test_atomic_write_suffixes_and_leaves_no_temp(tmp_path):
    paths = [store.atomic_write_new(tmp_path / "sub" / "a.json", str(i)) for i in range(3)]
    assert [p.name for p in paths] == ["a.json", "a-2.json", "a-3.json"]
    assert [p.read_text() for p in paths] == ["0", "1", "2"]
    assert sorted(x.name for x in (tmp_path / "sub").iterdir()) == ["a-2.json", "a-3.json", "a.json"]
    store.ensure_writable(tmp_path / "w")
    assert (tmp_path / "w").is_dir() and list((tmp_path / "w").iterdir()) == []


def test_write_record_names_and_disk_errors(tmp_path, monkeypatch):
    rec = make_record()
    assert store.write_record(tmp_path, rec).name == rec.case.slug + ".json"
    assert store.run_dir(tmp_path, "m", "r") == tmp_path / "m" / "r"
    m = store.write_manifest(tmp_path, {"run_id": "r", "cases": []})
    assert m.name == store.RUN_MANIFEST and json.loads(m.read_text())["run_id"] == "r"

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "atomic_write_new", full)
    with pytest.raises(UsageError, match="is full: No space left"):
        store.write_record(tmp_path, rec)

    def denied(*a, **k):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(store, "atomic_write_new", denied)
    with pytest.raises(UsageError, match="cannot write record to .*Permission denied"):
        store.write_record(tmp_path, rec)


def test_iter_record_files_skips_manifests_hidden_and_asv(tmp_path):
    for rel in ("m/r/a.json", "m/r/_run.json", "m/r/.b.json", "asv/results/x.json", "m/asv/c.json", "m/r/d.txt"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}")
    found = [f.relative_to(tmp_path).as_posix() for f in store.iter_record_files([tmp_path])]
    assert found == ["m/asv/c.json", "m/r/a.json"]
    assert list(store.iter_record_files([tmp_path / "m/r/_run.json"])) == [tmp_path / "m/r/_run.json"]
    with pytest.raises(UsageError, match="no such results path"):
        list(store.iter_record_files([tmp_path / "nope"]))


def test_read_record_of_unreadable_bytes(tmp_path):
    p = tmp_path / "x.json"
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(RecordError, match="x.json: cannot read"):
        store.read_record(p)


def test_read_records_strict_silent_and_warning(tmp_path, capsys):
    good = store.write_record(tmp_path, make_record())
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert store.read_records([bad, good], on_skip=None) == [(good, store.read_record(good))]
    assert capsys.readouterr().err == ""
    store.read_records([bad])
    err = capsys.readouterr().err
    assert err.startswith("milestones: warning: skipped ") and str(bad) in err and err.count("\n") == 1
    with pytest.raises(RecordError):
        store.read_records([good, bad], strict=True)


def test_record_rows(tmp_path):
    env = {"machine_id": "m", "gpu": "G", "hostname": "h", "nvidia": {"driver": "550"},
           "git": {"commit": "abc", "dirty": True}}
    cpu = store.record_rows(make_record(env=env), "p")
    assert {r["metric"] for r in cpu} == {"train.step_time", "train.mfu"}
    row = next(r for r in cpu if r["metric"] == "train.step_time")
    assert row["gpu"] is None and row["driver"] == "550" and row["commit"] == "abc" and row["dirty"] is True
    assert row["n"] == 3 and row["path"] == "p" and row["samples"] == [0.1, 0.12, 0.11]
    assert row["p10"] == pytest.approx(0.102) and row["cv"] == pytest.approx(0.0909, abs=1e-3)
    mfu = next(r for r in cpu if r["metric"] == "train.mfu")
    assert mfu["n"] == 0 and mfu["median"] is None and mfu["note"] == "no peak known"
    gpu_case = dataclasses.replace(make_record().case, device="cuda:0")
    assert store.record_rows(make_record(env=env, case=gpu_case))[0]["gpu"] == "G"
    (empty,) = store.record_rows(make_record(metrics={}))
    assert empty["metric"] is None and empty["n"] == 0 and empty["samples"] == []
    assert set(cpu[0]) == set(store.FRAME_COLUMNS)


def test_find_run(tmp_path):
    folder = tmp_path / "m1" / "r1"
    store.write_manifest(folder, {"run_id": "r1", "cases": []})
    assert store.find_run(tmp_path, "r1") == (folder, {"run_id": "r1", "cases": []})
    assert store.find_run(tmp_path / "elsewhere", str(folder))[0] == folder
    with pytest.raises(UsageError, match="no run 'r2' found"):
        store.find_run(tmp_path, "r2")
    store.write_manifest(tmp_path / "m2" / "r1", {"run_id": "r1", "cases": []})
    with pytest.raises(UsageError, match="ambiguous"):
        store.find_run(tmp_path, "r1")
    (tmp_path / "m3" / "r3").mkdir(parents=True)
    (tmp_path / "m3" / "r3" / store.RUN_MANIFEST).write_text("{")
    with pytest.raises(UsageError, match="is unreadable"):
        store.find_run(tmp_path, "r3")
    (tmp_path / "m3" / "r3" / store.RUN_MANIFEST).write_text('{"run_id": "r3"}')
    with pytest.raises(UsageError, match="lacks its cases"):
        store.find_run(tmp_path, "r3")
    (tmp_path / "m3" / "r3" / store.RUN_MANIFEST).write_text('[1]')
    with pytest.raises(UsageError, match="lacks its cases"):
        store.find_run(tmp_path, "r3")


def test_finished_keys(tmp_path):
    store.write_manifest(tmp_path, {"run_id": "r1", "cases": []})
    a = make_record()
    store.write_record(tmp_path, a)
    case_b = dataclasses.replace(a.case, config="b")
    store.write_record(tmp_path, make_record(case=case_b, record_id=f"r1/{case_b.slug}/r1"))
    case_c = dataclasses.replace(a.case, config="c")
    store.write_record(tmp_path, make_record(case=case_c, record_id=f"r1/{case_c.slug}", status="interrupted"))
    store.write_record(tmp_path, make_record(case=dataclasses.replace(a.case, config="d"), record_id="bare",
                                             status="failed"))
    (tmp_path / "zz.json").write_text("{")
    assert store.finished_keys(tmp_path) == {a.case.slug, f"{case_b.slug}/r1", "bare"}


def test_load_records_and_frame(tmp_path):
    store.write_record(tmp_path / "x", make_record(run_id="r2"))
    store.write_record(tmp_path / "y", make_record(run_id="r1"))
    assert [r.run_id for r in store.load_records(tmp_path)] == ["r2", "r1"]
    df = store.load_frame(tmp_path / "x")
    assert list(df.columns) == store.FRAME_COLUMNS and len(df) == 2


def test_store_calls_by_keyword_and_defaults(tmp_path):
    rec = make_record(env={"machine_id": "m1", "hostname": "h-private"})
    p = store.write_record(folder=tmp_path, record=rec)
    assert "h-private" not in p.read_text()  # scrubbed unless asked
    assert "h-private" in store.write_record(tmp_path / "k", rec, record_host=True).read_text()
    with pytest.raises(TypeError):
        store.write_record(tmp_path, rec, True)  # the opt-in is keyword-only: never by position
    m = store.write_manifest(folder=tmp_path / "m", manifest={"run_id": "r", "cases": []})
    assert json.loads(m.read_text()) == {"run_id": "r", "cases": []}
    assert store.read_records(files=[p], on_skip=None)[0][0] == p


def test_ensure_writable_nested_and_existing(tmp_path):
    store.ensure_writable(tmp_path / "a" / "b" / "c")
    store.ensure_writable(tmp_path / "a" / "b" / "c")  # an existing folder is fine
    assert [x.name for x in (tmp_path / "a" / "b" / "c").iterdir()] == []


def test_write_error_without_strerror_still_says_why(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("device went away")

    monkeypatch.setattr(store, "atomic_write_new", boom)
    with pytest.raises(UsageError, match="cannot write record to .*: device went away"):
        store.write_record(tmp_path, make_record())


def test_finished_keys_reads_every_record_whatever_the_order(tmp_path):
    store.write_manifest(tmp_path, {"run_id": "r1", "cases": []})
    a = make_record()
    for cfg in ("a", "b", "c"):
        c = dataclasses.replace(a.case, config=cfg)
        store.write_record(tmp_path, make_record(case=c, record_id=f"r1/{c.slug}"))
    assert len(store.finished_keys(tmp_path)) == 3


def test_save_and_serialise_defaults(tmp_path):
    rec = make_record(env={"machine_id": "m1", "hostname": "h-private"})
    written, p = store.save_record(folder=tmp_path, record=rec)
    assert "hostname" not in written.env
    assert "h-private" not in store.serialise_record(rec)[1]
    assert "h-private" in store.serialise_record(rec, True)[1]


def test_ensure_writable_error_without_strerror(tmp_path, monkeypatch):
    def boom(self, *a, **k):
        raise OSError("read-only volume")

    monkeypatch.setattr(store.Path, "mkdir", boom)
    with pytest.raises(UsageError, match="cannot write results to .*: read-only volume"):
        store.ensure_writable(tmp_path / "x")


def test_fsync_of_a_folder_may_fail_quietly(tmp_path, monkeypatch):
    def no_open(*a, **k):
        raise OSError(errno.EACCES, "denied")

    def no_fsync(fd):
        raise OSError(errno.EINVAL, "not supported")

    monkeypatch.setattr(store.os, "fsync", no_fsync)
    store._fsync_dir(tmp_path)  # some filesystems cannot fsync a folder: not an error
    monkeypatch.setattr(store.os, "open", no_open)
    store._fsync_dir(tmp_path)


def test_a_failed_link_keeps_its_own_error_and_no_temp(tmp_path, monkeypatch):
    real_unlink = store.os.unlink

    def link_fails(src, dst):
        real_unlink(src)  # the temp is already gone when the error comes
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(store.os, "link", link_fails)
    with pytest.raises(OSError) as e:
        store.atomic_write_new(tmp_path / "a.json", "x")
    assert e.value.errno == errno.EIO and list(tmp_path.iterdir()) == []


def test_iter_record_files_goes_on_after_a_file(tmp_path):
    one = store.write_record(tmp_path / "one", make_record())
    two = store.write_record(tmp_path / "two", make_record())
    assert list(store.iter_record_files([one, tmp_path / "two"])) == [one, two]


def test_every_student_t_quantile_up_to_30_df():
    from scipy import stats as sps

    for n in range(2, 32):
        xs = [float(i % 3) + 0.1 * i for i in range(n)]
        s = Stats.from_samples(xs)
        half = sps.t.ppf(0.975, n - 1) * s.std / math.sqrt(n)
        assert s.ci95_high - s.mean == pytest.approx(half, rel=2e-3), n


def test_schema_version_and_field_order():
    assert records.SCHEMA_VERSION == 1  # the version the README documents; a new one needs a migration
    d = _make().to_dict()
    d["schema_version"] = 2
    with pytest.raises(RecordError, match="newer than"):
        RunRecord.from_dict(d)
    text = _make().to_json()
    keys = [k for k in json.loads(text)]
    assert keys[:3] == ["schema_version", "run_id", "record_id"]  # a record reads top-down, not sorted
    assert RunRecord.from_dict(d=_make().to_dict(), source="s") == _make()


def test_an_unserialisable_metric_is_dropped_and_named():
    bad = Metric("x", Unprintable(), False, (1.0,))  # the unit is not a string
    rec = make_record(metrics={**_make().metrics, "x": bad})
    f = records.failed_for_unserialisable(rec, TypeError("t"))
    assert "x" not in f.metrics and "train.step_time" in f.metrics
    assert f.info["serialisation_dropped"] == ["metrics['x'] (TypeError)"]


def test_case_output_defaults():
    out = records.CaseOutput()
    assert out.metrics == {} and out.info == {} and out.artifacts == {}
    assert records.CaseOutput().info is not out.info
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.info = {}


def test_records_are_frozen_and_errors_keep_the_first_line_capped():
    rec = _make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.status = "failed"
    long = "x" * 400
    f = records.failed_for_unserialisable(rec, ValueError(long + "\nsecond"))
    assert f.error == f"record could not be serialised (ValueError: {'x' * 300})"
    m = records.minimal_failed(rec, ValueError("first\nsecond"))
    assert m.error == "record could not be serialised (ValueError: first)"
