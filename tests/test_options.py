"""The one table of run options: flags, the TOML run file and RunOptions all come from it; spec/result JSON."""

import argparse
import dataclasses

import pytest

from milestones.harness import options
from milestones.harness.errors import UsageError
from milestones.harness.launch.spec import CaseResult, CaseSpec
from milestones.harness.measure.timing import TimingSettings
from milestones.harness.options import OPTIONS, RunOptions, add_flags, from_namespace, read_run_file
from milestones.harness.records import Case, Metric


def _parse(*argv):
    p = argparse.ArgumentParser()
    p.add_argument("names", nargs="*")
    p.add_argument("--config")
    add_flags(p)
    return p.parse_args(list(argv))


def test_every_table_entry_is_a_flag_a_field_and_a_run_file_key():
    fields = [f.name for f in dataclasses.fields(RunOptions)]
    assert fields == [o.attr for o in OPTIONS] + ["torchrun_args"]
    ns = _parse()
    for o in OPTIONS:
        assert hasattr(ns, o.attr)
        assert o.toml_key in options.TOML_KEYS


def test_flags_and_run_file_meet_in_one_options_object(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[run]\nsuites = ["resnet"]\nkind = ["speed", "quality"]\nbatch_size = 8\nseeds = [3, 4]\n'
                 'data = {cifar10 = "/d"}\noption = {n_seeds = "2"}\ntimeout = 60\n')
    opts, names = from_namespace(_parse("--config", str(f), "--batch-size", "16", "--option", "x=1"))
    assert names == ["resnet"]
    assert opts.kinds == ("speed", "quality") and opts.batch_size == 16 and opts.seeds == (3, 4)
    assert opts.data == {"cifar10": "/d"} and opts.options == {"n_seeds": "2", "x": "1"} and opts.timeout == 60.0
    opts2, names2 = from_namespace(_parse("alexnet", "--config", str(f)))
    assert names2 == ["alexnet"] and opts2.batch_size == 8


@pytest.mark.parametrize("kw,msg", [
    ({"batch_size": 0}, "--batch-size must be a positive integer, not 0"),
    ({"batch_size": True}, "--batch-size must be a positive integer"),
    ({"timeout": float("nan")}, "--timeout must be a positive number"),
    ({"kinds": "speed,qualty"}, "unknown kind 'qualty' (did you mean 'quality'?)"),
    ({"device": "cuda:x"}, "--device must be one of"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"seeds": "1,a"}, "--seeds must be a list of integer seeds"),
    ({"data": {"a": 1}}, "--data must be a table"),
])
def test_bad_values_are_refused_in_one_place(kw, msg):
    with pytest.raises(UsageError) as e:
        RunOptions(**kw)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_run_file_errors_name_the_file_and_key(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text("[run]\nbatchsize = 3\n")
    with pytest.raises(UsageError, match=r"unknown key 'batchsize' \(did you mean 'batch_size'\?\)"):
        read_run_file(str(f))
    f.write_text("[run]\nrepeat = 0\n")
    with pytest.raises(UsageError, match=r"r.toml: 'repeat' must be a positive integer, not 0"):
        read_run_file(str(f))


def test_timeout_defaults_by_scale():
    assert RunOptions(scale="smoke").timeout_for() == options.DEFAULT_TIMEOUT_S["smoke"]
    assert RunOptions(scale="proxy").timeout_for() == options.DEFAULT_TIMEOUT_S["proxy"] > 900
    assert RunOptions(scale="proxy", timeout=5).timeout_for() == 5.0


def test_case_spec_and_result_round_trip(tmp_path):
    case = Case("resnet", "resnet50", "speed", "smoke", "cpu", "float32", 4)
    spec = CaseSpec(case=case, batch_size_source="--batch-size", seed=3, seeds=(3, 4), repeat_index=2,
                    timing=TimingSettings(min_iters=5), data={"x": "/d"}, torchrun_args=("--nnodes", "2"))
    assert CaseSpec.read(spec.write(tmp_path / "s.json")) == spec
    assert spec.key.endswith("/r2")
    with pytest.raises(ValueError, match="batch size 4 with source 'none'"):
        CaseSpec(case=case, batch_size_source="none")
    res = CaseResult("timeout", "t", {"a.step_time": Metric.from_values("a.step_time", "s", False, [1.0, float("nan")])},
                     {"k": float("inf")})
    res.write(tmp_path / "r.json")
    back = CaseResult.read(tmp_path / "r.json")
    assert back.status == "timeout" and back.metrics["a.step_time"].samples[0] == 1.0
    assert back.info["k"] == float("inf")


def test_flags_mean_one_thing_across_commands():
    from milestones.harness.cli import build_parser

    p = build_parser()
    # --results: where run ids are looked up, in every command that looks them up (old name still accepted)
    for cmd in (["compare", "a", "b"], ["report", "a", "--output", "r.html"], ["plot", "by", "a", "--output", "f.png"]):
        ns = p.parse_args([*cmd, "--results", "R"])
        assert (getattr(ns, "results_root", None) or ns.results) == "R"
    assert p.parse_args(["report", "a", "--out", "r.html", "--results-root", "R"]).results_root == "R"
    # a file to write is --output (-o); --out stays accepted there, and names a folder everywhere else
    assert p.parse_args(["report", "a", "-o", "r.html"]).out == "r.html"
    assert p.parse_args(["baselines", "appendix", "a", "--output", "x.md"]).out == "x.md"
    # the baselines folder is --baselines-dir everywhere (--dir still accepted)
    assert p.parse_args(["baselines", "list", "--baselines-dir", "B"]).dir == "B"
    assert p.parse_args(["baselines", "check", "--dir", "B"]).dir == "B"
    assert p.parse_args(["report", "a", "-o", "r.html", "--baselines-dir", "B"]).baselines_dir == "B"
