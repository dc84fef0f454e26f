"""`milestones submit` / `milestones jobs`: grouping, options and the stop policy without Slurm; then the
whole path against a live single-node Slurm cluster (tests/slurm_cluster.py) started by this module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from milestones.harness.errors import UsageError
from milestones.harness.launch import slurm
from milestones.harness.launch.spec import CaseResult, CaseSpec
from milestones.harness.records import Case
from tests import slurm_cluster

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------- without Slurm
def test_groups_fill_the_time_budget_in_order():
    refs = [slurm.CaseRef(f"c{i}", "speed") for i in range(5)]
    secs = dict(zip(refs, [50.0, 50.0, 30.0, 200.0, 10.0]))
    groups = slurm.group_cases(refs, secs, budget_s=100.0)
    assert [[r.config for r in g] for g in groups] == [["c0", "c1"], ["c2"], ["c3"], ["c4"]]


def test_estimates_come_from_earlier_ok_records(tmp_path):
    run = tmp_path / "m" / "r1"
    run.mkdir(parents=True)
    for i, (status, d) in enumerate([("ok", 10.0), ("ok", 30.0), ("failed", 900.0)]):
        (run / f"{i}.json").write_text(json.dumps({"case": {"config": "a", "kind": "speed", "scale": "smoke"},
                                                   "status": status, "duration_s": d}))
    (run / "_run.json").write_text("{}")
    a, b = slurm.CaseRef("a", "speed"), slurm.CaseRef("b", "speed")
    est = slurm.estimate_seconds([a, b], "smoke", tmp_path, repeat=2)
    assert est == {a: 40.0, b: 2 * slurm.DEFAULT_CASE_S["smoke"]}


def test_time_limit_too_short_is_one_line():
    with pytest.raises(UsageError, match="--slurm-time 1 min leaves no time"):
        slurm.group_budget(1, 120)


def _settings(**kw):
    base = {"partition": {}, "constraint": {}, "env": {}, "gpus": None}
    return {**base, **kw}


def test_machine_types_from_partitions_and_constraints():
    ms = slurm.machine_types(_settings(partition={"a100": "gpu-a100"}, constraint={"h100": "h100", "a100": "sxm"},
                                       env={"h100": {"X": "1"}}))
    assert [(m.name, m.partition, m.constraint, m.env) for m in ms] == [
        ("a100", "gpu-a100", "sxm", ()), ("h100", None, "h100", (("X", "1"),))]
    with pytest.raises(UsageError, match="needs a machine type"):
        slurm.machine_types(_settings())
    with pytest.raises(UsageError, match="env names machine type 'v100'"):
        slurm.machine_types(_settings(partition={"a100": "p"}, env={"v100": {}}))
    with pytest.raises(UsageError, match="must be letters"):
        slurm.machine_types(_settings(partition={"a/100": "p"}))


@pytest.mark.slow
def test_cli_flags_and_run_file(tmp_path, cli):
    from milestones.harness.cli import build_parser
    from milestones.harness.options import slurm_from_namespace

    f = tmp_path / "run.toml"
    f.write_text('[run]\nscale = "smoke"\n[slurm]\npartition = {a100 = "gpu-a100"}\ntime = 30\n'
                 '[slurm.env.a100]\nMILESTONES_MACHINE_ID = "x"\n')
    ns = build_parser().parse_args(["submit", "--config", str(f), "--slurm-partition", "a100=p1,h100=p2",
                                    "--slurm-gpus", "0"])
    s = slurm_from_namespace(ns)
    assert (s["partition"], s["time_min"], s["gpus"], s["env"]) == (
        {"a100": "p1", "h100": "p2"}, 30, 0, {"a100": {"MILESTONES_MACHINE_ID": "x"}})
    bad = cli("submit", "fake-ok", "--slurm-partition", "a100")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == ["milestones: error: --slurm-partition must be TYPE=NAME pairs, "
                                               "e.g. a100=gpu-a100,h100=gpu-h100, not 'a100'"]
    none = cli("submit", "fake-ok")
    assert none.returncode == 2 and "needs a machine type" in none.stderr
    nodes = cli("submit", "fake-ok", "--slurm-partition", "a=b", "--nproc", "8", "--nnodes", "2")
    assert nodes.returncode == 2 and "runs each job on one node" in nodes.stderr
    f.write_text('[slurm]\npartitoin = "a=b"\n')
    typo = cli("submit", "fake-ok", "--config", str(f))
    assert typo.returncode == 2 and "unknown key 'partitoin' in [slurm]" in typo.stderr


def test_sbatch_parameters_per_machine_type():
    m = slurm.MachineType("h100", partition="gpu", constraint="h100")
    settings = _settings(time_min=90, signal_s=120, cpus=16, account=None, qos="high")
    assert slurm.sbatch_parameters(m, settings, gpus=8) == {
        "job_name": "milestones-h100", "time": 90, "signal_delay_s": 120, "stderr_to_stdout": True,
        "partition": "gpu", "constraint": "h100", "cpus_per_task": 16, "qos": "high", "gpus_per_node": 8}

    class Opts:
        device, nproc = "auto", 4
    assert slurm.gpus_per_job(_settings(), Opts) == 4
    Opts.device = "cpu"
    assert slurm.gpus_per_job(_settings(), Opts) == 0
    assert slurm.gpus_per_job(_settings(gpus=2), Opts) == 2


class _Inner:
    """A case launcher whose case 'runs' until a signal handler fires inside it."""

    def __init__(self, stop: slurm.StopSignal, signum: int | None, result: CaseResult | None = None):
        self.stop, self.signum, self.result, self.calls = stop, signum, result, 0

    def run(self, spec):
        self.calls += 1
        if self.signum is not None:
            self.stop.handler(self.signum, None)  # raises JobStop: a case in flight
        return self.result


def _spec(tmp_path, checkpoint=False):
    ck = tmp_path / "ck"
    if checkpoint:
        ck.mkdir()
        (ck / "state.pt").write_text("x")
    return CaseSpec(case=Case("fake", "fake-ok", "speed", "smoke", "cpu", "float32", 2), checkpoint_dir=str(ck))


@pytest.mark.parametrize("signum,checkpoint,status,words", [
    (signal.SIGTERM, False, "interrupted", "cancelled or preempted (SIGTERM) while the case ran"),
    (signal.SIGUSR2, False, "timeout", "time-limit warning"),
    (signal.SIGUSR2, True, "interrupted", "it checkpointed: --resume continues it"),
])
def test_a_stop_signal_records_the_case_in_flight_and_the_rest(tmp_path, signum, checkpoint, status, words):
    stop = slurm.StopSignal()
    launcher = slurm.StoppableLauncher(_Inner(stop, signum), stop, "77", time_min=60)
    res = launcher.run(_spec(tmp_path, checkpoint))
    assert res.status == status and words in res.error and "Slurm job 77" in res.error
    assert res.info["slurm_stop"]["signal"] == signal.Signals(signum).name
    after = launcher.run(_spec(tmp_path))
    assert after.status == "interrupted" and after.error.startswith("not started: Slurm job 77")
    assert launcher.inner.calls == 1  # the case after the signal never started


def test_a_stop_that_breaks_the_case_launcher_is_still_recorded(tmp_path):
    stop = slurm.StopSignal()

    class Broken:
        def run(self, spec):
            stop.signum = signal.SIGTERM  # Slurm signalled the fork server too: waiting on it fails
            raise RuntimeError("the fork server exited")

    res = slurm.StoppableLauncher(Broken(), stop, "3", time_min=60).run(_spec(tmp_path))
    assert res.status == "interrupted" and "cancelled or preempted" in res.error
    assert "the fork server exited" in res.info["slurm_stop"]["case_error"]
    with pytest.raises(RuntimeError):  # without a stop, a broken launcher is a bug, not a record
        slurm.StoppableLauncher(Broken(), slurm.StopSignal(), "3", time_min=60).run(_spec(tmp_path))


def test_a_case_that_finished_before_the_signal_keeps_its_result(tmp_path):
    stop = slurm.StopSignal()
    ok = CaseResult(status="ok")
    launcher = slurm.StoppableLauncher(_Inner(stop, None, ok), stop, "5", time_min=60)
    assert launcher.run(_spec(tmp_path)) is ok
    stop.handler(signal.SIGTERM, None)  # between cases: recorded, not raised
    assert stop.name == "SIGTERM" and launcher.run(_spec(tmp_path)).status == "interrupted"


def test_sigterm_at_the_time_limit_is_a_timeout(tmp_path):
    stop = slurm.StopSignal()
    launcher = slurm.StoppableLauncher(_Inner(stop, signal.SIGTERM), stop, "9", time_min=1,
                                       started=time.time() - 61)
    res = launcher.run(_spec(tmp_path))
    assert res.status == "timeout" and "reached its time limit (1 min)" in res.error


# ------------------------------------------------------------------------------------ a live Slurm
@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    why = slurm_cluster.missing()
    if why:
        pytest.skip(why)
    c = slurm_cluster.Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
    except RuntimeError as e:
        c.stop()
        pytest.fail(f"the test Slurm cluster did not start: {e}")
    yield c
    c.stop()


RUN_FILE = """\
[run]
scale = "smoke"
kind = "fidelity,speed"
device = "cpu"
threads = 1
"""
TWO_TYPES = """\
[slurm]
partition = {a100 = "a100", h100 = "h100"}
time = TIME
[slurm.env.a100]
MILESTONES_MACHINE_ID = "test-a100"
[slurm.env.h100]
MILESTONES_MACHINE_ID = "test-h100"
"""


@pytest.fixture
def submit(cluster, tmp_path):
    def run(*args, time_min=10, env=None, timeout=600):
        f = tmp_path / "run.toml"
        two = "--slurm-partition" not in args  # else the flag names the one machine type
        f.write_text(RUN_FILE + (TWO_TYPES.replace("TIME", str(time_min)) if two else ""))
        e = {**os.environ, **cluster.env, **(env or {})}
        e.pop("MILESTONES_MACHINE_ID", None)
        return subprocess.run(["milestones", *args, *(["--config", str(f)] if args[0] == "submit" else [])],
                              capture_output=True, text=True, timeout=timeout, env=e, cwd=ROOT)
    return run


def _submission(out: Path) -> Path:
    (sub,) = (out / ".slurm").iterdir()
    return sub


def _records(out: Path) -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(out.glob("*/*/*.json"))
            if f.name != "_run.json" and not f.relative_to(out).parts[0].startswith(".")]


@pytest.mark.slow
@pytest.mark.xdist_group("slurm")  # one worker starts the one cluster (a session fixture)
def test_a_two_partition_matrix_comes_back_merged_and_compared(submit, tmp_path, cluster):
    out = tmp_path / "results"
    cases = ["adam-reference", "gan-mnist", "fake-ok", "fake-crash"]
    # 5 min per job, less the 120 s warning and 60 s start, fits two cases of ~60 s (no earlier records):
    # two jobs per machine type.
    r = submit("submit", *cases, "--out", str(out), "--wait", "--poll", "1", time_min=5)
    assert r.returncode == 1, r.stdout + r.stderr  # fake-crash fails, by design
    sub = json.loads((_submission(out) / "submission.json").read_text())
    assert sorted(j["machine_type"] for j in sub["jobs"]) == ["a100", "a100", "h100", "h100"]
    assert "records to " in r.stdout and "re-attach: milestones jobs" in r.stdout
    done = {ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("  job ") and "COMPLETED" in ln}
    assert done == {j["job_id"] for j in sub["jobs"]}, r.stdout
    scripts = [f.read_text() for f in (_submission(out) / "logs").rglob("*_submission.sh")]
    assert len(scripts) == 2  # one job array per machine type
    assert sorted(t for part in ("a100", "h100") for t in scripts if f"#SBATCH --partition={part}\n" in t) == sorted(scripts)
    assert all("#SBATCH --time=5\n" in t and "--signal=USR2@120" in t and "#SBATCH --array=0-1" in t for t in scripts)
    recs = _records(out)
    got = {(rec["env"]["machine_id"], rec["case"]["config"]): rec["status"] for rec in recs}
    assert got == {(m, c): ("failed" if c == "fake-crash" else "ok") for m in ("test-a100", "test-h100")
                   for c in cases}
    assert {rec["env"]["slurm"]["partition"] for rec in recs} == {"a100", "h100"}
    merged = tmp_path / "merged"
    m = submit("merge", str(out), "--out", str(merged))
    assert m.returncode == 0 and "merged 8 record(s) from 2 machine(s)" in m.stdout, m.stderr
    c = submit("compare", "--by", "machine", str(merged))
    assert c.returncode == 0, c.stderr
    assert "test-a100" in c.stdout and "test-h100" in c.stdout
    again = submit("jobs", str(_submission(out)))  # re-attached after the submitting command exited
    assert again.returncode == 1 and again.stdout.count("COMPLETED") == 4


@pytest.mark.slow
@pytest.mark.xdist_group("slurm")  # one worker starts the one cluster (a session fixture)
def test_a_cancelled_job_leaves_interrupted_records(submit, tmp_path, cluster):
    out, started = tmp_path / "results", tmp_path / "slow-started"
    r = submit("submit", "fake-slow", "fake-ok", "--kind", "speed", "--option", "sleep=300", "--out", str(out),
               "--slurm-partition", "a100=a100", env={"FAKE_SLOW_STARTED": str(started)})
    assert r.returncode == 0, r.stdout + r.stderr
    sub = _submission(out)
    t_end = time.monotonic() + 240
    while not started.exists() and time.monotonic() < t_end:
        time.sleep(0.5)
    assert started.exists(), submit("jobs", str(sub)).stdout + cluster.logs()
    c = submit("jobs", str(sub), "--cancel", "--wait", "--poll", "1")
    assert c.returncode == 1 and "CANCELLED" in c.stdout, c.stdout + c.stderr
    by = {rec["case"]["config"]: rec for rec in _records(out)}
    assert set(by) == {"fake-slow", "fake-ok"}
    assert by["fake-slow"]["status"] == "interrupted"
    assert "cancelled or preempted (SIGTERM) while the case ran" in by["fake-slow"]["error"]
    assert by["fake-ok"]["status"] == "interrupted" and by["fake-ok"]["error"].startswith("not started:")
    assert "[2 interrupted]; stopped by SIGTERM" in c.stdout, c.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("slurm")  # one worker starts the one cluster (a session fixture)
def test_a_job_that_cannot_start_is_reported_with_slurms_reason(submit, tmp_path, cluster):
    out = tmp_path / "results"
    r = submit("submit", "fake-ok", "--kind", "speed", "--out", str(out), "--slurm-partition",
               "a100=" + slurm_cluster.DOWN_PARTITION, "--wait", "--poll", "0.5")
    assert r.returncode == 1
    assert "PENDING (PartitionDown): will not start" in r.stdout, r.stdout
    assert r.stderr.strip().splitlines()[-1].endswith(": PartitionDown")
    c = submit("jobs", str(_submission(out)), "--cancel")
    assert c.returncode == 0 and "cancelled 1 job(s)" in c.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("slurm")  # one worker starts the one cluster (a session fixture)
def test_sbatch_refusing_a_partition_is_one_line(submit, tmp_path):
    r = submit("submit", "fake-ok", "--kind", "speed", "--out", str(tmp_path / "results"),
               "--slurm-partition", "a100=no-such-partition")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("milestones: error: sbatch refused the jobs of machine type a100 "
                           "(partition no-such-partition):") and "invalid partition" in line.lower()


@pytest.mark.slow
@pytest.mark.xdist_group("slurm")  # one worker starts the one cluster (a session fixture)
def test_a_time_limit_warning_records_a_timeout_and_requeues_the_rest(submit, tmp_path, cluster):
    """Slurm's warning before the time limit is SIGUSR2 (submitit's --signal); sent here by scancel, as
    the scheduler would. The case in flight kept no checkpoint: `timeout`; the case after it is left
    interrupted, so the job is requeued through submitit and the requeued job runs it."""
    out, started = tmp_path / "results", tmp_path / "slow-started"
    r = submit("submit", "fake-slow", "fake-ok", "--kind", "speed", "--option", "sleep=300", "--out", str(out),
               "--slurm-partition", "a100=a100", env={"FAKE_SLOW_STARTED": str(started)})
    assert r.returncode == 0, r.stdout + r.stderr
    sub = _submission(out)
    (job,) = json.loads((sub / "submission.json").read_text())["jobs"]
    t_end = time.monotonic() + 240
    while not started.exists() and time.monotonic() < t_end:
        time.sleep(0.5)
    assert started.exists(), submit("jobs", str(sub)).stdout + cluster.logs()
    assert cluster.run("scancel", "--signal=USR2", job["job_id"]).returncode == 0
    w = submit("jobs", str(sub), "--wait", "--poll", "1")
    assert "COMPLETED" in w.stdout, w.stdout + w.stderr
    by = {rec["case"]["config"]: rec for rec in _records(out)}
    assert by["fake-slow"]["status"] == "timeout" and "time-limit warning" in by["fake-slow"]["error"]
    assert by["fake-ok"]["status"] == "ok" and by["fake-ok"]["env"]["slurm"]["restarts"] == 1
    (superseded,) = (out).glob("*/*/.superseded/*.json")
    assert json.loads(superseded.read_text())["error"].startswith("not started: Slurm job")


@pytest.mark.slow
@pytest.mark.xdist_group("slurm")  # one worker starts the one cluster (a session fixture)
def test_nproc_runs_torchrun_inside_the_allocation(submit, tmp_path):
    out = tmp_path / "results"
    r = submit("submit", "parallel-alexnet-smoke", "--kind", "speed", "--nproc", "2", "--slurm-cpus", "2",
               "--timeout", "400", "--out", str(out), "--slurm-partition", "h100=h100", "--wait", "--poll", "1")
    (rec,) = _records(out)
    assert r.returncode == 0 and rec["status"] == "ok", r.stdout + r.stderr + str(rec.get("error"))
    assert rec["info"]["world_size"] == 2 and rec["env"]["slurm"]["machine_type"] == "h100"
    assert "dp.train.scaling_efficiency" in rec["metrics"]
