"""compare on the checked-in fixture records (scripts/make_fixture_records.py): verdicts, groups,
kernel diffs, history, exit codes and bad input."""

import json
import shutil
from pathlib import Path

import pytest

from milestones.harness import compare, history
from milestones.harness.cli import main
from milestones.harness.errors import RecordError, UsageError

F = Path(__file__).parent / "fixtures" / "records"


def recs(*parts):
    return [x.record for x in compare.load([F.joinpath(*parts)])]


@pytest.fixture(scope="module")
def regress_rows():
    rows, notes = compare.compare_runs(recs("regress", "base"), recs("regress", "new"))
    return {(r.config, r.metric): r for r in rows}, notes


def test_regression_found_and_only_there(regress_rows):
    rows, notes = regress_rows
    assert notes == []  # same GPU, driver, torch, CUDA: no environment note
    st = rows[("resnet50-smoke", "train.step_time")]
    assert st.verdict == "regressed" and 1.03 < st.result.ratio < 1.15
    assert rows[("resnet50-smoke", "train.throughput")].verdict == "regressed"
    assert rows[("resnet50-smoke", "train.flops")].verdict == "unchanged"
    assert rows[("cifar-resnet20-smoke", "train.step_time")].verdict in ("unchanged", "inconclusive")
    assert rows[("resnet152-smoke", "train.step_time")].verdict in ("unchanged", "inconclusive")
    assert rows[("resnet50", "params")].verdict == "unchanged"


def test_not_comparable_cases_say_why(regress_rows):
    rows, _ = regress_rows
    assert "suite version" in rows[("resnet18-smoke", "*")].result.reason
    assert rows[("resnet34-smoke", "*")].result.reason == "batch size 64 vs 32"
    assert rows[("resnet101-smoke", "*")].result.reason == "dtype float32 vs bfloat16"
    miss = rows[("resnet152-smoke", "train.energy_per_item")]
    assert miss.verdict == "not comparable" and "not measured in new" in miss.result.reason
    for r in rows.values():
        if r.verdict == "not comparable":
            assert r.result.ratio is None  # never a ratio where the cases differ


def test_environment_differences_are_noted():
    rows, notes = compare.compare_runs(recs("gpus", "nvidia-a100-sxm4-80gb-0001"), recs("gpus", "nvidia-h100-80gb-hbm3-0001"))
    assert any(n.startswith("GPU NVIDIA A100-SXM4-80GB") and "H100" in n for n in notes)
    assert all(r.env_note for r in rows)
    rows, notes = compare.compare_runs(recs("torch", "amd-epyc-7b13-64-core-pr-0001", "20260302T000000Z-torch0"),
                                       recs("torch", "amd-epyc-7b13-64-core-pr-0001", "20260302T010000Z-torch1"))
    assert notes == ["torch 2.13.0 vs 2.14.1"]
    by = {(r.config, r.metric): r.verdict for r in rows}
    assert by[("resnet50-smoke", "train.step_time")] == "regressed"


def test_by_gpu_ratios_match_the_known_medians():
    rows, groups = compare.compare_by(recs("gpus"), "gpu", "NVIDIA A100-SXM4-80GB")
    assert len(groups) == 3 and any(g.startswith("CPU: ") for g in groups)
    r = next(r for r in rows if r.config == "resnet50-smoke" and r.metric == "train.step_time")
    assert r.ratios["NVIDIA H100 80GB HBM3"] == pytest.approx(0.120 / 0.210, rel=0.05)
    lo, hi = r.cis["NVIDIA H100 80GB HBM3"]
    assert lo < r.ratios["NVIDIA H100 80GB HBM3"] < hi
    mfu = next(r for r in rows if r.config == "resnet50-smoke" and r.metric == "train.mfu")
    cpu = next(g for g in groups if g.startswith("CPU"))
    assert mfu.ratios[cpu] is None and "no peak" in mfu.notes[cpu]


def test_by_torch_version():
    rows, groups = compare.compare_by(recs("torch"), "torch", "2.13.0")
    assert groups == ["2.13.0", "2.14.1"]
    r = next(r for r in rows if r.config == "resnet50-smoke" and r.metric == "train.step_time")
    assert r.ratios["2.14.1"] == pytest.approx(1.12, rel=0.04)


def test_kernel_diff_names_where_the_regression_comes_from():
    diffs = compare.kernel_diffs(recs("regress", "base"), recs("regress", "new"))
    assert [c for c, _ in diffs] == ["resnet/resnet50-smoke speed"]  # unchanged tables are not listed
    top = diffs[0][1][0]
    assert top.name == "aten::convolution_backward"
    assert (top.base_calls, top.new_calls) == (53, 106) and top.delta_us == pytest.approx(4160.0)


def test_malformed_kernel_table_is_an_error():
    r = recs("regress", "base")[0]
    bad = type(r)(**{**r.__dict__, "artifacts": {"train.kernels": [{"name": 3}]}})
    with pytest.raises(RecordError):
        compare.kernel_tables(bad)


def test_history_names_the_first_run_of_the_step():
    hs = history.histories(recs("history"), metrics=["train.step_time"])
    assert len(hs) == 1 and len(hs[0].run_ids) == 12
    (step,) = hs[0].steps
    assert step.run_id == "20260317T020000Z-nightly" and step.index == 7
    assert step.worse and step.change == pytest.approx(0.15, abs=0.04)


def test_quality_over_seeds_uses_welch():
    rows, _ = compare.compare_runs(recs("quality"), recs("quality_new"))
    r = next(r for r in rows if r.metric == "test_error")
    assert r.result.method == "welch" and r.verdict == "regressed"
    assert next(r for r in rows if r.config == "resnet50-train").result.reason == "case only in base"


# ------------------------------------------------------------------------------------------ the CLI
def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_cli_exit_codes_and_formats(capsys, tmp_path):
    base, new = str(F / "regress" / "base"), str(F / "regress" / "new")
    assert run(capsys, "compare", base, new)[0] == 0
    code, out, _ = run(capsys, "compare", base, new, "--fail-on", "regression", "--format", "json",
                       "--summary", str(tmp_path / "s.md"))
    assert code == 1
    data = json.loads(out)
    assert data["counts"]["regressed"] >= 2 and data["env_differences"] == []
    summary = (tmp_path / "s.md").read_text()
    assert "regressions found" in summary and "resnet50-smoke" in summary and "convolution_backward" in summary
    assert run(capsys, "compare", base, base, "--fail-on", "regression")[0] == 0
    # A 20% threshold: a ~10% slowdown is no longer a regression.
    assert run(capsys, "compare", base, new, "--fail-on", "regression", "--threshold", "20%")[0] == 0
    code, out, _ = run(capsys, "compare", base, new, "--format", "json", "--threshold-for", "train.step_time=20%")
    by = {(r["config"], r["metric"]): r for r in json.loads(out)["rows"]}
    assert by[("resnet50-smoke", "train.step_time")]["verdict"] != "regressed"
    assert by[("resnet50-smoke", "train.throughput")]["verdict"] == "regressed"
    code, out, _ = run(capsys, "compare", base, new, "--format", "markdown")
    assert code == 0 and "| resnet/resnet50-smoke speed |" in out


def test_cli_env_note_in_every_format(capsys):
    a, b = str(F / "torch" / "amd-epyc-7b13-64-core-pr-0001" / "20260302T000000Z-torch0"), \
        str(F / "torch" / "amd-epyc-7b13-64-core-pr-0001" / "20260302T010000Z-torch1")
    for fmt in ("table", "markdown"):
        out = run(capsys, "compare", a, b, "--format", fmt)[1]
        assert "environments differ (torch 2.13.0 vs 2.14.1)" in out
    assert json.loads(run(capsys, "compare", a, b, "--format", "json")[1])["env_differences"] == ["torch 2.13.0 vs 2.14.1"]


def test_cli_run_ids_and_by(capsys):
    code, out, _ = run(capsys, "compare", "20260302T000000Z-torch0", "20260302T010000Z-torch1",
                       "--results", str(F / "torch"), "--format", "json")
    assert code == 0 and json.loads(out)["env_differences"]
    code, out, _ = run(capsys, "compare", "--by", "gpu", str(F / "gpus"), "--format", "json",
                       "--reference", "NVIDIA H100 80GB HBM3")
    assert code == 0 and json.loads(out)["rows"][0]["reference"] == "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize("args,msg", [
    (["compare", "nowhere-a", "nowhere-b"], "no run 'nowhere-a'"),
    (["compare", str(F / "regress" / "base")], "exactly two inputs"),
    (["compare", str(F / "regress" / "base"), str(F / "regress" / "new"), "--threshold", "five"], "not a number"),
    (["compare", str(F / "regress" / "base"), str(F / "regress" / "new"), "--threshold-for", "x"], "METRIC=PCT"),
    (["compare", "--by", "gpu", str(F / "gpus"), "--reference", "A100"], "is not a gpu"),
    (["compare", "--by", "colour", str(F / "gpus")], "invalid choice"),
])
def test_cli_bad_input_exits_2_with_one_line(capsys, args, msg):
    code, out, err = run(capsys, *args)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1


def test_empty_folder_and_newer_schema(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "compare", str(tmp_path / "empty"), str(F / "regress" / "new"))
    assert code == 2 and "no result records" in err
    newer = tmp_path / "newer"
    shutil.copytree(F / "regress" / "new", newer)
    f = next(newer.rglob("resnet.resnet50-smoke*.json"))
    d = json.loads(f.read_text())
    d["schema_version"] = 99
    f.write_text(json.dumps(d))
    code, _, err = run(capsys, "compare", str(F / "regress" / "base"), str(newer), "--strict")
    assert code == 2 and "schema_version 99" in err


def test_record_missing_a_metric_is_a_marked_row(tmp_path):
    new = tmp_path / "new"
    shutil.copytree(F / "regress" / "new", new)
    f = next(new.rglob("resnet.resnet50-smoke*.json"))
    d = json.loads(f.read_text())
    del d["metrics"]["train.step_time"]
    f.write_text(json.dumps(d))
    rows, _ = compare.compare_runs(recs("regress", "base"), [x.record for x in compare.load([new])])
    r = next(r for r in rows if r.config == "resnet50-smoke" and r.metric == "train.step_time")
    assert r.verdict == "not comparable" and r.result.reason == "metric missing in new"


def test_failed_case_is_not_compared():
    rows, _ = compare.compare_runs(recs("hostile"), recs("hostile"))
    r = next(r for r in rows if r.config == "resnet50-smoke")
    assert r.verdict == "not comparable" and r.result.reason.startswith("base status failed")


def test_parse_percent():
    assert compare.parse_percent("5%") == pytest.approx(0.05)
    assert compare.parse_percent("0.05") == pytest.approx(0.05)
    assert compare.parse_percent("12") == pytest.approx(0.12)
    with pytest.raises(UsageError):
        compare.parse_percent("-3%")


def test_different_world_size_is_not_comparable():
    import dataclasses

    from milestones.harness.compare import _not_comparable_reason
    from tests.test_store import make_record

    a = make_record()
    b = dataclasses.replace(make_record(), info={"world_size": 2})
    assert "world size 1 vs 2" in _not_comparable_reason([a], [b])
    assert _not_comparable_reason([a], [make_record()]) is None
