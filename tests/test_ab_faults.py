"""`milestones ab` under faults and budgets, with the case processes replaced by a fake (fast): the time
budget is never overrun, Ctrl-C gives the verdict so far, a killed run resumes, leftovers of killed runs
are cleaned at the next start, and an internal error exits 3 (never 1, a regression)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from milestones.harness import ab, runner
from milestones.harness.launch.spec import CaseResult
from milestones.harness.records import Metric

ROOT = Path(__file__).resolve().parent.parent


class Killed(BaseException):
    """A SIGKILL, as seen by the code under test: nothing after it runs."""


@pytest.fixture
def setup(monkeypatch, tmp_path):
    monkeypatch.setenv("MILESTONES_EXTRA_SUITES", "tests.fake_suites,tests.ab_suites")
    import importlib

    from milestones.harness.registry import load_suites

    reg = load_suites()
    # Registers the test suite whether or not the registry was loaded before (load_suites is cached).
    importlib.import_module("tests.ab_suites")
    opts = runner.RunOptions(kinds=("speed",), scale="smoke", device="cpu", out=tmp_path / "results", threads=1,
                             timeout=60)
    cases = runner.plan(reg.resolve(["abfake-step"]), opts, "cpu")
    configs = {"abfake-step": {"suite": "abfake", "version": "v1", "kinds": ["speed"], "scales": ["smoke"]}}
    sides = [ab.Side(n, sys.executable, (), "x", n, env={"machine_id": "m"}, configs=configs) for n in ab.SIDES]
    return reg, opts, cases, sides


class FakeCases:
    """Stands in for the case processes: each call is one process; the clock advances `cost` seconds."""

    def __init__(self, slower: float = 1.0, cost: float = 10.0, sd: float = 0.02, fail_at: int | None = None,
                 fail_with: type[BaseException] = KeyboardInterrupt, interrupt_status_at: int | None = None):
        self.now, self.calls, self.cost, self.slower, self.sd = 0.0, 0, cost, slower, sd
        self.fail_at, self.fail_with, self.interrupt_status_at = fail_at, fail_with, interrupt_status_at
        self.rng = np.random.default_rng(0)
        self.workdirs: list[Path] = []

    def clock(self) -> float:
        return self.now

    def run_case(self, side, case, opts, *, seed, workdir):
        self.calls += 1
        self.workdirs.append(Path(workdir))
        if self.fail_at is not None and self.calls == self.fail_at:
            raise self.fail_with()
        self.now += self.cost
        if self.interrupt_status_at is not None and self.calls == self.interrupt_status_at:
            return CaseResult("interrupted", error="interrupted (SIGINT) while running")
        f = self.slower if side.name == "new" else 1.0
        xs = list(0.1 * f * np.exp(self.rng.normal(0, self.sd, 8)))
        return CaseResult("ok", metrics={"train.cpu_time": Metric.from_values("train.cpu_time", "s", False, xs),
                                         "train.step_time": Metric.from_values("train.step_time", "s", False, xs)})


def _run(setup, fake, monkeypatch, **kw):
    reg, opts, cases, sides = setup
    monkeypatch.setattr(ab, "run_case", fake.run_case)
    settings = kw.pop("settings", ab.Settings(max_rounds=64, max_time=100.0))
    return ab.execute(cases, opts, reg, sides, settings, clock=fake.clock, **kw)


def test_no_round_starts_that_would_end_past_the_time_budget(setup, monkeypatch):
    fake = FakeCases(cost=10.0)  # a round (two processes) takes 20 s
    res = _run(setup, fake, monkeypatch)
    assert res.stop == "max time" and res.rounds == 5 and res.elapsed_s <= 100.0
    # Time spent before the first round (probing the sides, checking out revisions) counts too.
    fake = FakeCases(cost=10.0)
    fake.now = 15.0
    res = _run(setup, fake, monkeypatch, started=0.0)
    assert res.rounds == 4 and res.elapsed_s <= 100.0


def test_the_budget_follows_the_slowest_recent_round(setup, monkeypatch):
    class Slowing(FakeCases):
        def run_case(self, side, case, opts, *, seed, workdir):
            self.cost = 5.0 if self.calls < 4 else 12.0  # rounds of 10 s, then 24 s
            return super().run_case(side, case, opts, seed=seed, workdir=workdir)

    fake = Slowing()
    res = _run(setup, fake, monkeypatch, settings=ab.Settings(max_rounds=64, max_time=60.0))
    assert res.elapsed_s <= 60.0 and res.stop == "max time"


def test_ctrl_c_prints_the_verdict_of_the_finished_rounds(setup, monkeypatch):
    fake = FakeCases(slower=1.3, sd=0.01, fail_at=15)  # Ctrl-C in round 8
    res = _run(setup, fake, monkeypatch, settings=ab.Settings(max_rounds=64, max_time=1e9))
    assert res.stop == "interrupted" and res.rounds == 7
    (t,) = [t for t in res.tracks if t.metric == "train.cpu_time"]
    assert len(t.ratios) == 7 and t.result.comparison.verdict == "regressed"
    head = json.loads((res.folder / ab.AB_SUMMARY).read_text().splitlines()[0])
    assert head["stop"] == "interrupted" and head["rounds"] == 7
    # An interrupted case process (SIGINT reached it first) stops the run the same way.
    fake = FakeCases(slower=1.3, sd=0.01, interrupt_status_at=16)
    res = _run(setup, fake, monkeypatch, settings=ab.Settings(max_rounds=64, max_time=1e9))
    assert res.stop == "interrupted" and res.rounds == 7


def test_a_killed_run_resumes_from_its_last_complete_round(setup, monkeypatch):
    settings = ab.Settings(max_rounds=30, max_time=1e9)
    fake = FakeCases(slower=1.0, sd=0.2, fail_at=22, fail_with=Killed)  # killed in round 11, base done
    with pytest.raises(Killed):
        _run(setup, fake, monkeypatch, settings=settings)
    folder = next((setup[1].out / "m").iterdir())
    assert not (folder / ab.AB_SUMMARY).exists()
    looks = [json.loads(x) for x in (folder / ab.AB_LOOKS).read_text().splitlines()]
    assert [x["rounds"] for x in looks if x["metric"] == "train.cpu_time"] == [6, 8, 10]
    fake2 = FakeCases(slower=1.0, sd=0.2)
    res = _run(setup, fake2, monkeypatch, settings=settings, resume=folder)
    assert res.folder == folder and res.stop == "max rounds" and res.rounds == 30
    (t,) = [t for t in res.tracks if t.metric == "train.cpu_time"]
    assert len(t.ratios) == 10 + 19  # rounds 0-9 before the kill, 11-29 after; round 10 has one side only
    # The error spent before the kill is carried on: the levels of all looks still sum to alpha at most.
    assert sum(lvl for _, lvl in t.spending.looks) <= settings.alpha / len(res.tracks) + 1e-12
    assert [n for n, _ in t.spending.looks][:3] == [6, 8, 10]
    rows, tracks = ab.compare_rows([r for r in _read(folder)])
    assert {r.run_id for r in _read(folder)} == {res.run_id}
    assert len(next(x for x in tracks if x.metric == "train.cpu_time").ratios) == 29


def _read(folder: Path):
    from milestones.harness import store

    return [store.read_record(p) for p in store.iter_record_files([folder])]


def test_case_workdirs_live_in_the_runs_own_folder_and_go_with_it(setup, monkeypatch):
    fake = FakeCases()
    _run(setup, fake, monkeypatch, settings=ab.Settings(max_rounds=3, max_time=1e9))
    owners = {p.parent for p in fake.workdirs}
    assert len(owners) == 1 and next(iter(owners)).name.startswith(ab.WORK_PREFIX)
    assert not any(p.exists() for p in fake.workdirs) and not next(iter(owners)).exists()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def test_leftovers_of_killed_runs_are_removed_and_live_runs_kept(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f").write_text("x")
    _git(repo, "add", "f")
    _git(repo, "-c", "user.email=a@b", "-c", "user.name=t", "commit", "-qm", "c")
    tmp = tmp_path / "tmp"
    dead, live = tmp / f"{ab.WORK_PREFIX}dead", tmp / f"{ab.WORK_PREFIX}live"
    for w, pid in ((dead, _dead_pid()), (live, os.getppid())):
        (w / "case-1").mkdir(parents=True)
        (w / ab.OWNER).write_text(str(pid))
    _git(repo, "worktree", "add", "-q", "--detach", str(dead / "rev-base"), "HEAD")
    _git(repo, "worktree", "add", "-q", "--detach", str(live / "rev-base"), "HEAD")
    # A folder of an older milestones (no owner file) is removed only once it is old.
    unowned = tmp / f"{ab.WORK_PREFIX}old"
    unowned.mkdir()
    os.utime(unowned, (0, 0))
    fresh = tmp / f"{ab.WORK_PREFIX}fresh"
    fresh.mkdir()
    gone = ab.clean_leftovers(repo, tmp)
    assert not dead.exists() and not unowned.exists() and live.exists() and fresh.exists()
    listed = _git(repo, "worktree", "list", "--porcelain")
    assert str(dead / "rev-base") not in listed and str(live / "rev-base") in listed
    assert any("rev-base" in g for g in gone)


def test_an_internal_error_exits_3_with_one_line_never_1(monkeypatch, capsys):
    from milestones.harness import compare
    from milestones.harness.cli import main

    def boom(*a, **k):
        raise OverflowError("math range error")

    monkeypatch.setattr(compare, "compare_runs", boom)
    fix = ROOT / "tests" / "fixtures" / "records" / "regress"
    assert main(["compare", str(fix / "base"), str(fix / "new"), "--fail-on", "regression"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "OverflowError" in err[0] and "exit 3" in err[0]


def test_a_round_without_a_usable_median_is_left_out_and_says_why(setup, monkeypatch):
    class Zeros(FakeCases):
        def run_case(self, side, case, opts, *, seed, workdir):
            res = super().run_case(side, case, opts, seed=seed, workdir=workdir)
            if self.calls == 6 and side.name == "new":  # round 3's new side: a clock read 0 every time
                zero = Metric.from_values("train.cpu_time", "s", False, [0.0] * 8)
                res = res.replace(metrics={**res.metrics, "train.cpu_time": zero})
            return res

    res = _run(setup, Zeros(), monkeypatch, settings=ab.Settings(max_rounds=8, max_time=1e9))
    (t,) = [t for t in res.tracks if t.metric == "train.cpu_time"]
    assert t.failed is None and len(t.ratios) == res.rounds - 1
    assert t.left_out == [{"round": 2, "why": "no positive finite sample of train.cpu_time on the new side"}]
    (row,) = [r for r in ab.summary_rows(res.tracks) if r["metric"] == "train.cpu_time"]
    assert row["left_out"] == t.left_out and "1 round(s) left out" in row["reason"]
    summary = [json.loads(x) for x in (res.folder / ab.AB_SUMMARY).read_text().splitlines()]
    assert any(r.get("left_out") for r in summary[1:])


def test_resume_of_a_folder_that_is_no_ab_run_is_bad_input(tmp_path, capsys):
    from milestones.harness.cli import main

    assert main(["ab", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not the folder of a `milestones ab` run" in err[0]


def test_ctrl_c_on_the_command_prints_the_verdict_so_far_and_how_to_resume(setup, monkeypatch, tmp_path, capsys):
    import dataclasses

    from milestones.harness.cli import main

    _, _, _, sides = setup
    monkeypatch.setattr(ab, "probe", lambda s, timeout=600.0: dataclasses.replace(s, env=sides[0].env,
                                                                                  configs=sides[0].configs))
    fake = FakeCases(slower=1.3, sd=0.01, fail_at=15)
    monkeypatch.setattr(ab, "run_case", fake.run_case)
    code = main(["ab", "abfake-step", "--base-python", sys.executable, "--new-python", sys.executable,
                 "--out", str(tmp_path / "out"), "--max-rounds", "40", "--fail-on", "regression"])
    out, err = capsys.readouterr()
    assert code == 130
    assert "A/B: stopped (interrupted) after 7 round(s)" in out and "regressed" in out
    assert "milestones ab --resume" in err and "1 thread(s)" in err


def test_a_budget_too_small_for_one_round_runs_none_and_says_so(setup, monkeypatch):
    """Starting the sides' interpreters took 70 s when they were probed; a round starts two of them."""
    fake = FakeCases(cost=60.0)
    fake.now = 70.0
    res = _run(setup, fake, monkeypatch, started=0.0, first_round_estimate=70.0,
               settings=ab.Settings(max_rounds=64, max_time=120.0))
    assert res.rounds == 0 and res.stop == "max time" and fake.calls == 0
    head = json.loads((res.folder / ab.AB_SUMMARY).read_text().splitlines()[0])
    assert head["rounds"] == 0 and head["stop"] == "max time" and res.tracks == []
    fake = FakeCases(cost=20.0)
    res = _run(setup, fake, monkeypatch, first_round_estimate=30.0,
               settings=ab.Settings(max_rounds=64, max_time=120.0))
    assert res.rounds == 3 and res.elapsed_s <= 120.0
