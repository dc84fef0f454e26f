"""The case-process launcher: one fresh interpreter per case (clean memory peaks, no global state leaking
from another model), a timeout that kills the case's whole process group, and a result whatever happens.
A case that dies, hangs or is interrupted still returns a CaseResult; what a quality case finished before
that (its per-seed results, its last progress lines) is kept, marked partial."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from milestones.harness.context import PROGRESS_FILE
from milestones.harness.launch.spec import CaseResult, CaseSpec
from milestones.harness.records import Metric
from milestones.harness.worker import PARENT_PID_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_TAIL_CHARS = 3000
# In the record: a forked case process starts with torch imported, so its peak RSS baseline differs.
PROCESS_START = {"ForkedCase": "fork server", "Popen": "interpreter"}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


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
              workdir: Path) -> Any:
        """The case's process: forked from the fork server when it serves this case, else a new interpreter."""
        from milestones.harness.launch import forkserver, torchrun

        env = self.environment()
        if not torchrun.wanted(spec) and forkserver.wanted(spec):
            try:
                server = forkserver.server_for(self.python, env)
                return server.start(self.worker_module, [str(spec_path), str(result_path)], cwd=str(workdir),
                                    log=str(log_path))
            except forkserver.ServerDied:
                pass  # a fresh interpreter still runs the case
        # cwd: the workdir, so that `-m` puts no unrelated folder (the caller's checkout) first on the path.
        return subprocess.Popen(self.command(spec, spec_path, result_path), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=str(workdir))

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
        started, t0 = now(), time.perf_counter()
        ended_by = None
        with open(log_path, "wb") as log:
            p = self.start(spec, spec_path, result_path, log, log_path, workdir)
            try:
                p.wait(timeout=spec.timeout)
            except subprocess.TimeoutExpired:
                kill_group(p)
                ended_by = "timeout"
            except KeyboardInterrupt:
                kill_group(p, grace=1.0)
                ended_by = "interrupted"
        stamps = {"started_at": started, "ended_at": now(), "duration_s": time.perf_counter() - t0}
        tail = _log_tail(log_path)
        if ended_by is None and result_path.exists():
            res = CaseResult.read(result_path)
            info = dict(res.info)
            info["process_start"] = PROCESS_START.get(type(p).__name__, "interpreter")
            if hasattr(p, "server"):
                info["fork_server_pid"] = p.server.proc.pid  # forks of one server share its memory layout
            if tail.strip():
                info["log_tail"] = tail
            return res.replace(info=info, **stamps)
        if ended_by == "timeout":
            status, error, why = "timeout", f"timed out after {spec.timeout:g} s; process group killed", "timed out"
        elif ended_by == "interrupted":
            status, error, why = "interrupted", "interrupted (SIGINT) while running", "was interrupted"
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
        return CaseResult(status=status, error=error, metrics=metrics, info=info, **stamps)
