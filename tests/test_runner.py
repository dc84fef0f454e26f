"""Runner isolation: each case in its own process; crash, hang, OOM and divergence become records."""

import json
import os
import time
from pathlib import Path

import pytest

from milestones.harness import env as envmod
from milestones.harness import store
from milestones.harness.records import RunRecord
from milestones.harness.registry import load_suites
from milestones.harness.runner import RunOptions, execute, plan


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_faulty_cases_each_leave_a_record_and_the_run_goes_on(tmp_path, monkeypatch):
    pidfile = tmp_path / "hang.pids"
    monkeypatch.setenv("FAKE_HANG_PIDFILE", str(pidfile))
    reg = load_suites()
    names = ["fake-crash", "fake-segv", "fake-hang", "fake-oom", "fake-nan", "fake-ok"]
    opts = RunOptions(kinds=("speed",), scale="smoke", device="cpu", out=tmp_path / "res", timeout=20)
    cases = plan(reg.resolve(names), opts, "cpu")
    res = execute(cases, opts, reg, envmod.capture())
    status = {r.case.config: r for r in res.records}
    assert {k: v.status for k, v in status.items()} == {
        "fake-crash": "failed", "fake-segv": "failed", "fake-hang": "timeout", "fake-oom": "oom",
        "fake-nan": "diverged", "fake-ok": "ok"}
    assert "injected crash" in status["fake-crash"].error
    assert "SIGKILL" in status["fake-segv"].error
    assert status["fake-nan"].info["diverged_at_step"] == 5
    assert status["fake-ok"].metrics["batch"].value == 2  # cpu_batch_size, never changed silently
    # every record is on disk and valid
    files = sorted(p for p in res.folder.glob("*.json") if p.name != store.RUN_MANIFEST)
    assert len(files) == 6
    for f in files:
        RunRecord.from_json(f.read_text())
    # the hung case's whole process group is gone, grandchild included
    leader, child = map(int, pidfile.read_text().split())
    deadline = time.time() + 10
    while (_alive(leader) or _alive(child)) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(leader) and not _alive(child)


@pytest.mark.slow
def test_cli_run_end_to_end_with_failures_and_exit_code(cli, tmp_path):
    out = tmp_path / "res"
    r = cli("run", "fake-ok", "fake-crash", "cifar-resnet20", "--kind", "speed,fidelity", "--out", str(out),
            "--timeout", "120")
    assert r.returncode == 1, r.stderr
    assert "fake-crash" in r.stdout and "failed" in r.stdout
    recs = store.load_records(out)
    by = {(x.case.config, x.case.kind): x.status for x in recs}
    assert by == {("fake-ok", "speed"): "ok", ("fake-crash", "speed"): "failed",
                  ("cifar-resnet20", "fidelity"): "ok"}
    fid = next(x for x in recs if x.case.config == "cifar-resnet20")
    assert fid.metrics["params"].value == 269722
    assert fid.env["machine_id"] == "test-machine" and fid.suite_version
    manifest = json.loads(next(out.rglob(store.RUN_MANIFEST)).read_text())
    assert len(manifest["cases"]) == 3


@pytest.mark.parametrize("args,msg", [
    (["run", "resnt"], "did you mean 'resnet'"),
    (["run", "--kind", "speeed"], "unknown kind 'speeed'"),
    (["run", "--scale", "huge"], "unknown scale 'huge'"),
    (["run", "--device", "tpu"], "unknown device 'tpu'"),
    (["run", "--dtype", "float8"], "unknown dtype 'float8'"),
    (["run", "--batch-size", "0"], "positive integer"),
    (["run", "--timeout", "-1"], "positive number"),
    (["run", "fake-ok", "--data", "imagenet=/no/such/path"], "no such file or folder"),
    (["run", "fake-ok", "--config", "/no/such.toml"], "config file not found"),
    (["nosuchcommand"], "invalid choice"),
])
@pytest.mark.slow
def test_bad_input_is_one_line_exit_2(cli, args, msg):
    r = cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert msg in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_unwritable_out_touches_nothing(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    r = cli("run", "fake-ok", "--kind", "speed", "--out", str(blocker / "x"))
    assert r.returncode == 2 and "cannot write results" in r.stderr
    assert blocker.read_text() == "keep"


@pytest.mark.slow
def test_malformed_config_file(cli, tmp_path):
    f = tmp_path / "run.toml"
    f.write_text("[run]\nscale = 3\n")
    r = cli("run", "--config", str(f))
    assert r.returncode == 2 and "'scale' must be one of smoke, proxy, paper, not 3" in r.stderr
    f.write_text("[run]\nscael = 'smoke'\n")
    r = cli("run", "--config", str(f))
    assert r.returncode == 2 and "did you mean 'scale'" in r.stderr
    f.write_text("[run\n")
    r = cli("run", "--config", str(f))
    assert r.returncode == 2 and "not valid TOML" in r.stderr
