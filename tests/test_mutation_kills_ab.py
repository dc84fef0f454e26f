"""Tests that bite on harness/ab.py: settings, sides (interpreters, revisions as worktrees, the probe),
the per-round ratio, the error rate split over metrics and looks, the stop rules of a run, and reading
a run back. Case processes are replaced by a fake `run_case` with scripted timings and a fake clock,
so each run of this file takes seconds, for `nox -s mutation -- ab` (only git and tiny shell scripts
are started)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from milestones.harness import ab, stats, store
from milestones.harness.errors import UsageError
from milestones.harness.launch.spec import CaseResult
from milestones.harness.records import Case, Metric
from milestones.harness.registry import ConfigEntry
from milestones.harness.runner import RunOptions

CASE = Case("toy", "toy-ab", "speed", "smoke", "cpu", "float32", 4)
CONFIGS = {"toy-ab": {"suite": "toy", "version": "v7", "kinds": ["speed"], "scales": ["smoke"]}}


@dataclasses.dataclass(frozen=True)
class Params:
    batch_size: int = 4


class Reg:
    def config(self, name):
        assert name == CASE.config
        return ConfigEntry(name, "toy", Params(), ("smoke",), ("speed",))


def side(name: str, **kw) -> ab.Side:
    return ab.Side(name, f"/py/{name}", (f"/code/{name}",), "milestones.harness.worker", f"label-{name}",
                   **{"configs": CONFIGS, "env": {"machine_id": "ab-machine"}, **kw})


SIDES = [side("base", rev="abc123"), side("new")]


def metric(name: str, values) -> Metric:
    return Metric(name, "s", False, tuple(values))


class Script:
    """A fake `ab.run_case`: `times(side, k)` gives the k-th process of that side its samples (or a
    CaseResult); each process moves the fake clock on by `cost` seconds."""

    def __init__(self, times, cost: float = 10.0, metric_name: str = "train.cpu_time"):
        self.times, self.cost, self.metric_name = times, cost, metric_name
        self.now = 1000.0  # a monotonic clock never starts at 0: durations are differences
        self.calls: list[tuple[str, int]] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, s, case, opts, *, seed, workdir):
        assert case == CASE and Path(workdir).is_dir()
        k = sum(1 for n, _ in self.calls if n == s.name)
        self.calls.append((s.name, k))
        self.now += self.cost
        got = self.times(s.name, k)
        if isinstance(got, CaseResult):
            return got
        return CaseResult("ok", metrics={self.metric_name: metric(self.metric_name, got)}, info={"k": k})


def run(monkeypatch, tmp_path, script, settings=None, cases=(CASE,), sides=SIDES, **kw):
    monkeypatch.setattr(ab, "run_case", script)
    opts = RunOptions(out=tmp_path / "out", device="cpu", seed=3)
    return ab.execute(cases=list(cases), opts=opts, registry=Reg(), sides=sides, settings=settings or ab.Settings(),
                      clock=script.clock, **kw)


def slower_by(f: float):
    return lambda name, k: [1.0, 1.0, 1.0] if name == "base" else [f, f, f]


def noisy(name, k):
    # new is 30% slower in even rounds and 30% faster in odd ones: never decided.
    return [1.0] if name == "base" else [1.3 if k % 2 == 0 else 1 / 1.3]


def summary(folder: Path):
    lines = [json.loads(x) for x in (folder / ab.AB_SUMMARY).read_text().splitlines()]
    return lines[0], lines[1:]


# ---------------------------------------------------------------------------------------- settings
def test_a_side_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        side("base").python = "/other"


def test_settings_refuse_budgets_and_error_rates_that_cannot_work():
    assert ab.Settings(max_rounds=2, max_time=0.001, alpha=0.999).max_rounds == 2
    for bad in (dict(max_rounds=1), dict(max_time=0.0), dict(max_time=-1.0), dict(max_time=float("nan")),
                dict(alpha=0.0), dict(alpha=1.0), dict(alpha=1.5)):
        with pytest.raises(UsageError):
            ab.Settings(**bad)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ab.Settings().alpha = 0.5
    d = ab.Settings()  # the documented defaults (docs/verdicts.md)
    assert (d.max_rounds, d.max_time, d.alpha, d.threshold) == (256, 600.0, 0.01, 0.05)
    assert d.metrics == ("*.cpu_time",)


# ------------------------------------------------------------------------------------------- sides
def _checkout(root: Path, worker_text: str) -> Path:
    (root / "harness").mkdir(parents=True)
    (root / "suites").mkdir()
    (root / "harness" / "worker.py").write_text(worker_text)
    return root


def test_a_checkout_is_put_on_the_path_in_its_own_layout(tmp_path):
    new_layout = _checkout(tmp_path / "new", "from milestones.harness import x\n")
    path, module = ab._layout_root(new_layout, tmp_path / "work", "base")
    shim = tmp_path / "work" / "pkg-base"
    assert path == (str(shim), str(new_layout)) and module == "milestones.harness.worker"
    assert (shim / "milestones" / "__init__.py").read_text() == ""
    assert (shim / "milestones" / "harness").resolve() == (new_layout / "harness").resolve()
    assert (shim / "milestones" / "suites").resolve() == (new_layout / "suites").resolve()
    assert ab._layout_root(new_layout, tmp_path / "work", "base") == (path, module)  # again: links kept
    old_layout = _checkout(tmp_path / "old", "from harness import x\n")
    assert ab._layout_root(old_layout, tmp_path / "work", "new") == ((str(old_layout),), "harness.worker")
    with pytest.raises(UsageError, match="not a milestones checkout"):
        ab._layout_root(tmp_path / "work", tmp_path / "work", "x")


def test_a_side_runs_its_own_code_first_without_user_site_packages(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/theirs", "", "/more"]))
    env = ab._side_environ(side("base"))
    assert env["PYTHONPATH"].split(os.pathsep) == ["/code/base", "/theirs", "/more"]
    assert env["PYTHONNOUSERSITE"] == "1"
    monkeypatch.delenv("PYTHONPATH")
    assert ab._side_environ(side("new"))["PYTHONPATH"] == "/code/new"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    r = _checkout(tmp_path / "repo", "import milestones.harness\n")
    _git(r, "init", "-q")
    _git(r, "add", "-A")
    _git(r, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return r


def test_revisions_resolve_and_check_out_as_worktrees(repo, tmp_path):
    head = _git(repo, "rev-parse", "HEAD")
    assert ab.resolve_rev(repo, "HEAD") == head
    with pytest.raises(UsageError, match="revision 'nope' does not exist"):
        ab.resolve_rev(repo, "nope")
    where = ab.add_worktree(repo, head, tmp_path / "wt")
    assert where == tmp_path / "wt" and (where / "harness" / "worker.py").is_file()
    with pytest.raises(UsageError, match=f"cannot check out {head[:12]} as a worktree: .*already exists"):
        ab.add_worktree(repo, head, tmp_path / "wt")  # the folder is taken
    with pytest.raises(UsageError, match="as a worktree: fatal: invalid reference: 0{39}1$"):
        ab.add_worktree(repo, "0" * 39 + "1", tmp_path / "wt2")  # git's one-line error, as it said it
    ab.remove_worktree(repo, where)
    assert not where.exists() and str(where) not in _git(repo, "worktree", "list")
    sides = ab.make_sides(base_python=None, new_python=None, base_rev="HEAD", new_rev=None, repo=repo,
                          work=tmp_path / "w")
    base, new = sides
    assert (base.name, base.rev, base.label, base.python, base.current) == \
        ("base", head, f"HEAD ({head[:10]})", sys.executable, False)
    assert base.pythonpath == (str(tmp_path / "w" / "pkg-base"), str(tmp_path / "w" / "rev-base"))
    assert (new.name, new.rev, new.current, new.label) == ("new", None, True, sys.executable)
    assert new.pythonpath[0] == str(tmp_path / "w" / "pkg-new")


def test_sides_need_an_environment_and_an_interpreter_that_exists(tmp_path):
    kw = dict(base_rev=None, new_rev=None, repo=tmp_path, work=tmp_path / "w")
    with pytest.raises(UsageError, match="needs two environments"):
        ab.make_sides(base_python=None, new_python=None, **kw)
    with pytest.raises(UsageError, match="--new-python '/no/such/python': no such interpreter"):
        ab.make_sides(base_python=None, new_python="/no/such/python", **kw)
    base, new = ab.make_sides(base_python=sys.executable, new_python=None, **kw)
    assert (base.python, base.current, base.label) == (sys.executable, False, sys.executable)
    assert (new.python, new.current) == (sys.executable, True)
    assert base.worker_module == "milestones.harness.worker"


def test_an_interpreter_named_as_a_command_on_the_path_is_accepted(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mypython").write_text("#!/bin/sh\n")
    (bin_dir / "mypython").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.chdir(tmp_path)  # no file of that name here: only PATH finds it
    base, new = ab.make_sides(base_python="mypython", new_python=None, base_rev=None, new_rev=None, repo=tmp_path,
                              work=tmp_path / "w")
    assert base.python == "mypython" and not base.current and new.current


def _script(tmp_path: Path, body: str, mode: int = 0o755) -> str:
    p = tmp_path / f"fake-python-{abs(hash(body))}"
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(mode)
    return str(p)


def test_the_probe_reads_a_side_or_says_in_one_line_why_it_cannot(tmp_path):
    data = {"layout": "milestones", "env": {"machine_id": "m1"}, "configs": CONFIGS}
    good = _script(tmp_path, f"echo noise; echo 'MILESTONES_PROBE{json.dumps(data)}'")
    probed = ab.probe(dataclasses.replace(side("base"), python=good, env={}, configs={}))
    assert probed.env == {"machine_id": "m1"} and probed.configs == CONFIGS and probed.python == good
    cases = [
        (_script(tmp_path, "echo 'first' >&2; echo 'ImportError: no milestones' >&2; echo ' ' >&2; exit 1"),
         re.escape("base environment (label-base) cannot import the project: ImportError: no milestones") + "$"),
        (_script(tmp_path, "echo nothing useful"), "cannot import the project: exit 0"),
        (_script(tmp_path, f"echo 'MILESTONES_PROBE{json.dumps(data)}'; exit 3"), "cannot import the project: exit 3"),
        (str(tmp_path / "missing"), "interpreter '.*missing' not found"),
        (_script(tmp_path, "exit 0", mode=0o644), "is not executable"),
    ]
    for python, msg in cases:
        with pytest.raises(UsageError, match=msg):
            ab.probe(dataclasses.replace(side("base"), python=python))
    with pytest.raises(UsageError, match=r"cannot import the project: x{300}$"):
        ab.probe(dataclasses.replace(side("base"), python=_script(tmp_path, "printf 'x%.0s' $(seq 400) >&2; exit 1")))
    with pytest.raises(UsageError, match=r"did not import the project within 0\.3 s"):
        ab.probe(dataclasses.replace(side("base"), python=_script(tmp_path, "exec sleep 30")), timeout=0.3)


# ---------------------------------------------------------------------------------------- launching
def test_a_side_case_is_planned_as_run_plans_it_and_started_through_its_launcher(tmp_path, monkeypatch):
    from milestones.harness.launch import process

    opts = RunOptions(out=tmp_path, device="cuda:1", seeds=(5,), threads=2, deterministic=True, profile=True,
                      peak_tflops=3.0, options={"a": "b"}, data={"d": "rel"}, timeout=7.0)
    spec = ab.case_spec(case=CASE, opts=opts, seed=9, workdir=tmp_path / "w")
    assert (spec.case, spec.seed, spec.seeds, spec.threads, spec.deterministic, spec.profile, spec.peak_tflops) == \
        (CASE, 9, (5,), 2, True, True, 3.0)
    assert spec.options == {"a": "b"} and spec.data == {"d": str(Path("rel").resolve())}
    assert (spec.workdir, spec.timeout, spec.requested_device) == (str(tmp_path / "w"), 7.0, "cuda")
    assert ab.case_spec(CASE, RunOptions(), seed=0, workdir=tmp_path).timeout == RunOptions().timeout_for("smoke")
    lt = ab.launcher(side("base"))
    assert (lt.python, lt.pythonpath, lt.worker_module, lt.extra_env) == \
        ("/py/base", ("/code/base",), "milestones.harness.worker", (("PYTHONNOUSERSITE", "1"),))

    started = []

    class FakeProcess:
        def __init__(self, **kw):
            self.kw = kw

        def run(self, spec):
            started.append((self.kw, spec))
            return CaseResult("ok")

    monkeypatch.setattr(process, "CaseProcess", FakeProcess)
    ab.run_case(side=side("base", current=True), case=CASE, opts=opts, seed=1, workdir=tmp_path)
    ab.run_case(side("new"), CASE, opts, seed=2, workdir=tmp_path)
    assert started[0][0] == {} and started[0][1].seed == 1
    assert started[1][0]["python"] == "/py/new" and started[1][1].seed == 2


# ------------------------------------------------------------------------------------------- rounds
def test_rounds_alternate_which_side_runs_first():
    assert [ab.round_order(i) for i in range(4)] == [("base", "new"), ("new", "base")] * 2


def _rec(status="ok", **metrics):
    from milestones.harness.runner import build_record

    spec = ab.case_spec(CASE, RunOptions(), seed=0, workdir=Path("."))
    res = CaseResult(status, metrics={n: metric(n, v) for n, v in metrics.items()})
    return build_record(spec, res, run_id="R", entry=Reg().config(CASE.config), suite_version="v", env={})


def test_the_round_ratio_uses_the_finite_positive_median_of_each_side():
    nan, inf = float("nan"), float("inf")
    assert ab.clean_median(_rec(**{"a.cpu_time": [3.0, 1.0, 2.0, 100.0]}), "a.cpu_time") == 2.5
    assert ab.clean_median(_rec(**{"a.cpu_time": [2.0, nan, inf, 4.0]}), "a.cpu_time") == 3.0
    assert ab.clean_median(_rec(**{"a.cpu_time": [0.0, 1.0, 2.0]}), "a.cpu_time") is None  # a zero time is no time
    assert ab.clean_median(_rec(**{"a.cpu_time": [nan]}), "a.cpu_time") is None
    assert ab.clean_median(_rec("failed", **{"a.cpu_time": [1.0]}), "a.cpu_time") is None
    assert ab.clean_median(_rec(**{"a.cpu_time": [1.0]}), "b.cpu_time") is None
    base, new = _rec(**{"a.cpu_time": [2.0]}), _rec(**{"a.cpu_time": [3.0]})
    assert ab.round_log_ratio(base, new, "a.cpu_time") == pytest.approx(math.log(1.5))
    assert ab.round_log_ratio(base, _rec("failed"), "a.cpu_time") is None
    assert ab.round_log_ratio(_rec(), new, "a.cpu_time") is None


def test_tested_metrics_are_the_measured_ones_matching_a_pattern():
    r = _rec(**{"train.cpu_time": [1.0], "eval.cpu_time": [], "train.step_time": [1.0]})
    assert ab.tested_metrics(r, ("*.cpu_time",)) == ["train.cpu_time"]
    assert ab.tested_metrics(r, ("*.cpu_time", "train.*")) == ["train.cpu_time", "train.step_time"]
    assert ab.tested_metrics(r, ("nothing",)) == []


def _track(ratios, **kw):
    return ab.Track(CASE, "train.cpu_time", False, ratios=list(ratios), **kw)


def test_the_error_rate_is_split_over_metrics_and_looks():
    s = ab.Settings(max_rounds=16)
    looks = stats.looks_until(16)
    one = [_track([0.1, 0.12, 0.11, 0.1, 0.13, 0.1])]
    ab.verdicts(tracks=one, settings=s, final=False)
    level = one[0].result.alpha_per_look  # this look's share of the error spent over the planned looks
    assert 0 < level < s.alpha / len(looks)  # an early look spends less than an even split would
    two = [_track([0.1, 0.12, 0.11, 0.1, 0.13, 0.1]), _track([0.0] * 6)]
    ab.verdicts(two, s, final=False)
    # two tracks each spend from half the error rate: less at this look (not exactly half: an O'Brien-Fleming
    # boundary is not linear in alpha)
    assert 0 < two[0].result.alpha_per_look < level / 2
    assert one[0].result.comparison.ci_low > two[0].result.comparison.ci_low  # a wider interval each


def test_tracks_are_looked_at_on_scheduled_rounds_only_until_the_last_look():
    s = ab.Settings(max_rounds=16)
    early = _track([0.2] * 5)
    ab.verdicts([early], s, final=False)
    assert early.result is None  # round 5 is not a look
    ab.verdicts([early], s, final=True)
    assert early.result is not None and early.result.rounds == 5
    on_look = _track([0.2] * 6)
    ab.verdicts([on_look], s, final=False)
    assert on_look.result.decided and on_look.done and on_look.result.comparison.verdict == "regressed"
    kept = on_look.result
    on_look.ratios.append(-0.5)
    ab.verdicts([on_look], s, final=True)
    assert on_look.result is kept  # a decided track is not looked at again
    failed = _track([0.2] * 6, failed="base side failed")
    ab.verdicts([failed], s, final=True)
    assert failed.done and failed.result is None
    assert not _track([]).done and not _track([], result=stats.paired_verdict([0.0, 0.5], higher_is_better=False)).done


def test_summary_rows_say_what_each_track_came_to():
    decided = _track([0.2] * 6)
    ab.verdicts([decided], ab.Settings(max_rounds=16), final=True)
    rows = ab.summary_rows([decided, _track([0.1], failed="new side failed: boom"), _track([])])
    assert rows[0]["verdict"] == "regressed" and rows[0]["decided"] is True and rows[0]["rounds"] == 6
    assert rows[0]["round_ratios"] == pytest.approx([math.exp(0.2)] * 6)
    assert (rows[0]["suite"], rows[0]["config"], rows[0]["kind"], rows[0]["scale"], rows[0]["metric"]) == \
        ("toy", "toy-ab", "speed", "smoke", "train.cpu_time")
    assert (rows[1]["verdict"], rows[1]["reason"]) == ("not comparable", "new side failed: boom")
    assert (rows[2]["verdict"], rows[2]["reason"], rows[2]["rounds"]) == ("inconclusive", "no round finished", 0)


def test_a_case_must_exist_with_its_kind_and_scale_on_both_sides():
    ab.check_cases([CASE], SIDES)
    only_base = [SIDES[0], dataclasses.replace(SIDES[1], configs={})]
    with pytest.raises(UsageError, match=r"toy-ab \(speed, smoke\) exists on the base side only"):
        ab.check_cases([CASE], only_base)
    with pytest.raises(UsageError, match="on neither side"):
        ab.check_cases([dataclasses.replace(CASE, config="other")], SIDES)
    with pytest.raises(UsageError, match="on neither side"):
        ab.check_cases([dataclasses.replace(CASE, kind="quality")], SIDES)
    with pytest.raises(UsageError, match="on neither side"):
        ab.check_cases([dataclasses.replace(CASE, scale="paper")], SIDES)


# ---------------------------------------------------------------------------------------------- runs
@pytest.mark.slow
def test_a_clear_regression_stops_at_the_first_look_with_every_record_written(monkeypatch, tmp_path):
    seen, rounds = [], []
    script = Script(slower_by(1.2))
    res = run(monkeypatch, tmp_path, script, ab.Settings(max_rounds=16),
              on_record=lambda rec, path: seen.append((rec.info["ab"]["side"], path)),
              on_round=lambda i, tracks: rounds.append((i, len(tracks[0].ratios))))
    assert (res.stop, res.rounds) == ("conclusive", 6)
    assert script.calls[:4] == [("base", 0), ("new", 0), ("new", 1), ("base", 1)]  # ABBA
    (t,) = res.tracks
    assert t.metric == "train.cpu_time" and t.ratios == pytest.approx([math.log(1.2)] * 6)
    assert t.result.comparison.verdict == "regressed"
    assert rounds == [(i, i + 1) for i in range(6)] and len(seen) == 12 and res.paths == [p for _, p in seen]
    assert res.elapsed_s == 120.0 and res.folder.parent == tmp_path / "out" / "ab-machine"
    rec = store.read_record(seen[3][1])
    assert seen[3][1].parent.name == "r0001-base" and rec.record_id == f"{res.run_id}/base/{CASE.slug}/r1"
    assert rec.info["ab"] == {"side": "base", "round": 1, "pair": f"{CASE.slug}/r1", "order": 1,
                              "label": "label-base", "rev": "abc123", "python": ".../base", "max_rounds": 16,
                              "threshold": 0.05, "alpha": 0.01, "metrics": ["*.cpu_time"], "protocol": "processes"}
    assert rec.suite_version == "v7" and rec.info["repeat_index"] == 1 and rec.info["seed"] == 3
    head, rows = summary(res.folder)
    assert head == {"run_id": res.run_id, "rounds": 6, "stop": "conclusive", "elapsed_s": 120.0}
    assert [r["verdict"] for r in rows] == ["regressed"]
    manifest = json.loads((res.folder / store.RUN_MANIFEST).read_text())
    assert manifest["ab"] is True and [s["name"] for s in manifest["sides"]] == ["base", "new"]
    assert manifest["settings"]["max_rounds"] == 16
    # The records read back to the same verdict (what compare and report show).
    tracks, settings = ab.tracks_from_records(store.load_records(res.folder))
    assert settings.max_rounds == 16 and tracks[0].ratios == pytest.approx(t.ratios)
    assert tracks[0].result.comparison.verdict == "regressed"


def test_an_undecided_pair_runs_out_of_rounds_and_is_inconclusive(monkeypatch, tmp_path):
    res = run(monkeypatch, tmp_path, Script(noisy), ab.Settings(max_rounds=3))
    assert (res.stop, res.rounds) == ("max rounds", 3)
    assert res.tracks[0].result.comparison.verdict == "inconclusive" and not res.tracks[0].result.decided
    assert summary(res.folder)[0]["stop"] == "max rounds"


@pytest.mark.slow
def test_the_time_budget_counts_the_next_round_before_starting_it(monkeypatch, tmp_path):
    # Each round takes 20 s of the fake clock; a round starts only if it would end within max_time.
    res = run(monkeypatch, tmp_path, Script(noisy), ab.Settings(max_rounds=10, max_time=39.0))
    assert (res.stop, res.rounds) == ("max time", 1)
    res = run(monkeypatch, tmp_path, Script(noisy), ab.Settings(max_rounds=10, max_time=40.0))
    assert (res.stop, res.rounds) == ("max time", 2)
    # Round 2 is no scheduled look, but the end of the budget is: the verdict says what 2 rounds show.
    assert res.tracks[0].result.rounds == 2 and summary(res.folder)[1][0]["verdict"] == "inconclusive"
    assert summary(res.folder)[1][0]["reason"] != "no round finished"
    assert summary(res.folder)[0]["stop"] == "max time"


def test_a_budget_that_ends_on_the_deciding_round_still_says_conclusive(monkeypatch, tmp_path):
    res = run(monkeypatch, tmp_path, Script(slower_by(1.0)), ab.Settings(max_rounds=6))
    assert (res.stop, res.rounds) == ("conclusive", 6) and res.tracks[0].result.comparison.verdict == "unchanged"


def test_an_interrupted_process_ends_the_run_at_once(monkeypatch, tmp_path):
    def times(name, k):
        return CaseResult("interrupted", error="SIGINT") if (name, k) == ("new", 1) else [1.0]

    script = Script(times)
    res = run(monkeypatch, tmp_path, script, ab.Settings(max_rounds=16))
    assert (res.stop, res.rounds) == ("interrupted", 1) and len(res.paths) == 3
    assert script.calls == [("base", 0), ("new", 0), ("new", 1)]
    assert len(res.tracks) == 1 and res.tracks[0].ratios == [0.0] and res.elapsed_s == 30.0
    assert summary(res.folder)[0]["stop"] == "interrupted"  # the verdict so far is written


def test_a_failed_side_makes_the_case_not_comparable_and_stops_it(monkeypatch, tmp_path):
    def times(name, k):
        return CaseResult("failed", error="boom " * 100) if (name, k) == ("new", 1) else [1.0]

    res = run(monkeypatch, tmp_path, Script(times), ab.Settings(max_rounds=16))
    (t,) = res.tracks
    assert t.failed == f"new side failed: {('boom ' * 100)[:200]}" and t.ratios == [0.0]
    assert (res.stop, res.rounds) == ("conclusive", 2)
    assert summary(res.folder)[1][0]["verdict"] == "not comparable"

    res = run(monkeypatch, tmp_path, Script(lambda n, k: CaseResult("oom", error=None) if n == "base" else [1.0]),
              ab.Settings(max_rounds=16))
    (t,) = res.tracks
    assert (t.metric, t.failed, res.rounds) == ("*", "base side oom: ", 1)


def test_the_metric_falls_back_to_step_time_and_must_be_measured_on_both_sides(monkeypatch, tmp_path):
    res = run(monkeypatch, tmp_path, Script(slower_by(1.2), metric_name="train.step_time"), ab.Settings(max_rounds=8))
    assert [t.metric for t in res.tracks] == ["train.step_time"] and res.tracks[0].result.decided
    res = run(monkeypatch, tmp_path, Script(slower_by(1.2), metric_name="train.step_time"),
              ab.Settings(metrics=("*.cpu_time", "x"), max_rounds=8))
    assert [(t.metric, t.failed) for t in res.tracks] == [("*", "no metric matches *.cpu_time, x")]
    res = run(monkeypatch, tmp_path, Script(lambda n, k: [1.0] if n == "base" or k < 2 else [0.0]),
              ab.Settings(max_rounds=8))
    (t,) = res.tracks
    # a round without the metric on one side is left out, and says why; the track goes on
    assert t.failed is None and len(t.ratios) == 2 and t.left_out[0] == {
        "round": 2, "why": "no positive finite sample of train.cpu_time on the new side"}


def test_reading_an_ab_run_back_needs_one_whole_ab_run(monkeypatch, tmp_path):
    res = run(monkeypatch, tmp_path, Script(slower_by(1.2)), ab.Settings(max_rounds=16))
    recs = store.load_records(res.folder)
    # A round with one side only (interrupted) is left out.
    partial = [r for r in recs if not (r.info["ab"]["round"] == 5 and r.info["ab"]["side"] == "new")]
    tracks, _ = ab.tracks_from_records(partial)
    assert len(tracks[0].ratios) == 5 and tracks[0].result.rounds == 5
    hole = [r for r in recs if not (r.info["ab"]["round"] == 2 and r.info["ab"]["side"] == "base")]
    assert len(ab.tracks_from_records(hole)[0][0].ratios) == 5  # the rounds after a broken one count
    rows, tracks = ab.compare_rows(recs)
    (row,) = rows
    assert (row.metric, row.unit, row.result.method, row.result.verdict) == \
        ("train.cpu_time", "s", "paired", "regressed")
    assert (row.suite, row.config, row.kind, row.scale, row.batch_size) == ("toy", "toy-ab", "speed", "smoke", 4)
    # A run interrupted after its first process: one record, no complete round.
    assert ab.tracks_from_records(recs[:1])[0] == []
    with pytest.raises(UsageError, match="not the records of a `milestones ab` run"):
        ab.tracks_from_records([])
    plain = dataclasses.replace(recs[0], info={k: v for k, v in recs[0].info.items() if k != "ab"})
    with pytest.raises(UsageError, match="not the records of a `milestones ab` run"):
        ab.tracks_from_records([plain])
    with pytest.raises(UsageError, match="mixed"):
        ab.tracks_from_records([*recs, plain])
    other = dataclasses.replace(recs[0], run_id="other-run")
    with pytest.raises(UsageError, match="records of 2 different ab runs"):
        ab.tracks_from_records([*recs, other])


def test_a_failed_round_reads_back_as_not_comparable(monkeypatch, tmp_path):
    res = run(monkeypatch, tmp_path, Script(lambda n, k: CaseResult("timeout") if n == "new" else [1.0]),
              ab.Settings(max_rounds=16))
    rows, _ = ab.compare_rows(store.load_records(res.folder))
    assert [(r.metric, r.result.verdict, r.result.reason) for r in rows] == \
        [("*", "not comparable", "new side timeout: ")]
    rows, _ = ab.compare_rows(store.load_records(run(
        monkeypatch, tmp_path / "2", Script(slower_by(1.2), metric_name="x.tokens"),
        ab.Settings(metrics=("x.*",), max_rounds=16)).folder))
    assert rows[0].unit == "" and rows[0].result.verdict == "regressed"


def test_settings_missing_from_old_records_take_their_defaults(monkeypatch, tmp_path):
    res = run(monkeypatch, tmp_path, Script(slower_by(1.2)), ab.Settings(max_rounds=16, alpha=0.02, threshold=0.1))
    recs = store.load_records(res.folder)
    _, s = ab.tracks_from_records(recs)
    assert (s.alpha, s.threshold, s.max_rounds, s.metrics) == (0.02, 0.1, 16, ("*.cpu_time",))
    bare = [dataclasses.replace(r, info={**r.info, "ab": {k: r.info["ab"][k] for k in ("side", "round")}})
            for r in recs]
    _, s = ab.tracks_from_records(bare)
    assert (s.alpha, s.threshold, s.max_rounds, s.metrics) == \
        (stats.DEFAULT_ALPHA, stats.DEFAULT_THRESHOLD, 64, ab.DEFAULT_METRICS)


def test_the_runs_manifest_names_each_side_and_the_machine(monkeypatch, tmp_path):
    named = [dataclasses.replace(SIDES[0], env={"machine_id": "m-base"}),
             dataclasses.replace(SIDES[1], env={"machine_id": "m-new"})]
    res = run(monkeypatch, tmp_path, Script(slower_by(1.2)), ab.Settings(max_rounds=6), sides=named)
    assert res.folder.parent.name == "m-base"  # the run folder is the base side's machine
    nameless = [dataclasses.replace(s, env={}) for s in SIDES]
    res = run(monkeypatch, tmp_path, Script(slower_by(1.2)), ab.Settings(max_rounds=6), sides=nameless)
    assert res.folder.parent.name == "unknown-machine"
    m = json.loads((res.folder / store.RUN_MANIFEST).read_text())
    # the manifest is scrubbed like a record; --resume reads the interpreters as given from its own file
    assert m["sides"][0] == {"name": "base", "label": "label-base", "python": ".../base", "rev": "abc123",
                             "current": False}
    given = json.loads((res.folder / ab.AB_RESUME).read_text())
    assert given["sides"][0] == {"name": "base", "python": "/py/base", "rev": "abc123"}
    assert m["cases"] == [dataclasses.asdict(CASE)] and m["machine_id"] == "unknown-machine"



def test_an_ab_run_read_back_keeps_its_rounds_in_order_whatever_the_file_order(monkeypatch, tmp_path):
    script = Script(lambda name, k: [1.0] if name == "base" else [1.0 + 0.1 * k])
    res = run(monkeypatch, tmp_path, script, ab.Settings(max_rounds=4))
    recs = store.load_records(res.folder)
    for order in (recs, list(reversed(recs)), sorted(recs, key=lambda r: r.info["ab"]["side"])):
        tracks, _ = ab.tracks_from_records(order)
        assert tracks[0].ratios == pytest.approx([math.log(1.0 + 0.1 * k) for k in range(4)])


def test_an_ab_run_of_no_cases_runs_no_round(monkeypatch, tmp_path):
    script = Script(slower_by(1.2))
    res = run(monkeypatch, tmp_path, script, ab.Settings(max_rounds=4), cases=())
    assert (res.stop, res.rounds, res.tracks, script.calls) == ("conclusive", 0, [], [])
    assert summary(res.folder) == ({"run_id": res.run_id, "rounds": 0, "stop": "conclusive", "elapsed_s": 0.0}, [])


def test_every_open_track_is_looked_at_whatever_comes_before_it():
    s = ab.Settings(max_rounds=16)
    done = _track([0.2] * 6, failed="base side failed")
    early, on_look = _track([0.2] * 5), _track([0.2] * 6)
    ab.verdicts([done, early, on_look], s, final=False)
    assert early.result is None and on_look.result is not None  # a done track, then one off its look
    late = _track([0.2] * 5)
    ab.verdicts([done, late], s, final=True)
    assert late.result is not None
