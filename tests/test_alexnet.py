"""AlexNet suite: architecture figures, LRN and column structure, smoke cases, proxy bookkeeping."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.launch.inprocess import run_kind
from milestones.harness.records import Case
from milestones.suites import alexnet as A
from tests.quick_timing import quick

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def _ctx(config, kind, scale="smoke", batch=2, **kw):
    return CaseContext.for_case(Case("alexnet", config, kind, scale, "cpu", "float32", batch), **kw)


def test_parameter_neuron_and_flop_counts():
    p, n, macs = A.architecture_figures(A.SUITE.configs["alexnet-owt"].params)
    assert p == 61_100_840  # torchvision's num_params
    assert macs == pytest.approx(0.714e9, rel=0.005)  # torchvision's 0.714 GFLOPS (multiply-adds)
    p, n, macs = A.architecture_figures(A.SUITE.configs["alexnet2012"].params)
    assert p == 60_965_224 and abs(p / 60e6 - 1) < 0.05  # abstract: "60 million parameters"
    # Sec. 3.5's layer sizes at 227x227: 55*55*96 + 27*27*256 + 13*13*384*2 + 13*13*256 + 4096*2 + 1000
    assert n == 290_400 + 186_624 + 2 * 64_896 + 43_264 + 2 * 4096 + 1000
    assert abs(n / 650e3 - 1) < 0.05  # abstract: "650,000 neurons"


def test_fidelity_kind_reports_within_tolerance():
    out = A.fidelity(A.SUITE.configs["alexnet-owt"].params, _ctx("alexnet-owt", "fidelity", batch=None))
    assert out.metrics["params_within_tolerance"].value == 1.0
    assert out.metrics["macs_within_tolerance"].value == 1.0
    out = A.fidelity(A.SUITE.configs["alexnet2012"].params, _ctx("alexnet2012", "fidelity", batch=None))
    assert out.metrics["neurons_within_tolerance"].value == 1.0 and out.metrics["params_rel_error"].value < 0.05


def test_single_column_state_dict_names_match_torchvision():
    keys = list(A.AlexNetOWT().state_dict())
    assert keys == [f"{m}.{i}.{w}" for m, idx in (("features", (0, 3, 6, 8, 10)), ("classifier", (1, 4, 6)))
                    for i in idx for w in ("weight", "bias")]


def test_two_columns_conv2_sees_only_its_own_column():
    m = A.AlexNet2012(image_size=67)
    convs = [c for c in m.learned if isinstance(c, torch.nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]  # conv3 (and the FC layers) cross the columns
    x = torch.randn(1, 96, 7, 7, requires_grad=True)
    convs[1](x)[0, :128].sum().backward()  # first column's output maps
    assert x.grad[0, :48].abs().sum() > 0 and x.grad[0, 48:].abs().sum() == 0


def test_lrn_matches_the_papers_formula():
    m = A.AlexNet2012(image_size=67)
    lrn = next(l for l in m.features if isinstance(l, torch.nn.LocalResponseNorm))
    a = torch.rand(1, 8, 2, 2) * 10
    want = torch.empty_like(a)
    for i in range(8):  # b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta
        s = (a[0, max(0, i - 2): min(7, i + 2) + 1] ** 2).sum(0)
        want[0, i] = a[0, i] / (2 + 1e-4 * s) ** 0.75
    assert torch.allclose(lrn(a), want, rtol=1e-5)


def test_paper_init_biases():
    m = A.AlexNet2012(image_size=67)
    assert [float(l.bias[0].detach()) for l in m.learned] == [0, 1, 0, 1, 1, 1, 1, 0]
    assert 0.008 < float(m.learned[5].weight.std()) < 0.012


@pytest.mark.slow
def test_smoke_speed_case_runs():
    cfg = A.SUITE.configs["alexnet-smoke"].params
    out = run_kind(A.speed, cfg, quick(_ctx("alexnet-smoke", "speed", batch=cfg.cpu_batch_size)))
    for k in ("train.step_time", "infer.step_time", "train.throughput"):
        assert len(out.metrics[k].samples) >= 3 and min(out.metrics[k].samples) > 0
    assert out.metrics["train.flops"].value > out.metrics["infer.flops"].value > 0
    assert out.metrics["train.mfu"].note  # no CPU peak: a reason, not a number


def test_paper_quality_skips_without_data_and_for_the_two_column_net():
    with pytest.raises(SkipCase, match="needs --data imagenet=PATH"):
        _quality(A.SUITE.configs["alexnet-owt-paper"].params, _ctx("alexnet-owt-paper", "quality", "paper"))
    with pytest.raises(SkipCase, match="no published weights"):
        A.pretrained_quality(A.AlexNetConfig("2012"), _ctx("alexnet2012", "quality", "paper"))


@pytest.mark.slow
def test_paper_quality_evaluates_given_weights(tmp_path):
    from PIL import Image

    for wnid, colour in (("n01", (255, 0, 0)), ("n02", (0, 0, 255))):
        (tmp_path / "val" / wnid).mkdir(parents=True)
        Image.new("RGB", (240, 230), colour).save(tmp_path / "val" / wnid / "a.JPEG")
    torch.manual_seed(0)
    model = A.AlexNetOWT()
    with torch.no_grad():  # a net that always answers class 1 (n02): top-1 is right for 1 image of 2
        model.classifier[6].weight.zero_()
        model.classifier[6].bias.zero_()
        model.classifier[6].bias[1] = 5.0
    torch.save(model.state_dict(), tmp_path / "alexnet.pth")
    data = {"imagenet": str(tmp_path), "alexnet-weights": str(tmp_path / "alexnet.pth")}
    cfg = A.SUITE.configs["alexnet-owt-paper-10crop"].params
    out = _quality(cfg, _ctx("alexnet-owt-paper-10crop", "quality", "paper", data=data))
    assert out.metrics["top1_accuracy"].value == pytest.approx(50.0)
    assert out.metrics["top5_error"].value == pytest.approx(0.0)
    assert out.info["protocol"] == "ten_patches_alexnet" and out.info["images"] == 2


def test_steps_to_error_bookkeeping():
    cfg = dataclasses.replace(A.SUITE.configs["alexnet-relu-vs-tanh"].params, max_steps=4, eval_every=2)
    from milestones.suites._data import digits

    data = digits(0, size=cfg.image_size)
    ctx = _ctx("alexnet-relu-vs-tanh", "quality", "proxy", batch=8)
    step, _, curve = A.steps_to_error(dataclasses.replace(cfg, target_train_error=1.0), ctx, "relu", 0.01, 0, data)
    assert step == 2 and curve["step"] == [2]  # any error is <= 100%: reached at the first evaluation
    step, _, curve = A.steps_to_error(dataclasses.replace(cfg, target_train_error=-1.0), ctx, "tanh", 0.01, 0, data)
    assert step is None and curve["step"] == [2, 4]


@pytest.mark.slow
def test_proxy_cases_record_one_sample_per_seed():
    cfg = dataclasses.replace(A.SUITE.configs["alexnet-relu-vs-tanh"].params, max_steps=2, eval_every=2,
                              lr_grid=(0.01,), target_train_error=1.0)
    out = _quality(cfg, _ctx("alexnet-relu-vs-tanh", "quality", "proxy", batch=8, options={"n_seeds": 2}))
    # Both reach "100% error" at step 2: ratio 1, below the 2x threshold, so the claim does not hold.
    assert out.metrics["speedup.relu_over_tanh"].samples == (1.0, 1.0)
    assert out.metrics["claim_held"].samples == (0.0, 0.0)
    assert set(out.artifacts["curves"]) == {"relu.seed0", "tanh.seed0", "relu.seed1", "tanh.seed1"}
    cfg = dataclasses.replace(A.SUITE.configs["alexnet-dropout"].params, steps=2, curve_every=1, train_subset=16)
    out = _quality(cfg, _ctx("alexnet-dropout", "quality", "proxy", batch=8, options={"n_seeds": 2}))
    d, n = out.metrics["generalization_gap.dropout"].samples, out.metrics["generalization_gap.no_dropout"].samples
    assert out.metrics["claim_held"].samples == tuple(float(a < b) for a, b in zip(d, n))
    assert out.artifacts["curves"]["dropout.seed1"]["step"] == [1.0, 2.0]
    assert set(out.artifacts["curves"]["dropout.seed1"]["series"]) == {"loss", "test_loss"}
    assert out.info["claims"][0]["id"] == "dropout_less_overfitting"
    assert out.info["claims"][0]["held"] == [int(v) for v in out.metrics["claim_held"].samples]


def _quality(cfg, ctx):
    return A.SUITE.kind_fn("quality", cfg)(cfg, ctx)


@pytest.mark.parametrize("relu,tanh,held", [
    ([10], [60], [1.0]),  # 6x, as Fig. 1
    ([10], [20], [1.0]),  # exactly the 2x threshold
    ([10], [15], [0.0]),  # faster, but not 2x
    ([10], [None], [0.0]),  # tanh never reached it within 15 steps: ratio 1.5 (a lower bound)
    ([None], [20], [0.0]),  # ReLU never reached it: fails outright
])
def test_relu_tanh_decision(relu, tanh, held):
    assert A.relu_tanh_decision(relu, tanh, 15, 2.0)[1] == held


def test_dropout_decision():
    assert A.dropout_decision([0.05, 0.10, 0.08], [0.10, 0.05, 0.08]) == [1.0, 0.0, 0.0]


def test_dropout_decision_needs_substantial_overfitting_without_dropout():
    # dropout narrows the gap on both seeds, but on the second the net without it barely overfits (2 points)
    assert A.dropout_decision([0.01, 0.01], [0.10, 0.02], substantial=0.05) == [1.0, 0.0]


def test_relu_tanh_rule_asks_six_times_and_labels_a_smaller_ratio_weaker():
    cfg = A.SUITE.configs["alexnet-relu-vs-tanh"].params
    assert cfg.claim_ratio == 6.0
    assert A.relu_tanh_decision([10], [50], 150, cfg.claim_ratio)[1] == [0.0]  # 5x: not six times
    assert A.relu_tanh_decision([10], [60], 150, cfg.claim_ratio)[1] == [1.0]
    assert A.FIG1.strength == "as stated" and A.FIG1_WEAKER.strength == "weaker analogue"
