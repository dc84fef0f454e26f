"""The fork server: case processes forked from one interpreter that imported torch once."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from milestones.harness.launch import forkserver
from milestones.harness.launch.process import CaseProcess
from milestones.harness.registry import load_suites
from milestones.harness.runner import RunOptions, plan_specs

TARGET = """
import os, sys, time
from pathlib import Path
out = Path(sys.argv[1])
what = sys.argv[2]
out.write_text(f"{os.getppid()} {os.getpgrp()} {os.getpid()} {os.getcwd()} {os.environ.get('FS_TEST_VAR')} "
               f"{'torch' in sys.modules} {__name__}")
if what == "exit3":
    sys.exit(3)
if what == "raise":
    raise ValueError("boom from the case")
if what == "hang":
    time.sleep(60)
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fsmod")
    (folder / "fs_target.py").write_text(TARGET)
    env = dict(os.environ, PYTHONPATH=str(folder), FS_TEST_VAR="launcher")
    # An interpreter wrapper that sets a variable, as an `ab` side's virtualenv wrapper may.
    wrapper = folder / "py-wrapper"
    wrapper.write_text(f"#!/bin/sh\nFS_TEST_VAR=wrapper exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    s = forkserver.ForkServer(str(wrapper), env)
    yield s, env
    s.close()


def _start(server, tmp_path: Path, what: str):
    s, _ = server
    out, log = tmp_path / f"out-{what}", tmp_path / f"log-{what}"
    case = s.start("fs_target", [str(out), what], cwd=str(tmp_path), log=str(log))
    return case, out, log


@pytest.mark.slow
def test_forked_case_runs_as_main_in_its_own_session_folder_and_environment(server, tmp_path):
    case, out, log = _start(server, tmp_path, "ok")
    assert case.wait(timeout=60) == 0
    ppid, pgrp, pid, cwd, var, has_torch, name = out.read_text().split()
    assert int(ppid) == server[0].proc.pid  # forked by the server
    assert int(pgrp) == int(pid) == case.pid  # leads its own group: a timeout kills the whole group
    assert cwd == str(tmp_path)
    assert var == "wrapper"  # the environment its interpreter started with, wrapper included
    assert has_torch == "True"  # imported once, in the server
    assert name == "__main__"
    assert "done" in log.read_text()


@pytest.mark.slow
def test_exit_codes_and_crashes_reach_the_launcher_and_the_server_survives(server, tmp_path):
    case, _, _ = _start(server, tmp_path, "exit3")
    assert case.wait(timeout=60) == 3
    case, _, log = _start(server, tmp_path, "raise")
    assert case.wait(timeout=60) == 1
    assert "boom from the case" in log.read_text()
    case, out, _ = _start(server, tmp_path, "hang")
    with pytest.raises(subprocess.TimeoutExpired):
        case.wait(timeout=0.2)
    os.killpg(case.pid, 9)
    assert case.wait(timeout=60) == -9
    assert server[0].alive()
    case, _, _ = _start(server, tmp_path, "ok")
    assert case.wait(timeout=60) == 0


@pytest.mark.slow
def test_run_uses_the_server_for_cpu_cases_and_says_so_in_the_record(tmp_path, monkeypatch):
    reg = load_suites()
    opts = RunOptions(kinds=("fidelity",), scale="smoke", device="cpu", out=tmp_path / "res", timeout=300)
    spec = dataclasses.replace(plan_specs(reg.resolve(["resnet18"]), opts, "cpu")[0], workdir=str(tmp_path / "w"))
    res = CaseProcess().run(spec)
    assert res.status == "ok", res.error
    assert res.info["process_start"] == "fork server"
    monkeypatch.setenv(forkserver.ENV_SWITCH, "0")
    res0 = CaseProcess().run(spec)
    assert res0.status == "ok", res0.error
    assert res0.info["process_start"] == "interpreter"
    # Same case, same figures, whichever way its process started.
    assert res.metrics["params"].samples == res0.metrics["params"].samples


def test_servers_are_reused_per_environment_and_bounded(monkeypatch):
    made = []

    class Fake:
        def __init__(self, python, env):
            self.closed = False
            made.append(self)

        def alive(self):
            return not self.closed

        def close(self):
            self.closed = True

    monkeypatch.setattr(forkserver, "ForkServer", Fake)
    monkeypatch.setattr(forkserver, "_SERVERS", {})
    a = forkserver.server_for("py", {"X": "1"})
    assert forkserver.server_for("py", {"X": "1"}) is a
    b = forkserver.server_for("py", {"X": "2"})
    assert b is not a
    for i in range(forkserver.MAX_SERVERS):
        forkserver.server_for("py", {"X": f"more{i}"})
    assert a.closed and b.closed  # the least recently used went first
    assert len(forkserver._SERVERS) == forkserver.MAX_SERVERS
    a.closed = False
    a.closed = True
    assert forkserver.server_for("py", {"X": "1"}) is not a  # a dead server is replaced


@pytest.mark.parametrize(("device", "switch", "expected"), [
    ("cpu", None, True), ("cpu", "0", False), ("cpu", "off", False), ("cuda", None, False), ("cuda:1", None, False),
])
def test_which_cases_are_forked(monkeypatch, device, switch, expected):
    class Spec:
        requested_device = device

    if switch is None:
        monkeypatch.delenv(forkserver.ENV_SWITCH, raising=False)
    else:
        monkeypatch.setenv(forkserver.ENV_SWITCH, switch)
    assert forkserver.wanted(Spec()) is (expected and sys.platform.startswith("linux"))


@pytest.mark.slow
def test_the_server_dies_with_its_launcher(tmp_path):
    """A launcher killed with SIGKILL leaves no server (nor case) behind."""
    script = tmp_path / "launcher.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        from milestones.harness.launch import forkserver
        s = forkserver.ForkServer(sys.executable, dict(os.environ))
        print(s.proc.pid, flush=True)
        import time; time.sleep(120)
    """))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    server_pid = int(p.stdout.readline())
    p.kill()
    p.wait()
    for _ in range(100):
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the fork server outlived its launcher")


@pytest.mark.slow
def test_peak_rss_is_not_compared_across_process_starts():
    """A forked case starts with torch resident; a fresh interpreter does not: their RSS peaks differ by
    tens of MB for the same work, so a compare across the two says so instead of a verdict."""
    from milestones.harness import compare

    folder = Path(__file__).parent / "fixtures" / "records" / "torch" / "amd-epyc-7b13-64-core-pr-0001"
    base = [x.record for x in compare.load([folder / "20260302T000000Z-torch0"])]
    forked = [dataclasses.replace(r, info={**r.info, "process_start": "fork server"}) for r in base]

    def rss_rows(a, b):
        return {r.config: r for r in compare.compare_runs(a, b)[0] if r.metric.endswith(".peak_rss")}

    rows = rss_rows(base, forked)
    assert rows and all(r.verdict == "not comparable" and "started differently" in r.result.reason
                        for r in rows.values())
    assert all(r.verdict != "not comparable" for r in rss_rows(forked, forked).values())
    assert all(r.verdict != "not comparable" for r in rss_rows(base, base).values())
