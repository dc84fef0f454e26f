"""Issue 24, items 11-13: bad input a new user tries (an empty --data folder, a misspelt scale, a bad flag,
a report file of the wrong kind, an unwritable --out, an unknown name) and absolute paths in records."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

from milestones.harness import store
from tests.test_store import make_record


def _one_error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert lines[0].startswith("milestones: error: ")
    return lines[0]


# -------------------------------------------------------------------------------------------- 11
def test_a_data_folder_with_nothing_to_read_is_bad_input(cli, tmp_path):
    empty = tmp_path / "EMPTY"
    (empty / "train" / "n01").mkdir(parents=True)  # folders, but not one file
    r = cli("run", "alexnet", "--scale", "paper", "--kind", "quality", "--data", f"imagenet={empty}",
            "--out", str(tmp_path / "res"))
    line = _one_error_line(r)
    assert f"imagenet={empty}" in line and "no file" in line
    assert not (tmp_path / "res").exists()


# -------------------------------------------------------------------------------------------- 12
def test_a_misspelt_scale_gets_did_you_mean(cli):
    assert "did you mean 'smoke'" in _one_error_line(cli("run", "--scale", "smal"))


def test_a_subcommand_error_names_milestones_once(cli, tmp_path):
    line = _one_error_line(cli("compare", str(tmp_path), str(tmp_path), "--fail-on", "x"))
    assert line.startswith("milestones: error: compare: argument --fail-on") and line.count("milestones") == 1


def test_a_report_file_of_the_wrong_kind_names_the_flag_given(cli, tmp_path):
    line = _one_error_line(cli("report", str(tmp_path), "--output", str(tmp_path / "x.txt")))
    assert "-o/--output" in line and "x.txt" in line and "--out " not in line


def test_an_unwritable_out_is_refused_before_the_busy_warning_and_the_plan(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    line = _one_error_line(cli("run", "fake-ok", "--kind", "speed", "--out", str(blocker / "res")))
    assert "cannot write results" in line


def test_an_unknown_name_is_refused_from_the_catalog_without_importing_torch(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MILESTONES_EXTRA_SUITES"}  # the catalog answers alone
    code = ("import sys; from milestones.harness import cli; rc = cli.main(['run', 'resnt']); "
            "print(rc, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.stdout.split() == ["2", "False"], r.stderr
    assert "unknown suite or config 'resnt'" in r.stderr and "did you mean 'resnet'" in r.stderr


# -------------------------------------------------------------------------------------------- 13
def test_absolute_paths_outside_checkout_and_home_become_dots_name(tmp_path):
    tb = ('Traceback (most recent call last):\n  File "/tmp/pytest-x/mysuites/suite.py", line 3, in f\n'
          "FileNotFoundError: [Errno 2] No such file or directory: '/tmp/pytest-x/data/z'\n")
    rec = dataclasses.replace(make_record(info={"traceback": tb}), config={"data": "/srv/datasets/imagenet"},
                              error="FileNotFoundError: /tmp/pytest-x/data/z")
    _, path = store.save_record(tmp_path, rec)
    text = path.read_text()
    assert "/tmp/pytest-x" not in text and "/srv/datasets" not in text
    raw = json.loads(text)
    assert raw["error"] == "FileNotFoundError: .../z"
    assert 'File ".../suite.py", line 3' in raw["info"]["traceback"] and "'.../z'" in raw["info"]["traceback"]
    assert raw["config"]["data"] == ".../imagenet"
