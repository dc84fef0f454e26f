"""asv: the benchmarks generated from the registry, one real `asv run` in the current environment
on one smoke case (discovery included), and `milestones import asv` of its results."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from milestones.harness import asv_bridge
from milestones.harness.cli import main
from milestones.harness.errors import UsageError
from milestones.harness.records import Case
from milestones.harness.store import load_frame

ROOT = Path(__file__).resolve().parent.parent


def test_settings_from_env_and_version_round_trip():
    s = asv_bridge.BridgeSettings.from_env({"MILESTONES_SCALE": "proxy", "MILESTONES_SUITES": "gan, resnet"})
    assert (s.scale, s.suites, s.device) == ("proxy", ("gan", "resnet"), "auto")
    with pytest.raises(UsageError, match="did you mean 'smoke'"):
        asv_bridge.BridgeSettings.from_env({"MILESTONES_SCALE": "smoek"})
    case = Case("gan", "gan-smoke", "speed", "smoke", "cpu", "float32", 16)
    v = asv_bridge.case_version(case, "abc123")
    assert asv_bridge.parse_case_version(v) == ("abc123", case)
    assert asv_bridge.parse_case_version("e3b0c44298fc1c149afbf4c8996fb924") is None


def test_generated_classes_for_one_suite():
    classes = asv_bridge.make_benchmarks(asv_bridge.BridgeSettings(scale="smoke", device="cpu", suites=("gan",)))
    assert set(classes) == {"smoke_gan_smoke", "smoke_gan_smoke_harness"}
    step, harness_cls = classes["smoke_gan_smoke"], classes["smoke_gan_smoke_harness"]
    assert {"time_step", "peakmem_step", "setup"} <= set(vars(step))
    assert {"track_step_time", "track_throughput", "setup_cache"} <= set(vars(harness_cls))
    assert step.version == harness_cls.version and "|gan|gan-smoke|smoke|cpu|float32|" in step.version
    with pytest.raises(UsageError, match="unknown suite"):
        asv_bridge.make_benchmarks(asv_bridge.BridgeSettings(suites=("nosuchsuite",)))


def _conf(tmp: Path) -> Path:
    text = "\n".join(ln for ln in (ROOT / "asv.conf.json").read_text().splitlines() if not ln.strip().startswith("//"))
    conf = json.loads(text)
    assert conf["results_dir"].startswith("results/asv") and conf["html_dir"].startswith("results/asv")
    conf.update(repo=str(ROOT), benchmark_dir=str(ROOT / "benchmarks"), env_dir=str(tmp / "env"),
                results_dir=str(tmp / "asv" / "results"), html_dir=str(tmp / "asv" / "html"))
    path = tmp / "asv.conf.json"
    path.write_text(json.dumps(conf))
    return path


@pytest.mark.slow
def test_real_asv_run_and_import(tmp_path):
    if shutil.which("asv") is None:
        pytest.fail("asv is a project dependency but its command is not on PATH")
    conf = _conf(tmp_path)
    env = {**os.environ, "HOME": str(tmp_path), "MILESTONES_SUITES": "gan", "MILESTONES_DEVICE": "cpu"}
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--config", str(conf), "--machine", "ci-box", "--yes"], env=env, cwd=ROOT,
                   check=True, capture_output=True, timeout=120)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    # -E existing:same is `--python=same`; attributes keep it to one sample of each benchmark.
    r = subprocess.run([*asv, "run", "--config", str(conf), "-E", "existing:same", "--set-commit-hash", commit,
                        "--machine", "ci-box", "--bench", "smoke_gan_smoke", "--record-samples",
                        "-a", "repeat=1", "-a", "rounds=1", "-a", "warmup_time=0"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = tmp_path / "asv" / "results"
    discovered = json.loads((results / "benchmarks.json").read_text())
    names = {n for n in discovered if n.startswith("asv_suites.")}  # other benchmark modules may exist
    assert names == {"asv_suites.smoke_gan_smoke.time_step", "asv_suites.smoke_gan_smoke.peakmem_step",
                     "asv_suites.smoke_gan_smoke_harness.track_step_time",
                     "asv_suites.smoke_gan_smoke_harness.track_throughput"}
    (result_file,) = [p for p in (results / "ci-box").glob("*.json") if p.name != "machine.json"]
    raw = json.loads(result_file.read_text())
    assert all(v[0][0] is not None for v in raw["results"].values()), raw["results"]

    out = tmp_path / "store"
    assert main(["import", "asv", str(tmp_path / "asv"), "--out", str(out)]) == 0
    df = load_frame(out)
    assert set(df["config"]) == {"gan-smoke"} and set(df["status"]) == {"ok"}
    assert set(df["batch_size"]) == {16} and set(df["machine_id"]) == {"ci-box"}
    assert set(df["commit"]) == {commit}
    assert set(df["metric"]) == {"asv.time_step", "asv.peakmem_step", "asv.track_step_time", "asv.track_throughput"}
    track = df[df.metric == "asv.track_step_time"].iloc[0]
    thr = df[df.metric == "asv.track_throughput"].iloc[0]
    # Both tracks come from one harness measurement (throughput = batch / step time per sample).
    assert track["median"] > 0 and thr["median"] > 0
    assert re.fullmatch(r"asv-[0-9a-f]{8}-[0-9a-f]{6}", track["run_id"])
    assert main(["import", "asv", str(tmp_path / "nothing-here"), "--out", str(out)]) == 2


def test_malformed_asv_results_exit_2(tmp_path, capsys):
    (tmp_path / "benchmarks.json").write_text("{}")
    assert main(["import", "asv", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no machine folders" in capsys.readouterr().err
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "machine.json").write_text('{"machine": "box"}')
    (tmp_path / "box" / "abc-existing.json").write_text('{"results": [1, 2]}')
    assert main(["import", "asv", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an asv result file" in err


@pytest.mark.slow
def test_asv_check_finds_only_real_benchmarks(tmp_path):
    """`asv check` imports every module under benchmarks/ and takes any top-level `time_*`, `track_*`,
    `mem_*` or `peakmem_*` name for a benchmark: a helper imported by name there breaks the suite check."""
    conf = _conf(tmp_path)
    env = {**os.environ, "HOME": str(tmp_path), "MILESTONES_SUITES": "gan", "MILESTONES_DEVICE": "cpu"}
    r = subprocess.run([sys.executable, "-m", "asv", "check", "--config", str(conf), "--python=same"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "No problems found" in out and "check failed" not in out
