"""Issue 24, items 1-7: a killed fork server, a full disk, CPU out-of-memory, children that outlive their
case, a leftover temporary record, Ctrl-C, and what a finished run folder keeps."""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import tests.case_fault_suites  # noqa: F401  (registers the casefault suite in this process)
from milestones.harness import cli, runner, store
from milestones.harness.launch.inprocess import InProcess
from milestones.harness.launch.process import CaseProcess
from milestones.harness.launch.spec import CaseSpec
from milestones.harness.registry import load_suites
from milestones.harness.runner import RunOptions, UnwrittenRecords, execute, plan_specs
from tests.test_run_faults import _env, _records
from tests.test_runner import _alive

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _case_fault_suites(monkeypatch):
    # The case processes import the casefault suite too (the fork server keys on this environment).
    monkeypatch.setenv("MILESTONES_EXTRA_SUITES", "tests.fake_suites,tests.case_fault_suites")
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)  # write retries without the wait


def _specs(names, tmp_path, **kw):
    opts = RunOptions(kinds=("speed",), device="cpu", out=tmp_path / "res", **kw)
    return plan_specs(load_suites().resolve(names), opts, "cpu"), opts


def _run(names, tmp_path, launcher=None, **kw):
    specs, opts = _specs(names, tmp_path, **kw)
    return execute(specs, opts, load_suites(), _env(), launcher=launcher)


# ------------------------------------------------------------------------------------ 1. fork server
@pytest.mark.slow
def test_a_killed_fork_server_fails_that_case_and_the_run_goes_on(tmp_path):
    res = _run(["casefault-kill-server", "fake-ok"], tmp_path)
    dead, ok = res.records
    assert dead.status == "failed" and "fork server" in dead.error and dead.info["fork_server_died"] is True
    assert ok.status == "ok" and ok.info["process_start"] == "fork server"  # a new server served it
    assert not _alive(int(dead.error.split("fork server pid ")[1].split(")")[0]))
    assert ok.info["fork_server_pid"] != int(dead.error.split("fork server pid ")[1].split(")")[0])


# --------------------------------------------------------------------------------------- 2. full disk
@pytest.mark.slow
def test_a_case_that_cannot_write_its_result_says_it_was_the_disk_and_the_run_stops(tmp_path):
    with pytest.raises(UnwrittenRecords, match=r"no space left.*`milestones run --resume \S+ --out \S+`"):
        _run(["casefault-no-space", "fake-ok"], tmp_path)
    folder = next((tmp_path / "res" / "test-machine").iterdir())
    (rec,) = _records(folder)
    assert rec.status == "failed" and rec.info["disk_full"] is True and "no space left" in rec.error
    assert sorted(p.name for p in folder.iterdir()) == sorted([store.RUN_MANIFEST, f"{rec.case.slug}.json"])
    assert rec.case.config == "casefault-no-space"  # and fake-ok never started on the full disk


def test_a_full_disk_writing_the_spec_is_retried_then_stops_with_the_resume_command(tmp_path, monkeypatch, capsys):
    calls = []

    def no_space(self, path):
        calls.append(path)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(CaseSpec, "write", no_space)
    monkeypatch.setenv("MILESTONES_MACHINE_ID", "m")
    rc = cli.main(["run", "fake-ok", "fake-crash", "--kind", "speed", "--device", "cpu", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(calls) == runner.WRITE_RETRIES
    assert "No space left on device" in err[-1] and "Traceback" not in "\n".join(err)
    run_id = next((tmp_path / "m").iterdir()).name
    assert f"`milestones run --resume {run_id} --out {tmp_path}`" in err[-1]
    assert _records(tmp_path / "m" / run_id) == []


def test_resume_reruns_a_case_that_failed_for_want_of_disk(tmp_path):
    first = _run(["fake-ok"], tmp_path, launcher=InProcess())
    rec = first.records[0]
    first.paths[0].unlink()
    store.write_record(first.folder, dataclasses.replace(rec, status="failed", error="no space",
                                                         info={**rec.info, "disk_full": True}))
    assert store.finished_keys(first.folder) == set()
    specs, opts = _specs(["fake-ok"], tmp_path)
    again = execute(specs, opts, load_suites(), _env(), run_id=first.run_id, folder=first.folder, resume=True,
                    launcher=InProcess())
    assert [r.status for r in again.records] == ["ok"] and [r.status for r in _records(first.folder)] == ["ok"]
    assert [store.read_record(p).status for p in (first.folder / runner.SUPERSEDED_DIR).glob("*.json")] == ["failed"]


# ------------------------------------------------------------------------------------------ 3. CPU OOM
@pytest.mark.parametrize("behaviour", ["memory-error", "cpu-alloc"])
def test_cpu_out_of_memory_is_oom(tmp_path, behaviour):
    (rec,) = _run([f"casefault-{behaviour}"], tmp_path, launcher=InProcess()).records
    assert rec.status == "oom", rec.error


# ------------------------------------------------------------------------------------- 4. whole tree
@pytest.mark.slow
@pytest.mark.parametrize("behaviour", ["stubborn-child", "setsid-child"])
@pytest.mark.parametrize("fork_server", ["1", "0"])
def test_children_that_outlive_an_ok_case_are_killed(tmp_path, monkeypatch, behaviour, fork_server):
    monkeypatch.setenv("MILESTONES_FORK_SERVER", fork_server)
    pidfile = tmp_path / "child"
    (rec,) = _run([f"casefault-{behaviour}"], tmp_path, options={"pidfile": str(pidfile)}).records
    child = int(pidfile.read_text())
    assert rec.status == "ok" and rec.info["leftover_processes_killed"] == 1
    assert not _alive(child)


# ----------------------------------------------------------------------------- 5. leftover temp record
def test_a_leftover_temporary_record_never_hides_a_case(tmp_path):
    first = _run(["fake-ok", "fake-crash"], tmp_path, launcher=InProcess())
    ok = next(p for p in first.paths if ".fake-ok." in p.name)
    # What a SIGKILL between fsync and link leaves: the whole text, under a temporary name only.
    tmp = ok.with_name(f".tmp-0123456789ab-{ok.name}")
    os.rename(ok, tmp)
    assert store.read_record(tmp).status == "ok"
    assert "fake.fake-ok.speed.smoke.cpu.float32-b2" not in store.finished_keys(first.folder)
    specs, opts = _specs(["fake-ok", "fake-crash"], tmp_path)
    again = execute(specs, opts, load_suites(), _env(), run_id=first.run_id, folder=first.folder, resume=True,
                    launcher=InProcess())
    assert [r.case.config for r in again.records] == ["fake-ok"]  # the crash has its record already
    assert sorted(r.case.config for r in store.load_records(first.folder)) == ["fake-crash", "fake-ok"]
    assert not tmp.exists()


# ------------------------------------------------------------------------------------------ 6. Ctrl-C
def test_an_interrupt_between_cases_keeps_what_was_written_and_counts_what_never_started(tmp_path):
    specs, opts = _specs(["fake-ok", "fake-crash", "fake-nan"], tmp_path)

    def ctrl_c(rec, path):
        raise KeyboardInterrupt

    res = execute(specs, opts, load_suites(), _env(), launcher=InProcess(), on_record=ctrl_c)
    assert res.interrupted and len(res.records) == 1 and res.to_run == 3 and res.not_started == 2
    assert [r.case.config for r in _records(res.folder)] == ["fake-ok"]
    assert not (res.folder / runner.LOCK_FILE).exists()


@pytest.mark.slow
def test_ctrl_c_prints_the_resume_command_and_the_resume_header_counts_what_is_left(tmp_path):
    started = tmp_path / "started"
    env = dict(os.environ, FAKE_SLOW_STARTED=str(started), MILESTONES_MACHINE_ID="m")
    # SIGINT back to its default in the child: a test run started in the background by a shell inherits it
    # ignored, and Python then never raises KeyboardInterrupt.
    p = subprocess.Popen(["milestones", "run", "fake-ok", "fake-slow", "fake-crash", "--kind", "speed",
                          "--out", str(tmp_path)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not started.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert started.exists(), "the slow case never started"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    # The case in flight is recorded as interrupted and its process is gone; fake-crash never started.
    recs = {r.case.config: r.status for r in store.load_records(tmp_path)}
    assert recs == {"fake-ok": "ok", "fake-slow": "interrupted"}
    assert not _alive(int(started.read_text()))
    run_id = next((tmp_path / "m").iterdir()).name
    assert f"milestones run --resume {run_id} --out {tmp_path}" in err
    assert "1 case(s) never started" in err
    r = subprocess.run(["milestones", "run", "--resume", run_id, "--out", str(tmp_path), "--option", "sleep=0"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "2 of 3 case(s) left to run" in r.stderr, r.stderr
    assert r.returncode == 1  # fake-crash
    assert sorted(x.case.config for x in store.load_records(tmp_path)) == ["fake-crash", "fake-ok", "fake-slow"]


# ---------------------------------------------------------------------------------------- 7. leftovers
def test_a_finished_run_folder_keeps_no_lock_file(tmp_path):
    res = _run(["fake-ok"], tmp_path, launcher=InProcess())
    assert sorted(p.name for p in res.folder.iterdir()) == sorted([store.RUN_MANIFEST, res.paths[0].name])


def test_a_full_disk_at_the_start_leaves_no_run_folder(tmp_path, monkeypatch):
    def no_space(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "write_manifest", no_space)
    with pytest.raises(runner.UsageError, match="No space left"):
        _run(["fake-ok"], tmp_path, launcher=InProcess())
    assert list((tmp_path / "res" / "test-machine").iterdir()) == []


@pytest.mark.slow
def test_a_case_is_timed_from_its_process_start_not_the_fork_servers(tmp_path, monkeypatch):
    from milestones.harness.launch.process import now

    real, marks = CaseProcess.start, []

    def start_then_mark(self, *a, **kw):
        p = real(self, *a, **kw)
        marks.append(now())  # a fork server's start (seconds) happens inside start()
        return p

    monkeypatch.setattr(CaseProcess, "start", start_then_mark)
    (rec,) = _run(["fake-hang"], tmp_path, timeout=1).records
    assert rec.status == "timeout" and rec.started_at >= marks[0]

