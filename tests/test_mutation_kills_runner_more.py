"""More tests that bite on harness/runner.py, for the code a merge added: a launch that cannot write its
files (retried, then the run stops), the manifest on a full disk, Ctrl-C between cases, the counts of a
run, the run lock's races, and execution modes per kind. The toy registry and fake launcher of
tests/test_mutation_kills_runner.py keep every case in this process, for `nox -s mutation -- runner`."""

from __future__ import annotations

from pathlib import Path

import pytest

from milestones.harness import runner
from milestones.harness.errors import UsageError
from tests.test_mutation_kills_runner import ENV, FakeLauncher, opts, specs, toy_registry


class FailingLaunch(FakeLauncher):
    """A launcher whose first `fails` launches raise `exc` (a full disk while writing the case's files)."""

    def __init__(self, fails: int, exc: BaseException | None = None, **kw):
        super().__init__(**kw)
        self.fails, self.exc, self.tries = fails, exc or OSError(28, "No space left on device"), 0

    def run(self, spec):
        self.tries += 1
        if self.tries <= self.fails:
            raise self.exc
        return super().run(spec)


def test_a_launch_that_cannot_write_its_files_is_retried_with_growing_pauses(tmp_path, monkeypatch):
    reg, o, sleeps = toy_registry(), opts(tmp_path), []
    monkeypatch.setattr(runner.time, "sleep", sleeps.append)
    res = runner.execute(specs(reg, ["toy-plain"], o), o, reg, ENV, launcher=FailingLaunch(2))
    assert sleeps == [0.5, 1.0] and len(res.records) == 1 and res.records[0].status == "ok"


def test_a_launch_that_never_can_write_stops_the_run_and_leaves_no_work_folder(tmp_path, monkeypatch):
    reg, o, sleeps = toy_registry(), opts(tmp_path), []
    monkeypatch.setattr(runner.time, "sleep", sleeps.append)
    s = specs(reg, ["toy-plain", "toy-mapping"], o)
    with pytest.raises(runner.UnwrittenRecords, match=r"could not write the files of case .*"
                                                      r"\(No space left on device\); the run stopped there"):
        runner.execute(s, o, reg, ENV, run_id="RW", launcher=FailingLaunch(99, make_dirs=False))
    assert sleeps == [0.5, 1.0]
    assert not (tmp_path / "out" / "toy-machine" / "RW" / runner.WORK_DIR).exists()


def test_a_manifest_that_cannot_be_written_leaves_no_new_run_folder_and_says_why(tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(28, "No space left on device")

    reg, o = toy_registry(), opts(tmp_path)
    monkeypatch.setattr(runner, "_write_manifest_once", full)
    folder = tmp_path / "out" / "toy-machine" / "RM"
    with pytest.raises(UsageError, match=f"cannot write results to {folder}: No space left on device$"):
        runner.execute(specs(reg, ["toy-plain"], o), o, reg, ENV, run_id="RM", launcher=FakeLauncher())
    assert not folder.exists()
    folder.mkdir(parents=True)  # a folder that was there before (a resume) stays
    (folder / "old.json").write_text("{}")
    with pytest.raises(UsageError, match="cannot write results to"):
        runner.execute(specs(reg, ["toy-plain"], o), o, reg, ENV, run_id="RM", launcher=FakeLauncher())
    assert (folder / "old.json").is_file()


class CtrlCAfterOne(FakeLauncher):
    """Ctrl-C reaches the runner itself (not a case) as the second case starts."""

    def run(self, spec):
        if self.specs:
            raise KeyboardInterrupt
        return super().run(spec)


def test_ctrl_c_between_cases_keeps_what_was_written_and_counts_what_did_not_start(tmp_path):
    reg, o = toy_registry(), opts(tmp_path)
    s = specs(reg, ["toy-small", "toy-plain", "toy-mapping"], o)
    res = runner.execute(s, o, reg, ENV, launcher=CtrlCAfterOne())
    assert res.interrupted and len(res.records) == 1 and res.to_run == 3 and res.not_started == 2


def test_a_run_result_counts_the_cases_it_did_not_start():
    r = runner.RunResult(run_id="R", folder=Path("f"))
    assert (r.to_run, r.not_started) == (0, 0)
    r = runner.RunResult(run_id="R", folder=Path("f"), to_run=1, records=["a", "b"])
    assert r.not_started == 0  # never negative


def test_the_run_lock_takes_a_lock_file_removed_under_it_and_lets_go_of_one_already_gone(tmp_path, monkeypatch):
    real, calls = runner.os.stat, []

    def stat(path, *a, **k):
        calls.append(path)
        if len(calls) == 1:
            raise FileNotFoundError(2, "gone")  # the holder before us removed it as it let go
        return real(path, *a, **k)

    monkeypatch.setattr(runner.os, "stat", stat)
    with runner.RunLock(tmp_path) as lock:
        assert len(calls) == 2 and lock.fd is not None
        (tmp_path / runner.LOCK_FILE).unlink()  # removed by hand while held
    assert lock.fd is None


def test_an_execution_mode_makes_speed_cases_only(tmp_path):
    reg = toy_registry()
    o = opts(tmp_path, kinds=("fidelity", "speed"), modes="fp32,amp-bf16")
    got = [(s.case.kind, s.case.mode) for s in specs(reg, ["toy-small"], o)]
    assert got == [("fidelity", "cast"), ("speed", "fp32"), ("speed", "amp-bf16")]
