"""gan suite and the shared generative evaluation: Fréchet distance, Parzen window, model, smoke step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg
from scipy.stats import multivariate_normal

from milestones.harness.context import CaseContext
from milestones.harness.launch.inprocess import run_kind
from milestones.harness.records import Case
from milestones.suites import _generative_eval as ev
from milestones.suites import gan
from tests.quick_timing import quick


def ctx_for(config: str, kind: str, batch: int | None = None) -> CaseContext:
    return CaseContext.for_case(Case("gan", config, kind, "smoke", "cpu", "float32", batch))


# ------------------------------------------------------------------------------------- Fréchet distance
def test_frechet_distance_one_dimensional_closed_form():
    # N(m1, s1^2) vs N(m2, s2^2): (m1 - m2)^2 + (s1 - s2)^2
    fd = ev.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert fd == pytest.approx(9.0 + 1.0)


def test_frechet_distance_matches_sqrtm_formula_for_non_commuting_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    ref = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))
    assert ev.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    assert ev.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_from_samples_of_known_gaussians():
    rng = np.random.default_rng(1)
    x = rng.normal([0, 0, 0], [1, 1, 1], size=(40_000, 3))
    y = rng.normal([1, 0, 0], [2, 1, 1], size=(40_000, 3))
    # closed form for diagonal covariances: 1 + (2 - 1)^2
    assert ev.frechet_distance_features(x, y) == pytest.approx(2.0, abs=0.08)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        ev.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# ------------------------------------------------------------------------------------------ Parzen window
def test_parzen_single_centre_is_the_gaussian_density():
    c = torch.tensor([[0.5, -1.0, 2.0]])
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    got = ev.parzen_log_likelihood(c, x, sigma=0.7)
    ref = multivariate_normal(mean=c[0].numpy(), cov=0.49 * np.eye(3)).logpdf(x.numpy())
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)


@pytest.mark.slow
def test_parzen_recovers_the_entropy_of_a_known_gaussian():
    g = torch.Generator().manual_seed(0)
    centres, valid, test = (torch.randn(n, 1, generator=g) * 0.2 for n in (5000, 500, 2000))
    res = ev.parzen_evaluate(centres, valid, test, sigmas=tuple(np.logspace(-2, 0, 9)))
    true_ll = -0.5 * math.log(2 * math.pi * math.e * 0.2**2)  # E[log p(x)] for N(0, 0.2^2)
    assert res.mean == pytest.approx(true_ll, abs=0.05)
    assert res.sigma < 0.2  # a kernel narrower than the data, not the widest of the grid
    assert max(res.valid_by_sigma, key=res.valid_by_sigma.get) == res.sigma
    assert res.se > 0


# ------------------------------------------------------------------------------------------------ model
def test_mnist_gan_parameter_counts():
    out = gan.fidelity(gan.PAPER, ctx_for("gan-mnist", "fidelity"))
    m = out.metrics
    # G: 101*1200 + 1201*1200 + 1201*784; D: maxout 785*1200 + 241*1200, then 241 (hand-computed)
    assert m["params.generator"].value == 2_503_984
    assert m["params.discriminator"].value == 1_231_441
    assert m["params_match_layer_widths"].value == 1.0
    assert m["output_dim.generator"].value == 784
    assert m["hparam.k"].value == 1 and m["hparam.z_dim"].value == 100


def test_maxout_takes_the_max_over_pieces():
    mx = gan.Maxout(2, units=1, pieces=3)
    with torch.no_grad():
        mx.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        mx.linear.bias.zero_()
    out = mx(torch.tensor([[2.0, 3.0], [-5.0, -4.0]]))
    assert out.squeeze(1).tolist() == [3.0, 9.0]


def test_non_saturating_generator_loss_has_stronger_gradient_when_d_rejects_samples():
    # Sec. 3: early on D(G(z)) ~ 0 and log(1 - D) saturates; -log D does not.
    def grad(non_sat: bool) -> float:
        logit = torch.tensor([-6.0], requires_grad=True)
        gan.g_loss(lambda x: x, logit, non_saturating=non_sat).backward()
        return abs(float(logit.grad))

    assert grad(True) > 50 * grad(False)


def test_trainer_takes_k_discriminator_steps_per_generator_step():
    cfg = gan.GANConfig(data_dim=8, z_dim=4, g_hidden=8, d_units=4, d_pieces=2, batch_size=4, k=3, optimizer="adam")
    torch.manual_seed(0)
    g, d = gan.build(cfg)
    tr = gan.GANTrainer(cfg, g, d, torch.rand(16, 8))
    g0 = [p.clone() for p in g.parameters()]
    tr.step()
    tr.step()
    d_steps = int(next(iter(tr.opt_d.state.values()))["step"])
    g_steps = int(next(iter(tr.opt_g.state.values()))["step"])
    assert (d_steps, g_steps) == (6, 2)
    assert any(not torch.equal(a, b) for a, b in zip(g0, g.parameters()))


def test_output_bias_from_marginals():
    g = gan.MLPGenerator(3, 5, 4)
    x = torch.tensor([[0.2, 0.5, 0.9, 0.0]]).repeat(3, 1)
    g.set_output_bias_from_marginals(x)
    assert torch.sigmoid(g.net[4].bias)[:3].tolist() == pytest.approx([0.2, 0.5, 0.9], abs=1e-6)


@pytest.mark.slow
def test_gan_smoke_speed_case_runs():
    cfg = gan.SUITE.configs["gan-smoke"].params
    out = run_kind(gan.speed, cfg, quick(ctx_for("gan-smoke", "speed", cfg.cpu_batch_size)))
    st = out.metrics["train.step_time"]
    assert st.samples and all(s > 0 for s in st.samples)
    assert out.metrics["train.flops"].value > 0


def test_quality_seeds_default_and_explicit():
    c = CaseContext.for_case(Case("gan", "gan-digits", "quality", "proxy", "cpu", "float32", 100), seed=5)
    assert c.quality_seeds(3) == (5, 6, 7)
    c2 = CaseContext.for_case(Case("gan", "gan-digits", "quality", "proxy", "cpu", "float32", 100), seeds=(1, 9))
    assert c2.quality_seeds(3) == (1, 9)


@pytest.mark.parametrize("ll,fd,held", [
    ((-50.0, -80.0), (10.0, 40.0), 1.0),  # higher log-likelihood and lower FD than untrained
    ((-50.0, -80.0), (45.0, 40.0), 0.0),  # likelihood better, FD worse
    ((-90.0, -80.0), (10.0, 40.0), 0.0),  # FD better, likelihood worse
])
def test_claim_rule_needs_both_measures_to_improve(ll, fd, held):
    assert ev.generator_improves([ll[0]], [ll[1]], [fd[0]], [fd[1]]) == [held]

