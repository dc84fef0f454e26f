"""Instruction counts under callgrind: one valgrind process counts several cases' steps."""

from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path

import pytest

from milestones.harness.measure import callgrind

needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")


def test_parse_total_reads_the_summary_line():
    text = b"version: 1\ncmd: python\nevents: Ir\nfn=(1) main\n3 5\nsummary: 123456\ntotals: 123456\n"
    assert callgrind.parse_total(text) == 123456
    with pytest.raises(ValueError):
        callgrind.parse_total(b"events: Ir\n")


def test_count_outside_callgrind_is_refused(monkeypatch):
    monkeypatch.delenv(callgrind.OUT_ENV, raising=False)
    with pytest.raises(callgrind.CallgrindUnavailable):
        callgrind.count_instructions(lambda: None, 1)


x86_64_linux = pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64",
                                  reason="the client request is written for Linux on x86-64")


@x86_64_linux
def test_the_client_request_runs_natively_and_answers_its_default():
    """valgrind.h's request, natively: the rotations cancel and the default comes back untouched."""
    for default in (0, 7, 2**40 + 3):
        assert callgrind.client_request(callgrind.RUNNING_ON_VALGRIND, default) == default
    assert callgrind.late_instrumentation_works()
    with pytest.raises(callgrind.CallgrindUnavailable, match="not running under valgrind"):
        callgrind.start_instrumentation()
    cmd = callgrind.valgrind_command(Path("/x/cg.out"), ["python"], late_instrumentation=True)
    assert "--instr-atstart=no" in cmd and cmd.index("--instr-atstart=no") < cmd.index("python")
    assert "--instr-atstart=no" not in callgrind.valgrind_command(Path("/x/cg.out"), ["python"])


def test_a_count_of_zero_instructions_is_refused_not_recorded(monkeypatch, tmp_path):
    """Instrumentation that was never turned on counts nothing: an error, never a step of 0 instructions."""
    import torch

    out = tmp_path / "callgrind.out"
    monkeypatch.setenv(callgrind.OUT_ENV, str(out))
    monkeypatch.setattr(callgrind, "start_instrumentation", lambda: None)
    monkeypatch.setattr(torch._C, "_valgrind_supported_platform", lambda: True)
    monkeypatch.setattr(torch._C, "_valgrind_toggle", lambda: None)
    total = {"n": 0}

    def dump():
        k = len(list(tmp_path.glob("callgrind.out.*"))) + 1
        (tmp_path / f"callgrind.out.{k}").write_text(f"events: Ir\nsummary: {total['n']}\n")

    monkeypatch.setattr(torch._C, "_valgrind_toggle_and_dump_stats", dump)
    with pytest.raises(callgrind.CallgrindUnavailable, match="counted no instructions"):
        callgrind.count_instructions(lambda: None, 2, warmup=0)
    total["n"] = 4321
    assert callgrind.count_instructions(lambda: None, 2, warmup=0) == 4321


@needs_valgrind
@pytest.mark.slow
def test_one_valgrind_process_counts_every_case_and_compare_calls_a_1pct_change(cli, tmp_path):
    """abfake-mm and abfake-mm-again do the same work, abfake-mm101 1% more matmuls (torch, 1 thread).
    torch is imported once under valgrind for the three (about a minute on an idle 2-core machine)."""
    out = tmp_path / "res"
    env = {"MILESTONES_EXTRA_SUITES": "tests.ab_suites"}
    r = cli("instructions", "abfake-mm", "abfake-mm101", "abfake-mm-again", "--iters", "3", "--out", str(out),
            env=env, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    recs = {json.loads(p.read_text())["case"]["config"]: json.loads(p.read_text())
            for p in out.rglob("instructions/*.json")}
    n = {k: v["metrics"]["step.instructions"]["samples"][0] for k, v in recs.items()}
    assert set(n) == {"abfake-mm", "abfake-mm101", "abfake-mm-again"}
    late = sys.platform == "linux" and platform.machine() == "x86_64"
    assert {v["info"]["instrumentation"] for v in recs.values()} == {
        "from the first counted step" if late else "from the start"}
    # Repeat in one process: measured 0.15% apart here (about 14k of 9.3M instructions per step), so
    # the bound is below half the 0.5% tolerance, not the 0.1% a larger step reaches.
    assert abs(n["abfake-mm-again"] / n["abfake-mm"] - 1) <= 0.003
    assert 1.005 < n["abfake-mm101"] / n["abfake-mm"] < 1.02             # 1 matmul in 100 more
    # compare judges them on the 0.5% tolerance: the 1% change is called, the repeat is not.
    folder = next(p.parent.parent for p in out.rglob("instructions/*.json"))
    from milestones.harness import compare
    from milestones.harness.store import load_records

    by = {r.case.config: r for r in load_records(folder)}
    import dataclasses

    def as_case(rec, like):
        return dataclasses.replace(rec, case=like.case, suite_version=like.suite_version)

    base = by["abfake-mm"]
    rows, _ = compare.compare_runs([base], [as_case(by["abfake-mm101"], base)])
    assert [x.verdict for x in rows] == ["regressed"]
    rows, _ = compare.compare_runs([base], [as_case(by["abfake-mm-again"], base)])
    assert [x.verdict for x in rows] == ["unchanged"]
    assert Path(folder / "_run.json").is_file()


def test_the_valgrind_process_gets_the_same_folder_and_environment_every_run(monkeypatch):
    """The text of the paths and variables a process starts with moves its instruction count (0.1-0.2%
    between two random temporary folder names): every run gets the same folder and environment."""
    from milestones.harness import instructions

    with instructions.fixed_workdir() as a:
        (a / "leftover").write_text("x")
        with instructions.fixed_workdir() as busy:  # a second run at the same time: the next slot
            assert busy != a and busy.parent == a.parent
    with instructions.fixed_workdir() as b:
        assert b == a and not (b / "leftover").exists()
    assert not a.exists()
    out = a / "callgrind.out"
    monkeypatch.setenv("SOME_RUN_ID", "20261201T030256Z-b56073")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env1 = instructions.fixed_environment(out)
    monkeypatch.setenv("SOME_RUN_ID", "20261201T030855Z-9b3502")
    monkeypatch.delenv("OLDPWD", raising=False)
    env2 = instructions.fixed_environment(out)
    assert list(env1.items()) == list(env2.items())
    assert "SOME_RUN_ID" not in env1 and env1["PATH"] == "/usr/bin:/bin"
    assert env1["PYTHONHASHSEED"] == "0" and env1[callgrind.OUT_ENV] == str(out)
