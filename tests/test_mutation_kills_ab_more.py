"""More tests that bite on harness/ab.py, for the code of the error spending over looks, `--resume`
and the time budget's pace: the rounds a budget is expected to allow, the looks a resumed run
restores, the verdicts read back, the summary rows. Same seams as tests/test_mutation_kills_ab.py (a
fake `run_case` with scripted timings and a fake clock; no case process), for `nox -s mutation -- ab`."""

from __future__ import annotations

import dataclasses
import json
import math
import time

import pytest

from milestones.harness import ab, stats
from milestones.harness.runner import RunOptions
from tests.test_mutation_kills_ab import CASE, Script, _rec, _track, noisy, run, side

ALPHA = ab.Settings().alpha


# ------------------------------------------------------------------------------- the budget's pace
def test_the_next_round_is_expected_to_take_as_long_as_the_slowest_of_the_last_eight():
    assert ab._estimate_next([]) == 0.0
    assert ab._estimate_next([3.0, 1.0, 2.0]) == 3.0
    assert ab._estimate_next([100.0] + [1.0] * 7 + [2.0]) == 2.0  # the 9th round from the end is forgotten
    assert ab._estimate_next([100.0] + [1.0] * 7) == 100.0


def test_the_planned_rounds_follow_the_mean_pace_of_the_last_eight_rounds():
    s = ab.Settings(max_rounds=100, max_time=100.0)
    assert ab._planned_rounds(s, 3, 10.0, []) == 100  # no round yet: the round budget
    # 80 s left; the last 8 rounds took 15 s on average (the 9th from the end, 1000 s, is forgotten)
    assert ab._planned_rounds(s, 9, 20.0, [1000.0, 50.0] + [10.0] * 7) == 9 + 5
    assert ab._planned_rounds(s, 9, 20.0, [10.0] * 9) == 9 + 8
    assert ab._planned_rounds(ab.Settings(max_rounds=12, max_time=100.0), 9, 20.0, [10.0] * 9) == 12
    # the budget already overrun: no more rounds, however fast they are
    assert ab._planned_rounds(s, 9, 150.0, [0.5] * 9) == 9
    # rounds that took no time at all (a coarse clock): the round budget, not a division by zero
    assert ab._planned_rounds(s, 2, 20.0, [0.0, 0.0]) == 100


# ----------------------------------------------------------------------------------------- looks
def test_a_look_spends_by_the_rounds_done_over_the_rounds_the_budget_allows():
    s = ab.Settings(max_rounds=16)
    for planned, frac in ((12, 6 / 12), (None, 6 / 16), (1000, 6 / 16), (4, 1.0)):
        t = _track([0.01, -0.01] * 3)
        ab.verdicts([t], s, final=False, planned=planned)
        ((n, lvl),) = t.spending.looks
        assert n == 6 and lvl == pytest.approx(stats.obf_spent(frac, s.alpha))
        assert t.result.alpha_per_look == pytest.approx(lvl)


def test_a_two_round_budget_spends_all_of_alpha_at_its_one_look_and_one_round_is_no_look():
    s = ab.Settings(max_rounds=2)
    t = _track([0.01, -0.01])
    ab.verdicts([t], s, final=False, planned=2)
    assert t.spending.looks == [(2, pytest.approx(s.alpha))]
    one, other = _track([0.01]), _track([0.02])
    ab.verdicts([one, other], s, final=True)
    assert one.spending.looks == [] and one.result.rounds == 1 and not one.result.decided
    assert one.result.alpha_per_look == pytest.approx(s.alpha / 2)  # no level spent: alpha's share, one look


# ------------------------------------------------------------------------------------ --resume
def _look_log(folder, lines):
    (folder / ab.AB_LOOKS).write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")


def _look(metric, n, lvl):
    return {"case": CASE.slug, "metric": metric, "rounds": n, "level": lvl}


def test_a_resumed_run_restores_each_tracks_looks_and_its_verdict_at_the_last_one(tmp_path):
    s = ab.Settings(max_rounds=64)
    undecided = ab.Track(CASE, "a.cpu_time", False, ratios=[0.3, -0.3] * 5)
    decided = ab.Track(CASE, "b.cpu_time", False, ratios=[0.2] * 8)
    failed = ab.Track(CASE, "c.cpu_time", False, ratios=[0.2] * 8, failed="new side failed: x")
    _look_log(tmp_path, [
        _look("a.cpu_time", 6, 1e-4), _look("b.cpu_time", 6, 1e-3), _look("c.cpu_time", 6, 1e-4),
        "not json",                                       # a line cut by the kill, then more lines
        {"case": CASE.slug, "metric": "a.cpu_time"},      # no rounds
        _look("a.cpu_time", "six", 1e-4),                  # rounds not a number
        _look("a.cpu_time", 7, None),                      # level not a number
        _look("a.cpu_time", 8, 2e-4), _look("b.cpu_time", 8, 2e-3), _look("c.cpu_time", 8, 2e-4),
        _look("a.cpu_time", 10, 3e-4),
        {"case": "other", "metric": "a.cpu_time", "rounds": 6, "level": 0.5},
    ])
    tracks = [undecided, decided, failed]
    ab._restore_looks(tracks, s, tmp_path)
    assert all(t.spending.alpha == pytest.approx(s.alpha / 3) for t in tracks)
    assert undecided.spending.looks == [(6, 1e-4), (8, 2e-4), (10, 3e-4)]
    assert undecided.spending.spent == pytest.approx(6e-4) and undecided.logged == 3
    # its verdict: the one the killed run made at its last look, 10 rounds at that look's level
    r = undecided.result
    assert (r.rounds, r.decided, r.alpha_per_look) == (10, False, 3e-4)
    # a track decided at a look stops there: the looks after it are not its own
    assert decided.spending.looks == [(6, 1e-3)] and decided.spending.spent == pytest.approx(1e-3)
    assert decided.result.decided and decided.result.rounds == 6 and decided.logged == 1
    # a failed track keeps its looks' spending but gets no verdict
    assert failed.result is None and failed.spending.looks == [(6, 1e-4), (8, 2e-4)] and failed.logged == 2


def test_a_look_past_the_rounds_read_back_gives_no_verdict_and_a_single_track_spends_all_of_alpha(tmp_path):
    s = ab.Settings(max_rounds=64)
    short = ab.Track(CASE, "a.cpu_time", False, ratios=[0.3, -0.3] * 4 + [0.3])
    _look_log(tmp_path, [_look("a.cpu_time", 6, 1e-4), _look("a.cpu_time", 10, 3e-4)])
    ab._restore_looks([short], s, tmp_path)
    assert short.spending.alpha == s.alpha and short.spending.looks == [(6, 1e-4), (10, 3e-4)]
    assert short.result.rounds == 6  # round 10 was not read back (its records lost): the look at 6 stands


def test_a_resumed_run_without_a_look_log_starts_its_spending_afresh(tmp_path):
    s = ab.Settings(max_rounds=64)
    t = _track([0.2] * 6, result=stats.paired_verdict([0.2] * 6, higher_is_better=False), logged=4)
    ab._restore_looks([t], s, tmp_path)
    assert t.result is None and t.spending.looks == [] and t.spending.spent == 0.0 and t.logged == 0


# ------------------------------------------------------------------------------------- read back
def test_verdicts_read_back_replay_the_live_rule_with_alpha_split_over_the_tracks():
    s = ab.Settings(max_rounds=64, alpha=0.02)
    ratios = [0.05, 0.02, 0.04, 0.03, 0.06, 0.01, 0.05, 0.02, 0.04, 0.03]
    tracks = [_track(ratios), _track(ratios, failed="base side failed: x"), _track([])]
    ab.replay_verdicts(tracks, s)
    want = stats.sequential_verdict(ratios, planned=10, higher_is_better=False, alpha=0.02 / 3, threshold=s.threshold)
    assert tracks[0].result == want
    assert want != stats.sequential_verdict(ratios, planned=10, higher_is_better=False, alpha=0.02,
                                            threshold=s.threshold)
    assert tracks[1].result is None and tracks[2].result is None


# ------------------------------------------------------------------------------------- summary rows
def test_summary_rows_clip_huge_ratios_and_name_the_first_round_left_out():
    t = _track([800.0, math.log(2.0)])
    t.left_out = [{"round": 3, "why": "first why"}, {"round": 5, "why": "second why"}]
    one = _track([0.1])
    one.left_out = [{"round": 1, "why": "only why"}]
    rows = ab.summary_rows([t, one])
    assert rows[0]["round_ratios"] == [math.exp(700.0), pytest.approx(2.0)]
    assert rows[0]["reason"] == "no round finished; 2 round(s) left out: first why ..."
    assert rows[1]["reason"] == "no round finished; 1 round(s) left out: only why"
    assert rows[0]["left_out"] == t.left_out and rows[0]["left_out"] is not t.left_out


def test_a_resumed_run_writes_its_summary_beside_the_old_ones_never_over_them(tmp_path):
    res = ab.AbResult("R", tmp_path, [], 3, "max rounds", 0.0)
    for elapsed in (1.0, 2.0, 3.0):
        ab._finish(res, [], ab.Settings(), tmp_path, "R", elapsed)
    names = ["_ab_summary.jsonl", "_ab_summary.1.jsonl", "_ab_summary.2.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert [json.loads((tmp_path / n).read_text())["elapsed_s"] for n in names] == [1.0, 2.0, 3.0]


# ------------------------------------------------------------------------------------------ rounds
def _ab_rec(side, i, status="ok", **metrics):
    rec = _rec(status, **metrics)
    return dataclasses.replace(rec, info={**rec.info, "ab": {"side": side, "round": i}})


def test_a_metric_gone_from_both_sides_fails_its_track_once_naming_the_base_side():
    t = _track([0.1])
    for i in (4, 5):
        recs = {n: _ab_rec(n, i, **{"other.cpu_time": [1.0]}) for n in ab.SIDES}
        ab._add_round([t], CASE, recs, ab.Settings())
    assert t.failed == "train.cpu_time not measured on the base side in round 4" and t.ratios == [0.1]


# ------------------------------------------------------------------------------------------- the run
def test_sub_second_rounds_are_budgeted_like_long_ones_and_an_unknown_first_round_is_not_guessed(
        monkeypatch, tmp_path):
    # rounds of 0.5 s (two processes of 0.25 s): after two of them a third would end past 1.2 s
    res = run(monkeypatch, tmp_path, Script(noisy, cost=0.25), ab.Settings(max_rounds=10, max_time=1.2))
    assert (res.stop, res.rounds) == ("max time", 2)
    # no first-round estimate given: the first round runs, whatever the budget; the second would overrun it
    res = run(monkeypatch, tmp_path, Script(noisy, cost=0.25), ab.Settings(max_rounds=10, max_time=0.9))
    assert (res.stop, res.rounds) == ("max time", 1)


# --------------------------------------------------------------------------------------- leftovers
def test_a_work_folder_owned_by_another_users_live_process_is_kept(tmp_path, monkeypatch):
    def kill(pid, sig):
        raise PermissionError(1, "Operation not permitted")  # a live process this user may not signal

    w = tmp_path / f"{ab.WORK_PREFIX}theirs"
    w.mkdir()
    (w / ab.OWNER).write_text("4242")
    monkeypatch.setattr(ab.os, "kill", kill)
    assert ab._alive(4242) and not ab._leftover(w, time.time())
    assert ab.clean_leftovers(None, tmp_path) == [] and w.exists()


def test_each_look_is_logged_once_however_many_came_since_the_last_log(tmp_path):
    t = _track([0.1] * 8)
    t.spending = stats.Spending(ALPHA)
    t.spending.looks.extend([(6, 1e-4), (8, 2e-4)])
    ab._log_looks(tmp_path, [t])
    t.spending.looks.append((10, 3e-4))
    ab._log_looks(tmp_path, [t, _track([])])
    lines = [json.loads(x) for x in (tmp_path / ab.AB_LOOKS).read_text().splitlines()]
    assert [(x["rounds"], x["level"]) for x in lines] == [(6, 1e-4), (8, 2e-4), (10, 3e-4)] and t.logged == 3


class Killed(BaseException):
    """A SIGKILL, as the code under test sees it: nothing after it runs."""


def test_a_run_killed_before_its_first_record_resumes_at_round_0(monkeypatch, tmp_path):
    def killed(name, k):
        raise Killed

    with pytest.raises(Killed):
        run(monkeypatch, tmp_path, Script(killed), ab.Settings(max_rounds=2))
    (folder,) = (tmp_path / "out" / "ab-machine").iterdir()
    res = run(monkeypatch, tmp_path, Script(noisy), ab.Settings(max_rounds=2), resume=folder)
    assert res.rounds == 2 and sorted({p.parent.name for p in res.paths}) == [
        "r0000-base", "r0000-new", "r0001-base", "r0001-new"]


def test_a_look_of_a_timed_run_spends_by_the_rounds_its_pace_allows(monkeypatch, tmp_path):
    # rounds of 20 s in a 400 s budget: after 6 rounds (120 s) 14 more fit, 20 planned in all
    res = run(monkeypatch, tmp_path, Script(noisy), ab.Settings(max_rounds=64, max_time=400.0))
    (t,) = res.tracks
    assert t.spending.looks[0] == (6, pytest.approx(stats.obf_spent(6 / 20, ALPHA)))


def test_a_work_folder_without_an_owner_goes_once_it_is_older_than_six_hours(tmp_path):
    w = tmp_path / f"{ab.WORK_PREFIX}old"
    w.mkdir()
    born = w.stat().st_mtime
    assert not ab._leftover(w, born + ab.UNOWNED_AGE_S) and ab._leftover(w, born + ab.UNOWNED_AGE_S + 1.0)
    assert ab.UNOWNED_AGE_S == 6 * 3600  # docs/verdicts.md


def test_a_work_folder_gone_meanwhile_is_not_a_leftover(tmp_path):
    # Neither its owner file nor the folder itself can be read (another `ab` removed it meanwhile).
    assert ab._leftover(tmp_path / "milestones-ab-gone", 1e12) is False


def test_a_burst_round_gets_each_sides_spec_launcher_and_abba_orders(monkeypatch, tmp_path):
    from milestones.harness import ab_bursts

    got = {}

    def run_round(launchers, specs, orders, *, burst_time, timeout):
        got.update(launchers=launchers, specs=specs, orders=orders, burst_time=burst_time, timeout=timeout)
        return {"base": "b", "new": "n"}

    monkeypatch.setattr(ab_bursts, "run_round", run_round)
    opts = RunOptions(out=tmp_path / "out", device="cpu", seed=3, timeout=77.0)
    sides = [side("new"), side("base")]
    out = ab.run_burst_round(sides, CASE, opts, ab.Settings(bursts=3, burst_time=0.5), i=1, seed=5, workdir=tmp_path)
    assert out == {"base": "b", "new": "n"}
    assert got["orders"] == [("new", "base"), ("base", "new"), ("new", "base")]
    assert (got["burst_time"], got["timeout"]) == (0.5, opts.timeout_for(CASE.scale))
    assert {n: (s.workdir, s.seed, s.case) for n, s in got["specs"].items()} == {
        "new": (str(tmp_path / "new"), 5, CASE), "base": (str(tmp_path / "base"), 5, CASE)}
    assert {n: (lc.python, lc.pythonpath) for n, lc in got["launchers"].items()} == {
        "new": ("/py/new", ("/code/new",)), "base": ("/py/base", ("/code/base",))}


def test_a_live_owner_is_only_asked_whether_it_lives(tmp_path):
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        work = tmp_path / "milestones-ab-live"
        work.mkdir()
        (work / ab.OWNER).write_text(str(child.pid))
        assert ab._leftover(work, 1e12) is False
        with pytest.raises(subprocess.TimeoutExpired):  # signal 0 asks; any other signal would end it
            child.wait(timeout=1.0)
    finally:
        child.kill()
        child.wait()


def test_a_leftover_removed_by_another_ab_meanwhile_is_no_error(tmp_path, monkeypatch):
    import shutil

    work = tmp_path / "milestones-ab-dead"
    work.mkdir()

    def gone_meanwhile(w, now):
        shutil.rmtree(w)  # another `ab`, starting at the same moment, cleaned it first
        return True

    monkeypatch.setattr(ab, "_leftover", gone_meanwhile)
    assert ab.clean_leftovers(None, tmp_path) == [str(work)]
