import functools

import pytest
import torch

from milestones.harness.context import CaseContext
from milestones.harness.measure.flops import count_params
from milestones.harness.records import Case
from milestones.harness.registry import load_suite
from milestones.suites import resnet


@functools.cache
def figures(name: str) -> tuple[int, int]:
    """architecture_figures of a registered config, counted once per process (its FLOP count runs the
    model under FlopCounterMode: about a second for ResNet-152 even on the meta device)."""
    return resnet.architecture_figures(load_suite("resnet").config(name).params)


def params_only(name: str) -> int:
    """The parameter count alone: the model built on the meta device, with no FLOP count. The count
    architecture_figures reports is checked against this one below and by the fidelity case's test."""
    with torch.device("meta"):
        return count_params(resnet.build(load_suite("resnet").config(name).params))


@pytest.mark.slow
@pytest.mark.parametrize("name,params", [("resnet18-v1.5", 11_689_512), ("resnet50-v1.5", 25_557_032)])
def test_v15_parameter_counts_equal_torchvision(name, params):
    assert params_only(name) == params


@pytest.mark.slow
@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_paper_multiply_adds_within_tolerance(depth):
    cfg = load_suite("resnet").config(f"resnet{depth}").params
    params, macs = figures(f"resnet{depth}")
    assert abs(macs / resnet.PAPER_MACS[depth] - 1) <= cfg.tolerance
    assert params == params_only(f"resnet{depth}")


@pytest.mark.slow
def test_v15_moves_the_stride_and_costs_more_flops():
    v1, v15 = figures("resnet50"), figures("resnet50-v1.5")
    assert v1[0] == v15[0] and v15[1] / 1e9 == pytest.approx(4.089, abs=0.005)
    assert v1[1] / 1e9 == pytest.approx(3.858, abs=0.005)


@pytest.mark.slow
@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_parameter_counts_against_table6(depth):
    params = params_only(f"cifar-resnet{depth}")
    assert abs(params / resnet.CIFAR_PARAMS[depth] - 1) <= 0.05
    # option A shortcuts add no parameters: plain and residual nets have the same count
    assert params_only(f"cifar-plain{depth}") == params


def test_option_a_shortcut_pads_channels_and_subsamples():
    blk = resnet.BasicBlock(16, 32, stride=2, shortcut="A")
    x = torch.randn(2, 16, 8, 8)
    assert blk(x).shape == (2, 32, 4, 4)
    assert sum(p.numel() for p in blk.parameters()) == 16 * 32 * 9 + 32 * 32 * 9 + 4 * 32


def test_plain_net_has_no_projection_shortcuts():
    plain = resnet.ImageNetResNet(34, residual=False)
    assert all(b.downsample is None for layer in (plain.layer2, plain.layer3) for b in layer)


@pytest.mark.slow
def test_fidelity_case_reports_paper_comparison():
    cfg = load_suite("resnet").config("resnet50").params
    out = resnet.fidelity(cfg, CaseContext.for_case(Case("resnet", "resnet50", "fidelity", "smoke", "cpu",
                                                         "float32", None)))
    assert out.metrics["params"].value == 25_557_032
    assert out.metrics["macs_within_tolerance"].value == 1.0
    assert out.info["paper_macs"] == 3.8e9
