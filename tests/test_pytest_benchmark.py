"""A real pytest-benchmark run of one kernel microbenchmark, its import into the store, and
--benchmark-compare-fail against a saved run (doctored so the verdict is known in advance)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from milestones.harness.cli import main
from milestones.harness.store import load_frame

ROOT = Path(__file__).resolve().parent.parent
ONE = "test_layer_norm and bert"


def _pytest(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    # A real benchmark run: not an xdist worker (pytest-benchmark disables itself under xdist, and would
    # see this test's worker through the inherited PYTEST_XDIST_* variables).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env.update({"MILESTONES_KERNEL_DEVICE": "cpu", "MILESTONES_KERNEL_SHAPES": "small",
                "MILESTONES_MACHINE_ID": "bench-box"})
    cmd = [sys.executable, "-m", "pytest", "tests/bench_kernels", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           "-k", ONE,
           "--benchmark-only", "--benchmark-max-time=0.02", "--benchmark-min-rounds=5",
           f"--benchmark-storage=file://{tmp / 'storage'}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pb")
    r = _pytest(tmp, f"--benchmark-json={tmp / 'k.json'}", "--benchmark-save=base", "--benchmark-save-data")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return tmp


@pytest.mark.slow
def test_json_carries_group_device_dtype_and_machine_id(saved_run):
    d = json.loads((saved_run / "k.json").read_text())
    (b,) = d["benchmarks"]
    assert b["group"] == "layernorm"
    assert b["extra_info"]["device"] == "cpu" and b["extra_info"]["dtype"] == "float32"
    assert b["extra_info"]["case"] == "bert.base.layernorm" and b["extra_info"]["shapes"] == "small"
    assert d["machine_info"]["machine_id"] == "bench-box" == d["machine_info"]["node"]
    assert len(b["stats"]["data"]) == b["stats"]["rounds"] >= 5


@pytest.mark.slow
def test_import_into_store(saved_run, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["import", "pytest-benchmark", str(saved_run / "k.json"), "--out", str(out)]) == 0
    assert main(["import", "pytest-benchmark", str(saved_run / "k.json"), "--out", str(out)]) == 0
    assert "already imported" in capsys.readouterr().out
    df = load_frame(out)
    row = df[df.metric == "kernel.step_time"].iloc[0]
    raw = json.loads((saved_run / "k.json").read_text())["benchmarks"][0]["stats"]
    assert (row["suite"], row["config"], row["device"], row["dtype"], row["status"]) == (
        "bert", "bert.base.layernorm", "cpu", "float32", "ok")
    assert row["machine_id"] == "bench-box" and row["torch"] and row["n"] == raw["rounds"]
    assert row["median"] == pytest.approx(raw["median"])
    assert len(df[df.metric == "kernel.step_time"]) == 1  # imported twice, stored once


def _doctor(storage: Path, factor: float) -> None:
    (f,) = list(storage.rglob("0001_base.json"))
    d = json.loads(f.read_text())
    st = d["benchmarks"][0]["stats"]
    for k in ("min", "max", "mean", "median", "q1", "q3", "ld15iqr", "hd15iqr"):
        st[k] *= factor
    f.write_text(json.dumps(d))


@pytest.mark.slow
def test_compare_fail_detects_a_regression(saved_run):
    # Stored times made 1000x faster: the new run is certainly >5% slower than that.
    _doctor(saved_run / "storage", 1e-3)
    r = _pytest(saved_run, "--benchmark-compare=0001", "--benchmark-compare-fail=median:5%")
    assert r.returncode != 0
    assert "Performance has regressed" in r.stdout + r.stderr
    assert "machine_info is different" not in r.stdout + r.stderr  # same hardware id: no spurious warning
    # Stored times made 1000x slower than the first run (1e6 x the doctored ones): no regression.
    _doctor(saved_run / "storage", 1e6)
    r = _pytest(saved_run, "--benchmark-compare=0001", "--benchmark-compare-fail=median:5%")
    assert r.returncode == 0, r.stdout[-2000:]


def test_malformed_file_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"benchmarks": [{"name": "x"}], "machine_info": {}, "datetime": "2024-01-01T00:00:00"}))
    assert main(["import", "pytest-benchmark", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lacks 'name' or 'stats'" in err
    bad.write_text("{not json")
    assert main(["import", "pytest-benchmark", str(bad)]) == 2
    assert main(["import", "pytest-benchmark", str(tmp_path / "missing.json")]) == 2
