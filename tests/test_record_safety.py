"""Issue 12, item 1: a record with NaN/inf anywhere is stored as such with a note; a record that
cannot be serialised at all becomes a `failed` record of the same case; the run goes on."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import pytest

from milestones.harness import store
from milestones.harness.records import NONFINITE_KEY, RunRecord
from tests.test_store import make_record as _make

INF, NAN = float("inf"), float("nan")


def make_record(**kw) -> RunRecord:
    return dataclasses.replace(_make(), **kw)


def test_nonfinite_values_nested_and_as_keys_are_stored_with_a_note(tmp_path):
    rec = make_record(info={"curve": [1.0, NAN], "deep": {"a": {"b": -INF}}}, artifacts={"": INF, INF: "key"})
    p = store.write_record(tmp_path, rec)
    raw = json.loads(p.read_text())
    assert raw["status"] == "ok" and raw["error"] is None
    assert raw["info"]["curve"] == [1.0, "nan"] and raw["info"]["deep"]["a"]["b"] == "-inf"
    assert raw["artifacts"] == {"": "inf", "inf": "key"}
    where = raw["info"][NONFINITE_KEY]["where"]
    assert "info['curve'][1] = nan" in where and "info['deep']['a']['b'] = -inf" in where
    assert "artifacts[''] = inf" in where and "artifacts: key inf" in where
    assert "'nan', 'inf', '-inf'" in raw["info"][NONFINITE_KEY]["note"]
    back = store.read_record(p)
    assert back.metrics == rec.metrics and back.to_dict() == rec.to_dict()  # idempotent: no second note
    assert RunRecord.from_json(back.to_json()) == back


def test_nonfinite_in_config_and_env_is_noted_too():
    d = make_record(config={"lr": NAN}, env={"machine_id": "m1", "loadavg": [INF]}).to_dict()
    assert d["config"] == {"lr": "nan"} and d["env"]["loadavg"] == ["inf"]
    assert d["info"][NONFINITE_KEY]["where"] == ["config['lr'] = nan", "env['loadavg'][0] = inf"]


def test_non_string_keys_are_stored_as_strings_with_a_note():
    d = make_record(artifacts={("a", 1): 2}).to_dict()
    assert d["artifacts"] == {"('a', 1)": 2}
    assert any("stored as the string" in w for w in d["info"][NONFINITE_KEY]["where"])


def _cycle():
    a: list = []
    a.append(a)
    return a


class Unprintable:
    def __str__(self):
        raise RuntimeError("no text for you")

    __repr__ = __str__


def test_an_unserialisable_record_becomes_a_failed_record_of_the_same_case(tmp_path):
    for bad in (_cycle(), Unprintable()):
        rec = make_record(info={"kept": 1}, artifacts={"bad": bad})
        written, p = store.save_record(tmp_path, rec)
        raw = json.loads(p.read_text())
        assert raw["status"] == "failed" == written.status
        assert raw["error"].startswith("record could not be serialised (")
        assert raw["record_id"] == rec.record_id and raw["case"]["config"] == rec.case.config
        # What serialises on its own is kept: nothing else is lost.
        assert raw["info"]["kept"] == 1 and raw["info"]["status_before_serialisation"] == "ok"
        (dropped,) = raw["info"]["serialisation_dropped"]
        assert dropped.startswith("artifacts (")
        assert raw["artifacts"] == {} and raw["config"] == rec.config and raw["env"] == rec.env
        assert store.read_record(p).metrics == rec.metrics


def test_write_record_never_raises_for_content(tmp_path):
    p = store.write_record(tmp_path, make_record(env={"machine_id": "m1", "x": Unprintable()}))
    raw = json.loads(p.read_text())
    assert raw["status"] == "failed" and raw["env"] == {"machine_id": "m1"}


def test_non_finite_duration_is_a_failed_record_not_a_crash(tmp_path):
    rec = make_record(duration_s=NAN)
    written, p = store.save_record(tmp_path, rec)
    assert written.status == "failed" and written.duration_s == 0.0
    assert "ValueError" in written.error and math.isfinite(store.read_record(p).duration_s)


@pytest.mark.slow
def test_a_run_with_nonfinite_info_records_every_case(cli, tmp_path):
    out = tmp_path / "res"
    extra = os.environ.get("MILESTONES_EXTRA_SUITES", "tests.fake_suites") + ",tests.record_fault_suites"
    r = cli("run", "recfault-nonfinite", "fake-ok", "--kind", "speed", "--device", "cpu", "--out", str(out),
            "--json", env={"MILESTONES_EXTRA_SUITES": extra}, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    recs = {x.case.config: x for x in store.load_records(out)}
    assert set(recs) == {"recfault-nonfinite", "fake-ok"}
    nf = recs["recfault-nonfinite"]
    assert nf.status == "ok" and nf.info["loss_curve"] == [0.5, "nan", "inf"]
    assert nf.artifacts[""] == "inf" and nf.artifacts["nested"]["deeper"][1]["x"] == "nan"
    assert "info['grad']['norm'] = -inf" in nf.info[NONFINITE_KEY]["where"]
