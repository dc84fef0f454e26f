"""The case-process launcher: one fresh interpreter per case (clean memory peaks, no global state leaking
from another model), a timeout that kills the case's whole process group, and a result whatever happens.
A case that dies, hangs or is interrupted still returns a CaseResult; what a quality case finished before
that (its per-seed results, its last progress lines) is kept, marked partial."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from milestones.harness.context import PROGRESS_FILE
from milestones.harness.launch.spec import DISK_FULL_EXIT, CaseResult, CaseSpec
from milestones.harness.records import DISK_FULL_KEY, Metric
from milestones.harness.worker import PARENT_PID_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_TAIL_CHARS = 3000
# In the record: a forked case process starts with torch imported, so its peak RSS baseline differs.
PROCESS_START = {"ForkedCase": "fork server", "Popen": "interpreter"}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


# Every process a case starts inherits this variable (a fresh value per case), so what escaped its
# process group with setsid() is still found, and killed, when the case ends.
CASE_TOKEN_ENV = "MILESTONES_CASE_TOKEN"
LEFTOVER_GRACE_S = 2.0


def _proc_table() -> list[tuple[int, int, bytes]]:
    """(pid, process group, environment) of every live process this user can read (Linux /proc)."""
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for d in names:
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            if fields[0] in (b"Z", b"X"):  # gone already, waiting to be reaped
                continue
            with open(f"/proc/{d}/environ", "rb") as f:
                environ = f.read()
        except (OSError, ValueError, IndexError):
            continue
        out.append((int(d), int(fields[2]), environ))
    return out


def case_leftovers(pgid: int, token: str | None) -> list[int]:
    """Processes left by an ended case: in its process group, or anywhere with its token."""
    needle = f"{CASE_TOKEN_ENV}={token}\0".encode() if token else None
    return [pid for pid, grp, environ in _proc_table()
            if grp == pgid or (needle is not None and (needle in environ or environ.endswith(needle[:-1])))]


def kill_leftovers(pgid: int, token: str | None, grace: float = LEFTOVER_GRACE_S) -> int:
    """Kill what a case left running after it ended (a child that ignores SIGTERM, one that called
    setsid()): SIGTERM, then SIGKILL after `grace` seconds. Returns how many there were."""
    first = case_leftovers(pgid, token)
    if not first:
        return 0
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in case_leftovers(pgid, token):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 5.0)
        while case_leftovers(pgid, token) and time.monotonic() < deadline:
            time.sleep(0.05)
    return len(first)


def kill_group(p: subprocess.Popen, grace: float = 3.0) -> None:
    """Terminate the case's whole process group (its own children included), then kill what is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            try:  # the leader is gone; children may linger in the group
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        except subprocess.TimeoutExpired:
            continue


def read_progress(workdir: Path) -> list[dict[str, Any]]:
    """The progress events a case wrote before it ended (a torn last line is ignored)."""
    path = workdir / PROGRESS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict):
            out.append(ev)
    return out


def partial_metrics(events: Sequence[dict[str, Any]], why: str) -> tuple[dict[str, Metric], dict[str, Any]]:
    """Per-seed values the case reported with ctx.seed_done, as metrics marked partial; and what to keep
    in the record's info (seeds finished, the last progress events)."""
    from milestones.harness.suite_api import direction

    done = [e for e in events if e.get("event") == "seed_done"]
    values: dict[str, list[float]] = {}
    units: dict[str, str] = {}
    for e in done:
        for name, v in (e.get("metrics") or {}).items():
            try:
                values.setdefault(name, []).append(float(v))
            except (TypeError, ValueError):
                continue
            units[name] = (e.get("unit") or {}).get(name, units.get(name, ""))
    seeds = [e.get("seed") for e in done]
    metrics: dict[str, Metric] = {}
    undirected = []
    for name, vs in values.items():
        try:
            hib = direction(name)
        except KeyError:
            undirected.append(name)
            continue
        metrics[name] = Metric.from_values(name, units[name], hib, vs,
                                           note=f"partial: {len(vs)} seed(s) finished before the case {why}")
    info: dict[str, Any] = {"partial": {"seeds_finished": seeds, "why": why,
                                        "last_progress": [e for e in events if e.get("event") == "progress"][-5:]}}
    if undirected:
        info["partial"]["values_without_direction"] = {n: values[n] for n in undirected}
    return metrics, info


def _log_tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:] if log_path.exists() else ""


@dataclass(frozen=True)
class CaseProcess:
    """Starts `PYTHON -m MODULE SPEC RESULT` (the worker, or torchrun's launcher) and waits for it.

    python: another interpreter (an A/B run against another virtualenv); pythonpath: folders put first on
    its import path (another checkout's code).
    """

    python: str = sys.executable
    pythonpath: tuple[str, ...] = ()
    worker_module: str = "milestones.harness.worker"  # "harness.worker" for a checkout of the old layout
    extra_env: tuple[tuple[str, str], ...] = ()

    def command(self, spec: CaseSpec, spec_path: Path, result_path: Path) -> list[str]:
        from milestones.harness.launch import torchrun

        if torchrun.wanted(spec):
            return torchrun.command(self.python, spec, spec_path, result_path)
        return [self.python, "-m", self.worker_module, str(spec_path), str(result_path)]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The repository root too, so out-of-tree suites named in $MILESTONES_EXTRA_SUITES (tests.*) import.
        paths = [*self.pythonpath, str(REPO_ROOT)]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env[PARENT_PID_ENV] = str(os.getpid())
        env.update(dict(self.extra_env))
        return env

    def start(self, spec: CaseSpec, spec_path: Path, result_path: Path, log: Any, log_path: Path,
              workdir: Path, token: str | None = None) -> Any:
        """The case's process: forked from the fork server when it serves this case, else a new interpreter."""
        from milestones.harness.launch import forkserver, torchrun

        env = self.environment()
        case_env = {CASE_TOKEN_ENV: token} if token else {}
        if not torchrun.wanted(spec) and forkserver.wanted(spec):
            for _ in range(2):  # a server killed since its last case is replaced once
                try:
                    # The token goes with the request, not the server's environment: one server serves every case.
                    server = forkserver.server_for(self.python, env)
                    return server.start(self.worker_module, [str(spec_path), str(result_path)], cwd=str(workdir),
                                        log=str(log_path), env=case_env)
                except forkserver.ServerDied:
                    continue  # then a fresh interpreter still runs the case
        # cwd: the workdir, so that `-m` puts no unrelated folder (the caller's checkout) first on the path.
        return subprocess.Popen(self.command(spec, spec_path, result_path), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env={**env, **case_env},
                                cwd=str(workdir))

    def run(self, spec: CaseSpec) -> CaseResult:
        if not spec.workdir:
            raise ValueError("a case process needs a workdir")
        # Absolute paths: the case process starts in its workdir, where a relative `--out` no longer resolves.
        workdir = Path(spec.workdir).resolve()
        spec = dataclasses.replace(spec, workdir=str(workdir), checkpoint_dir=(
            str(Path(spec.checkpoint_dir).resolve()) if spec.checkpoint_dir else spec.checkpoint_dir))
        workdir.mkdir(parents=True, exist_ok=True)
        spec_path, result_path, log_path = workdir / "spec.json", workdir / "result.json", workdir / "stderr.log"
        spec.write(spec_path)
        from milestones.harness.launch import forkserver

        token = secrets.token_hex(8)
        ended_by, server_death = None, None
        with open(log_path, "wb") as log:
            p = self.start(spec, spec_path, result_path, log, log_path, workdir, token)
            # Timed from here: a fork server's start (seconds, once per run) is not the case's time.
            started, t0 = now(), time.perf_counter()
            try:
                p.wait(timeout=spec.timeout)
            except subprocess.TimeoutExpired:
                kill_group(p)
                ended_by = "timeout"
            except KeyboardInterrupt:
                kill_group(p, grace=1.0)
                ended_by = "interrupted"
            except forkserver.ServerDied as e:
                # The case's parent is gone; its group goes too, and the next case gets a new server.
                server_death = f"{e} (fork server pid {p.server.proc.pid})"
                ended_by = "server"
            stamps = {"started_at": started, "ended_at": now(), "duration_s": time.perf_counter() - t0}
            leftovers = kill_leftovers(p.pid, token, grace=0.0 if ended_by else LEFTOVER_GRACE_S)
        tail = _log_tail(log_path)
        if ended_by is None and result_path.exists():
            res = CaseResult.read(result_path)
            info = dict(res.info)
            info["process_start"] = PROCESS_START.get(type(p).__name__, "interpreter")
            if hasattr(p, "server"):
                info["fork_server_pid"] = p.server.proc.pid  # forks of one server share its memory layout
            if tail.strip():
                info["log_tail"] = tail
            if leftovers:
                info["leftover_processes_killed"] = leftovers
            return res.replace(info=info, **stamps)
        if ended_by == "timeout":
            status, error, why = "timeout", f"timed out after {spec.timeout:g} s; process group killed", "timed out"
        elif ended_by == "interrupted":
            status, error, why = "interrupted", "interrupted (SIGINT) while running", "was interrupted"
        elif ended_by == "server":
            status, why = "failed", "lost its fork server"
            error = f"the fork server died while running the case: {server_death}; the case was killed"
        elif p.returncode == DISK_FULL_EXIT:
            status, why = "failed", "could not write its result"
            error = ("the case could not write its result: no space left on the disk (or a quota or file-size "
                     "limit); free space, then --resume runs it again")
        else:
            rc = p.returncode
            sig = -rc if rc and rc < 0 else None
            how = f"killed by signal {signal.Signals(sig).name}" if sig else f"exited with code {rc}"
            last = next((ln for ln in reversed(tail.strip().splitlines()) if ln.strip()), "")
            status, why = "failed", "crashed"
            error = f"case process {how} without a result" + (f": {last[:300]}" if last else "")
        metrics, info = partial_metrics(read_progress(workdir), why)
        info["log_tail"] = tail
        if ended_by is None:
            info["returncode"] = p.returncode
            if p.returncode == DISK_FULL_EXIT:
                info[DISK_FULL_KEY] = True
        if ended_by == "server":
            info["fork_server_died"] = True
        if leftovers:
            info["leftover_processes_killed"] = leftovers
        return CaseResult(status=status, error=error, metrics=metrics, info=info, **stamps)
