"""nox: the sessions the project documents exist, with the torch matrix, and lint really runs ruff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _nox(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nox", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_session_listing():
    r = _nox("-l")
    assert r.returncode == 0, r.stderr
    listed = {ln[2:].split(" -> ")[0]: ln[0] for ln in r.stdout.splitlines() if ln[:2] in ("* ", "- ")}
    assert {"tests", "lint", "smoke", "report", "bench(torch='2.13.0')", "bench(torch='2.14.1')"} <= set(listed)
    assert [n for n, mark in listed.items() if mark == "*"] == ["tests"]  # the default stays the test suite


def test_lint_session_runs_ruff_and_fails_on_a_violation(tmp_path):
    good = ROOT / "harness" / "mllog.py"
    assert _nox("-s", "lint", "--", str(good)).returncode == 0
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")  # F401: unused import
    r = _nox("-s", "lint", "--", "--no-cache", str(bad))
    assert r.returncode != 0 and "F401" in r.stdout + r.stderr


def test_nightly_workflow_uses_real_cli_flags():
    import yaml

    from milestones.harness.cli import build_parser

    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly.yml").read_text())
    job = wf["jobs"]["benchmark"]
    assert all("self-hosted" in m["runner"] for m in job["strategy"]["matrix"]["include"])
    script = "\n".join(s.get("run", "") for s in job["steps"])
    assert "--fail-on regression" in script and "GITHUB_STEP_SUMMARY" in script
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in job["steps"])
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    compare_flags = {o for a in sub["compare"]._actions for o in a.option_strings}
    report_flags = {o for a in sub["report"]._actions for o in a.option_strings}
    assert {"--fail-on", "--format", "--summary"} <= compare_flags and {"--out", "--base"} <= report_flags
