"""The torchrun launcher: a speed case on N ranks per node (and several nodes), one record per case.

`milestones run --nproc N` starts each speed case as

    python -m milestones.harness.launch.torchrun launch SPEC RESULT -- <torchrun options>
      -> torch.distributed.run (torchrun itself, through its Python entry) starts N ranks of
         python -m milestones.harness.launch.torchrun rank SPEC RESULT

Every rank reads the same CaseSpec and runs the worker's run_spec with the process group up (NCCL on
GPUs, gloo on CPUs); suites take part through milestones.harness.ranks. Before the process group starts,
rank 0 runs the same case alone (same per-rank batch, same threads): that is the "throughput at 1" of
the scaling efficiency. After the case, a gradient-sized all-reduce is timed on its own. Rank 0 gathers
every rank's samples and writes the one result; a rank that fails makes every rank stop (torchrun tears
the group down), and the launcher writes a result naming that rank.

Timing under a process group is count-based (a fixed number of warm-up and timed iterations), never
time-based: ranks that stopped after different numbers of steps would wait forever in a collective.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import signal
import socket
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from milestones.harness import ranks as _ranks

# torchrun options passed through from `milestones run` (flag name -> RunOptions/argparse attribute).
RENDEZVOUS_FLAGS = {"--nnodes": "nnodes", "--node-rank": "node_rank", "--rdzv-backend": "rdzv_backend",
                    "--rdzv-endpoint": "rdzv_endpoint", "--rdzv-id": "rdzv_id", "--master-addr": "master_addr",
                    "--master-port": "master_port"}
PG_TIMEOUT_ENV = "MILESTONES_PG_TIMEOUT"
LOCKSTEP_MIN_ITERS = 5
SUCCESS = ("ok", "skipped")


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def wants_torchrun(kind: str, nproc: int, torchrun_args: Sequence[str] = ()) -> bool:
    """Speed and quality cases run under torchrun when asked (a paper's multi-GPU training, e.g. the
    One-weird-trick table); fidelity needs no training."""
    return (nproc > 1 or bool(torchrun_args)) and kind in ("speed", "quality")


def wanted(spec: Any) -> bool:
    return wants_torchrun(spec.case.kind, spec.nproc, spec.torchrun_args)


def command(python: str, spec: Any, spec_path: Path, result_path: Path) -> list[str]:
    return torchrun_command(spec_path, result_path, nproc=spec.nproc, torchrun_args=spec.torchrun_args,
                            timeout=spec.timeout, python=python)


def rendezvous_args(ns: Any) -> tuple[str, ...]:
    """torchrun's rendezvous options from an argparse namespace with the attributes of RENDEZVOUS_FLAGS."""
    out: list[str] = []
    for flag, attr in RENDEZVOUS_FLAGS.items():
        v = getattr(ns, attr, None)
        if v is not None:
            out += [flag, str(v)]
    return tuple(out)


def torchrun_command(spec_path: Path, result_path: Path, *, nproc: int, torchrun_args: Sequence[str] = (),
                     timeout: float = 900.0, python: str | None = None) -> list[str]:
    """The case-process command for N ranks: our launcher around torch.distributed.run."""
    return [python or sys.executable, "-m", "milestones.harness.launch.torchrun", "launch", str(spec_path), str(result_path),
            "--pg-timeout", f"{timeout:g}", "--", "--nproc-per-node", str(nproc), *torchrun_args]


# ------------------------------------------------------------------------------- gathering the record
def _metric(name: str, d: dict[str, Any]):
    from milestones.harness.records import Metric

    return Metric.from_dict(name, d)


def _median(xs: Sequence[float]) -> float | None:
    from milestones.harness.records import Stats

    st = Stats.from_samples(list(xs))
    return None if st is None else st.median


def _label_metrics(metrics: dict[str, Any], lab: str, per_rank: list[dict[str, Any]], single_ms: dict[str, Any],
                   wrapped: bool) -> int:
    """The step time and throughput of one step label across ranks, and its scaling efficiency; adds them
    to `metrics` and returns the slowest rank."""
    from milestones.harness.records import Metric

    n = len(per_rank)
    times = [ms[f"{lab}.step_time"].samples for ms in per_rank]
    items = []
    for ms in per_rank:
        t, thr = ms[f"{lab}.step_time"].samples, ms[f"{lab}.throughput"].samples
        items.append(thr[0] * t[0] if t and thr else 0.0)
    k = min(len(t) for t in times)
    step = [max(t[j] for t in times) for j in range(k)]
    unit = per_rank[0][f"{lab}.throughput"].unit
    metrics[f"{lab}.step_time"] = Metric.from_values(
        f"{lab}.step_time", "s", False, step, note=f"per iteration, the slowest of {n} ranks")
    thr_n = [sum(items) / s for s in step if s > 0]
    metrics[f"{lab}.throughput"] = Metric.from_values(
        f"{lab}.throughput", unit, True, thr_n, note=f"all {n} ranks' items over the slowest rank's step time")
    meds = [_median(t) or 0.0 for t in times]
    s_thr = single_ms.get(f"{lab}.throughput")
    for key in (f"{lab}.step_time", f"{lab}.throughput"):
        if key in single_ms:
            m = single_ms[key]
            metrics[f"single.{key}"] = Metric(f"single.{key}", m.unit, m.higher_is_better, m.samples,
                                              "rank 0 alone, before the process group started")
    name = f"{lab}.scaling_efficiency"
    if not wrapped:
        metrics[name] = Metric.missing(
            name, "fraction", True, "the suite's speed case does not wrap its model with "
            "milestones.harness.ranks.data_parallel/fully_shard_model: the ranks trained independently")
    elif s_thr is None or not s_thr.samples:
        metrics[name] = Metric.missing(name, "fraction", True, "no single-process throughput was measured")
    else:
        base = n * (_median(s_thr.samples) or float("nan"))
        metrics[name] = Metric.from_values(
            name, "fraction", True, [t / base for t in thr_n],
            note=f"throughput at {n} / ({n} x throughput at 1); throughput at 1 = median of rank 0 alone "
                 "(same per-rank batch and threads) before the process group started")
    return max(range(n), key=lambda i: meds[i])


def _allreduce_metrics(allreduce: list[dict[str, dict[str, Any]]] | None) -> dict[str, Any]:
    """A gradient-sized all-reduce timed on its own: slowest rank per iteration, bytes, bus bandwidth."""
    from milestones.harness.records import Metric

    metrics: dict[str, Metric] = {}
    schemes = list(allreduce[0]) if allreduce else []
    n = len(allreduce or [])
    for scheme in schemes:
        ar = [a[scheme] for a in allreduce]
        pre = "allreduce" if len(schemes) == 1 else f"allreduce.{scheme}"
        k = min(len(a["samples"]) for a in ar)
        t = [max(a["samples"][j] for a in ar) for j in range(k)]
        nbytes = ar[0]["bytes"]
        metrics[f"{pre}.time"] = Metric.from_values(
            f"{pre}.time", "s", False, t, note=f"dist.all_reduce of {scheme}'s {ar[0]['elements']}-element gradient "
                                               f"({ar[0]['dtype']}) on its own, slowest rank per iteration")
        metrics[f"{pre}.bytes"] = Metric.single(f"{pre}.bytes", "B", False, nbytes)
        # nccl-tests' bus bandwidth: 2(N-1)/N of the buffer crosses each link in a ring all-reduce.
        metrics[f"{pre}.bus_bandwidth"] = Metric.from_values(
            f"{pre}.bus_bandwidth", "B/s", True, [2 * (n - 1) / n * nbytes / s for s in t if s > 0])
        for i, a in enumerate(ar):
            metrics[f"rank{i}.{pre}.time"] = Metric.from_values(f"rank{i}.{pre}.time", "s", False, a["samples"])
    if not schemes:
        metrics["allreduce.time"] = Metric.missing("allreduce.time", "s", False,
                                                   "no gradient was registered by a data-parallel wrapper")
    return metrics


def gather_record(single: dict[str, Any] | None, ranks: list[dict[str, Any]], *,
                  allreduce: list[dict[str, dict[str, Any]]] | None = None, nnodes: int = 1) -> dict[str, Any]:
    """Merge every rank's result (worker result dicts, rank order) into one result dict.

    - `<label>.step_time`: per iteration, the slowest rank's time (a step ends when every rank is done);
      `<label>.throughput`: all ranks' items per step over that time.
    - `rank<r>.<metric>`: every rank's own metrics, raw samples kept.
    - `single.<label>.*`: rank 0 alone before the process group started (throughput at 1).
    - `<label>.scaling_efficiency`: throughput at N / (N x throughput at 1), per iteration against the
      median single-process throughput.
    - `allreduce.*`: a gradient-sized all-reduce timed on its own (`allreduce.<scheme>.*` when a case
      registered several schemes); `allreduce` is one dict per rank: scheme -> samples, elements, bytes.
    Other metrics (FLOPs, memory, MFU) are rank 0's: they are per device.
    """
    from milestones.harness.records import Metric

    n = len(ranks)
    statuses = [r.get("status") for r in ranks]
    bad = [i for i, s in enumerate(statuses) if s not in SUCCESS]
    info: dict[str, Any] = {"world_size": n, "nnodes": nnodes, "backend": ranks[0].get("info", {}).get("backend")}
    info["ranks"] = [{"rank": i, **{k: r.get("info", {}).get(k) for k in
                                    ("hostname", "local_rank", "device", "threads", "peak_rss_bytes")},
                      "status": r.get("status")} for i, r in enumerate(ranks)]
    if bad or any(s == "skipped" for s in statuses):
        i = bad[0] if bad else statuses.index("skipped")
        r = ranks[i]
        return {"status": r.get("status") or "failed", "error": f"rank {i}: {r.get('error')}", "metrics": {},
                "info": {**info, "failed_rank": i if bad else None, **{k: v for k, v in r.get("info", {}).items()
                                                                      if k == "traceback"}},
                "artifacts": {}}
    per_rank = [{k: _metric(k, d) for k, d in r.get("metrics", {}).items()} for r in ranks]
    metrics: dict[str, Metric] = dict(per_rank[0])
    for i, ms in enumerate(per_rank):
        for k, m in ms.items():
            metrics[f"rank{i}.{k}"] = Metric(f"rank{i}.{k}", m.unit, m.higher_is_better, m.samples, m.note)
    labels = sorted({k[: -len(".step_time")] for k in per_rank[0] if k.endswith(".step_time")
                     and f"{k[: -len('.step_time')]}.throughput" in per_rank[0]})
    single_ms = {k: _metric(k, d) for k, d in (single or {}).get("metrics", {}).items()}
    wrapped = any(r.get("info", {}).get("data_parallel_schemes") for r in ranks)
    slowest: dict[str, int] = {}
    for lab in labels:
        slowest[lab] = _label_metrics(metrics, lab, per_rank, single_ms, wrapped)
    metrics.update(_allreduce_metrics(allreduce))
    info["slowest_rank"] = slowest
    info["data_parallel_schemes"] = ranks[0].get("info", {}).get("data_parallel_schemes") or []
    info["single_process"] = ("rank 0 alone, before the process group started" if single else None)
    r0 = ranks[0]
    info.update({k: v for k, v in r0.get("info", {}).items()
                 if k not in info and k not in ("traceback", "rank", "local_rank", "device")})
    artifacts = dict(r0.get("artifacts", {}))
    return {"status": "ok", "error": None, "metrics": {k: m.to_dict() for k, m in metrics.items()},
            "info": info, "artifacts": artifacts}


# ---------------------------------------------------------------------------------------- rank entry
class RankFailed(RuntimeError):
    """Raised by a rank whose case failed: the rank exits non-zero and torchrun stops the others."""


def lockstep_timing(timing: dict[str, Any] | None, scale: str) -> dict[str, Any]:
    from milestones.harness.measure.timing import SMOKE_TIMING, TimingSettings

    base = TimingSettings(**timing) if timing else (SMOKE_TIMING if scale == "smoke" else TimingSettings())
    n = max(base.min_iters, LOCKSTEP_MIN_ITERS)
    return {"warmup_iters": max(base.warmup_iters, 1), "warmup_time": 0.0, "min_iters": n, "min_time": 0.0,
            "max_iters": n, "max_time": 1e9}


def _die_with_parent() -> None:
    """Linux: the kernel kills this rank if its launcher dies, so no rank outlives a killed run."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _time_allreduces(device: str, timing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    import torch
    import torch.distributed as dist

    from milestones.harness.measure.timing import TimingSettings, time_fn

    out = {}
    for scheme, (n, dtype) in _ranks._STATE.gradients.items():
        if not n:
            continue
        buf = torch.zeros(n, dtype=getattr(torch, dtype), device=device)
        t = time_fn(lambda buf=buf: dist.all_reduce(buf), device, TimingSettings(**timing))
        out[scheme] = {"samples": list(t.samples_s), "elements": n, "bytes": n * buf.element_size(), "dtype": dtype}
    return out


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(obj, default=str))
    os.replace(tmp, path)


def _rank_spec(spec_path: Path) -> tuple[Any, str, dict[str, Any]]:
    """The case's spec as this rank runs it: its own GPU, count-based lock-step timing."""
    import dataclasses

    import torch

    from milestones.harness.launch.spec import CaseSpec
    from milestones.harness.measure.timing import TimingSettings

    spec = CaseSpec.read(spec_path)
    device = spec.case.device
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        torch.cuda.set_device(device)
    timing = lockstep_timing(None if spec.timing is None else vars(spec.timing), spec.case.scale)
    return dataclasses.replace(spec.with_case(device=device), timing=TimingSettings(**timing)), device, timing


def rank_main(spec_path: Path, result_path: Path) -> int:
    import torch
    import torch.distributed as dist

    from milestones.harness.worker import run_spec

    _die_with_parent()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    nnodes = world_size // max(int(os.environ.get("LOCAL_WORLD_SIZE", world_size)), 1)
    spec, device, timing = _rank_spec(spec_path)
    workdir = spec_path.parent
    rank_info = {"rank": rank, "local_rank": local_rank, "hostname": socket.gethostname(), "device": device,
                 "backend": backend_for(device)}

    def run() -> dict[str, Any]:
        return run_spec(spec).to_dict()

    def fail(res: dict[str, Any]) -> None:
        _write_json(workdir / f"rank{rank}.result.json", {**res, "info": {**res.get("info", {}), **rank_info}})
        raise RankFailed(f"rank {rank}: {res.get('status')}: {res.get('error')}")

    single = None
    if rank == 0 and spec.case.kind == "speed":  # a training run is not repeated alone first
        single = run()  # no process group yet: data_parallel() leaves the model alone
        if single["status"] not in SUCCESS:
            fail(single)
    timeout = _dt.timedelta(seconds=float(os.environ.get(PG_TIMEOUT_ENV, "900")))
    dist.init_process_group(backend_for(device), timeout=timeout,
                            device_id=torch.device(device) if device.startswith("cuda") else None)
    try:
        crash = spec.options.get("crash_rank")
        if crash is not None and int(crash) == rank:
            raise RuntimeError(f"deliberate crash of rank {rank} (--option crash_rank={crash})")
        _ranks._STATE.gradients.clear()
        res = run()
        res["info"].update(rank_info)
        res["info"]["data_parallel_schemes"] = list(_ranks._STATE.schemes)
        if res["status"] not in SUCCESS:
            fail(res)
    except RankFailed:
        raise
    except Exception as e:  # a collective that failed or timed out, or the deliberate test crash
        _write_json(workdir / f"rank{rank}.result.json",
                    {"status": "failed", "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                     "info": {**rank_info, "traceback": traceback.format_exc()[-4000:]}})
        raise
    try:
        # Every rank must agree on whether an all-reduce follows, or one would wait forever.
        flags: list[Any] = [None] * world_size
        grads = sorted(_ranks._STATE.gradients.items())
        dist.all_gather_object(flags, (res["status"], grads))
        ar: dict[str, Any] = {}
        if all(s == "ok" for s, _ in flags) and all(g == grads for _, g in flags):
            ar = _time_allreduces(device, timing)
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, (res, ar))
        if rank == 0:
            ranks = [g[0] for g in gathered]
            ars = [g[1] for g in gathered] if all(g[1] for g in gathered) else {}
            out = gather_record(single, ranks, allreduce=ars, nnodes=nnodes)
            out["info"]["timing"] = timing
            _write_json(result_path, out)
    finally:
        dist.destroy_process_group()
    return 0


# ------------------------------------------------------------------------------------------ launcher
def _read_json(p: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(p.read_text())
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def failure_result(failures: dict[int, Any], workdir: Path, first: int) -> dict[str, Any]:
    """The result for a torchrun job in which ranks failed: which rank, why, and every rank's end."""
    rows = []
    for r, f in sorted(failures.items()):
        sig = None
        if f.exitcode is not None and f.exitcode < 0:
            try:
                sig = signal.Signals(-f.exitcode).name
            except ValueError:
                sig = str(-f.exitcode)
        own = _read_json(workdir / f"rank{r}.result.json") or {}
        rows.append({"rank": r, "local_rank": f.local_rank, "pid": f.pid, "exitcode": f.exitcode, "signal": sig,
                     "status": own.get("status"), "error": own.get("error"),
                     "message": str(f.message)[:2000] if f.message else None,
                     "hostname": (own.get("info") or {}).get("hostname"),
                     "traceback": (own.get("info") or {}).get("traceback")})
    row = next(x for x in rows if x["rank"] == first)
    why = row["error"] or (f"killed by signal {row['signal']}" if row["signal"] else None) or \
        (row["message"].splitlines()[0] if row["message"] else f"exit code {row['exitcode']}")
    status = row["status"] if row["status"] in ("oom", "diverged") else "failed"
    return {"status": status, "error": f"rank {first} failed: {why}"[:500], "metrics": {},
            "info": {"failed_rank": first, "failed_ranks": rows}, "artifacts": {}}


def launch_main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    p = argparse.ArgumentParser(prog="python -m milestones.harness.launch.torchrun launch")
    p.add_argument("spec")
    p.add_argument("result")
    p.add_argument("--pg-timeout", type=float, default=900.0)
    ours, torchrun_argv = p.parse_args(argv[: argv.index("--")]), argv[argv.index("--") + 1:]
    spec_path, result_path = Path(ours.spec), Path(ours.result)
    workdir = spec_path.parent
    os.environ[PG_TIMEOUT_ENV] = f"{ours.pg_timeout:g}"
    args = parse_args([*torchrun_argv, "--monitor-interval", "0.1", "--log-dir", str(workdir / "torchrun"),
                       "--tee", "3", "-m", "milestones.harness.launch.torchrun", "rank", str(spec_path), str(result_path)])
    try:
        run(args)
    except ChildFailedError as e:
        first, _ = e.get_first_failure()
        if not result_path.exists():
            _write_json(result_path, failure_result(e.failures, workdir, first))
        return 1
    if not result_path.exists():
        # Several nodes: only the node of global rank 0 gathers; the others say where the record is.
        node = getattr(args, "node_rank", 0)
        _write_json(result_path, {"status": "skipped", "metrics": {}, "artifacts": {},
                                  "error": f"node rank {node} ran its ranks; the record is written by the node "
                                           "running global rank 0",
                                  "info": {"node_rank": node}})
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["rank"] and len(argv) == 3:
        from torch.distributed.elastic.multiprocessing.errors import record

        return record(rank_main)(Path(argv[1]), Path(argv[2]))
    if argv[:1] == ["launch"]:
        from milestones.harness.worker import die_with_parent

        die_with_parent()  # the launcher leads the case's process group: a killed runner takes it all down
        return launch_main(argv[1:])
    print("usage: python -m milestones.harness.launch.torchrun launch SPEC RESULT [--pg-timeout S] -- TORCHRUN-OPTIONS\n"
          "       python -m milestones.harness.launch.torchrun rank SPEC RESULT   (run by torchrun)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy, so RankFailed is the class rank_main raises.
    from milestones.harness.launch import torchrun as _t

    try:
        raise SystemExit(_t.main(sys.argv[1:]))
    except _t.RankFailed:
        traceback.print_exc()
        raise SystemExit(1) from None
