"""A fork server for case processes: one interpreter per environment imports torch once (~2 s here, with
torch._dynamo that the FLOP counter pulls in), and every case process is forked from it.

Each case still gets its own process, started from the same clean state, in its own session (its timeout
kills its whole group), with its own working folder, environment and log; the server has run no torch
code, so nothing of one case reaches another. Used for CPU cases on Linux only: a CUDA context must not
exist in a process that forks, and the server keeps it that way by never touching the GPU, but that cannot
be checked on a machine without one, so GPU cases keep a fresh interpreter. `MILESTONES_FORK_SERVER=0`
turns it off.

The server is a short program sent with `python -c`, so it works with any interpreter and any checkout
(an `ab` side on an old revision has no module to run it from).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ENV_SWITCH = "MILESTONES_FORK_SERVER"

# Runs in the server's interpreter. Protocol, one JSON line per request on stdin:
#   {"module", "argv", "cwd", "log", "env"}  ->  "PID <pid>"  ...  "EXIT <pid> <wait status>"
# ("env": variables for this case only, on top of the server's own environment)
# One case at a time: the launcher waits for a case before it starts the next. A case gets the
# environment the server's interpreter started with: one server per launcher environment.
SERVER = r"""
import json, os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher decides what an interrupt does to a case
try:
    import ctypes
    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG: die with the launcher
except Exception:
    pass
# The environment as the interpreter started (a side's wrapper script may have set some of it).
base_env = dict(os.environ)
os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"  # a CUDA check here must not create a context
import torch
try:
    import torch.utils.flop_counter, torch._dynamo  # what a case's first FLOP count would import
except Exception:
    pass
out = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # a stray print here must not corrupt the protocol
out.write("READY\n")
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1); os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.chdir(req["cwd"])
            os.environ.clear(); os.environ.update(base_env); os.environ.update(req.get("env") or {})
            os.environ["MILESTONES_PARENT_PID"] = str(os.getppid())
            sys.stdin = open(os.devnull)
            sys.stdout = os.fdopen(1, "w", buffering=1); sys.stderr = os.fdopen(2, "w", buffering=1)
            import runpy
            sys.argv = [req["module"], *req["argv"]]
            try:
                runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, (int, type(None))):
                    print(e.code, file=sys.stderr)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush(); sys.stderr.flush()
            finally:
                os._exit(code)
    out.write(f"PID {pid}\n")
    _, status = os.waitpid(pid, 0)
    out.write(f"EXIT {pid} {status}\n")
"""


def wanted(spec: Any) -> bool:
    """Fork from the server for this case? CPU cases on Linux, unless switched off."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    device = (spec.requested_device or "auto").split(":")[0]
    if device == "cpu":
        return True
    # "auto" resolves to the CPU when no GPU driver is present at all.
    return device == "auto" and not any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/kfd"))


class ServerDied(RuntimeError):
    pass


class ForkServer:
    """One server process: an interpreter with torch imported, forking case processes on request."""

    def __init__(self, python: str, env: dict[str, str]):
        self.env = env
        self.proc = subprocess.Popen([python, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, cwd="/")
        self._buf = b""
        self._dead = False
        self._lock = threading.Lock()
        if self._line(timeout=600.0) != "READY":
            self.close()
            raise ServerDied("the fork server did not start")

    def _line(self, timeout: float | None) -> str | None:
        """The next protocol line, or None on timeout; ServerDied if the server is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                self._dead = True  # even before the kernel lets poll() see it: server_for starts another
                raise ServerDied("the fork server exited")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def alive(self) -> bool:
        return not self._dead and self.proc.poll() is None

    def start(self, module: str, argv: list[str], *, cwd: str, log: str,
              env: dict[str, str] | None = None) -> ForkedCase:
        self._lock.acquire()
        try:
            req = {"module": module, "argv": argv, "cwd": cwd, "log": log, "env": dict(env or {})}
            try:
                self.proc.stdin.write((json.dumps(req) + "\n").encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):  # killed since its last case
                self._dead = True
                raise ServerDied("the fork server exited") from None
            line = self._line(timeout=60.0)
            if not line or not line.startswith("PID "):
                raise ServerDied(f"the fork server did not start the case ({line!r})")
            return ForkedCase(self, int(line.split()[1]))
        except BaseException:
            self._lock.release()
            raise

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            self.proc.wait()


class ForkedCase:
    """What the launcher needs of a Popen: pid (the leader of the case's own process group), wait, returncode."""

    def __init__(self, server: ForkServer, pid: int):
        self.server, self.pid, self.returncode = server, pid, None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        line = self.server._line(timeout)
        if line is None:
            raise subprocess.TimeoutExpired(f"case process {self.pid}", timeout or 0.0)
        _, pid, status = line.split()
        if int(pid) != self.pid:
            raise ServerDied(f"the fork server reported process {pid}, expected {self.pid}")
        self.returncode = os.waitstatus_to_exitcode(int(status))
        self.server._lock.release()
        return self.returncode


_SERVERS: dict[tuple, ForkServer] = {}
MAX_SERVERS = 3  # `ab` alternates two sides; a third for the current checkout


def server_for(python: str, env: dict[str, str]) -> ForkServer:
    """The server for this interpreter and environment (a new one when either changed)."""
    key = (python, tuple(sorted(env.items())))
    s = _SERVERS.pop(key, None)
    if s is None or not s.alive():
        s = ForkServer(python, env)
    _SERVERS[key] = s  # most recently used last
    while len(_SERVERS) > MAX_SERVERS:
        _SERVERS.pop(next(iter(_SERVERS))).close()
    return s


@atexit.register
def close_all() -> None:
    while _SERVERS:
        _SERVERS.popitem()[1].close()
