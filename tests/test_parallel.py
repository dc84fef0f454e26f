"""The parallel suite: hybrid conv-data/FC-model parallelism vs DDP under real torchrun, and the lr rule."""

from __future__ import annotations

import json
import math

import pytest
import torch

from milestones.harness.cli import main
from milestones.harness.context import CaseContext
from milestones.harness.records import Case
from milestones.suites import parallel as P


@pytest.mark.slow
def test_ddp_and_hybrid_under_torchrun_give_one_record_with_per_rank_samples(tmp_path, capsys):
    rc = main(["run", "parallel-alexnet-smoke", "--nproc", "2", "--out", str(tmp_path), "--timeout", "240", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0, summary
    (path,) = summary["records"]
    rec = json.loads(open(path).read())
    m, info = rec["metrics"], rec["info"]
    assert rec["status"] == "ok" and info["world_size"] == 2 and info["backend"] == "gloo"
    assert info["data_parallel_schemes"] == ["ddp", "hybrid"]
    n = info["timing"]["max_iters"]
    for scheme in ("dp", "hybrid"):
        r0, r1 = m[f"rank0.{scheme}.train.step_time"]["samples"], m[f"rank1.{scheme}.train.step_time"]["samples"]
        assert len(r0) == len(r1) == n
        assert m[f"{scheme}.train.step_time"]["samples"] == pytest.approx([max(a, b) for a, b in zip(r0, r1)])
        assert m[f"{scheme}.train.throughput"]["samples"] == pytest.approx([16 / max(a, b) for a, b in zip(r0, r1)])
        single = m[f"single.{scheme}.train.throughput"]["stats"]["median"]
        eff = m[f"{scheme}.train.scaling_efficiency"]["samples"]
        assert eff == pytest.approx([t / (2 * single) for t in m[f"{scheme}.train.throughput"]["samples"]])
        assert info["slowest_rank"][f"{scheme}.train"] in (0, 1)
    assert len(m["allreduce.ddp.time"]["samples"]) == n
    assert m["allreduce.ddp.bytes"]["samples"] == [4 * m["params"]["samples"][0]]
    # The hybrid's gradients on 2 workers equal one process's on the whole batch of 16.
    assert info["workers"] == 2 and info["global_batch"] == 16
    assert m["hybrid.grad_max_abs_diff"]["samples"][0] < 1e-5
    assert m["rank1.hybrid.grad_max_abs_diff"]["samples"][0] < 1e-5


@pytest.mark.slow
def test_hybrid_model_on_one_worker_is_the_plain_network():
    cfg = P.ParallelConfig(image_size=64, convs=(8, 16, 16, 16, 16), fc=32, num_classes=10, dropout=0.0)
    torch.manual_seed(0)
    full = P.build_alexnet(cfg)
    hybrid = P.HybridAlexNet(full)
    x = torch.randn(3, 3, 64, 64)
    torch.testing.assert_close(hybrid(x), full(x))
    err, rel = P.hybrid_gradient_error(cfg, 4, torch.device("cpu"), torch.float32, 0)
    assert err == 0.0 and rel == 0.0


def test_lr_sqrt_rule_keeps_step_noise_constant_and_linear_rule_grows_it_by_sqrt_k():
    ctx = CaseContext.for_case(Case("parallel", "parallel-lr-rule", "fidelity", "smoke", "cpu", "float32", None))
    out = P.lr_rule_check(P.LrRuleConfig(ks=(4, 9), draws=300), ctx)
    sqrt_r = out.metrics["lr_rule.sqrt_scaling_noise_ratio"].samples
    lin_r = out.metrics["lr_rule.linear_scaling_noise_ratio"].samples
    assert all(abs(r - 1) < 0.1 for r in sqrt_r)
    assert [r / math.sqrt(k) for r, k in zip(lin_r, (4, 9))] == pytest.approx([1, 1], abs=0.1)
    assert out.metrics["claim_held"].samples == (1.0,)


def test_paper_alexnet_has_torchvision_parameter_count():
    with torch.device("meta"):
        assert sum(p.numel() for p in P.build_alexnet(P.ParallelConfig()).parameters()) == 61_100_840


def test_lr_rule_decision_and_dispatch():
    assert P.lr_rule_decision([1.02, 0.95, 1.09], 0.1)
    assert not P.lr_rule_decision([1.02, 1.2], 0.1)  # the linear rule's sqrt(k) growth fails it
    assert P.SUITE.kind_fn("fidelity", P.LrRuleConfig()) is P.lr_rule_check
    assert P.SUITE.kind_fn("speed", P.FsdpGptConfig()) is P.fsdp_gpt_speed
