"""Plans cases and runs each in its own process with a timeout; never loses a result.

A case that crashes, hangs, runs out of memory or diverges becomes a record with its status; the
run goes on. Records are written as each case finishes, atomically.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milestones.harness import store
from milestones.harness.context import DTYPES
from milestones.harness.errors import UsageError
from milestones.harness.records import SCHEMA_VERSION, Case, Metric, RunRecord
from milestones.harness.registry import KINDS, SCALES, ConfigEntry, Registry, did_you_mean

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class RunOptions:
    kinds: tuple[str, ...] = ("fidelity", "speed")
    scale: str = "smoke"
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int | None = None
    out: Path = Path("results")
    timeout: float = 900.0
    profile: bool = False
    peak_tflops: float | None = None
    seed: int = 0
    seeds: tuple[int, ...] | None = None
    deterministic: bool = False
    threads: int | None = None
    data: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    repeat: int = 1
    timing: dict[str, Any] | None = None
    # An explicit, recorded search for the largest batch that runs (doubling from 1 up to this cap).
    find_max_batch: int | None = None
    nproc: int = 1  # ranks per node for speed cases, run under torchrun (milestones.harness.distributed)
    torchrun_args: tuple[str, ...] = ()  # torchrun rendezvous options for several nodes

    def __post_init__(self) -> None:
        for k in self.kinds:
            if k not in KINDS:
                raise UsageError(f"unknown kind {k!r}{did_you_mean(k, KINDS)}; choose from {', '.join(KINDS)}")
        if not self.kinds:
            raise UsageError("no kind given; choose from " + ", ".join(KINDS))
        if self.scale not in SCALES:
            raise UsageError(f"unknown scale {self.scale!r}{did_you_mean(self.scale, SCALES)}; "
                             f"choose from {', '.join(SCALES)}")
        dev = self.device.split(":")[0]
        if dev not in DEVICES:
            raise UsageError(f"unknown device {self.device!r}{did_you_mean(self.device, DEVICES)}; "
                             f"choose from {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise UsageError(f"unknown dtype {self.dtype!r}{did_you_mean(self.dtype, DTYPES)}; "
                             f"choose from {', '.join(DTYPES)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be a positive integer, not {self.batch_size}")
        if self.timeout <= 0:
            raise UsageError(f"--timeout must be positive, not {self.timeout}")
        if self.find_max_batch is not None and self.find_max_batch < 1:
            raise UsageError(f"--find-max-batch must be a positive integer, not {self.find_max_batch}")
        if self.repeat < 1:
            raise UsageError(f"--repeat must be a positive integer, not {self.repeat}")
        if self.nproc < 1:
            raise UsageError(f"--nproc must be a positive integer, not {self.nproc}")


def resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but torch sees no CUDA device "
                             f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")
    return device


def default_batch_size(entry: ConfigEntry, kind: str, device: str) -> int | None:
    """The config's batch: `batch_size` (the paper's, for a GPU) or `cpu_batch_size` on a CPU."""
    if kind == "fidelity":
        return None
    p = entry.params
    if not device.startswith("cuda") and getattr(p, "cpu_batch_size", None) is not None:
        return int(p.cpu_batch_size)
    bs = getattr(p, "batch_size", None)
    return None if bs is None else int(bs)


def plan(entries: Iterable[ConfigEntry], opts: RunOptions, device: str) -> list[Case]:
    cases = []
    for e in entries:
        if opts.scale not in e.scales:
            continue
        for k in opts.kinds:
            if k not in e.kinds:
                continue
            bs = opts.batch_size if (opts.batch_size is not None and k != "fidelity") else default_batch_size(e, k, device)
            cases.append(Case(suite=e.suite, config=e.name, kind=k, scale=opts.scale, device=device,
                              dtype=opts.dtype, batch_size=bs))
    return cases


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _kill_group(p: subprocess.Popen, grace: float = 3.0) -> None:
    """Terminate the case's whole process group (its own children included), then kill."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            # The leader is gone; children may linger in the group.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class CaseRun:
    status: str
    error: str | None
    metrics: dict[str, Metric]
    info: dict[str, Any]
    artifacts: dict[str, Any]
    started_at: str
    ended_at: str
    duration_s: float


def run_case_process(case: Case, opts: RunOptions, *, seed: int, workdir: Path) -> CaseRun:
    spec = {
        "case": dataclasses.asdict(case), "seed": seed, "seeds": list(opts.seeds) if opts.seeds else None,
        "deterministic": opts.deterministic, "profile": opts.profile, "peak_tflops": opts.peak_tflops,
        "threads": opts.threads, "data": opts.data, "options": opts.options, "timing": opts.timing,
        "workdir": str(workdir),
    }
    spec_path, result_path, log_path = workdir / "spec.json", workdir / "result.json", workdir / "stderr.log"
    spec_path.write_text(json.dumps(spec))
    started, t0 = _now(), time.perf_counter()
    env = dict(os.environ)
    # The case process must import this very harness and suites, wherever it was launched from.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # What the user asked for (auto / cpu / cuda): a paper-scale case runs on a CPU only when asked to.
    env["MILESTONES_DEVICE_REQUESTED"] = opts.device.split(":")[0]
    with open(log_path, "wb") as log:
        from milestones.harness import distributed

        cmd = (distributed.torchrun_command(spec_path, result_path, nproc=opts.nproc,
                                            torchrun_args=opts.torchrun_args, timeout=opts.timeout)
               if distributed.wants_torchrun(case.kind, opts.nproc, opts.torchrun_args)
               else [sys.executable, "-m", "milestones.harness.worker", str(spec_path), str(result_path)])
        p = subprocess.Popen(cmd,
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env)
        status = None
        try:
            p.wait(timeout=opts.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(p)
            status = "timeout"
        except KeyboardInterrupt:
            _kill_group(p, grace=1.0)
            status = "interrupted"
    dur = time.perf_counter() - t0
    ended = _now()
    tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
    if status == "timeout":
        return CaseRun("timeout", f"timed out after {opts.timeout:g} s; process group killed", {},
                       {"log_tail": tail}, {}, started, ended, dur)
    if status == "interrupted":
        return CaseRun("interrupted", "interrupted (SIGINT) while running", {}, {"log_tail": tail}, {},
                       started, ended, dur)
    if not result_path.exists():
        sig = -p.returncode if p.returncode and p.returncode < 0 else None
        why = f"killed by signal {signal.Signals(sig).name}" if sig else f"exited with code {p.returncode}"
        last = next((ln for ln in reversed(tail.strip().splitlines()) if ln.strip()), "")
        return CaseRun("failed", f"case process {why} without a result" + (f": {last[:300]}" if last else ""),
                       {}, {"log_tail": tail, "returncode": p.returncode}, {}, started, ended, dur)
    res = json.loads(result_path.read_text())
    metrics = {k: Metric.from_dict(k, m) for k, m in res.get("metrics", {}).items()}
    info = res.get("info", {})
    if tail.strip():
        info["log_tail"] = tail
    return CaseRun(res["status"], res.get("error"), metrics, info, res.get("artifacts", {}), started, ended, dur)


def build_record(case: Case, run: CaseRun, *, run_id: str, entry: ConfigEntry, suite_version: str,
                 env: dict[str, Any], opts: RunOptions, repeat_index: int, seed: int) -> RunRecord:
    config = entry.params_dict()
    info = {**run.info, "repeat_index": repeat_index, "seed": seed, "timeout_s": opts.timeout,
            "batch_size_source": "--batch-size" if (opts.batch_size is not None and case.kind != "fidelity")
            else "config default"}
    return RunRecord(
        schema_version=SCHEMA_VERSION, run_id=run_id,
        record_id=f"{run_id}/{case.slug}" + (f"/r{repeat_index}" if opts.repeat > 1 else ""),
        started_at=run.started_at, ended_at=run.ended_at, duration_s=round(run.duration_s, 4), case=case,
        config=config, suite_version=suite_version, env=env, status=run.status, error=run.error,
        metrics=run.metrics, info=info, artifacts=run.artifacts,
    )


def find_max_batch(case: Case, opts: RunOptions, *, seed: int) -> tuple[Case, CaseRun, list[dict[str, Any]]]:
    """Double the batch from 1 until a case fails (OOM) or the cap; keep the largest that ran.

    Only on explicit request, and the record says so: a batch size is never changed silently.
    """
    history: list[dict[str, Any]] = []
    best: tuple[Case, CaseRun] | None = None
    first: tuple[Case, CaseRun] | None = None
    bs = 1
    while bs <= (opts.find_max_batch or 1):
        trial = dataclasses.replace(case, batch_size=bs)
        with tempfile.TemporaryDirectory(prefix="milestones-case-") as tmp:
            run = run_case_process(trial, opts, seed=seed, workdir=Path(tmp))
        history.append({"batch_size": bs, "status": run.status, "error": run.error})
        first = first or (trial, run)
        if run.status != "ok":
            break
        best = (trial, run)
        bs *= 2
    chosen = best or first
    assert chosen is not None
    return chosen[0], chosen[1], history


@dataclass
class RunResult:
    run_id: str
    folder: Path
    records: list[RunRecord]
    paths: list[Path]
    interrupted: bool = False


def execute(cases: list[Case], opts: RunOptions, registry: Registry, env: dict[str, Any], *,
            run_id: str | None = None, on_start: Callable[[Case], None] | None = None,
            on_record: Callable[[RunRecord, Path], None] | None = None,
            skip: set[str] | None = None) -> RunResult:
    """Run every case in its own process; write each record as soon as it exists."""
    run_id = run_id or store.new_run_id()
    folder = store.run_dir(opts.out, env["machine_id"], run_id)
    store.ensure_writable(folder)
    manifest_path = folder / store.RUN_MANIFEST
    if not manifest_path.exists():
        store.write_manifest(folder, {
            "run_id": run_id, "created_at": _now(), "machine_id": env["machine_id"],
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(opts).items()},
            "cases": [dataclasses.asdict(c) for c in cases],
        })
    result = RunResult(run_id=run_id, folder=folder, records=[], paths=[])
    for case in cases:
        entry = registry.config(case.config)
        version = registry.suite(case.suite).version
        for r in range(opts.repeat):
            seed = opts.seed  # a repeat is the same case again: same seed (--seeds varies seeds)
            key = case.slug + (f"/r{r}" if opts.repeat > 1 else "")
            if skip and key in skip:
                continue
            if on_start:
                on_start(case)
            search = None
            if opts.find_max_batch and case.kind == "speed":
                case, run, search = find_max_batch(case, opts, seed=seed)
            else:
                with tempfile.TemporaryDirectory(prefix="milestones-case-") as tmp:
                    run = run_case_process(case, opts, seed=seed, workdir=Path(tmp))
            rec = build_record(case, run, run_id=run_id, entry=entry, suite_version=version, env=env, opts=opts,
                               repeat_index=r, seed=seed)
            if search is not None:
                rec.info.update(batch_size_source="--find-max-batch", batch_search=search)
            path = store.write_record(folder, rec)
            result.records.append(rec)
            result.paths.append(path)
            if on_record:
                on_record(rec, path)
            if run.status == "interrupted":
                result.interrupted = True
                return result
    return result
