"""The torchrun launcher (milestones.harness.launch.torchrun): the gathered record (pure), the command line, and a crashed rank under real torchrun."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from milestones.harness.cli import build_parser, build_run_options
from milestones.harness.launch import torchrun as distributed
from milestones.harness.records import Metric


def _m(name, unit, hib, xs):
    return Metric.from_values(name, unit, hib, xs).to_dict()


def _rank(times, batch=4, schemes=("ddp",)):
    return {"status": "ok", "error": None, "info": {"data_parallel_schemes": list(schemes), "threads": 1},
            "artifacts": {}, "metrics": {
                "train.step_time": _m("train.step_time", "s", False, times),
                "train.throughput": _m("train.throughput", "images/s", True, [batch / t for t in times]),
                "train.flops": _m("train.flops", "FLOP", False, [100.0])}}


def test_gather_record_takes_slowest_rank_per_iteration_and_computes_efficiency():
    single = _rank([0.1, 0.1, 0.1])
    ranks = [_rank([0.2, 0.1, 0.4]), _rank([0.1, 0.25, 0.2])]
    ar = [{"ddp": {"samples": [0.01, 0.02], "elements": 10, "bytes": 40, "dtype": "float32"}},
          {"ddp": {"samples": [0.03, 0.01], "elements": 10, "bytes": 40, "dtype": "float32"}}]
    out = distributed.gather_record(single, ranks, allreduce=ar)
    m = out["metrics"]
    assert out["status"] == "ok"
    assert m["train.step_time"]["samples"] == pytest.approx([0.2, 0.25, 0.4])
    assert m["train.throughput"]["samples"] == pytest.approx([8 / 0.2, 8 / 0.25, 8 / 0.4])
    # throughput at 1 = 40 images/s, so efficiency = thr_N / (2 * 40)
    assert m["train.scaling_efficiency"]["samples"] == pytest.approx([40 / 80, 32 / 80, 20 / 80])
    assert m["rank0.train.step_time"]["samples"] == pytest.approx([0.2, 0.1, 0.4])
    assert m["rank1.train.step_time"]["samples"] == pytest.approx([0.1, 0.25, 0.2])
    assert m["single.train.throughput"]["samples"] == pytest.approx([40, 40, 40])
    assert m["allreduce.time"]["samples"] == pytest.approx([0.03, 0.02])
    assert m["allreduce.bus_bandwidth"]["samples"] == pytest.approx([40 / 0.03, 40 / 0.02])
    assert out["info"]["slowest_rank"] == {"train": 0}  # median 0.2 vs 0.2 -> first; rank 0 has the 0.4
    assert out["info"]["world_size"] == 2


def test_gather_record_names_a_failed_rank_and_refuses_efficiency_without_data_parallelism():
    ok, bad = _rank([0.1]), {"status": "oom", "error": "OutOfMemoryError: x", "metrics": {}, "info": {}}
    out = distributed.gather_record(None, [ok, bad])
    assert (out["status"], out["info"]["failed_rank"]) == ("oom", 1)
    assert out["error"].startswith("rank 1:")
    indep = distributed.gather_record(_rank([0.1], schemes=()), [_rank([0.1], schemes=()), _rank([0.1], schemes=())])
    eff = indep["metrics"]["train.scaling_efficiency"]
    assert eff["samples"] == [] and "independently" in eff["note"]


def test_cli_passes_nproc_and_rendezvous_options_to_torchrun():
    args = build_parser().parse_args(["run", "parallel-alexnet-smoke", "--nproc", "4", "--nnodes", "2",
                                      "--node-rank", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", "h0:29400",
                                      "--rdzv-id", "job7"])
    opts, _ = build_run_options(args)
    assert opts.nproc == 4
    assert opts.torchrun_args == ("--nnodes", "2", "--node-rank", "1", "--rdzv-backend", "c10d",
                                  "--rdzv-endpoint", "h0:29400", "--rdzv-id", "job7")
    cmd = distributed.torchrun_command(Path("s.json"), Path("r.json"), nproc=4, torchrun_args=opts.torchrun_args)
    assert cmd[1:4] == ["-m", "milestones.harness.launch.torchrun", "launch"]
    assert cmd[cmd.index("--") + 1:][:2] == ["--nproc-per-node", "4"] and "--rdzv-endpoint" in cmd
    assert distributed.wants_torchrun("speed", 4) and not distributed.wants_torchrun("fidelity", 4)
    assert not distributed.wants_torchrun("speed", 1)
    assert distributed.wants_torchrun("quality", 2) and not distributed.wants_torchrun("quality", 1)
    assert distributed.wants_torchrun("speed", 1, ("--nnodes", "2"))


def test_lockstep_timing_is_count_based():
    t = distributed.lockstep_timing(None, "smoke")
    assert t["min_iters"] == t["max_iters"] >= distributed.LOCKSTEP_MIN_ITERS
    assert t["min_time"] == 0.0 and t["warmup_time"] == 0.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.slow
def test_a_crashed_rank_is_named_in_the_record_and_the_run_ends_cleanly(tmp_path):
    from milestones.harness import env as envmod
    from milestones.harness import runner
    from milestones.harness.registry import load_suites

    reg = load_suites()
    # A hang would end as status "timeout" (and fail this test), not block it.
    opts = runner.RunOptions(kinds=("speed",), nproc=2, out=tmp_path, timeout=240,
                             options={"crash_rank": "1"})
    cases = runner.plan([reg.config("parallel-gpt-fsdp-smoke")], opts, "cpu")
    res = runner.execute(cases, opts, reg, envmod.capture())
    (rec,) = res.records
    assert rec.status == "failed", rec.error
    assert rec.info["failed_rank"] == 1
    assert rec.error.startswith("rank 1 failed:") and "deliberate crash of rank 1" in rec.error
    rows = {r["rank"]: r for r in rec.info["failed_ranks"]}
    assert "deliberate crash" in rows[1]["traceback"]
    for r in rows.values():  # no rank outlives the run
        assert not _alive(r["pid"]), f"rank {r['rank']} (pid {r['pid']}) is still running"


@pytest.mark.slow
def test_a_quality_case_trains_once_on_every_rank(tmp_path):
    from milestones.harness import env as envmod
    from milestones.harness import runner
    from milestones.harness.registry import load_suites

    reg = load_suites()
    opts = runner.RunOptions(kinds=("quality",), scale="proxy", nproc=2, out=tmp_path, timeout=240, seeds=(5,))
    res = runner.execute(runner.plan([reg.config("fake-ok")], opts, "cpu"), opts, reg, envmod.capture())
    (rec,) = res.records
    assert rec.status == "ok", rec.error
    assert rec.info["world_size"] == 2 and rec.info["single_process"] is None  # no single-process run first
    assert rec.metrics["value"].samples == rec.metrics["rank0.value"].samples
    assert "rank1.value" in rec.metrics and rec.info["quality_seeds"] == [5]
