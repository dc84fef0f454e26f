"""Tests that bite on harness/runner.py: planning (scale, kind, batch source, repeats), the batch search,
records built from results, the run folder (lock, resume, superseded records, checkpoints, work dirs)
and write retries. A toy registry and a fake launcher keep every case in this process and each run of
this file to a few seconds, for `nox -s mutation -- runner` (no torch, no suite is imported)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
from pathlib import Path

import pytest

from milestones.harness import runner, store
from milestones.harness.errors import UsageError
from milestones.harness.launch.spec import CaseResult, CaseSpec
from milestones.harness.records import Case, Metric
from milestones.harness.registry import Registry
from milestones.harness.runner import RunOptions

ENV = {"machine_id": "toy-machine"}


@dataclasses.dataclass(frozen=True)
class Batched:
    batch_size: int = 8
    cpu_batch_size: int | None = 2


@dataclasses.dataclass(frozen=True)
class GpuOnlyBatch:
    batch_size: int = 16


@dataclasses.dataclass(frozen=True)
class NoBatch:
    width: int = 3


def toy_registry() -> Registry:
    reg = Registry()
    s = reg.add_suite("toy", title="Toy", arxiv="0000.00000", year=2000, source_file=__file__)
    s.config("toy-small", Batched(), scales=("smoke", "proxy"), kinds=("fidelity", "speed"))
    s.config("toy-paper", GpuOnlyBatch(), scales=("paper",), kinds=("speed", "quality"))
    s.config("toy-plain", NoBatch(), scales=("smoke",), kinds=("speed",))
    s.config("toy-mapping", {"batch_size": 4}, scales=("smoke",), kinds=("speed",))
    return reg


class FakeLauncher:
    """Answers each spec with a status chosen by `status(spec)`; writes into the case's work and
    checkpoint folders as a real case would. Refuses to run forever (a mutant's endless loop fails fast)."""

    def __init__(self, status=lambda spec: "ok", limit: int = 64, make_dirs: bool = True):
        self.status, self.limit, self.make_dirs = status, limit, make_dirs
        self.specs: list[CaseSpec] = []
        self.seen_work: list[list[str]] = []

    def run(self, spec: CaseSpec) -> CaseResult:
        self.specs.append(spec)
        assert len(self.specs) <= self.limit, "the runner launched too many cases"
        if spec.workdir and self.make_dirs:
            work_root = Path(spec.workdir).parent
            self.seen_work.append(sorted(p.name for p in work_root.iterdir()) if work_root.exists() else [])
            Path(spec.workdir).mkdir(parents=True, exist_ok=True)
            (Path(spec.workdir) / "scratch.bin").write_bytes(b"x")
        if spec.checkpoint_dir and self.make_dirs:
            Path(spec.checkpoint_dir).mkdir(parents=True, exist_ok=True)
            (Path(spec.checkpoint_dir) / "step.pt").write_bytes(b"ckpt")
        status = self.status(spec)
        return CaseResult(status=status, error=None if status == "ok" else f"{status} here",
                          metrics={"train.step_time": Metric("train.step_time", "s", False, (0.5, 0.25))},
                          info={"from": "fake"}, started_at="2026-01-01T00:00:00Z", ended_at="2026-01-01T00:00:01Z",
                          duration_s=1.234567)


def opts(tmp_path: Path, **kw) -> RunOptions:
    return RunOptions(**{"kinds": ("speed",), "device": "cpu", "out": tmp_path / "out", **kw})


def specs(reg: Registry, names: list[str], o: RunOptions, device: str = "cpu") -> list[CaseSpec]:
    return runner.plan_specs(reg.resolve(names), o, device)


def records_in(folder: Path):
    """The readable records of a run folder (a corrupt file is no record)."""
    return sorted((r for _, r in store.read_records((f for f in folder.glob("*.json") if f.name != store.RUN_MANIFEST),
                                                    on_skip=None)), key=lambda r: r.record_id)


# ------------------------------------------------------------------------------------------ device
@pytest.mark.parametrize("has_cuda", [True, False])
def test_device_auto_follows_torch_and_cuda_without_a_device_is_refused(monkeypatch, has_cuda):
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: has_cuda), __version__="9.9",
                                 version=types.SimpleNamespace(cuda="12.9"))
    monkeypatch.setitem(sys.modules, "torch", fake)
    assert runner.resolve_device("auto") == ("cuda" if has_cuda else "cpu")
    assert runner.resolve_device("cpu") == "cpu"
    if has_cuda:
        assert runner.resolve_device("cuda:1") == "cuda:1"
    else:
        with pytest.raises(UsageError, match=r"no CUDA device.*torch 9\.9.*CUDA 12\.9"):
            runner.resolve_device("cuda:1")


# ---------------------------------------------------------------------------------------- planning
def test_plan_keeps_only_configs_declared_at_the_asked_scale_and_kind(tmp_path):
    reg = toy_registry()
    every = ("fidelity", "speed", "quality")
    # resolve() does not filter by scale: a paper-only config must not run at smoke scale.
    smoke = specs(reg, [], opts(tmp_path, kinds=every, scale="smoke"))
    assert [(s.case.config, s.case.kind, s.case.scale) for s in smoke] == [
        ("toy-small", "fidelity", "smoke"), ("toy-small", "speed", "smoke"), ("toy-plain", "speed", "smoke"),
        ("toy-mapping", "speed", "smoke")]
    paper = specs(reg, ["toy"], opts(tmp_path, kinds=every, scale="paper"))
    assert [(s.case.config, s.case.kind) for s in paper] == [("toy-paper", "speed"), ("toy-paper", "quality")]
    assert specs(reg, ["toy-paper"], opts(tmp_path, kinds=("fidelity",), scale="paper")) == []
    assert [s.case.config for s in specs(reg, ["toy"], opts(tmp_path, scale="proxy"))] == ["toy-small"]


def test_batch_size_comes_from_one_place_and_says_where(tmp_path):
    reg = toy_registry()
    small, paper, plain = reg.config("toy-small"), reg.config("toy-paper"), reg.config("toy-plain")
    o = opts(tmp_path)
    assert runner.resolve_batch(small, "fidelity", "cpu", opts(tmp_path, batch_size=5)) == (None, "none")
    assert runner.resolve_batch(small, "speed", "cpu", opts(tmp_path, batch_size=5)) == (5, "--batch-size")
    assert runner.resolve_batch(small, "quality", "cuda:0", opts(tmp_path, batch_size=5)) == (5, "--batch-size")
    assert runner.resolve_batch(small, "speed", "cpu", o) == (2, "config default")       # cpu_batch_size
    assert runner.resolve_batch(small, "speed", "cuda", o) == (8, "config default")      # not on a GPU
    assert runner.resolve_batch(small, "speed", "cuda:1", o) == (8, "config default")
    assert runner.resolve_batch(paper, "speed", "cpu", o) == (16, "config default")      # no cpu batch
    assert runner.resolve_batch(plain, "speed", "cpu", o) == (None, "none")
    nocpu = dataclasses.replace(small, params=Batched(batch_size=8, cpu_batch_size=None))
    assert runner.resolve_batch(nocpu, "speed", "cpu", o) == (8, "config default")


def test_each_spec_carries_the_options_and_repeats_share_their_case(tmp_path):
    reg = toy_registry()
    (tmp_path / "data").mkdir()
    o = opts(tmp_path, kinds=("fidelity", "speed"), repeat=3, seed=7, seeds=(3, 4), threads=2, deterministic=True,
             profile=True, peak_tflops=12.5, options={"k": "v"}, data={"set": str(tmp_path / "data" / ".")},
             timeout=33.0, nproc=2, dtype="bfloat16", device="cuda:1", torchrun_args=("--nnodes", "2"))
    got = specs(reg, ["toy-small"], o, device="cuda:1")
    assert [(s.case.kind, s.repeat_index) for s in got] == [("fidelity", 0), ("fidelity", 1), ("fidelity", 2),
                                                            ("speed", 0), ("speed", 1), ("speed", 2)]
    speed = got[3]
    assert speed.case == Case("toy", "toy-small", "speed", "smoke", "cuda:1", "bfloat16", 8)
    assert all(s.case == speed.case for s in got[3:]) and got[0].case.batch_size is None
    assert speed.batch_size_source == "config default" and got[0].batch_size_source == "none"
    assert (speed.seed, speed.seeds, speed.threads, speed.deterministic, speed.profile, speed.peak_tflops) == \
        (7, (3, 4), 2, True, True, 12.5)
    assert speed.options == {"k": "v"} and speed.data == {"set": str((tmp_path / "data").resolve())}
    assert (speed.timeout, speed.nproc, speed.torchrun_args, speed.requested_device) == \
        (33.0, 2, ("--nnodes", "2"), "cuda")
    assert [s.key for s in got[3:]] == [speed.case.slug, speed.case.slug + "/r1", speed.case.slug + "/r2"]
    # plan: the cases, once each
    assert runner.plan(reg.resolve(["toy-small"]), o, "cuda:1") == [got[0].case, speed.case]
    assert runner.plan(reg.resolve(["toy-small"]), opts(tmp_path), "cpu") == [specs(reg, ["toy-small"], opts(tmp_path))[0].case]
    # no --timeout: the scale's default
    assert specs(reg, ["toy-small"], opts(tmp_path))[0].timeout == opts(tmp_path).timeout_for()


def test_cases_planned_elsewhere_keep_their_batch_and_name_its_source(tmp_path):
    reg = toy_registry()
    o = opts(tmp_path)
    own = Case("toy", "toy-small", "speed", "smoke", "cpu", "float32", 2)
    other = dataclasses.replace(own, batch_size=64)
    fid = Case("toy", "toy-small", "fidelity", "smoke", "cpu", "float32", None)
    plain = Case("toy", "toy-plain", "speed", "smoke", "cpu", "float16", None)
    got = runner.specs_for_cases([own, other, fid, plain], o, reg)
    assert [(s.case, s.batch_size_source) for s in got] == [
        (own, "config default"), (other, "--batch-size"), (fid, "none"), (plain, "none")]
    assert got[3].case.dtype == "float16"


def test_run_case_process_plans_as_run_does_with_the_given_seed_and_workdir(tmp_path):
    reg = toy_registry()
    fake = FakeLauncher()
    case = Case("toy", "toy-small", "speed", "smoke", "cpu", "float32", 2)
    res = runner.run_case_process(case=case, opts=opts(tmp_path, threads=3, repeat=2), seed=11,
                                  workdir=tmp_path / "w", registry=reg, launcher=fake)
    assert res.status == "ok"
    (spec,) = fake.specs  # one process, however many repeats a run would make
    assert (spec.case, spec.seed, spec.workdir, spec.threads) == (case, 11, str(tmp_path / "w"), 3)
    assert spec.repeat_index == 0 and spec.key == case.slug


# ----------------------------------------------------------------------------------------- records
def test_a_record_keeps_the_result_and_says_how_the_case_was_run(tmp_path):
    reg = toy_registry()
    o = opts(tmp_path, repeat=2, seed=5, seeds=(1, 2), timeout=9.0)
    spec = specs(reg, ["toy-small"], o)[1]
    res = FakeLauncher(lambda s: "diverged").run(spec)
    rec = runner.build_record(spec=spec, res=res, run_id="RUN", entry=reg.config("toy-small"), suite_version="v1",
                              env=ENV)
    assert rec.record_id == f"RUN/{spec.case.slug}/r1" and rec.run_id == "RUN"
    assert (rec.status, rec.error, rec.suite_version, rec.env) == ("diverged", "diverged here", "v1", ENV)
    assert rec.info == {"from": "fake", "repeat_index": 1, "seed": 5, "timeout_s": 9.0,
                        "batch_size_source": "config default", "seeds": [1, 2]}
    assert rec.duration_s == 1.2346 and rec.started_at == "2026-01-01T00:00:00Z" and rec.ended_at.endswith("01Z")
    assert rec.config == {"batch_size": 8, "cpu_batch_size": 2} and rec.case == spec.case
    assert rec.metrics["train.step_time"].samples == (0.5, 0.25)
    bare = runner.build_record(specs(reg, ["toy-mapping"], opts(tmp_path))[0], CaseResult("failed"), run_id="R",
                               entry=reg.config("toy-mapping"), suite_version="v", env=ENV)
    assert bare.config == {"batch_size": 4} and bare.duration_s == 0.0 and "seeds" not in bare.info
    assert bare.started_at and bare.ended_at  # a case that returned no times still gets them


# ------------------------------------------------------------------------------------ batch search
def _oom_above(limit):
    return lambda spec: "ok" if spec.case.batch_size <= limit else "oom"


def test_the_batch_search_doubles_up_to_the_cap_inclusive_and_keeps_the_largest_that_ran(tmp_path):
    reg = toy_registry()
    spec = specs(reg, ["toy-small"], opts(tmp_path))[0]
    fake = FakeLauncher(_oom_above(4))
    chosen, res, hist = runner.find_max_batch(spec, fake.run, 16)
    assert chosen.case.batch_size == 4 and res.status == "ok" and chosen.batch_size_source == "--find-max-batch"
    assert hist == [{"batch_size": 1, "status": "ok", "error": None}, {"batch_size": 2, "status": "ok", "error": None},
                    {"batch_size": 4, "status": "ok", "error": None},
                    {"batch_size": 8, "status": "oom", "error": "oom here"}]
    # Everything fits: the cap itself is tried and kept.
    chosen, _, hist = runner.find_max_batch(spec, FakeLauncher().run, 8)
    assert [h["batch_size"] for h in hist] == [1, 2, 4, 8] and chosen.case.batch_size == 8
    chosen, _, hist = runner.find_max_batch(spec, FakeLauncher().run, 1)
    assert [h["batch_size"] for h in hist] == [1] and chosen.case.batch_size == 1
    # Nothing fits: the first (failed) trial is what the record shows.
    chosen, res, hist = runner.find_max_batch(spec, FakeLauncher(_oom_above(0)).run, 8)
    assert chosen.case.batch_size == 1 and res.status == "oom" and len(hist) == 1


def test_run_searches_the_batch_of_speed_cases_only_and_records_the_search(tmp_path):
    reg = toy_registry()
    o = opts(tmp_path, kinds=("fidelity", "speed"), find_max_batch=4)
    fake = FakeLauncher()
    res = runner.execute(specs(reg, ["toy-small"], o), o, reg, ENV, launcher=fake)
    fid, speed = sorted(res.records, key=lambda r: r.case.kind)
    assert fid.case.batch_size is None and "batch_search" not in fid.info
    assert speed.case.batch_size == 4 and speed.info["batch_size_source"] == "--find-max-batch"
    assert [h["batch_size"] for h in speed.info["batch_search"]] == [1, 2, 4]
    assert [s.case.batch_size for s in fake.specs] == [None, 1, 2, 4]
    plain = FakeLauncher()
    res = runner.execute(specs(reg, ["toy-small"], opts(tmp_path)), opts(tmp_path), reg, ENV, launcher=plain)
    assert [s.case.batch_size for s in plain.specs] == [2] and "batch_search" not in res.records[0].info


# -------------------------------------------------------------------------------------- run folder
def test_a_run_writes_each_record_and_the_manifest_and_reports_them_in_order(tmp_path):
    reg = toy_registry()
    o = opts(tmp_path, repeat=2)
    started, written = [], []
    s = specs(reg, ["toy-small", "toy-plain"], o)
    res = runner.execute(s, o, reg, ENV, run_id="RUN1", launcher=FakeLauncher(), on_start=started.append,
                         on_record=lambda rec, path: written.append((rec.record_id, path)))
    assert res.folder == tmp_path / "out" / "toy-machine" / "RUN1" and res.run_id == "RUN1"
    assert [r.record_id for r in res.records] == [f"RUN1/{x.key}" for x in s] == [w[0] for w in written]
    assert res.paths == [w[1] for w in written] and all(p.is_file() for p in res.paths)
    assert started == [x.case for x in s] and not res.interrupted and not res.unwritten
    assert len(records_in(res.folder)) == 4
    manifest = json.loads((res.folder / store.RUN_MANIFEST).read_text())
    assert manifest["run_id"] == "RUN1" and manifest["machine_id"] == "toy-machine"
    assert manifest["cases"] == [dataclasses.asdict(x.case) for x in s if x.repeat_index == 0]
    assert manifest["specs"] == [{"key": x.key, "batch_size_source": x.batch_size_source} for x in s]
    assert manifest["options"]["repeat"] == 2 and isinstance(manifest["options"]["out"], str)
    # The cases' work folders are gone, each as soon as its case ended.
    assert not (res.folder / runner.WORK_DIR).exists()
    assert not (res.folder / ".lock").exists()  # a finished run folder keeps no lock


def test_cases_given_as_cases_are_planned_and_run(tmp_path):
    reg = toy_registry()
    case = Case("toy", "toy-small", "speed", "smoke", "cpu", "float32", 6)
    fake = FakeLauncher()
    res = runner.execute(cases=[case], opts=opts(tmp_path), registry=reg, env=ENV, launcher=fake)
    assert [s.case for s in fake.specs] == [case] and res.records[0].info["batch_size_source"] == "--batch-size"


def test_work_folders_left_by_a_killed_run_are_cleared_and_each_case_starts_clean(tmp_path):
    reg = toy_registry()
    o = opts(tmp_path)
    folder = tmp_path / "run"
    (folder / runner.WORK_DIR / "left-over").mkdir(parents=True)
    fake = FakeLauncher()
    runner.execute(specs(reg, ["toy-small", "toy-plain"], o), o, reg, ENV, folder=folder, run_id="R", launcher=fake)
    assert fake.seen_work == [[], []]  # no left-over, and the first case's folder went before the second ran
    assert not (folder / runner.WORK_DIR).exists()
    assert [Path(s.workdir).parent for s in fake.specs] == [folder / runner.WORK_DIR] * 2
    assert len({s.workdir for s in fake.specs}) == 2


def test_checkpoints_are_kept_for_cases_that_did_not_finish_and_dropped_for_those_that_did(tmp_path):
    reg = toy_registry()
    o = opts(tmp_path, repeat=2)
    fake = FakeLauncher(lambda spec: "ok" if spec.repeat_index == 0 else "timeout")
    res = runner.execute(specs(reg, ["toy-small"], o), o, reg, ENV, launcher=fake)
    done, timed_out = (Path(s.checkpoint_dir) for s in fake.specs)
    assert done.parent == timed_out.parent == res.folder / runner.CHECKPOINT_DIR and done != timed_out
    assert "/" not in done.name and "/" not in timed_out.name  # a repeat's key is a slug, one folder
    assert not done.exists()
    assert (timed_out / "step.pt").read_bytes() == b"ckpt"  # --resume continues from it
    assert [r.status for r in res.records] == ["ok", "timeout"]


def test_an_interrupted_case_stops_the_run_with_its_record_written(tmp_path):
    reg = toy_registry()
    o = opts(tmp_path)
    fake = FakeLauncher(lambda spec: "interrupted" if spec.case.config == "toy-small" else "ok")
    res = runner.execute(specs(reg, ["toy-small", "toy-plain"], o), o, reg, ENV, launcher=fake)
    assert res.interrupted and [r.status for r in res.records] == ["interrupted"] and len(fake.specs) == 1
    assert [r.status for r in records_in(res.folder)] == ["interrupted"]


def test_resume_skips_finished_cases_reruns_interrupted_ones_and_keeps_their_old_record_aside(tmp_path):
    reg = toy_registry()
    o = opts(tmp_path)
    s = specs(reg, ["toy-small", "toy-plain", "toy-mapping"], o)
    first = runner.execute(s, o, reg, ENV, run_id="R", launcher=FakeLauncher(
        lambda spec: "interrupted" if spec.case.config == "toy-plain" else "ok"))
    assert [r.case.config for r in first.records] == ["toy-small", "toy-plain"]
    manifest = (first.folder / store.RUN_MANIFEST).read_text()
    (first.folder / "not-a-record.json").write_text("{broken")
    again = FakeLauncher()
    second = runner.execute(s, o, reg, ENV, run_id="R", folder=first.folder, resume=True, launcher=again)
    assert [x.case.config for x in again.specs] == ["toy-plain", "toy-mapping"]
    assert [(r.case.config, r.status) for r in second.records] == [("toy-plain", "ok"), ("toy-mapping", "ok")]
    assert sorted((r.case.config, r.status) for r in records_in(first.folder)) == [
        ("toy-mapping", "ok"), ("toy-plain", "ok"), ("toy-small", "ok")]
    aside = list((first.folder / runner.SUPERSEDED_DIR).glob("*.json"))
    assert [store.read_record(a).status for a in aside] == ["interrupted"]
    assert (first.folder / store.RUN_MANIFEST).read_text() == manifest  # written once, by the first run
    # Without --resume every case runs again, even in a folder that has their records.
    fresh = FakeLauncher()
    runner.execute(s, o, reg, ENV, run_id="R", folder=first.folder, launcher=fresh)
    assert len(fresh.specs) == 3


def test_interrupted_records_are_found_by_key_and_other_files_are_ignored(tmp_path):
    reg = toy_registry()
    o = opts(tmp_path, repeat=2)
    s = specs(reg, ["toy-small"], o)
    res = runner.execute(s, o, reg, ENV, run_id="R", launcher=FakeLauncher(
        lambda spec: "interrupted" if spec.repeat_index == 1 else "ok"))
    (res.folder / "junk.json").write_text("[]")
    found = runner.interrupted_records(res.folder)
    assert list(found) == [s[1].key] and found[s[1].key] == res.paths[1]


def test_a_run_folder_is_held_by_one_runner_at_a_time(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    with runner.RunLock(folder) as lock:
        assert (folder / runner.LOCK_FILE).read_text() == str(os.getpid())
        assert os.stat(folder / runner.LOCK_FILE).st_mode & 0o777 == 0o644 & ~_umask()
        with pytest.raises(UsageError, match="being run or resumed by another process"):
            with runner.RunLock(folder):
                pass
        with pytest.raises(UsageError):
            runner.execute([], opts(tmp_path), toy_registry(), ENV, folder=folder, launcher=FakeLauncher())
        assert lock.fd is not None
    with runner.RunLock(folder):  # released on exit
        pass


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


# ------------------------------------------------------------------------------------------- writes
def test_a_failed_write_is_retried_with_growing_pauses(tmp_path, monkeypatch):
    reg = toy_registry()
    o = opts(tmp_path)
    real, calls, sleeps = store.save_record, [], []

    def flaky(folder, rec, **kw):
        calls.append(kw)
        if len(calls) < runner.WRITE_RETRIES:
            raise OSError(28, "No space left on device")
        return real(folder, rec, **kw)

    monkeypatch.setattr(store, "save_record", flaky)
    monkeypatch.setattr(runner.time, "sleep", sleeps.append)
    res = runner.execute(specs(reg, ["toy-small"], o), o, reg, ENV, launcher=FakeLauncher())
    assert len(calls) == runner.WRITE_RETRIES == 3 and sleeps == [0.5, 1.0]
    assert calls[0] == {"record_host": False} and res.paths[0].is_file()


def test_a_record_that_cannot_be_written_stops_the_run_and_says_how_to_resume(tmp_path, monkeypatch):
    reg = toy_registry()
    o = opts(tmp_path, record_host=True)
    calls = []

    def full(folder, rec, **kw):
        calls.append(kw)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "save_record", full)
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    fake = FakeLauncher()
    s = specs(reg, ["toy-small", "toy-plain"], o)
    with pytest.raises(runner.UnwrittenRecords) as e:
        runner.execute(s, o, reg, ENV, run_id="RX", launcher=fake)
    msg = str(e.value)
    assert s[0].case.slug in msg and "(No space left on device); the run stopped" in msg
    assert f"milestones run --resume RX --out {o.out}" in msg and str(tmp_path / "out" / "toy-machine" / "RX") in msg
    assert len(calls) == runner.WRITE_RETRIES and calls[0] == {"record_host": True}
    assert len(fake.specs) == 1 and e.value.exit_code == 1


def test_a_case_that_never_made_its_folders_still_gets_its_record(tmp_path):
    reg = toy_registry()
    o = opts(tmp_path)
    s = specs(reg, ["toy-small", "toy-plain"], o)
    res = runner.execute(s, o, reg, ENV, launcher=FakeLauncher(make_dirs=False))
    assert [r.status for r in res.records] == ["ok", "ok"] and len(records_in(res.folder)) == 2
    manifest = json.loads((res.folder / store.RUN_MANIFEST).read_text())
    assert manifest["cases"] == [dataclasses.asdict(x.case) for x in s]  # one repeat: every case


def test_a_resume_sets_aside_every_interrupted_record(tmp_path):
    reg = toy_registry()
    o = opts(tmp_path)
    s = specs(reg, ["toy-small", "toy-plain", "toy-mapping"], o)
    first = runner.execute(s, o, reg, ENV, run_id="R", launcher=FakeLauncher())
    for rec, path in list(zip(first.records, first.paths, strict=True))[:2]:
        path.unlink()
        store.write_record(first.folder, dataclasses.replace(rec, status="interrupted", error="interrupted"))
    again = FakeLauncher()
    runner.execute(s, o, reg, ENV, run_id="R", folder=first.folder, resume=True, launcher=again)
    assert [x.case.config for x in again.specs] == ["toy-small", "toy-plain"]
    aside = sorted(store.read_record(a).case.config for a in (first.folder / runner.SUPERSEDED_DIR).glob("*.json"))
    assert aside == ["toy-plain", "toy-small"]
    assert sorted(r.status for r in records_in(first.folder)) == ["ok", "ok", "ok"]


def test_an_unwritable_record_without_an_os_error_names_the_error(tmp_path, monkeypatch):
    reg = toy_registry()
    o = opts(tmp_path)

    def refused(folder, rec, **kw):
        raise UsageError("results folder is read-only here")

    monkeypatch.setattr(store, "save_record", refused)
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    with pytest.raises(runner.UnwrittenRecords, match=r"\(results folder is read-only here\); the run stopped"):
        runner.execute(specs(reg, ["toy-small"], o), o, reg, ENV, launcher=FakeLauncher())


def test_every_interrupted_record_is_found_whatever_the_order_of_the_files(tmp_path):
    """The manifest and unreadable files are skipped wherever the folder listing puts them."""
    reg = toy_registry()
    o = opts(tmp_path, repeat=8)
    s = specs(reg, ["toy-small"], o)
    res = runner.execute(s, o, reg, ENV, run_id="R", launcher=FakeLauncher(lambda spec: "ok"))
    for rec, path in zip(res.records, res.paths, strict=True):
        if rec.info["repeat_index"] % 2:
            path.unlink()
            store.write_record(res.folder, dataclasses.replace(rec, status="interrupted", error="interrupted"))
    for i in range(8):
        (res.folder / f"corrupt-{i}.json").write_text("{")
    found = runner.interrupted_records(res.folder)
    assert sorted(found) == sorted(x.key for x in s if x.repeat_index % 2)
    again = FakeLauncher()
    runner.execute(s, o, reg, ENV, run_id="R", folder=res.folder, resume=True, launcher=again)
    assert sorted(x.repeat_index for x in again.specs) == [1, 3, 5, 7]
    assert len(list((res.folder / runner.SUPERSEDED_DIR).glob("*.json"))) == 4
