"""What `milestones run` keeps under faults: resume in place, one record per case, one process per run folder,
no orphans after a SIGKILL, nothing in $TMPDIR, partial seeds on a timeout, a full disk said clearly."""

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from milestones.harness import env as envmod
from milestones.harness import runner, store
from milestones.harness.launch.inprocess import InProcess
from milestones.harness.records import RunRecord
from milestones.harness.registry import load_suites
from milestones.harness.runner import RunLock, RunOptions, UnwrittenRecords, execute, plan_specs

ROOT = Path(__file__).resolve().parent.parent


def _records(folder: Path) -> list[RunRecord]:
    return [store.read_record(f) for f in sorted(folder.glob("*.json")) if f.name != store.RUN_MANIFEST]


def _env() -> dict:
    return {**envmod.capture(), "machine_id": "test-machine"}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not (path.exists() and path.read_text().strip()) and time.time() < deadline:
        time.sleep(0.2)
    assert path.exists(), f"{path} never appeared"


def _run_in_process(out: Path, names: list[str]) -> Path:
    """A finished run of speed cases, made in this process: its folder."""
    reg = load_suites()
    opts = RunOptions(kinds=("speed",), device="cpu", out=out)
    return execute(plan_specs(reg.resolve(names), opts, "cpu"), opts, reg, _env(), launcher=InProcess()).folder


@pytest.mark.slow
def test_resume_of_a_folder_finishes_in_that_folder_without_out(cli, tmp_path):
    # The run to resume is made in this process (the CLI's own --out and --json are covered elsewhere);
    # only the resume, from a folder that is not the default --out's, goes through the console script.
    folder = _run_in_process(tmp_path / "elsewhere", ["fake-ok", "fake-crash"])
    missing = next(f for f in folder.glob("fake.fake-ok*.json"))
    missing.unlink()
    work = tmp_path / "cwd"
    work.mkdir()
    r = cli("run", "--resume", str(folder), cwd=work)
    assert r.returncode == 0, r.stderr
    assert {x.case.config for x in _records(folder)} == {"fake-ok", "fake-crash"}
    assert not (work / "results").exists()  # nothing written anywhere else
    assert len(list(folder.parent.iterdir())) == 1  # and no second run folder beside it


def test_resume_replaces_an_interrupted_record_and_keeps_it_aside(tmp_path):
    reg = load_suites()
    opts = RunOptions(kinds=("speed",), device="cpu", out=tmp_path)
    specs = plan_specs(reg.resolve(["fake-ok"]), opts, "cpu")
    first = execute(specs, opts, reg, _env(), launcher=InProcess())
    rec = first.records[0]
    first.paths[0].unlink()
    import dataclasses

    store.write_record(first.folder, dataclasses.replace(rec, status="interrupted", error="interrupted"))
    again = execute(specs, opts, reg, _env(), run_id=first.run_id, folder=first.folder, resume=True,
                    launcher=InProcess())
    assert [r.status for r in again.records] == ["ok"]
    recs = _records(first.folder)
    assert [r.status for r in recs] == ["ok"]  # compare and report see one record for the case
    aside = list((first.folder / runner.SUPERSEDED_DIR).glob("*.json"))
    assert len(aside) == 1 and store.read_record(aside[0]).status == "interrupted"
    assert len(store.load_records(first.folder)) == 1


@pytest.mark.slow
def test_a_run_folder_is_claimed_by_one_process(cli, tmp_path):
    folder = _run_in_process(tmp_path, ["fake-ok"])
    with RunLock(folder):
        r2 = cli("run", "--resume", str(folder))
    last = r2.stderr.strip().splitlines()[-1]
    assert r2.returncode == 2 and "being run or resumed by another process" in last
    assert last.startswith("milestones: error:") and "Traceback" not in r2.stderr
    assert len(_records(folder)) == 1


@pytest.mark.slow
def test_sigkilled_runner_takes_the_case_and_its_children_along_and_leaves_no_temp(tmp_path):
    pidfile, tmp = tmp_path / "pids", tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, FAKE_HANG_PIDFILE=str(pidfile), TMPDIR=str(tmp), MILESTONES_MACHINE_ID="m")
    p = subprocess.Popen(["milestones", "run", "fake-hang", "--kind", "speed", "--out", str(tmp_path / "res"),
                          "--timeout", "300"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    _wait_for(pidfile)
    leader, child = map(int, pidfile.read_text().split())
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.time() + 15
    while (_alive(leader) or _alive(child)) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(leader) and not _alive(child)
    assert not [x for x in tmp.iterdir() if x.name.startswith("milestones-")]
    folder = next((tmp_path / "res" / "m").iterdir())
    assert (folder / runner.WORK_DIR).exists()  # the killed run's workdir is inside its own folder...
    r = subprocess.run(["milestones", "run", "--resume", str(folder), "--timeout", "5"], env=env, cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 1  # the hang times out this time
    assert not (folder / runner.WORK_DIR).exists()  # ...and a resume cleans it


@pytest.mark.slow
def test_a_timed_out_quality_case_keeps_the_seeds_it_finished(tmp_path):
    reg = load_suites()
    opts = RunOptions(kinds=("quality",), scale="proxy", device="cpu", out=tmp_path, timeout=20)
    res = execute(plan_specs(reg.resolve(["fake-partial"]), opts, "cpu"), opts, reg, _env())
    rec = res.records[0]
    assert rec.status == "timeout"
    m = rec.metrics["train_error.fake"]
    assert m.samples == (0.1, 0.2) and m.higher_is_better is False and "partial: 2 seed(s)" in m.note
    assert rec.info["partial"]["seeds_finished"] == [0, 1]
    assert "seed 1 evaluated" in rec.info["log_tail"]  # the log shows progress, not an empty tail


def test_a_full_disk_keeps_finished_records_and_says_how_to_resume(tmp_path, monkeypatch):
    reg = load_suites()
    opts = RunOptions(kinds=("speed",), device="cpu", out=tmp_path)
    specs = plan_specs(reg.resolve(["fake-ok", "fake-nan", "fake-crash"]), opts, "cpu")
    real = store.save_record
    calls = []

    def full_after_one(folder, rec, **kw):
        calls.append(rec.case.config)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(folder, rec, **kw)

    monkeypatch.setattr(store, "save_record", full_after_one)
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    with pytest.raises(UnwrittenRecords, match=r"No space left on device.*--resume") as e:
        execute(specs, opts, reg, _env(), launcher=InProcess())
    assert calls == ["fake-ok"] + ["fake-nan"] * runner.WRITE_RETRIES  # retried, then stopped
    folder = next((tmp_path / "test-machine").iterdir())
    assert [r.case.config for r in _records(folder)] == ["fake-ok"]
    assert not list(folder.glob(".probe-*")) and not list(folder.glob(".tmp-*"))
    assert e.value.exit_code == 1


def test_the_write_probe_is_removed_even_when_the_disk_is_full(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", no_space)
    with pytest.raises(Exception, match="No space left"):
        store.ensure_writable(tmp_path / "r" / "machine" / "run")
    # Neither the probe nor an empty run folder (nor the folders made for it) is left behind.
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_single_seed_and_the_batch_size_reach_the_suite_as_given(cli, tmp_path):
    r = cli("run", "fake-ok", "--kind", "quality", "--scale", "proxy", "--seeds", "7", "--batch-size", "5",
            "--out", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    (path,) = json.loads(r.stdout)["records"]  # the --json summary names the record
    rec = store.read_record(Path(path))
    assert rec.info["quality_seeds"] == [7]  # not 0,1,2
    assert rec.case.batch_size == 5  # the override is in the case (its slug), not only in what the suite saw
    # The only batch size a suite can see is the resolved one: its params say the same.
    assert rec.metrics["batch"].value == 5 and rec.info["params_batch_size"] == 5
    assert rec.info["params_cpu_batch_size"] == 5 and rec.info["batch_size_source"] == "--batch-size"


def test_a_fidelity_case_gets_no_batch_size(tmp_path):
    reg = load_suites()
    opts = RunOptions(kinds=("fidelity", "speed"), device="cpu", batch_size=3)
    specs = plan_specs(reg.resolve(["cifar-resnet20"]), opts, "cpu")
    kinds = {s.case.kind: (s.case.batch_size, s.batch_size_source) for s in specs}
    assert kinds["fidelity"] == (None, "none")


@pytest.mark.slow
@pytest.mark.parametrize("fork_server", ["1", "0"])
def test_a_relative_out_folder_reaches_the_case_process_intact(tmp_path, fork_server):
    # The case process starts in its workdir: a relative `--out` must not break its spec, progress or
    # checkpoint paths (the GPU check's `--out results/gpu-check` failed every case this way).
    env = {**os.environ, "MILESTONES_FORK_SERVER": fork_server, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(["milestones", "run", "fake-partial", "--kind", "quality", "--scale", "proxy",
                        # 25 s: a fresh interpreter (fork server off) on a busy runner needs 10 s and
                        # more to import torch and finish the two seeds before the third one hangs
                        "--out", "res/nested", "--timeout", "25"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # a timeout is a failed case, not bad input
    (path,) = [p for p in (tmp_path / "res" / "nested").glob("*/*/*.json") if p.name != store.RUN_MANIFEST]
    rec = store.read_record(path)
    assert rec.status == "timeout" and rec.metrics["train_error.fake"].samples == (0.1, 0.2)
