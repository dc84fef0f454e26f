"""The burst launcher of `milestones ab`: a live case process per side that times bursts of steps on request.

`BurstProcess` starts `PYTHON -m <package>.burst_worker SPEC.json` (harness/burst_worker.py) in its own
session, like the case-process launcher, and talks to it over pipes, one JSON line each way. Every
wait has a deadline; a process that dies, hangs or answers garbage raises `BurstFailed` with the
tail of its log, and `close()` always leaves no process behind (its group and anything carrying its
case token are killed).
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milestones.harness.launch import process as launch
from milestones.harness.launch.spec import CaseSpec


class BurstFailed(Exception):
    """The burst process could not answer: `status` as a record says it, `error` one line, `info` extra."""

    def __init__(self, status: str, error: str, info: dict[str, Any] | None = None):
        super().__init__(error)
        self.status, self.error, self.info = status, error, dict(info or {})


def burst_module(worker_module: str) -> str:
    """milestones.harness.worker -> milestones.harness.burst_worker (harness.worker -> harness.burst_worker)."""
    return worker_module.rsplit(".", 1)[0] + ".burst_worker"


@dataclass
class BurstProcess:
    launcher: launch.CaseProcess
    spec: CaseSpec
    proc: subprocess.Popen | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    _buf: bytes = b""

    @property
    def log_path(self) -> Path:
        return Path(self.spec.workdir) / "stderr.log"

    def start(self) -> BurstProcess:
        workdir = Path(self.spec.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        spec_path = workdir / "spec.json"
        self.spec.write(spec_path)
        env = {**self.launcher.environment(), launch.CASE_TOKEN_ENV: self.token}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.launcher.python, "-m", burst_module(self.launcher.worker_module), str(spec_path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True, env=env,
                cwd=str(workdir))
        return self

    def _fail(self, why: str) -> BurstFailed:
        if self.proc is not None and "ended" in why:
            try:  # its output closed as it exited: wait a moment for the exit status that says how
                self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                pass
        tail = launch._log_tail(self.log_path)
        last = next((ln for ln in reversed(tail.strip().splitlines()) if ln.strip()), "")
        rc = self.proc.poll() if self.proc else None
        how = f" (exit {rc})" if rc is not None else ""
        return BurstFailed("timeout" if "no answer" in why else "failed",
                           f"burst process {why}{how}" + (f": {last[:300]}" if last else ""),
                           {"log_tail": tail})

    def read(self, timeout: float) -> dict[str, Any]:
        """The next reply, within `timeout` seconds."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise self._fail(f"gave no answer within {timeout:g} s")
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise self._fail("ended without an answer")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            raise self._fail(f"answered something that is not JSON: {line[:80]!r}") from None
        if not isinstance(msg, dict):
            raise self._fail(f"answered {line[:80]!r}")
        return msg

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._fail("closed its input") from None

    def ready(self, timeout: float) -> dict[str, Any]:
        """Wait for set-up; its `ready` message, or BurstFailed (status skipped/failed/oom) with why."""
        msg = self.read(timeout)
        if "failed" in msg:
            f = msg["failed"]
            raise BurstFailed(str(f.get("status", "failed")), str(f.get("error", "")), dict(f.get("info") or {}))
        if "ready" not in msg:
            raise self._fail(f"answered {sorted(msg)} before it was ready")
        return msg["ready"]

    def burst(self, n: int, timeout: float) -> dict[str, dict[str, list[float | None]]]:
        self.send({"burst": int(n)})
        msg = self.read(timeout)
        if "samples" not in msg:
            raise self._fail(f"answered {sorted(msg)} to a burst")
        return msg["samples"]

    def close(self, timeout: float = 10.0) -> dict[str, Any]:
        """Ask it to end; kill whatever is left either way. Its `end` message, or {}."""
        end: dict[str, Any] = {}
        if self.proc is None:
            return end
        try:
            if self.proc.poll() is None:
                self.send({"end": True})
                end = self.read(timeout).get("end") or {}
                self.proc.wait(timeout=timeout)
        except (BurstFailed, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                launch.kill_group(self.proc, grace=1.0)
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass
            launch.kill_leftovers(self.proc.pid, self.token, grace=0.0)
        return end
