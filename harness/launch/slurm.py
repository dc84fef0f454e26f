"""Cases as Slurm jobs, through submitit: one job per (machine type, case group), each group sized to the
job's time limit; inside its allocation a job is an ordinary run (the same runner, case processes and
torchrun ranks) writing ordinary records into its own run folder of the shared results tree.

A submission lives in OUT/.slurm/<id>/ (a dot-folder: never read as results): `submission.json` (each
job: id, machine type, partition, run id, cases), submitit's pickles and logs, and `jobs/<job id>.json`,
which a job writes when it starts and ends (its run folder, its cases' statuses). `milestones jobs`
reads that folder and the queue, so the submitting command can exit and be re-attached.

Faults. Slurm warns a job `signal_s` before its time limit (SIGUSR2, submitit's timeout signal), and
cancelling or preempting it sends SIGTERM (KillWait seconds before SIGKILL). Either stops the case in
flight through the case launcher (its process group killed, as on Ctrl-C) and the job writes a record
for every case of its group: the case in flight `timeout` (time limit) or `interrupted` (cancelled,
preempted, or stopped with a checkpoint that --resume continues), the cases not started `interrupted`.
At the time-limit warning, a job with interrupted cases left is requeued through submitit (at most
--slurm-max-requeue times); the requeued job resumes its own run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milestones.harness.errors import MilestonesError, UsageError
from milestones.harness.launch.spec import CaseResult, CaseSpec

SUBMISSIONS_DIR = ".slurm"
SUBMISSION_FILE = "submission.json"
JOB_REPORTS_DIR = "jobs"
# Seconds a case is assumed to take when no earlier record of it is under OUT (a smoke case is seconds
# to a minute on a busy CPU; proxy cases train for minutes).
DEFAULT_CASE_S = {"smoke": 60.0, "proxy": 1200.0, "paper": 6 * 3600.0}
# A job's own start before its first case: the interpreter, torch and the suites imported, the fork server.
JOB_START_S = 60.0
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY",
                "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT")
# Pending reasons that no amount of waiting resolves: an administrator or a new submission must act.
BLOCKED_REASONS = ("PartitionDown", "PartitionInactive", "PartitionConfig", "PartitionNodeLimit",
                   "PartitionTimeLimit", "BadConstraints", "InvalidAccount", "InvalidQOS", "JobHeldAdmin",
                   "JobHeldUser", "DependencyNeverSatisfied", "ReqNodeNotAvail", "AccountNotAllowed",
                   "QOSMaxWallDurationPerJobLimit", "AssocMaxWallDurationPerJobLimit")
# Seconds to wait, after Slurm says a job ended, for the job's own final report (Slurm's KillWait is 30 s
# by default; a job SIGKILLed before it wrote one is reported as Slurm saw it).
SETTLE_S = 60.0
_TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class SubmitError(MilestonesError):
    """sbatch refused a job (one line, with Slurm's message)."""

    exit_code = 2


# ------------------------------------------------------------------------------------- machine types
@dataclass(frozen=True)
class MachineType:
    name: str
    partition: str | None = None
    constraint: str | None = None
    env: tuple[tuple[str, str], ...] = ()


def machine_types(settings: dict[str, Any]) -> list[MachineType]:
    """The machine types named by --slurm-partition / --slurm-constraint (or the run file's [slurm])."""
    part, cons, env = settings["partition"], settings["constraint"], settings["env"]
    names = list(dict.fromkeys([*part, *cons]))
    if not names:
        raise UsageError("milestones submit needs a machine type: --slurm-partition TYPE=PARTITION[,...] or "
                         "--slurm-constraint TYPE=FEATURE[,...] (or a [slurm] table in --config)")
    for n in names:
        if not _TYPE_NAME.fullmatch(n):
            raise UsageError(f"machine type {n!r} must be letters, digits, '.', '_' or '-'")
    for n in env:
        if n not in names:
            raise UsageError(f"[slurm] env names machine type {n!r}, which has no partition or constraint")
    return [MachineType(n, part.get(n), cons.get(n), tuple(sorted(env.get(n, {}).items()))) for n in names]


def gpus_per_job(settings: dict[str, Any], opts: Any) -> int:
    if settings["gpus"] is not None:
        return int(settings["gpus"])
    return 0 if opts.device == "cpu" else max(1, int(opts.nproc))


# ---------------------------------------------------------------------------------------- case groups
@dataclass(frozen=True)
class CaseRef:
    config: str
    kind: str


def estimate_seconds(refs: Sequence[CaseRef], scale: str, out: Path, repeat: int = 1) -> dict[CaseRef, float]:
    """Seconds each case will take: the median duration of its earlier records under OUT, else the scale's
    default. Repeats run in one job, so they count."""
    seen: dict[tuple[str, str], list[float]] = {}
    wanted = {(r.config, r.kind) for r in refs}
    if out.is_dir():
        for f in out.glob("*/*/*.json"):
            try:
                d = json.loads(f.read_text(encoding="utf-8"))
                c = d["case"]
                if (c["config"], c["kind"]) in wanted and c["scale"] == scale and d.get("status") == "ok":
                    seen.setdefault((c["config"], c["kind"]), []).append(float(d["duration_s"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a record (a manifest, a damaged file): no estimate from it
    return {r: repeat * (statistics.median(seen[(r.config, r.kind)]) if (r.config, r.kind) in seen
                         else DEFAULT_CASE_S[scale]) for r in refs}


def group_cases(refs: Sequence[CaseRef], seconds: dict[CaseRef, float], budget_s: float) -> list[list[CaseRef]]:
    """Consecutive cases (suites stay together) filled into groups of at most `budget_s` estimated seconds;
    a case longer than the budget gets a group of its own."""
    groups: list[list[CaseRef]] = []
    used = 0.0
    for r in refs:
        s = seconds[r]
        if groups and used + s <= budget_s:
            groups[-1].append(r)
            used += s
        else:
            groups.append([r])
            used = s
    return groups


def group_budget(time_min: int, signal_s: int) -> float:
    budget = time_min * 60.0 - signal_s - JOB_START_S
    if budget <= 0:
        raise UsageError(f"--slurm-time {time_min} min leaves no time for cases after the job's start "
                         f"({JOB_START_S:g} s) and the time-limit warning (--slurm-signal {signal_s} s)")
    return budget


# --------------------------------------------------------------------------------- inside the job
class JobStop(KeyboardInterrupt):
    """Raised in the job's main thread by SIGTERM / SIGUSR2 while a case runs: the case launcher kills the
    case's process group on it, as on Ctrl-C."""


@dataclass
class StopSignal:
    """The first stop signal a job received, and whether a case is in flight (only then is it raised)."""

    signum: int | None = None
    at: float | None = None
    in_case: bool = False

    def handler(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum, self.at = signum, time.time()
        if self.in_case:
            raise JobStop(signum)

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name


def has_checkpoint(spec: CaseSpec) -> bool:
    d = Path(spec.checkpoint_dir) if spec.checkpoint_dir else None
    return bool(d and d.is_dir() and any(d.iterdir()))


@dataclass
class StoppableLauncher:
    """The case launcher of a job: cases run as in `milestones run`; once Slurm says stop, the case in
    flight is stopped and recorded with the job's reason, and the cases after it are recorded not started."""

    inner: Any
    stop: StopSignal
    job_id: str
    time_min: int
    started: float = field(default_factory=time.time)

    def _why(self) -> str:
        if self.stop.signum == signal.SIGUSR2:
            return f"Slurm job {self.job_id} reached its time-limit warning ({self.time_min} min limit)"
        # `started` is when the job's function began, a few seconds after Slurm started the job.
        if self.stop.at is not None and self.stop.at - self.started >= self.time_min * 60 - 30:
            return f"Slurm job {self.job_id} reached its time limit ({self.time_min} min)"
        return f"Slurm job {self.job_id} was cancelled or preempted (SIGTERM)"

    def run(self, spec: CaseSpec) -> CaseResult:
        if self.stop.signum is not None:
            now = _now()
            return CaseResult(status="interrupted", error=f"not started: {self._why()} before this case began",
                              info={"slurm_stop": {"signal": self.stop.name, "started": False}},
                              started_at=now, ended_at=now, duration_s=0.0)
        t0 = _now()
        self.stop.in_case = True
        try:
            res = self.inner.run(spec)
        except (JobStop, Exception) as err:
            # Slurm signals every process of the job, the fork server included, so stopping the case can
            # fail in ways a Ctrl-C does not; once told to stop, any such end is the stop.
            if self.stop.signum is None:
                raise
            res = CaseResult(status="interrupted", error=f"stopped ({type(err).__name__}: {err})", started_at=t0,
                             ended_at=_now(), duration_s=0.0)
        finally:
            self.stop.in_case = False
        if self.stop.signum is None or res.status in ("ok", "skipped"):
            return res  # finished before the signal: its result stands
        why = self._why()
        if "time limit (" in why or (self.stop.signum == signal.SIGUSR2 and not has_checkpoint(spec)):
            status, error = "timeout", f"{why} while the case ran; case stopped"
        else:
            status, error = "interrupted", f"{why} while the case ran; case stopped" + (
                " (it checkpointed: --resume continues it)" if has_checkpoint(spec) else "")
        info = {**res.info, "slurm_stop": {"signal": self.stop.name, "started": True,
                                           "case_status": res.status, "case_error": res.error}}
        return res.replace(status=status, error=error, info=info)


def _now() -> str:
    from milestones.harness.launch.process import now

    return now()


def recorded_keys(folder: Path) -> set[str]:
    """Keys of the cases with any record in the folder, interrupted ones included."""
    from milestones.harness import runner, store

    return store.finished_keys(folder) | set(runner.interrupted_records(folder)) if folder.is_dir() else set()


def _job_id() -> str:
    jid, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{jid}_{task}" if jid and task else os.environ.get("SLURM_JOB_ID", "local")


@dataclass(frozen=True)
class GroupJob:
    """What one Slurm job runs (pickled by submitit): one group of cases of one machine type."""

    submission: str  # the submission folder (absolute)
    machine: MachineType
    cases: tuple[CaseRef, ...]
    opts: Any  # RunOptions, `out` absolute
    run_id: str
    time_min: int

    def __call__(self) -> dict[str, Any]:
        from milestones.harness import env as envmod
        from milestones.harness import runner, store
        from milestones.harness.launch.process import CaseProcess
        from milestones.harness.measure.timing import free_cores
        from milestones.harness.registry import load_suites

        began = time.time()
        os.environ.update(dict(self.machine.env))  # before the environment (and machine id) is captured
        stop = StopSignal()
        requeue = signal.getsignal(signal.SIGUSR2)  # submitit's checkpoint-and-requeue handler
        for s in (signal.SIGTERM, signal.SIGUSR2):
            signal.signal(s, stop.handler)
        job_id = _job_id()
        reg = load_suites()
        device = runner.resolve_device(self.opts.device)
        threads = self.opts.threads or free_cores()[0]
        specs = [dataclasses.replace(s, threads=threads) for r in self.cases for s in runner.plan_specs(
            [reg.config(r.config)], dataclasses.replace(self.opts, kinds=(r.kind,)), device)]
        e = envmod.capture()
        e["slurm"] = {"job_id": job_id, "machine_type": self.machine.name, "partition": self.machine.partition,
                      "constraint": self.machine.constraint, "submission": Path(self.submission).name,
                      "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
                      "time_limit_min": self.time_min}
        folder = store.run_dir(self.opts.out, e["machine_id"], self.run_id)
        report = {"job_id": job_id, "machine_type": self.machine.name, "run_id": self.run_id,
                  "folder": str(folder), "state": "running", "started_at": _now()}
        _write_report(self.submission, job_id, report)
        launcher = StoppableLauncher(CaseProcess(), stop, job_id, self.time_min, started=began)
        # A requeued job resumes its folder: finished cases stay, interrupted ones run again.
        runner.execute(specs, self.opts, reg, e, run_id=self.run_id, folder=folder, resume=True, launcher=launcher)
        while stop.signum is not None:  # the runner stops at an interrupted case: record the rest as not started
            left = [s for s in specs if s.key not in recorded_keys(folder)]
            if not left:
                break
            runner.execute(left, self.opts, reg, e, run_id=self.run_id, folder=folder, launcher=launcher)
        statuses = _statuses(folder)
        report.update(state="stopped" if stop.signum else "done", ended_at=_now(), stopped_by=stop.name,
                      statuses=statuses)
        if stop.signum == signal.SIGUSR2 and "interrupted" in statuses.values() and callable(requeue):
            report["requeue"] = "asked"
            _write_report(self.submission, job_id, report)
            try:
                requeue(signal.SIGUSR2, None)  # calls self.checkpoint, requeues, exits
            except Exception as err:  # noqa: BLE001 - submitit's UncompletedJobError: out of requeues
                report["requeue"] = f"not requeued: {err}"
        _write_report(self.submission, job_id, report)
        return report

    def checkpoint(self) -> Any:
        """submitit's hook at the time-limit warning: the same job again (it resumes its run folder)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def _statuses(folder: Path) -> dict[str, str]:
    from milestones.harness import store

    out = {}
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if f.name == store.RUN_MANIFEST:
            continue
        try:
            rec = store.read_record(f)
        except MilestonesError:
            continue
        out[rec.record_id.split("/", 1)[-1]] = rec.status
    return out


def _write_report(submission: str, job_id: str, report: dict[str, Any]) -> None:
    d = Path(submission) / JOB_REPORTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{job_id}.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, d / f"{job_id}.json")


# ------------------------------------------------------------------------------------- submitting
@dataclass(frozen=True)
class JobEntry:
    job_id: str
    machine_type: str
    partition: str | None
    constraint: str | None
    run_id: str
    cases: tuple[str, ...]
    estimate_s: float


@dataclass(frozen=True)
class Submission:
    id: str
    folder: Path
    out: Path
    jobs: tuple[JobEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "out": str(self.out), "jobs": [dataclasses.asdict(j) for j in self.jobs]}


def _save(sub: Submission) -> None:
    tmp = sub.folder / f".{SUBMISSION_FILE}.tmp"
    tmp.write_text(json.dumps(sub.to_dict(), indent=1), encoding="utf-8")
    os.replace(tmp, sub.folder / SUBMISSION_FILE)


def _sbatch_message(err: BaseException, stderr: str) -> str:
    out = getattr(err, "output", None)
    text = stderr + "\n" + (out.decode(errors="replace") if isinstance(out, bytes) else str(out or err))
    lines = [ln.strip().removeprefix("sbatch: error: ") for ln in text.splitlines() if "error" in ln.lower()]
    return "; ".join(dict.fromkeys(lines))[:400] if lines else str(err)[:400]


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """sbatch writes its refusal to the stderr it inherits from submitit: keep it for one line of ours."""
    got: list[str] = []
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield got
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            got.append(tmp.read().decode(errors="replace"))


def sbatch_parameters(m: MachineType, settings: dict[str, Any], gpus: int) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters of one machine type's jobs."""
    params: dict[str, Any] = {"job_name": f"milestones-{m.name}", "time": settings["time_min"],
                              "signal_delay_s": settings["signal_s"], "stderr_to_stdout": True}
    for key, value in (("partition", m.partition), ("constraint", m.constraint), ("cpus_per_task", settings["cpus"]),
                       ("account", settings["account"]), ("qos", settings["qos"])):
        if value is not None:
            params[key] = value
    if gpus:
        params["gpus_per_node"] = gpus
    return params


def _need(command: str) -> None:
    if not shutil.which(command):
        raise UsageError(f"{command} not found: milestones submit and jobs run where Slurm's client commands "
                         "(sbatch, squeue, scancel) are on PATH, e.g. a login node")


def submit(refs: Sequence[CaseRef], opts: Any, settings: dict[str, Any], *,
           on_job: Callable[[JobEntry], None] | None = None) -> Submission:
    """Submit one job per (machine type, case group); returns the submission (saved as it grows, so a
    failure after some jobs were queued still leaves them re-attachable)."""
    from milestones.harness import store
    from milestones.harness.extras import require

    submitit = require("submitit")
    _need("sbatch")

    out = Path(opts.out).resolve()
    opts = dataclasses.replace(opts, out=out)
    machines = machine_types(settings)
    budget = group_budget(settings["time_min"], settings["signal_s"])
    seconds = estimate_seconds(refs, opts.scale, out, int(opts.repeat))
    groups = group_cases(refs, seconds, budget)
    sub_id = store.new_run_id()
    folder = out / SUBMISSIONS_DIR / sub_id
    store.ensure_writable(folder)
    gpus = gpus_per_job(settings, opts)
    sub = Submission(sub_id, folder, out, ())
    for m in machines:
        ex = submitit.SlurmExecutor(folder=folder / "logs" / "%j", max_num_timeout=settings["max_requeue"])
        ex.update_parameters(**sbatch_parameters(m, settings, gpus))
        batch: list[tuple[Any, str, list[CaseRef]]] = []
        try:
            with _stderr_captured() as stderr, ex.batch():
                for i, g in enumerate(groups):
                    run_id = f"{sub_id}-{m.name}-{i}"
                    job = GroupJob(str(folder), m, tuple(g), opts, run_id, settings["time_min"])
                    batch.append((ex.submit(job), run_id, g))
        except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError, OSError) as err:
            where = ", ".join(x for x in (m.partition and f"partition {m.partition}",
                                          m.constraint and f"constraint {m.constraint}") if x)
            raise SubmitError(f"sbatch refused the jobs of machine type {m.name} ({where}): "
                              f"{_sbatch_message(err, ''.join(stderr))}"
                              + (f"; {len(sub.jobs)} job(s) already queued: milestones jobs {folder}"
                                 if sub.jobs else "")) from None
        for job, run_id, g in batch:
            entry = JobEntry(str(job.job_id), m.name, m.partition, m.constraint, run_id,
                             tuple(f"{r.config} {r.kind}" for r in g), round(sum(seconds[r] for r in g), 1))
            sub = dataclasses.replace(sub, jobs=(*sub.jobs, entry))
            _save(sub)
            if on_job:
                on_job(entry)
    return sub


def load(where: str | os.PathLike, out: str | os.PathLike = "results") -> Submission:
    """A submission from its folder or its id (looked up under OUT/.slurm)."""
    p = Path(where)
    cand = p if (p / SUBMISSION_FILE).is_file() else Path(out) / SUBMISSIONS_DIR / str(where)
    try:
        d = json.loads((cand / SUBMISSION_FILE).read_text(encoding="utf-8"))
        jobs = tuple(JobEntry(**{**j, "cases": tuple(j["cases"])}) for j in d["jobs"])
        return Submission(d["id"], cand, Path(d["out"]), jobs)
    except FileNotFoundError:
        raise UsageError(f"no submission {str(where)!r} (give its folder, or its id under {out}/{SUBMISSIONS_DIR})"
                         ) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"submission file {cand / SUBMISSION_FILE} is unreadable: {e}") from None


# -------------------------------------------------------------------------------------------- status
@dataclass(frozen=True)
class JobState:
    job_id: str
    state: str  # Slurm's (PENDING, RUNNING, COMPLETED, CANCELLED, ...) or UNKNOWN
    reason: str | None = None  # a pending job's reason, e.g. Resources, PartitionDown
    report: dict[str, Any] | None = None  # what the job wrote (its folder, its cases' statuses)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES or self.state == "UNKNOWN"

    @property
    def blocked(self) -> bool:
        return self.state == "PENDING" and bool(self.reason) and self.reason.split(",")[0].strip() in BLOCKED_REASONS


def _queue(ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """job id -> (state, reason), from squeue (every array task on its own line), then sacct for jobs the
    queue has forgotten (where accounting is on)."""
    ids = set(ids)
    out: dict[str, tuple[str, str]] = {}
    _need("squeue")
    r = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-u", str(os.getuid()), "-o", "%i|%T|%r"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise MilestonesError(f"squeue failed: {(r.stderr or r.stdout).strip()[:300]}")
    for line in r.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] in ids:
            out[parts[0]] = (parts[1], parts[2])
    missing = sorted(ids - set(out))
    if missing:
        r = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(missing)],
                           capture_output=True, text=True, timeout=60) if shutil.which("sacct") else None
        for line in r.stdout.splitlines() if r is not None and r.returncode == 0 else []:
            parts = line.strip().split("|")
            if len(parts) == 2 and parts[0] in ids:
                out[parts[0]] = (parts[1].split()[0], "")
    return out


def _read_report(sub: Submission, job_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((sub.folder / JOB_REPORTS_DIR / f"{job_id}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def states(sub: Submission) -> list[JobState]:
    q = _queue(j.job_id for j in sub.jobs)
    out = []
    for j in sub.jobs:
        rep = _read_report(sub, j.job_id)
        state, reason = q.get(j.job_id, ("", ""))
        if not state:  # forgotten by the queue and no accounting: the job's own report says how it ended
            state = "COMPLETED" if rep and rep.get("state") in ("done", "stopped") else "UNKNOWN"
        out.append(JobState(j.job_id, state, reason if reason and reason != "None" else None, rep))
    return out


def watch(sub: Submission, *, poll_s: float = 5.0, on_change: Callable[[JobEntry, JobState], None] | None = None,
          timeout_s: float | None = None) -> list[JobState]:
    """Poll until every job has ended or is blocked (pending for a reason waiting cannot resolve)."""
    last: dict[str, tuple] = {}
    ended: dict[str, float] = {}
    t_end = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        now_states = states(sub)
        for j, s in zip(sub.jobs, now_states):
            key = (s.state, s.reason, (s.report or {}).get("state"))
            if last.get(j.job_id) != key:
                last[j.job_id] = key
                if on_change:
                    on_change(j, s)
            if s.final:
                ended.setdefault(j.job_id, time.monotonic())

        def settled(s: JobState) -> bool:
            # A cancelled job writes its cases' records in the seconds Slurm gives it after SIGTERM
            # (KillWait): wait for its report, unless it was killed before it could write one.
            running = (s.report or {}).get("state") == "running"
            return s.blocked or (s.final and (not running or time.monotonic() - ended[s.job_id] > SETTLE_S))

        if all(settled(s) for s in now_states):
            return states(sub)
        if t_end is not None and time.monotonic() > t_end:
            return now_states
        time.sleep(poll_s)


def cancel(sub: Submission, job_ids: Iterable[str] | None = None) -> None:
    ids = list(job_ids) if job_ids else [j.job_id for j in sub.jobs]
    _need("scancel")
    r = subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise MilestonesError(f"scancel failed: {(r.stderr or r.stdout).strip()[:300]}")
