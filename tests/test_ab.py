"""`milestones ab`: two interpreters and two git revisions, alternately, with real case processes.

The case (tests/ab_suites.py) sleeps for a known time per step; a side's "interpreter" is a wrapper
script around this Python that sets the side's environment, as a second virtualenv would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from milestones.harness import ab

ROOT = Path(__file__).resolve().parent.parent
SUITES = "tests.fake_suites,tests.ab_suites"


def _wrapper(folder: Path, name: str, env: str = "", flags: str = "") -> str:
    p = folder / name
    p.write_text(f"#!/bin/sh\n{env} exec {sys.executable} {flags} \"$@\"\n")
    p.chmod(0o755)
    return str(p)


def _records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json")) if p.name != "_run.json"]


@pytest.fixture
def ab_main(monkeypatch, capsys):
    """`milestones ab|compare|report ...` in this process (its own interpreter adds nothing the console-script
    tests elsewhere do not cover); the sides' interpreters are still real processes. Returns (code, out, err)."""
    import importlib

    from milestones.harness.cli import main

    monkeypatch.setenv("MILESTONES_EXTRA_SUITES", SUITES)
    importlib.import_module("tests.ab_suites")  # registers here too: load_suites reads the variable once per process
    monkeypatch.setenv("MILESTONES_MACHINE_ID", "test-machine")

    def run(*args: str):
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_round_order_alternates_abba():
    assert [ab.round_order(i) for i in range(4)] == [("base", "new"), ("new", "base")] * 2


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["bursts", "processes"])
def test_two_interpreters_2x_slower_is_regressed_and_compare_reads_it_back(cli, ab_main, tmp_path, protocol):
    slow = _wrapper(tmp_path, "py-slow", "AB_FACTOR=2")
    out = tmp_path / "res"
    env = {"MILESTONES_EXTRA_SUITES": SUITES}
    # The step sleeps: its wall time is the planted quantity (its CPU time is ~0).
    r = cli("ab", "abfake-step", "--new-python", slow, "--device", "cpu", "--max-rounds", "2", "--out", str(out),
            "--metric", "*.step_time", "--protocol", protocol, "--bursts", "4",
            "--format", "json", "--fail-on", "regression", env=env, timeout=600)
    assert r.returncode == 1, r.stderr
    res = json.loads(r.stdout)
    (row,) = res["rows"]
    assert row["verdict"] == "regressed" and row["rounds"] == 2 and len(row["round_ratios"]) == 2
    assert all(1.6 < x < 2.5 for x in row["round_ratios"])
    recs = _records(out)
    assert len(recs) == 4 and {x["info"]["ab"]["side"] for x in recs} == {"base", "new"}
    # Alternating order: the base side runs first in round 0, second in round 1.
    assert sorted((x["info"]["ab"]["round"], x["info"]["ab"]["order"]) for x in recs if x["info"]["ab"]["side"] == "base") \
        == [(0, 0), (1, 1)]
    assert {x["info"]["ab"]["protocol"] for x in recs} == {protocol}
    if protocol == "bursts":  # fresh interpreters each round, 4 bursts per side
        assert all(len(x["info"]["bursts"]["sizes"]) == 4 and x["info"]["process_start"] == "interpreter" for x in recs)
    # Whole processes come from fork servers started for that round (a server's forks share its
    # memory layout, which biased one side of an A/A pair by 16% in every round).
    servers = {(x["info"]["ab"]["round"], x["info"]["ab"]["side"]): x["info"].get("fork_server_pid") for x in recs}
    if sys.platform == "linux" and protocol == "processes":  # where cases are forked
        assert all(servers.values()), servers
        assert servers[(0, "base")] != servers[(1, "base")] and servers[(0, "new")] != servers[(1, "new")]
    run = Path(res["folder"])
    # Reading the run back needs no interpreter of its own: compare and report run in this process.
    code, out, err = ab_main("compare", str(run), "--format", "json")
    assert code == 0 and json.loads(out)["rows"][0]["verdict"] == "regressed", err
    # Mixed with ordinary records: bad input, nothing written.
    code, _, err = ab_main("compare", str(run), str(ROOT / "tests/fixtures/records/regress"))
    assert code == 2 and "mixed" in err and len(err.strip().splitlines()) == 1
    # The report shows the A/B run with its per-round ratios, beside ordinary runs.
    code, _, err = ab_main("report", str(run), str(ROOT / "tests/fixtures/records/regress"), "--out",
                           str(tmp_path / "r.md"), "--no-plots")
    assert code == 0, err
    text = (tmp_path / "r.md").read_text()
    assert "Interleaved A/B" in text and f"{row['round_ratios'][0]:.3f}" in text and "## Regressions" in text


@pytest.mark.slow
def test_a_case_failing_on_one_side_is_a_record_and_the_verdict_says_so(ab_main, tmp_path):
    failing = _wrapper(tmp_path, "py-fail", "AB_FAIL=1")
    out = tmp_path / "res"
    code, stdout, err = ab_main("ab", "abfake-step", "--new-python", failing, "--device", "cpu", "--max-rounds", "4",
                                "--out", str(out), "--format", "json")
    assert code == 0, err
    (row,) = json.loads(stdout)["rows"]
    assert row["verdict"] == "not comparable" and "new side failed" in row["reason"]
    statuses = sorted((x["info"]["ab"]["side"], x["status"]) for x in _records(out))
    # It stopped after the first round; the base side's live process was not timed without a partner.
    assert statuses == [("base", "skipped"), ("new", "failed")]
    base = next(x for x in _records(out) if x["info"]["ab"]["side"] == "base")
    assert "not timed: the new side failed" in base["error"] and "injected failure" in base["error"]


@pytest.mark.parametrize("args,msg", [
    (["--max-rounds", "0"], "budget"),
    (["--max-time", "0"], "budget"),
    pytest.param(["--base-rev", "no-such-revision-xyz"], "does not exist", marks=pytest.mark.slow),  # runs git
    ([], "two environments"),
])
def test_bad_input_exits_2_with_one_line(ab_main, tmp_path, args, msg):
    code, _, err = ab_main("ab", "abfake-step", "--device", "cpu", "--out", str(tmp_path / "res"), *args)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "res").exists()


@pytest.mark.slow
def test_environment_that_cannot_import_the_project_exits_2(ab_main, tmp_path):
    # -S: no site-packages, so neither torch nor an installed milestones: "cannot import the project".
    bare = _wrapper(tmp_path, "py-bare", flags="-S")
    code, _, err = ab_main("ab", "abfake-step", "--device", "cpu", "--new-python", bare, "--out", str(tmp_path / "res"))
    assert code == 2 and "cannot import the project" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "res").exists()


@pytest.mark.slow
def test_case_on_one_side_only_exits_2(ab_main, tmp_path):
    # The new side does not load the suite that defines the case.
    other = _wrapper(tmp_path, "py-other", "MILESTONES_EXTRA_SUITES=tests.fake_suites")
    code, _, err = ab_main("ab", "abfake-step", "--device", "cpu", "--new-python", other, "--out", str(tmp_path / "res"))
    assert code == 2 and "on the base side only" in err, err


def _git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


@pytest.mark.slow
def test_two_git_revisions_run_from_their_own_worktrees(cli, tmp_path):
    """A temp repository with this project's harness and suites; the second commit makes the step 2x longer."""
    repo = tmp_path / "repo"
    for sub in ("harness", "suites"):
        shutil.copytree(ROOT / sub, repo / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "tests").mkdir()
    (repo / "tests" / "__init__.py").write_text("")
    shutil.copy(ROOT / "tests" / "ab_suites.py", repo / "tests" / "ab_suites.py")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    src = (repo / "tests" / "ab_suites.py").read_text().replace("seconds: float = 0.004", "seconds: float = 0.008")
    (repo / "tests" / "ab_suites.py").write_text(src)
    _git(repo, "commit", "-qam", "slower")
    out = tmp_path / "res"
    r = cli("ab", "abfake-step", "--base-rev", "HEAD~1", "--new-rev", "HEAD", "--repo", str(repo), "--device", "cpu",
            "--metric", "*.step_time",
            "--max-rounds", "2", "--out", str(out), "--format", "json",
            env={"MILESTONES_EXTRA_SUITES": "tests.ab_suites"}, timeout=600)
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)["rows"]
    assert row["verdict"] == "regressed" and all(1.6 < x < 2.5 for x in row["round_ratios"])
    recs = _records(out)
    revs = {x["info"]["ab"]["side"]: x["info"]["ab"]["rev"] for x in recs}
    assert revs["base"] == _git(repo, "rev-parse", "HEAD~1") and revs["new"] == _git(repo, "rev-parse", "HEAD")
    # The code measured is the revision's: its git state is recorded from the worktree.
    assert {x["env"]["git"]["commit"] for x in recs if x["info"]["ab"]["side"] == "new"} == {revs["new"]}
    assert _git(repo, "worktree", "list").count("\n") == 0  # worktrees removed afterwards
