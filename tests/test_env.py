import json

import pynvml
import pytest

from milestones.harness import env


def test_capture_values_match_their_sources():
    import os
    import platform

    import torch

    e = env.capture()
    assert e["python"] == platform.python_version() and e["arch"] == platform.machine()
    assert e["logical_cores"] == (os.cpu_count() or 1) and e["cpu_model"] == env.cpu_model()
    assert e["threads"] == torch.get_num_threads() and e["torch"] == torch.__version__.split("+")[0]
    assert e["cuda"] == torch.version.cuda and e["cuda_available"] == torch.cuda.is_available()
    nv = e["nvidia"]
    assert e["gpu"] == (nv["gpus"][0]["name"] if nv["gpus"] else None)
    if nv["gpus"]:
        assert nv["available"] is True and all(g["name"] for g in nv["gpus"])
    if not nv["available"]:
        assert nv["reason"] and nv["gpus"] == []
    override = os.environ.get("MILESTONES_MACHINE_ID")
    assert e["machine_id"] == (override or env.machine_id(e["cpu_model"], e["logical_cores"], nv["gpus"]))
    assert set(e["env_vars"]) <= set(env.ENV_ALLOW_LIST)
    assert {k: os.environ[k] for k in env.ENV_ALLOW_LIST if k in os.environ} == e["env_vars"]
    load = e["hygiene"]["loadavg"]
    assert len(load) == 3 and all(x >= 0 for x in load)
    from milestones.harness import __version__

    assert e["milestones"] == __version__ and e["git"] == env.git_state()
    json.dumps(e)  # records must serialise it


def test_nvml_error_gives_explicit_no_driver_entry(monkeypatch):
    def boom():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", boom)
    nv = env.nvidia_gpus()
    assert nv["available"] is False and nv["gpus"] == []
    assert nv["reason"].startswith("no NVIDIA driver")


def test_machine_id_is_stable_and_hardware_keyed(monkeypatch):
    monkeypatch.delenv("MILESTONES_MACHINE_ID", raising=False)
    a = env.machine_id("Some CPU", 2, [])
    assert a == env.machine_id("Some CPU", 2, [])
    assert a != env.machine_id("Some CPU", 4, [])
    gpu = [{"name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 85e9}]
    assert env.machine_id("Some CPU", 2, gpu).startswith("nvidia-h100")
    monkeypatch.setenv("MILESTONES_MACHINE_ID", "ci-a100")
    assert env.machine_id("Some CPU", 2, gpu) == "ci-a100"


def test_only_allow_listed_variables_are_recorded(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    e = env.capture()
    assert e["env_vars"].get("OMP_NUM_THREADS") == "2"
    assert "secret" not in json.dumps(e)


def test_git_state_matches_git(tmp_path):
    import subprocess

    root = env.PROJECT_ROOT
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    g = env.git_state()
    if head.returncode != 0:  # a copy without .git (an sdist, a tarball)
        assert g == {"commit": None, "dirty": None, "note": "not a git checkout"}
    else:
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True).stdout
        assert g == {"commit": head.stdout.strip(), "dirty": bool(status.strip())}
    assert env.git_state(tmp_path) == {"commit": None, "dirty": None, "note": "not a git checkout"}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for args in (["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True)
    (tmp_path / "f").write_text("1")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "x"], check=True)
    clean = env.git_state(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (tmp_path / "f").write_text("2")
    assert env.git_state(tmp_path) == {"commit": clean["commit"], "dirty": True}


@pytest.mark.slow
def test_env_cli(cli):
    r = cli("env", "--json")
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)
    assert e["machine_id"] == "test-machine" and "no NVIDIA driver" in e["nvidia"]["reason"] or e["nvidia"]["available"]
    r = cli("env")
    assert r.returncode == 0 and "torch threads" in r.stdout
