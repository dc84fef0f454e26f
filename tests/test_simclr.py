"""simclr suite: NT-Xent against a loop, batched augmentations, parameter counts, smoke step."""

from __future__ import annotations

import math

import pytest
import torch

from milestones.harness.context import CaseContext
from milestones.harness.launch.inprocess import run_kind
from milestones.harness.records import Case
from milestones.suites import simclr
from tests.quick_timing import quick


def nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """Eq. 1 of the paper, written out term by term."""
    z = [v / v.norm() for v in torch.cat([z1, z2]).double()]
    n2, n = len(z), len(z) // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        denom = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / denom)
    return total / n2


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_nt_xent_matches_loop(tau):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    assert float(simclr.nt_xent(z1, z2, tau)) == pytest.approx(nt_xent_loop(z1, z2, tau), rel=1e-5)


def test_nt_xent_prefers_matching_views():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 16, generator=g)
    assert float(simclr.nt_xent(z, z, 0.5)) < float(simclr.nt_xent(z, torch.randn(8, 16, generator=g), 0.5))


def _images(n=6, size=20):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(3))


def test_augment_shape_range_and_determinism():
    x, cfg = _images(), simclr.AugmentConfig(size=12)
    a = simclr.augment(x, torch.Generator().manual_seed(7), cfg)
    b = simclr.augment(x, torch.Generator().manual_seed(7), cfg)
    c = simclr.augment(x, torch.Generator().manual_seed(8), cfg)
    assert a.shape == (6, 3, 12, 12) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augment_rejects_non_rgb():
    with pytest.raises(ValueError):
        simclr.augment(torch.rand(2, 1, 8, 8), torch.Generator(), simclr.AugmentConfig(size=8))


def test_full_crop_is_identity_and_flip_mirrors():
    x, g = _images(), torch.Generator().manual_seed(0)
    same = simclr.random_resized_crop_flip(x, 20, g, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    mirrored = simclr.random_resized_crop_flip(x, 20, g, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0)
    torch.testing.assert_close(mirrored, x.flip(-1), atol=1e-5, rtol=0)


def test_color_distortion_probabilities():
    x, g = _images(), torch.Generator().manual_seed(0)
    torch.testing.assert_close(simclr.color_distortion(x, g, p_jitter=0.0, p_gray=0.0), x)
    gray = simclr.color_distortion(x, g, p_jitter=0.0, p_gray=1.0)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    jit = simclr.color_distortion(x, g, p_jitter=1.0, p_gray=0.0)
    assert not torch.allclose(jit, x) and jit.min() >= 0 and jit.max() <= 1


def test_hsv_round_trip_and_zero_hue_shift():
    x = _images()
    torch.testing.assert_close(simclr._hsv_to_rgb(simclr._rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(simclr._hue(x, torch.zeros(6)), x, atol=1e-5, rtol=0)


def test_blur_keeps_constants_and_smooths_noise():
    g = torch.Generator().manual_seed(0)
    const = torch.full((4, 3, 30, 30), 0.3)
    torch.testing.assert_close(simclr.gaussian_blur(const, g, p=1.0), const)
    noise = _images(4, 30)
    assert simclr.gaussian_blur(noise, g, p=1.0).std() < noise.std()
    torch.testing.assert_close(simclr.gaussian_blur(noise, g, p=0.0), noise)


def test_resnet50_encoder_and_head_parameter_counts():
    ctx = CaseContext.for_case(Case("simclr", "simclr-r50", "fidelity", "smoke", "cpu", "float32", None))
    m = simclr.fidelity(simclr.PAPER, ctx).metrics
    assert m["params.encoder"].value == 25_557_032 - (2048 * 1000 + 1000)  # torchvision's R-50 less its fc
    assert m["params.head"].value == (2048 * 2048 + 2048) + (2048 * 128 + 128)
    assert m["representation_dim"].value == 2048 and m["projection_dim"].value == 128
    assert m["hparam.temperature"].value == 0.1


@pytest.mark.slow
def test_simclr_smoke_speed_case_runs():
    cfg = simclr.SUITE.configs["simclr-smoke"].params
    ctx = quick(CaseContext.for_case(Case("simclr", "simclr-smoke", "speed", "smoke", "cpu", "float32", cfg.cpu_batch_size)))
    out = run_kind(simclr.speed, cfg, ctx)
    assert all(s > 0 for s in out.metrics["train.step_time"].samples)
    assert out.metrics["augment.throughput"].value > 0
    assert out.metrics["train.flops"].value > 0


def test_linear_eval_claim_rule_holds_and_fails():
    from milestones.suites import simclr as S

    d = S.linear_eval_decision([0.90, 0.90, 0.50, 0.80], [0.60, 0.95, 0.40, 0.30], [0.93, 0.93, 0.95, 0.85], gap=0.05)
    assert d["beats_random"] == [1.0, 0.0, 1.0, 1.0]
    assert d["matches_supervised"] == [1.0, 1.0, 0.0, 1.0]  # 0.85 - 0.80 = 0.05: within the band
    assert d["claim_held"] == [1.0, 0.0, 0.0, 1.0]
