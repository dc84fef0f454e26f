"""The burst protocol of `milestones ab` (harness/ab_bursts.py, harness/burst_worker.py,
harness/launch/burst.py): burst sizes, the round's ratio from burst pairs, the order and exclusivity of
bursts, every way a side can fail, the worker's protocol in-process, and one real round of two live
processes."""

from __future__ import annotations

import io
import json
import math
import os
import sys
from pathlib import Path

import pytest

from milestones.harness import ab, ab_bursts, burst_worker
from milestones.harness.errors import UsageError
from milestones.harness.launch.burst import BurstFailed, BurstProcess
from milestones.harness.launch.process import CaseProcess
from milestones.harness.launch.spec import CaseResult, CaseSpec
from milestones.harness.records import Case, Metric, RunRecord

CASE = Case("abfake", "abfake-step", "speed", "smoke", "cpu", "float32", 1)


# ------------------------------------------------------------------------------------ sizes, ratios
@pytest.mark.parametrize("step_s, want", [([0.01, 0.02], 10), ([0.5, 0.1], 1), ([0.0, -1.0], 1),
                                          ([float("nan"), 0.05], 4), ([1e-9, 1e-9], ab_bursts.MAX_BURST_STEPS),
                                          ([0.2, 0.2], 1), ([0.19, 0.1], 2)])
def test_burst_size_fills_the_burst_time_with_the_slower_sides_step(step_s, want):
    assert ab_bursts.burst_size(step_s, 0.2) == want


def test_trimmed_mean_drops_a_fifth_at_each_end():
    assert ab_bursts.trimmed_mean([0.0] * 8 + [10.0, -10.0]) == 0.0
    assert ab_bursts.trimmed_mean([1.0, 2.0, 3.0, 4.0]) == 2.5  # 4 values: nothing to drop
    assert ab_bursts.trimmed_mean([1.0, 2.0, 3.0, 4.0, 100.0]) == 3.0


def _rec(side: str, cpu, sizes=None, wall=None, wait=None, status="ok") -> RunRecord:
    wall = wall if wall is not None else cpu
    metrics = {"train.cpu_time": Metric("train.cpu_time", "s", False, tuple(cpu)),
               "train.step_time": Metric("train.step_time", "s", False, tuple(wall))}
    if wait is not None:
        metrics["train.sched_wait"] = Metric("train.sched_wait", "s", False, tuple(wait))
    info = {"ab": {"side": side, "round": 0}}
    if sizes is not None:
        info["bursts"] = {"sizes": sizes}
    return record(side, status, metrics, info)


def record(name: str, status: str, metrics, info) -> RunRecord:
    return RunRecord(schema_version=1, run_id="r", record_id=f"r/{name}", started_at="", ended_at="", duration_s=0.0,
                     case=CASE, config={}, suite_version="v", env={}, status=status, error=None,
                     metrics=dict(metrics), info=dict(info))


def test_the_rounds_ratio_is_the_trimmed_mean_of_its_burst_pairs():
    # Burst 2 of the new side caught a load spike (x3): the pairs' ratios are 1.1, 3.3, 1.1, 1.1, 1.1.
    base = _rec("base", [1.0, 1.0] * 5, sizes=[2] * 5)
    new = _rec("new", [1.1, 1.1, 3.3, 3.3] + [1.1, 1.1] * 3, sizes=[2] * 5)
    per = ab_bursts.burst_log_ratios(base, new, "train.cpu_time")
    assert per == pytest.approx([math.log(1.1), math.log(3.3)] + [math.log(1.1)] * 3)
    assert ab.round_log_ratio(base, new, "train.cpu_time") == pytest.approx(math.log(1.1))
    # Whole processes (no burst sizes): the ratio of the two medians, as before.
    assert ab.round_log_ratio(_rec("base", [1.0, 2.0, 3.0]), _rec("new", [2.0, 4.0, 6.0]),
                              "train.cpu_time") == pytest.approx(math.log(2.0))


def test_a_descheduled_sample_is_left_out_of_its_burst_unless_all_were():
    base = _rec("base", [1.0, 1.0, 1.0, 1.0], sizes=[2, 2], wall=[1.0] * 4, wait=[0.0] * 4)
    # New: burst 1 has one descheduled sample (wait 0.5 of a 1.0 s wall) of 9.0; burst 2 all descheduled.
    new = _rec("new", [1.2, 9.0, 1.3, 1.3], sizes=[2, 2], wall=[1.0] * 4, wait=[0.0, 0.5, 0.5, 0.5])
    assert ab_bursts.burst_log_ratios(base, new, "train.cpu_time") == pytest.approx([math.log(1.2), math.log(1.3)])


@pytest.mark.parametrize("sizes_base, sizes_new", [([2, 2], [4]), ([2, 3], [2, 2]), (None, [2, 2]), ([2, 0], [2, 2]),
                                                   (["x"], [4])])
def test_bursts_that_do_not_line_up_fall_back_to_the_processes_medians(sizes_base, sizes_new):
    base = _rec("base", [1.0, 1.0, 1.0, 1.0], sizes=sizes_base)
    new = _rec("new", [2.0, 2.0, 2.0, 2.0], sizes=sizes_new)
    assert ab_bursts.burst_log_ratios(base, new, "train.cpu_time") is None
    assert ab.round_log_ratio(base, new, "train.cpu_time") == pytest.approx(math.log(2.0))


def test_a_burst_round_without_one_usable_pair_has_no_ratio():
    base = _rec("base", [0.0, 0.0], sizes=[1, 1])
    new = _rec("new", [1.0, 1.0], sizes=[1, 1])
    assert ab_bursts.burst_log_ratios(base, new, "train.cpu_time") == []
    assert ab.round_log_ratio(base, new, "train.cpu_time") is None


# ------------------------------------------------------------------------------- a round, faked
class FakeProc:
    """Stands in for BurstProcess: logs every call into a shared journal."""

    journal: list = []
    script: dict = {}

    def __init__(self, launcher, spec):
        self.name = launcher.worker_module  # the tests put the side's name there
        self.spec = spec

    def start(self):
        self.journal.append(("start", self.name))
        return self

    def ready(self, timeout):
        self.journal.append(("ready", self.name))
        how = self.script.get((self.name, "ready"))
        if how:
            raise BurstFailed(*how)
        return {"steps": ["train"], "step_s": self.script.get((self.name, "step_s"), 0.05),
                "info": {"threads": 1, "protocol": "bursts"}}

    def burst(self, n, timeout):
        k = sum(1 for e in self.journal if e[:2] == ("burst", self.name))
        self.journal.append(("burst", self.name, n))
        if self.script.get((self.name, "burst")) == k:
            raise BurstFailed("failed", f"{self.name} died in burst {k}")
        t = 0.01 * (1.1 if self.name == "new" else 1.0)
        return {"train": {"wall": [t] * n, "cpu": [t] * n, "wait": [0.0] * n}}

    def close(self):
        self.journal.append(("close", self.name))
        return {"peak_rss_bytes": 123}


@pytest.fixture
def fake(monkeypatch):
    FakeProc.journal, FakeProc.script = [], {}
    return FakeProc


def _round(fake, bursts=4, i=0, burst_time=0.2):
    launchers = {n: CaseProcess(worker_module=n) for n in ("base", "new")}
    specs = {n: CaseSpec(case=CASE, workdir=f"/nowhere/{n}") for n in ("base", "new")}
    orders = [ab.round_order(i + k) for k in range(bursts)]
    return ab_bursts.run_round(launchers, specs, orders, burst_time=burst_time, timeout=5.0, process=fake)


def test_bursts_alternate_abba_one_side_at_a_time_and_every_process_is_closed(fake):
    out = _round(fake, bursts=4, i=1)
    bursts = [(e[1], e[2]) for e in fake.journal if e[0] == "burst"]
    # Round 1 starts with the new side; each burst pair swaps the order: BA AB BA AB.
    assert [n for n, _ in bursts] == ["new", "base", "base", "new", "new", "base", "base", "new"]
    assert {n for _, n in bursts} == {4}  # 0.2 s / 0.05 s per step
    # Both set up before either is waited for; both closed at the end.
    assert [e[0] for e in fake.journal[:4]] == ["start", "start", "ready", "ready"]
    assert sorted(e[1] for e in fake.journal if e[0] == "close") == ["base", "new"]
    for n in ("base", "new"):
        r = out[n]
        assert r.status == "ok" and len(r.metrics["train.cpu_time"].samples) == 16
        assert r.info["bursts"]["sizes"] == [4] * 4 and r.info["bursts"]["first"] == ["new", "base", "new", "base"]
        assert r.info["peak_rss_bytes"] == 123 and r.info["threads"] == 1
        assert set(r.metrics) == {"train.step_time", "train.cpu_time", "train.sched_wait"}


def test_a_side_that_cannot_set_up_fails_and_its_partner_is_skipped_not_blamed(fake):
    fake.script = {("new", "ready"): ("oom", "out of memory at set-up", {"log_tail": "x"})}
    out = _round(fake)
    assert out["new"].status == "oom" and out["new"].error == "out of memory at set-up"
    assert out["base"].status == "skipped" and "the new side failed" in out["base"].error
    assert not [e for e in fake.journal if e[0] == "burst"]
    assert sorted(e[1] for e in fake.journal if e[0] == "close") == ["base", "new"]


def test_a_side_that_dies_mid_round_fails_the_round(fake):
    fake.script = {("base", "burst"): 2}
    out = _round(fake)
    assert out["base"].status == "failed" and "died in burst 2" in out["base"].error
    assert out["new"].status == "skipped"
    assert sorted(e[1] for e in fake.journal if e[0] == "close") == ["base", "new"]


def test_ctrl_c_during_a_round_closes_both_processes(fake, monkeypatch):
    def interrupt(self, n, timeout):
        raise KeyboardInterrupt

    monkeypatch.setattr(FakeProc, "burst", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _round(fake)
    assert sorted(e[1] for e in fake.journal if e[0] == "close") == ["base", "new"]


# ---------------------------------------------------------------------------- ab.execute with bursts
def test_execute_uses_bursts_for_speed_cases_when_both_sides_have_them(monkeypatch, tmp_path):
    import tests.test_mutation_kills_ab as K

    seen = []

    def burst_round(sides, case, opts, settings, *, i, seed, workdir):
        seen.append((i, [s.name for s in sides], settings.bursts))
        return {s.name: CaseResult("ok", metrics={"train.cpu_time": Metric("train.cpu_time", "s", False,
                                                                           (1.0 if s.name == "base" else 1.5,) * 4)},
                                   info={"bursts": {"sizes": [2, 2]}}) for s in sides}

    def never(side, k):
        raise AssertionError("a whole case process was started")

    no_process = K.Script(never)

    monkeypatch.setattr(ab, "run_burst_round", burst_round)
    sides = [K.side("base", bursts=True), K.side("new", bursts=True)]
    res = K.run(monkeypatch, tmp_path, no_process, sides=sides, settings=ab.Settings(max_rounds=4, bursts=3))
    assert seen[:2] == [(0, ["base", "new"], 3), (1, ["new", "base"], 3)]
    (t,) = res.tracks
    assert t.result.comparison.verdict == "regressed" and t.ratios[0] == pytest.approx(math.log(1.5))
    recs = [json.loads(p.read_text()) for p in res.paths]
    assert {r["info"]["ab"]["protocol"] for r in recs} == {"bursts"}


@pytest.mark.parametrize("why", ["old side", "processes asked", "not speed"])
def test_execute_falls_back_to_whole_processes(monkeypatch, tmp_path, why):
    import dataclasses

    import tests.test_mutation_kills_ab as K

    def burst_round(*a, **k):
        raise AssertionError("bursts used")

    monkeypatch.setattr(ab, "run_burst_round", burst_round)
    sides = [K.side("base", bursts=True), K.side("new", bursts=(why != "old side"))]
    settings = ab.Settings(max_rounds=2, protocol="processes" if why == "processes asked" else "bursts")
    case = K.CASE if why != "not speed" else dataclasses.replace(K.CASE, kind="fidelity")
    assert ab.uses_bursts(case, sides, settings) is False
    if why != "not speed":
        script = K.Script(lambda s, k: [1.0, 1.0, 1.0] if s == "base" else [1.2, 1.2, 1.2])
        res = K.run(monkeypatch, tmp_path, script, sides=sides, settings=settings)
        assert len(script.calls) == 4 and res.tracks[0].ratios[0] == pytest.approx(math.log(1.2))


@pytest.mark.parametrize("kw, text", [({"protocol": "threads"}, "--protocol"), ({"bursts": 1}, "--bursts"),
                                      ({"burst_time": 0.0}, "--burst-time"), ({"burst_time": 60.0}, "--burst-time")])
def test_bad_burst_settings_are_refused_with_the_flag_named(kw, text):
    with pytest.raises(UsageError, match=text):
        ab.Settings(**kw)


# ------------------------------------------------------------------------------ the worker, in-process
def _spec(config="abfake-step", kind="speed", **kw):
    case = Case("abfake", config, kind, "smoke", "cpu", "float32", 1)
    return CaseSpec(case=case, threads=1, **kw)


def test_the_worker_serves_bursts_then_ends(monkeypatch):
    import tests.ab_suites  # noqa: F401  (registers abfake)

    inp = io.StringIO(json.dumps({"burst": 3}) + "\n" + json.dumps({"burst": 2}) + "\n" + json.dumps({"end": True}) + "\n")
    out = io.StringIO()
    assert burst_worker.serve(_spec(), inp, out) == 0
    msgs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert list(msgs[0]) == ["ready"] and msgs[0]["ready"]["steps"] == ["train"]
    assert msgs[0]["ready"]["step_s"] > 0 and msgs[0]["ready"]["info"]["threads"] == 1
    assert [len(m["samples"]["train"]["wall"]) for m in msgs[1:3]] == [3, 2]
    s = msgs[1]["samples"]["train"]
    assert len(s["cpu"]) == len(s["wait"]) == 3 and all(w >= 0.003 for w in s["wall"])  # the step sleeps 4 ms
    assert list(msgs[3]) == ["end"] and msgs[3]["end"]["peak_rss_bytes"] > 0


def test_the_worker_says_why_it_cannot_serve(monkeypatch):
    import tests.ab_suites  # noqa: F401

    out = io.StringIO()
    burst_worker.serve(_spec(), io.StringIO(), out)  # no request at all: ready, then end
    assert [list(json.loads(x)) for x in out.getvalue().splitlines()] == [["ready"], ["end"]]
    monkeypatch.setenv("AB_FAIL", "1")
    out = io.StringIO()
    burst_worker.serve(_spec(), io.StringIO("{}\n"), out)
    (msg,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert msg["failed"]["status"] == "failed" and "injected failure" in msg["failed"]["error"]
    assert "Traceback" in msg["failed"]["info"]["traceback"]


# ---------------------------------------------------------------------------- the launcher's faults
def _fake_worker(tmp_path: Path, body: str) -> CaseProcess:
    pkg = tmp_path / "fakepkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "burst_worker.py").write_text(body)
    return CaseProcess(python=sys.executable, pythonpath=(str(tmp_path),), worker_module="fakepkg.worker")


@pytest.mark.parametrize("body, status, text", [
    ("import sys; print('boom', file=sys.stderr); sys.exit(4)", "failed", "ended without an answer (exit 4): boom"),
    ("print('not json', flush=True)", "failed", "not JSON"),
    ("import time; time.sleep(30)", "timeout", "gave no answer within 1 s"),
    ("import json; print(json.dumps({'failed': {'status': 'skipped', 'error': 'no GPU'}}), flush=True)",
     "skipped", "no GPU"),
])
def test_a_burst_process_that_misbehaves_fails_with_one_line_and_leaves_nothing(tmp_path, body, status, text):
    p = BurstProcess(_fake_worker(tmp_path, body), CaseSpec(case=CASE, workdir=str(tmp_path / "w"))).start()
    with pytest.raises(BurstFailed) as e:
        p.ready(timeout=1.0)
    assert e.value.status == status and text in e.value.error
    p.close(timeout=1.0)
    assert p.proc.poll() is not None


def test_a_burst_process_answering_out_of_turn_is_a_failure(tmp_path):
    body = ("import json, sys\nprint(json.dumps({'ready': {'steps': [], 'step_s': 0.1}}), flush=True)\n"
            "for line in sys.stdin:\n    print(json.dumps({'what': 1}), flush=True)\n")
    p = BurstProcess(_fake_worker(tmp_path, body), CaseSpec(case=CASE, workdir=str(tmp_path / "w"))).start()
    assert p.ready(timeout=10.0)["step_s"] == 0.1
    with pytest.raises(BurstFailed, match="answered \\['what'\\] to a burst"):
        p.burst(3, timeout=10.0)
    p.close(timeout=1.0)
    assert p.proc.poll() is not None


# ------------------------------------------------------------------------------- one real round
@pytest.mark.slow
def test_a_real_round_of_two_live_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("MILESTONES_EXTRA_SUITES", "tests.ab_suites")
    launchers = {n: CaseProcess(extra_env=(("AB_FACTOR", "2" if n == "new" else "1"),)) for n in ("base", "new")}
    specs = {n: CaseSpec(case=CASE, threads=1, workdir=str(tmp_path / n), timeout=300) for n in ("base", "new")}
    out = ab_bursts.run_round(launchers, specs, [ab.round_order(k) for k in range(4)], burst_time=0.05, timeout=300)
    assert {r.status for r in out.values()} == {"ok"}, {n: r.error for n, r in out.items()}
    recs = {n: record(n, "ok", r.metrics, r.info) for n, r in out.items()}
    n_per = recs["base"].info["bursts"]["sizes"]
    assert len(n_per) == 4 and len(recs["base"].metrics["train.step_time"].samples) == sum(n_per)
    # The new side sleeps twice as long per step: its wall time per burst is about twice the base's.
    per = ab_bursts.burst_log_ratios(recs["base"], recs["new"], "train.step_time")
    assert len(per) == 4 and all(0.4 < x < 1.0 for x in per), per
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit()
                and Path(f"/proc/{pid}/cmdline").exists()
                and str(tmp_path) in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]


def test_a_budget_already_spent_runs_no_round_even_without_an_estimate(monkeypatch, tmp_path):
    # Found by mutation testing: with no first-round estimate (0, the API's default) the budget used to be
    # checked only from the second round on, so a run whose budget was spent still ran one round.
    import tests.test_mutation_kills_ab as K

    script = K.Script(K.slower_by(1.5))
    res = K.run(monkeypatch, tmp_path, script, settings=ab.Settings(max_time=60.0), started=script.now - 61.0)
    assert res.rounds == 0 and res.stop == "max time" and script.calls == []
    fresh = K.Script(K.slower_by(1.5))
    res = K.run(monkeypatch, tmp_path / "b", fresh, settings=ab.Settings(max_time=60.0, max_rounds=2),
                started=fresh.now - 59.0)
    assert res.rounds == 1 and len(fresh.calls) == 2  # 1 s left: the first round starts (its cost is unknown)


# ------------------------------------------------------------------- pinned by mutation testing
def test_the_documented_defaults_are_the_ones_used():
    import argparse

    from milestones.harness.commands import ab as ab_cmd

    assert (ab.Settings().bursts, ab.Settings().burst_time) == (10, 0.2)
    assert ab_bursts.burst_size([1e-12], 0.2) == 1000  # the cap
    sub = argparse.ArgumentParser().add_subparsers()
    ab_cmd.register(sub)
    helps = {a.dest: a.help for a in sub.choices["ab"]._actions}
    assert "(default 10)" in helps["bursts"] and "(default 0.2)" in helps["burst_time"]


def test_burst_ratios_divide_medians_burst_by_burst_on_both_sides():
    # Base medians 2 then 4, new 3 then 4: ratios 1.5 and 1.0 (a product or a shifted slice would differ).
    base = _rec("base", [2.0, 2.0, 4.0, 4.0], sizes=[2, 2], wall=[1.0] * 4, wait=[0.0, 0.0, 0.9, 0.0])
    new = _rec("new", [3.0, 3.0, 4.0, 4.0], sizes=[2, 2], wall=[1.0] * 4, wait=[0.0] * 4)
    assert ab_bursts.burst_log_ratios(base, new, "train.cpu_time") == pytest.approx([math.log(1.5), 0.0])
    # Base's descheduled sample (wait 0.9 s of a 1 s sample) is dropped from its own burst only.
    base = _rec("base", [2.0, 2.0, 40.0, 4.0], sizes=[2, 2], wall=[1.0] * 4, wait=[0.0, 0.0, 0.9, 0.0])
    assert ab_bursts.burst_log_ratios(base, new, "train.cpu_time") == pytest.approx([math.log(1.5), 0.0])
    new = _rec("new", [3.0, 3.0, 40.0, 4.0], sizes=[2, 2], wall=[1.0] * 4, wait=[0.0, 0.0, 0.9, 0.0])
    assert ab_bursts.burst_log_ratios(base, new, "train.cpu_time") == pytest.approx([math.log(1.5), 0.0])


@pytest.mark.parametrize("sizes", [[], None])
def test_no_burst_sizes_means_whole_processes(sizes):
    rec = _rec("base", [1.0], sizes=sizes)
    assert ab_bursts.sizes(rec) is None


def test_a_metric_missing_on_one_side_is_not_a_burst_ratio():
    base = _rec("base", [1.0, 1.0], sizes=[1, 1])
    new = _rec("new", [1.0, 1.0], sizes=[1, 1])
    del new.metrics["train.cpu_time"]
    assert ab_bursts.burst_log_ratios(base, new, "train.cpu_time") is None
    assert ab_bursts.burst_log_ratios(new, base, "train.cpu_time") is None


def test_a_round_stamps_its_duration_and_keeps_each_sides_samples(fake, monkeypatch):
    ticks = iter([100.0, 102.5])
    monkeypatch.setattr(ab_bursts.time, "perf_counter", lambda: next(ticks))
    out = _round(fake, bursts=2)
    for n in ("base", "new"):
        r = out[n]
        assert r.duration_s == 2.5
        assert r.metrics["train.step_time"].higher_is_better is False
        assert r.metrics["train.sched_wait"].samples == (0.0,) * 8
        assert r.metrics["train.cpu_time"].samples == r.metrics["train.step_time"].samples


def test_a_side_without_a_warm_step_time_does_not_size_the_bursts(fake):
    fake.script = {("base", "step_s"): None}
    _round(fake, bursts=2)
    assert {e[2] for e in fake.journal if e[0] == "burst"} == {4}  # from new's 0.05 s alone


def test_the_partner_of_a_side_that_died_keeps_its_set_up_info_and_a_cut_reason(fake, monkeypatch):
    def die(self, n, timeout):
        if self.name == "new":
            raise BurstFailed("failed", "x" * 500)
        return {"train": {"wall": [0.01] * n, "cpu": [0.01] * n, "wait": [0.0] * n}}

    monkeypatch.setattr(FakeProc, "burst", die)
    out = _round(fake)
    assert out["base"].status == "skipped" and out["base"].info["threads"] == 1
    assert out["base"].error == f"not timed: the new side failed ({'x' * 200})"


def test_bursts_sized_with_a_zero_are_not_bursts():
    # Sizes [0, 2] against [2, 0] line up in count and total, but no burst has samples on both sides.
    base = _rec("base", [1.0, 1.0], sizes=[0, 2])
    new = _rec("new", [2.0, 2.0], sizes=[2, 0])
    assert ab_bursts.burst_log_ratios(base, new, "train.cpu_time") is None
    assert ab.round_log_ratio(base, new, "train.cpu_time") == pytest.approx(math.log(2.0))


@pytest.mark.parametrize("step_s, burst_time, want", [([float("inf"), 0.05], 0.2, 4), ([0.0], 2.0, 1),
                                                      ([-0.5], 3.0, 1)])
def test_burst_size_ignores_steps_without_a_usable_time(step_s, burst_time, want):
    assert ab_bursts.burst_size(step_s, burst_time) == want


def test_each_burst_is_sliced_from_the_start_of_its_side():
    base = _rec("base", [2.0, 2.0, 4.0, 4.0], sizes=[2, 2])
    new = _rec("new", [3.0, 3.0, 4.0, 4.0], sizes=[2, 2])
    assert ab_bursts.burst_log_ratios(base, new, "train.cpu_time") == pytest.approx([math.log(1.5), 0.0])
    assert ab_bursts.burst_log_ratios(new, base, "train.cpu_time") == pytest.approx([math.log(2 / 3), 0.0])
