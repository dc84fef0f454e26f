"""Plans cases and runs each through a launcher; never loses a result.

plan: every (config, kind) that matches the options becomes one frozen CaseSpec, its batch size resolved
once with its source. execute: claims the run folder (one process at a time), runs each spec through its
launcher (a case process, or torchrun ranks), turns the CaseResult into a record and writes it at once,
atomically. A case that crashes, hangs, runs out of memory or diverges becomes a record with its status;
the run goes on. A record that cannot be written is kept and retried, and the run says how to resume.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import shlex
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milestones.harness import store
from milestones.harness.errors import MilestonesError, UsageError
from milestones.harness.launch.process import CaseProcess, now
from milestones.harness.launch.spec import CaseResult, CaseSpec
from milestones.harness.options import RunOptions
from milestones.harness.records import DISK_FULL_KEY, SCHEMA_VERSION, Case, RunRecord
from milestones.harness.registry import ConfigEntry, Registry

__all__ = ["RunOptions", "plan", "plan_specs", "execute", "resolve_device", "RunResult"]

WORK_DIR = ".work"  # case workdirs, inside the run folder: a killed run leaves nothing in $TMPDIR
CHECKPOINT_DIR = ".checkpoints"  # training checkpoints that let --resume continue a long case
SUPERSEDED_DIR = ".superseded"  # records replaced by a resumed case (an interrupted one), kept, not read
LOCK_FILE = ".lock"
WRITE_RETRIES = 3


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


def resolve_batch(entry: ConfigEntry, kind: str, device: str, opts: RunOptions) -> tuple[int | None, str]:
    """The case's batch size and where it came from, decided here once: --batch-size for speed and quality
    cases, else the config's batch (`cpu_batch_size` on a CPU when it has one); fidelity cases have none."""
    if kind == "fidelity":
        return None, "none"
    if opts.batch_size is not None:
        return int(opts.batch_size), "--batch-size"
    p = entry.params
    if not device.startswith("cuda") and getattr(p, "cpu_batch_size", None) is not None:
        return int(p.cpu_batch_size), "config default"
    bs = getattr(p, "batch_size", None)
    return (None, "none") if bs is None else (int(bs), "config default")


def plan_specs(entries: Iterable[ConfigEntry], opts: RunOptions, device: str) -> list[CaseSpec]:
    """One spec per matching (config, kind) and repeat; workdirs are filled in when the run folder is known."""
    specs = []
    for e in entries:
        if opts.scale not in e.scales:
            continue
        for k in opts.kinds:
            if k not in e.kinds:
                continue
            bs, source = resolve_batch(e, k, device, opts)
            # An execution mode changes how a speed step runs; other kinds run once, as they always did.
            for mode in (opts.modes if k == "speed" else ("cast",)):
                case = Case(suite=e.suite, config=e.name, kind=k, scale=opts.scale, device=device,
                            dtype=opts.dtype, batch_size=bs, mode=mode)
                specs += _repeats(case, source, opts)
    return specs


def _repeats(case: Case, source: str, opts: RunOptions) -> list[CaseSpec]:
    specs = []
    for r in range(opts.repeat):
        # A repeat is the same case again, same seed: it measures run-to-run spread (--seeds varies seeds).
        specs.append(CaseSpec(
            case=case, batch_size_source=source, seed=opts.seed, seeds=opts.seeds,
            repeat_index=r, threads=opts.threads, deterministic=opts.deterministic, profile=opts.profile,
            peak_tflops=opts.peak_tflops, timing=None, options=opts.options,
            data={k: str(Path(v).resolve()) for k, v in opts.data.items()},  # cases run in their workdir
            timeout=opts.timeout_for(), nproc=opts.nproc, torchrun_args=opts.torchrun_args,
            requested_device=opts.device.split(":")[0]))
    return specs


def plan(entries: Iterable[ConfigEntry], opts: RunOptions, device: str) -> list[Case]:
    """The cases a run would make (one per config and kind; repeats not expanded)."""
    return [s.case for s in plan_specs(entries, opts, device) if s.repeat_index == 0]


def specs_for_cases(cases: Iterable[Case], opts: RunOptions, registry: Registry) -> list[CaseSpec]:
    """Specs for cases planned elsewhere (tests, asv, ab), their batch sources derived the same way."""
    out = []
    for c in cases:
        e = registry.config(c.config)
        bs, source = resolve_batch(e, c.kind, c.device, opts)
        if bs != c.batch_size:
            source = "none" if c.batch_size is None else "--batch-size"
        for s in plan_specs([e], dataclasses.replace(opts, kinds=(c.kind,), scale=c.scale, dtype=c.dtype,
                                                     modes=(c.mode,)), c.device):
            out.append(dataclasses.replace(s, case=c, batch_size_source=source))
    return out


# ------------------------------------------------------------------------------------------- records
def build_record(spec: CaseSpec, res: CaseResult, *, run_id: str, entry: ConfigEntry, suite_version: str,
                 env: dict[str, Any]) -> RunRecord:
    info = {**res.info, "repeat_index": spec.repeat_index, "seed": spec.seed, "timeout_s": spec.timeout,
            "batch_size_source": spec.batch_size_source}
    if spec.seeds:
        info["seeds"] = list(spec.seeds)
    return RunRecord(
        schema_version=SCHEMA_VERSION, run_id=run_id, record_id=f"{run_id}/{spec.key}",
        started_at=res.started_at or now(), ended_at=res.ended_at or now(), duration_s=round(res.duration_s or 0.0, 4),
        case=spec.case, config=dataclasses.asdict(entry.params) if dataclasses.is_dataclass(entry.params)
        else dict(entry.params), suite_version=suite_version, env=env, status=res.status, error=res.error,
        metrics=dict(res.metrics), info=info, artifacts=dict(res.artifacts))


class UnwrittenRecords(MilestonesError):
    """Records that could not be written (a full disk): the run stopped; the message says how to resume."""

    exit_code = 1


# --------------------------------------------------------------------------------------- run folder
class RunLock:
    """One process at a time runs or resumes a run folder (an exclusive flock on RUN/.lock)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        while True:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(self.fd)
                self.fd = None
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UsageError(f"run folder {self.path.parent} is being run or resumed by another process; "
                                     "wait for it to finish") from None
                raise
            # The holder before us removes the file as it lets go: a lock on that unlinked file guards
            # nothing, so take the one now at the path.
            try:
                if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(self.fd)
        try:
            os.ftruncate(self.fd, 0)
            os.write(self.fd, str(os.getpid()).encode())
        except OSError:  # a full disk: the flock is what counts, not the pid written for people
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            try:  # a finished run folder keeps records, not the lock file
                self.path.unlink()
            except OSError:
                pass
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def clean_work(folder: Path) -> None:
    """Case workdirs a killed run left behind."""
    shutil.rmtree(folder / WORK_DIR, ignore_errors=True)


def _slug_path(key: str) -> str:
    return key.replace("/", "-")


def interrupted_records(folder: Path) -> dict[str, Path]:
    """key -> file of each record in the folder that a resume replaces: its case was interrupted, or
    failed for want of disk space (store.rerun_on_resume)."""
    out = {}
    for f in store.run_record_files(folder):
        try:
            rec = store.read_record(f)
        except MilestonesError:
            continue
        if store.rerun_on_resume(rec):
            out[store.record_key(rec)] = f
    return out


def supersede(folder: Path, path: Path) -> None:
    dest = folder / SUPERSEDED_DIR
    dest.mkdir(exist_ok=True)
    os.replace(path, dest / path.name)


# ---------------------------------------------------------------------------------------- execution
@dataclass
class RunResult:
    run_id: str
    folder: Path
    records: list[RunRecord] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    interrupted: bool = False
    unwritten: list[RunRecord] = field(default_factory=list)
    to_run: int = 0  # the cases this invocation set out to run (a resume: those without a finished record)

    @property
    def not_started(self) -> int:
        return max(0, self.to_run - len(self.records))


def find_max_batch(spec: CaseSpec, launch: Callable[[CaseSpec], CaseResult], cap: int
                   ) -> tuple[CaseSpec, CaseResult, list[dict[str, Any]]]:
    """Double the batch from 1 until a case fails (OOM) or the cap; keep the largest that ran.

    Only on explicit request, and the record says so: a batch size is never changed silently.
    """
    history: list[dict[str, Any]] = []
    best: tuple[CaseSpec, CaseResult] | None = None
    first: tuple[CaseSpec, CaseResult] | None = None
    bs = 1
    while bs <= cap:
        trial = dataclasses.replace(spec.with_case(batch_size=bs), batch_size_source="--find-max-batch")
        res = launch(trial)
        history.append({"batch_size": bs, "status": res.status, "error": res.error})
        first = first or (trial, res)
        if res.status != "ok":
            break
        best = (trial, res)
        bs *= 2
    chosen = best or first
    assert chosen is not None
    return chosen[0], chosen[1], history


def _write(folder: Path, rec: RunRecord, record_host: bool) -> tuple[RunRecord, Path]:
    """Write a record (scrubbed unless --record-host; a record that cannot be serialised becomes a failed
    one): returns the record as written and its path. A failed write is retried, then raised."""
    for attempt in range(WRITE_RETRIES):
        try:
            return store.save_record(folder, rec, record_host=record_host)
        except (OSError, MilestonesError):
            if attempt == WRITE_RETRIES - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _write_manifest_once(folder: Path, run_id: str, env: dict[str, Any], opts: RunOptions,
                         specs: list[CaseSpec]) -> None:
    if (folder / store.RUN_MANIFEST).exists():
        return
    store.write_manifest(folder, record_host=bool(opts.record_host), manifest={
        "run_id": run_id, "created_at": now(), "machine_id": env["machine_id"],
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(opts).items()},
        "cases": [dataclasses.asdict(s.case) for s in specs if s.repeat_index == 0],
        "specs": [{"key": s.key, "batch_size_source": s.batch_size_source} for s in specs],
    })


def execute(cases: list[Case] | list[CaseSpec], opts: RunOptions, registry: Registry, env: dict[str, Any], *,
            run_id: str | None = None, folder: Path | None = None, resume: bool = False,
            on_start: Callable[[Case], None] | None = None,
            on_record: Callable[[RunRecord, Path], None] | None = None,
            launcher: Any = None) -> RunResult:
    """Run every case through its launcher; write each record as soon as it exists.

    `folder`+`resume`: finish a run in its own folder: cases with a finished record are skipped, an
    interrupted case runs again and its old record moves to .superseded/.
    """
    specs = [c for c in cases if isinstance(c, CaseSpec)] if cases and isinstance(cases[0], CaseSpec) \
        else specs_for_cases(cases, opts, registry)  # type: ignore[arg-type]
    run_id = run_id or store.new_run_id()
    folder = folder or store.run_dir(opts.out, env["machine_id"], run_id)
    new_folder = not folder.exists()
    store.ensure_writable(folder)
    launch = (launcher or CaseProcess()).run
    with RunLock(folder):
        clean_work(folder)
        store.remove_temp_files(folder)  # a writer killed between write and link; under the lock, no one else's
        try:
            _write_manifest_once(folder, run_id, env, opts, specs)
        except OSError as e:
            if new_folder:  # a full disk at the start leaves no empty run folder
                shutil.rmtree(folder, ignore_errors=True)
            raise UsageError(f"cannot write results to {folder}: {e.strerror or e}") from None
        skip = store.finished_keys(folder) if resume else set()
        stale = interrupted_records(folder) if resume else {}
        result = RunResult(run_id=run_id, folder=folder, to_run=sum(1 for s in specs if s.key not in skip))
        try:
            _run_specs(specs, skip, stale, result, opts, registry, env, launch, on_start, on_record)
        except KeyboardInterrupt:
            # Between cases, or while a record was written (a case's own Ctrl-C is its `interrupted`
            # record): what was written stays; what was not runs again on --resume.
            result.interrupted = True
        finally:  # a run stopped by a full disk leaves no work folder either
            shutil.rmtree(folder / WORK_DIR, ignore_errors=True)
    return result


def _run_specs(specs: list[CaseSpec], skip: set[str], stale: dict[str, Path], result: RunResult, opts: RunOptions,
               registry: Registry, env: dict[str, Any], launch: Callable[[CaseSpec], CaseResult],
               on_start: Callable[[Case], None] | None, on_record: Callable[[RunRecord, Path], None] | None) -> None:
    folder, run_id = result.folder, result.run_id
    for spec in specs:
        if spec.key in skip:
            continue
        entry = registry.config(spec.case.config)
        version = registry.suite(spec.case.suite).version
        workdir = folder / WORK_DIR / _slug_path(spec.key)
        spec = dataclasses.replace(spec, workdir=str(workdir),
                                   checkpoint_dir=str(folder / CHECKPOINT_DIR / _slug_path(spec.key)))
        if on_start:
            on_start(spec.case)
        spec, res, search = _launch(spec, launch, opts, result)
        shutil.rmtree(workdir, ignore_errors=True)
        rec = build_record(spec, res, run_id=run_id, entry=entry, suite_version=version, env=env)
        if search is not None:
            rec.info.update(batch_search=search)
        try:
            rec, path = _write(folder, rec, bool(opts.record_host))
        except (OSError, MilestonesError) as e:
            result.unwritten.append(rec)
            result.records.append(rec)
            raise_unwritten(result, e, opts)
        if spec.key in stale:
            supersede(folder, stale.pop(spec.key))
        if res.status == "ok":
            shutil.rmtree(folder / CHECKPOINT_DIR / _slug_path(spec.key), ignore_errors=True)
        result.records.append(rec)
        result.paths.append(path)
        if on_record:
            on_record(rec, path)
        if res.status == "interrupted":
            result.interrupted = True
            break
        if rec.info.get(DISK_FULL_KEY) is True:
            # The next case would find the same full disk: stop, and say how to go on.
            raise UnwrittenRecords(
                f"the case {spec.case.slug} could not write its files to {folder} (no space left on the disk); "
                f"the run stopped there and the finished records are intact. Free space, then "
                f"`{resume_command(result, opts)}` runs that case and the rest")


def _launch(spec: CaseSpec, launch: Callable[[CaseSpec], CaseResult], opts: RunOptions, result: RunResult
            ) -> tuple[CaseSpec, CaseResult, list[dict[str, Any]] | None]:
    """The case through its launcher (or the batch-size search); a failure to write its files (the
    spec, its folder: a full disk) is retried, then stops the run with the resume command."""
    for attempt in range(WRITE_RETRIES):
        try:
            if opts.find_max_batch and spec.case.kind == "speed":
                return find_max_batch(spec, launch, int(opts.find_max_batch))
            return spec, launch(spec), None
        except OSError as e:
            if attempt < WRITE_RETRIES - 1:
                time.sleep(0.5 * (attempt + 1))
                continue
            if spec.workdir:
                shutil.rmtree(spec.workdir, ignore_errors=True)
            raise UnwrittenRecords(
                f"could not write the files of case {spec.case.slug} to {result.folder} ({e.strerror or e}); "
                f"the run stopped there and the finished records are intact. Free space, then "
                f"`{resume_command(result, opts)}` runs that case and the rest") from None
    raise AssertionError("unreachable")


def resume_command(result: RunResult, opts: RunOptions) -> str:
    """The exact command that finishes this run (its folder holds the options it was started with)."""
    return f"milestones run --resume {shlex.quote(result.run_id)} --out {shlex.quote(str(opts.out))}"


def raise_unwritten(result: RunResult, err: Exception, opts: RunOptions) -> None:
    rec = result.unwritten[-1]
    why = getattr(err, "strerror", None) or str(err)
    raise UnwrittenRecords(
        f"could not write the record of {rec.case.slug} to {result.folder} ({why}); the run "
        f"stopped there and the finished records are intact. Free space, then "
        f"`{resume_command(result, opts)}` re-runs the cases without a record")


def run_case_process(case: Case, opts: RunOptions, *, seed: int, workdir: Path, registry: Registry | None = None,
                     launcher: Any = None) -> CaseResult:
    """One case in its own process, outside a run (asv, A/B rounds): the spec is planned as `run` would."""
    from milestones.harness.registry import load_suite

    reg = registry or load_suite(case.suite)
    spec = specs_for_cases([case], opts, reg)[0]
    spec = dataclasses.replace(spec, seed=seed, workdir=str(workdir))
    return (launcher or CaseProcess()).run(spec)
