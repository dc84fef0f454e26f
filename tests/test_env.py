import json

import pynvml

from milestones.harness import env


def test_capture_fields_without_gpu():
    e = env.capture()
    for k in ("python", "os", "cpu_model", "logical_cores", "threads", "torch", "cuda", "cudnn", "nccl",
              "nvidia", "git", "machine_id", "hygiene", "env_vars"):
        assert k in e, k
    assert e["logical_cores"] >= 1 and e["threads"] >= 1
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


def test_git_state_of_project():
    g = env.git_state()
    assert g["commit"] is None or len(g["commit"]) == 40


def test_env_cli(cli):
    r = cli("env", "--json")
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)
    assert e["machine_id"] == "test-machine" and "no NVIDIA driver" in e["nvidia"]["reason"] or e["nvidia"]["available"]
    r = cli("env")
    assert r.returncode == 0 and "torch threads" in r.stdout
