"""Faults injected: SIGKILL and resume, a full disk, concurrent writers, the batch-size search."""

import errno
import json
import multiprocessing as mp
import os
import signal
import subprocess
import time

import pytest

from milestones.harness import store
from milestones.harness.errors import UsageError
from milestones.harness.records import RunRecord
from tests.test_runner import _alive
from tests.test_store import make_record


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_finishes_only_what_is_missing(tmp_path, capsys):
    out = tmp_path / "res"
    started = tmp_path / "started"
    env = dict(os.environ, FAKE_SLOW_STARTED=str(started))
    p = subprocess.Popen(["milestones", "run", "fake-ok", "fake-slow", "fake-crash", "--kind", "speed",
                          "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert started.exists()
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    worker = int(started.read_text())
    deadline = time.time() + 10
    while _alive(worker) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "the case process outlived the killed runner"
    # every finished record is intact; nothing half-written
    recs = store.load_records(out)
    assert [r.case.config for r in recs] == ["fake-ok"]
    assert not list(out.rglob(".tmp-*"))
    run_id = recs[0].run_id
    r = subprocess.run(["milestones", "run", "--resume", run_id, "--out", str(out), "--option", "sleep=0.1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # fake-crash fails, as it should
    recs = store.load_records(out)
    assert sorted(x.case.config for x in recs) == ["fake-crash", "fake-ok", "fake-slow"]  # no duplicates
    assert {x.run_id for x in recs} == {run_id}
    # Nothing left to run, and a run that does not exist: no case process, so the command runs in-process.
    from milestones.harness.cli import main

    capsys.readouterr()
    assert main(["run", "--resume", run_id, "--out", str(out)]) == 0, capsys.readouterr().err  # nothing failed now
    assert sorted(x.case.config for x in store.load_records(out)) == ["fake-crash", "fake-ok", "fake-slow"]
    capsys.readouterr()
    assert main(["run", "--resume", "no-such-run", "--out", str(out)]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err


@pytest.mark.slow
def test_find_max_batch_is_explicit_and_recorded(cli, tmp_path):
    r = cli("run", "fake-oom-above-8", "--kind", "speed", "--find-max-batch", "64", "--out", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    rec = store.load_records(tmp_path)[0]
    assert rec.case.batch_size == 8 and rec.status == "ok"
    assert rec.info["batch_size_source"] == "--find-max-batch"
    assert [(h["batch_size"], h["status"]) for h in rec.info["batch_search"]] == [
        (1, "ok"), (2, "ok"), (4, "ok"), (8, "ok"), (16, "oom")]


@pytest.mark.slow
def test_without_search_oom_stays_oom_at_the_asked_batch(tmp_path):
    # In this process: the batch search above runs through the console script, and nothing here needs a
    # process of its own (the case raises torch's OutOfMemoryError, which the case runner records as oom).
    from milestones.harness import env as envmod
    from milestones.harness.launch.inprocess import InProcess
    from milestones.harness.registry import load_suites
    from milestones.harness.runner import RunOptions, execute, plan_specs

    reg = load_suites()
    opts = RunOptions(kinds=("speed",), device="cpu", batch_size=32, out=tmp_path)
    res = execute(plan_specs(reg.resolve(["fake-oom-above-8"]), opts, "cpu"), opts, reg,
                  {**envmod.capture(), "machine_id": "test-machine"}, launcher=InProcess())
    (rec,) = store.load_records(tmp_path)
    assert rec.status == "oom" and rec.case.batch_size == 32 and res.records[0].status == "oom"
    assert rec.info["batch_size_source"] == "--batch-size" and "batch_search" not in rec.info


def test_full_disk_is_a_clear_error_and_leaves_no_partial_file(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UsageError, match="full"):
        store.write_record(tmp_path, make_record())
    assert list(tmp_path.iterdir()) == []


def _writer(folder: str, tag: int, n: int) -> None:
    for i in range(n):
        store.write_record(store.Path(folder), make_record(run_id=f"w{tag}-{i}"))


@pytest.mark.slow
def test_two_writers_into_one_folder_never_clobber(tmp_path):
    ctx = mp.get_context("spawn")
    ps = [ctx.Process(target=_writer, args=(str(tmp_path), t, 25)) for t in (1, 2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 50
    ids = {RunRecord.from_json(f.read_text()).run_id for f in files}
    assert len(ids) == 50
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.slow
def test_repeat_runs_each_case_n_times_with_the_same_seed(cli, tmp_path):
    r = cli("run", "fake-ok", "--kind", "speed", "--repeat", "3", "--out", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    recs = store.load_records(tmp_path)
    assert sorted(x.info["repeat_index"] for x in recs) == [0, 1, 2]
    assert [x.info["seed"] for x in recs] == [0, 0, 0]
    assert len({x.record_id for x in recs}) == 3
    assert json.loads(r.stdout)["statuses"]
