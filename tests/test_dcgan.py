"""dcgan suite: architecture guidelines, parameter counts, shapes, features, linear probe, smoke step."""

from __future__ import annotations

import pytest
import torch

from milestones.harness.context import CaseContext
from milestones.harness.launch.inprocess import run_kind
from milestones.harness.records import Case
from milestones.suites import _generative_eval as ev
from milestones.suites import dcgan
from tests.quick_timing import quick


def ctx_for(config: str, kind: str, batch: int | None = None) -> CaseContext:
    return CaseContext.for_case(Case("dcgan", config, kind, "smoke", "cpu", "float32", batch))


def test_64x64_parameter_counts_and_guidelines():
    m = dcgan.fidelity(dcgan.PAPER, ctx_for("dcgan-64", "fidelity")).metrics
    # The well-known counts of the 64x64, ngf = ndf = 64 DCGAN (PyTorch's DCGAN example prints the same).
    assert m["params.generator"].value == 3_576_704
    assert m["params.discriminator"].value == 2_765_568
    assert m["params_match_guidelines"].value == 1.0
    assert m["guidelines_followed"].value == 1.0
    assert m["output_size.generator"].value == 64 and m["output_channels.generator"].value == 3
    assert m["logits_per_image.discriminator"].value == 1
    assert m["hparam.lr"].value == pytest.approx(2e-4) and m["hparam.beta1"].value == 0.5
    assert m["hparam.z_dim"].value == 100 and m["hparam.batch_size"].value == 128


@pytest.mark.parametrize("size", [8, 16, 32])
def test_shapes_and_tanh_range(size):
    cfg = dcgan.DCGANConfig(image_size=size, nc=1, ngf=4, ndf=4)
    g, d = dcgan.build(cfg)
    x = g(torch.randn(3, 100))
    assert x.shape == (3, 1, size, size) and x.abs().max() <= 1
    assert d(x).shape == (3,)
    assert dcgan.expected_params(cfg) == (sum(p.numel() for p in g.parameters()),
                                          sum(p.numel() for p in d.parameters()))


def test_bad_image_size_raises():
    with pytest.raises(ValueError):
        dcgan.Generator(image_size=48)


def test_init_is_normal_0_02():
    g, _ = dcgan.build(dcgan.DCGANConfig(image_size=32))
    w = torch.cat([m.weight.detach().flatten() for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert float(w.mean()) == pytest.approx(0.0, abs=1e-3)
    assert float(w.std()) == pytest.approx(0.02, rel=0.02)


def test_discriminator_features_pool_every_layer_to_4x4():
    d = dcgan.Discriminator(ndf=8, nc=1, image_size=16)
    f = d.features(torch.randn(5, 1, 16, 16))
    assert f.shape == (5, (8 + 16) * 16)


def test_linear_probe_separable_vs_random_labels():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=g)
    x = torch.randn(300, 5, generator=g) + 4 * torch.nn.functional.one_hot(y, 5).float()
    assert ev.linear_probe_accuracy(x[:200], y[:200], x[200:], y[200:]) > 0.95
    noise = torch.randn(300, 5, generator=g)
    assert ev.linear_probe_accuracy(noise[:200], y[:200], noise[200:], y[200:]) < 0.6


def test_trainer_step_updates_both_nets():
    cfg = dcgan.DCGANConfig(image_size=8, nc=1, ngf=4, ndf=4, z_dim=8, batch_size=4)
    g, d = dcgan.build(cfg)
    tr = dcgan.DCGANTrainer(cfg, g, d, torch.rand(10, 1, 8, 8) * 2 - 1)
    before = [p.clone() for p in (*g.parameters(), *d.parameters())]
    ld, lg = tr.step()
    assert ld > 0 and lg > 0
    after = list((*g.parameters(), *d.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(before, after))


def test_digit_roundtrip_keeps_range_and_size():
    x = torch.rand(4, 1, 8, 8)
    y = dcgan.to_gan_pixels(x, 16)
    assert y.shape == (4, 1, 16, 16) and y.min() >= -1 and y.max() <= 1
    back = ev.to_digit_pixels(y, tanh_range=True)
    assert back.shape == (4, 1, 8, 8)
    assert float((back - x).abs().mean()) < 0.15


@pytest.mark.slow
def test_dcgan_smoke_speed_case_runs():
    cfg = dcgan.SUITE.configs["dcgan-smoke"].params
    out = run_kind(dcgan.speed, cfg, quick(ctx_for("dcgan-smoke", "speed", cfg.cpu_batch_size)))
    assert all(s > 0 for s in out.metrics["train.step_time"].samples)
    assert out.metrics["train.flops"].value > 0


def test_probe_claim_rule_holds_and_fails():
    from milestones.suites import dcgan as D

    assert D.probe_beats_random([0.90, 0.80, 0.70], [0.85, 0.80, 0.75]) == [1.0, 0.0, 0.0]  # a tie does not hold
