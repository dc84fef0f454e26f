"""GAN: Generative Adversarial Nets (Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville,
Bengio; arXiv 1406.2661, 2014).

The MNIST model of the paper (Sec. 5) as configured in its code (`goodfeli/adversarial`, mnist.yaml):
- generator: z (100-d, Gaussian: the code's default noise) -> 1200 ReLU -> 1200 ReLU -> 784 sigmoid;
  weights U(-0.05, 0.05), output bias set from the data's pixel marginals (init_sigmoid_bias_from_marginals);
- discriminator: two maxout layers of 240 units x 5 pieces -> 1 sigmoid unit; weights U(-0.005, 0.005);
  dropout with input keep-probability 0.8 and hidden keep-probability 0.5 (the paper: "dropout was applied
  in training the discriminator net");
- SGD, batch 100, lr 0.1 with momentum 0.5 rising to 0.7 (the code; the paper gives no numbers);
- Algorithm 1: k discriminator steps per generator step (k = 1, the paper's setting), and the generator
  maximises log D(G(z)) instead of minimising log(1 - D(G(z))) (Sec. 3: "early in learning ... provides
  much stronger gradients").

Quality (the paper's Table 1 measure): a Gaussian Parzen-window log-likelihood of held-out data under
generated samples, sigma chosen on a validation split; plus a Fréchet distance in the features of a
digits classifier trained here. Proxy scale uses scikit-learn's 8x8 digits (64-d instead of 784-d).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.measure.flops import count_params
from milestones.harness.records import CaseOutput
from milestones.harness.registry import register_suite
from milestones.harness.suite_api import WEAKER, Metrics, Params, SpeedPlan, Step, claim_text, curve
from milestones.suites import _generative_eval as ev

SUITE = register_suite("gan", title="Generative Adversarial Nets", arxiv="1406.2661", year=2014)


# ---------------------------------------------------------------------------------------------- model
class Maxout(nn.Module):
    """Goodfellow et al. 2013: the max over `pieces` affine maps, per unit."""

    def __init__(self, cin: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(cin, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(-1)


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int, hidden: int, out_dim: int, irange: float = 0.05) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_dim), nn.Sigmoid())
        for m in self.net:
            if isinstance(m, nn.Linear):  # pylearn2's irange: U(-irange, irange), zero biases
                nn.init.uniform_(m.weight, -irange, irange)
                nn.init.zeros_(m.bias)

    def set_output_bias_from_marginals(self, x: torch.Tensor) -> None:
        """The code's init_sigmoid_bias_from_marginals: sigmoid(bias) = mean pixel value."""
        p = x.reshape(x.shape[0], -1).mean(0).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.net[4].bias.copy_(torch.log(p / (1 - p)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MaxoutDiscriminator(nn.Module):
    """Returns the logit of D(x); the sigmoid lives in the loss (binary_cross_entropy_with_logits)."""

    def __init__(self, in_dim: int, units: int, pieces: int, keep_in: float = 0.8, keep_hidden: float = 0.5,
                 irange: float = 0.005) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(1 - keep_in), Maxout(in_dim, units, pieces), nn.Dropout(1 - keep_hidden),
                                 Maxout(units, units, pieces), nn.Dropout(1 - keep_hidden), nn.Linear(units, 1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.uniform_(m.weight, -irange, irange)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1)).squeeze(1)


# --------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class GANConfig(Params):
    data_dim: int = 784  # MNIST 28x28
    z_dim: int = 100
    g_hidden: int = 1200
    d_units: int = 240
    d_pieces: int = 5
    d_keep_in: float = 0.8
    d_keep_hidden: float = 0.5
    optimizer: str = "sgd"  # "sgd" (the paper's code) | "adam" (proxy deviation, see below)
    lr: float = 0.1
    momentum: float = 0.5  # rises linearly to final_momentum over the first momentum_saturate epochs
    final_momentum: float = 0.7
    momentum_saturate: int = 250  # epochs, as mnist.yaml's MomentumAdjustor
    lr_decay: float = 1.000004  # per step, ExponentialDecay in mnist.yaml
    adam_betas: tuple[float, float] = (0.5, 0.999)
    k: int = 1  # discriminator steps per generator step (Algorithm 1; the paper used k = 1)
    non_saturating: bool = True  # Sec. 3: maximise log D(G(z)) for the generator
    # proxy-scale quality (our own choices, not the paper's)
    steps: int = 3000
    eval_every: int = 250
    fd_target: float | None = None  # our own proxy target, see PROXY_FD_TARGET
    n_parzen_samples: int = 10_000  # the paper's parzen_ll.py default


def build(cfg: GANConfig) -> tuple[MLPGenerator, MaxoutDiscriminator]:
    g = MLPGenerator(cfg.z_dim, cfg.g_hidden, cfg.data_dim)
    d = MaxoutDiscriminator(cfg.data_dim, cfg.d_units, cfg.d_pieces, cfg.d_keep_in, cfg.d_keep_hidden)
    return g, d


# Our own proxy target (not the paper's): the Fréchet distance, in the digits classifier's feature space,
# that a trained 8x8 generator must reach. Set from our first proxy runs (see docs/generative-contrastive.md).
PROXY_FD_TARGET = 15.0

# Batch 100 (the paper's code); the MLPs are small: the paper's batch fits a CPU. 3 seeds for a claim.
_BATCH = dict(batch_size=100, cpu_batch_size=100, n_seeds=3)
PAPER = GANConfig(**_BATCH)
SUITE.config("gan-mnist", PAPER, scales=("smoke", "proxy", "paper"), kinds=("fidelity",),
             description="the paper's MNIST MLP GAN: G 100-1200-1200-784, D maxout 240x5 (x2)")
SUITE.config("gan-mnist-paper", PAPER, scales=("paper",), kinds=("speed",),
             description="one D + G update of the MNIST GAN at batch 100")
# Smoke: the paper's architecture at a tiny width so every CI run exercises the whole update.
SUITE.config("gan-smoke", GANConfig(data_dim=64, z_dim=16, g_hidden=64, d_units=32, d_pieces=5, batch_size=16,
                                    cpu_batch_size=16), scales=("smoke",), kinds=("speed",),
             description="tiny MLP GAN (G 16-64-64-64, D maxout 32x5), one D + G update")
# Proxy deviations, for 8x8 digits (64-d, 1,147 training images) on a shared 2-core CPU: G 100-256-256-64 and
# D maxout 128 x 5 (the paper's layer types and depth, narrower: the 1200-wide nets take ~1 s a step here);
# Adam (lr 1e-3, beta1 0.5) instead of the code's SGD + momentum, whose schedule spans hundreds of MNIST
# epochs (in our trial SGD lr 0.1 left D at chance for 750 steps with the code's tiny D initialisation).
SUITE.config("gan-digits", GANConfig(data_dim=64, g_hidden=256, d_units=128, optimizer="adam", lr=1e-3, steps=2000,
                                     fd_target=PROXY_FD_TARGET, **_BATCH),
             scales=("proxy",), kinds=("speed", "quality"),
             description="MLP GAN (G 100-256-256-64, D maxout 128x5) on 8x8 digits, 3 seeds, Parzen LL + FD")


# ------------------------------------------------------------------------------------------ fidelity
HYPERPARAMETERS = ("z_dim", "g_hidden", "d_units", "d_pieces", "batch_size", "lr", "momentum", "k")


def expected_params(cfg: GANConfig) -> tuple[int, int]:
    """Closed form: (generator, discriminator) parameters, from the layer widths."""
    h, u, p = cfg.g_hidden, cfg.d_units, cfg.d_pieces
    g = (cfg.z_dim + 1) * h + (h + 1) * h + (h + 1) * cfg.data_dim
    d = (cfg.data_dim + 1) * u * p + (u + 1) * u * p + (u + 1)
    return g, d


@SUITE.kind("fidelity")
def fidelity(cfg: GANConfig, ctx: CaseContext) -> CaseOutput:
    with torch.device("meta"):
        g, d = build(cfg)
        z = torch.empty(2, cfg.z_dim)
        x = g(z)
        logit = d(x)
    eg, ed = expected_params(cfg)
    pg, pd = count_params(g), count_params(d)
    m = Metrics()
    m.single("params.generator", "count", pg)
    m.single("params.discriminator", "count", pd)
    m.single("params_match_layer_widths", "bool", float(pg == eg and pd == ed), higher_is_better=True)
    # Shapes, checked against the data: neither direction is better.
    m.single("output_dim.generator", "count", x.shape[1], higher_is_better=True)
    m.single("output_dim.discriminator", "count", 1 if logit.dim() == 1 else logit.shape[1], higher_is_better=True)
    for h in HYPERPARAMETERS:
        m.single(f"hparam.{h}", "value", float(getattr(cfg, h)))
    m.single("hparam.non_saturating", "bool", float(cfg.non_saturating))
    return CaseOutput(metrics=m, info={"generator_output_shape": list(x.shape), "expected_params": [eg, ed]})


# --------------------------------------------------------------------------------------------- train
def d_loss(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """-[log D(x) + log(1 - D(G(z)))], averaged: the discriminator's side of the value function V(D, G)."""
    lr_, lf = d(real), d(fake)
    return F.binary_cross_entropy_with_logits(lr_, torch.ones_like(lr_)) + \
        F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))


def g_loss(d: nn.Module, fake: torch.Tensor, non_saturating: bool = True) -> torch.Tensor:
    lf = d(fake)
    if non_saturating:  # maximise log D(G(z))
        return F.binary_cross_entropy_with_logits(lf, torch.ones_like(lf))
    return -F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))  # minimise log(1 - D(G(z)))


class GANTrainer:
    """Algorithm 1: k discriminator updates on fresh minibatches, then one generator update."""

    def __init__(self, cfg: GANConfig, g: nn.Module, d: nn.Module, data: torch.Tensor,
                 generator: torch.Generator | None = None, steps_per_epoch: int | None = None) -> None:
        self.cfg, self.g, self.d, self.data = cfg, g, d, data.reshape(data.shape[0], -1)
        self.rng = generator or torch.Generator().manual_seed(0)
        self.steps_per_epoch = steps_per_epoch or max(1, self.data.shape[0] // cfg.batch_size)
        if cfg.optimizer == "sgd":
            self.opt_g = torch.optim.SGD(g.parameters(), lr=cfg.lr, momentum=cfg.momentum)
            self.opt_d = torch.optim.SGD(d.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        elif cfg.optimizer == "adam":
            self.opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=cfg.adam_betas)
            self.opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=cfg.adam_betas)
        else:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose 'sgd' or 'adam'")
        self.step_count = 0

    def _schedule(self) -> None:
        if self.cfg.optimizer != "sgd":
            return
        epoch = self.step_count / self.steps_per_epoch
        frac = min(1.0, epoch / self.cfg.momentum_saturate)
        mom = self.cfg.momentum + frac * (self.cfg.final_momentum - self.cfg.momentum)
        lr = max(1e-6, self.cfg.lr / self.cfg.lr_decay ** self.step_count)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"], group["momentum"] = lr, mom

    def _batch(self) -> torch.Tensor:
        idx = torch.randint(0, self.data.shape[0], (self.cfg.batch_size,), generator=self.rng, device=self.rng.device)
        return self.data[idx]

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.z_dim, generator=self.rng, device=self.rng.device).to(self.data.dtype)

    def step(self) -> tuple[float, float]:
        self._schedule()
        self.g.train()
        self.d.train()
        for _ in range(self.cfg.k):
            real = self._batch()
            with torch.no_grad():
                fake = self.g(self._noise(real.shape[0]))
            self.opt_d.zero_grad(set_to_none=True)
            ld = d_loss(self.d, real, fake)
            ld.backward()
            self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        lg = g_loss(self.d, self.g(self._noise(self.cfg.batch_size)), self.cfg.non_saturating)
        lg.backward()
        self.opt_g.step()
        self.step_count += 1
        return float(ld.detach()), float(lg.detach())

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        self.g.eval()
        return self.g(torch.randn(n, self.cfg.z_dim, generator=generator))


# --------------------------------------------------------------------------------------------- speed
@SUITE.kind("speed")
def speed(cfg: GANConfig, ctx: CaseContext) -> SpeedPlan:
    if ctx.case.dtype != "float32" and not ctx.on_gpu:
        raise SkipCase(f"{ctx.case.dtype} GAN training is measured on a GPU only; use float32 on the CPU")
    torch.manual_seed(ctx.seed)
    g, d = build(cfg)
    g, d = g.to(ctx.torch_device, ctx.torch_dtype), d.to(ctx.torch_device, ctx.torch_dtype)
    # Synthetic pixels in [0, 1]: speed does not depend on their values.
    data = torch.rand(max(ctx.batch_size * 4, 256), cfg.data_dim, generator=torch.Generator().manual_seed(0))
    trainer = GANTrainer(_with_batch(cfg, ctx.batch_size), g, d, data.to(ctx.torch_device, ctx.torch_dtype))
    if ctx.torch_device.type != "cpu":  # noise and batch indices drawn on the device
        trainer.rng = torch.Generator(device=ctx.torch_device).manual_seed(0)
    m = Metrics()
    m.single("params.generator", "count", count_params(g))
    m.single("params.discriminator", "count", count_params(d))
    return SpeedPlan(steps=(Step("train", trainer.step, ctx.batch_size, "images"),), metrics=m,
                     info={"k": cfg.k, "note": "one step = k discriminator updates + one generator update"})


def _with_batch(cfg: GANConfig, batch: int) -> GANConfig:
    return dataclasses.replace(cfg, batch_size=batch)


# -------------------------------------------------------------------------------------------- quality
def _sample01(trainer: GANTrainer, n: int, seed: int) -> torch.Tensor:
    return ev.to_digit_pixels(trainer.sample(n, torch.Generator().manual_seed(seed)), tanh_range=False)


PROP2 = claim_text(
    "gan", "learns_data_distribution",
    "If G and D have enough capacity, and at each step of Algorithm 1, the discriminator is allowed to reach "
    "its optimum given G, and p_g is updated so as to improve the criterion [...] then p_g converges to p_data",
    "Goodfellow et al. 2014, Sec. 4.2, Proposition 2 (Parzen estimates: Sec. 5, Table 1)",
    ev.GENERATOR_RULE,
    strength=WEAKER, tests="only that training improves the generator over its untrained self, not convergence "
    "to p_data")
TABLE1_CLAIM = claim_text(
    "gan", "gan-table1-{dataset}", "Adversarial nets: {paper:g} +- {pm:g} (Parzen window log-likelihood, {upper})",
    "Goodfellow et al. 2014, Table 1", "mean test log-likelihood >= {paper:g} - {pm:g} - 10", strength=WEAKER,
    tests="within 10 nats below the paper's interval", quoted=False)
@SUITE.kind("quality")
def quality(cfg: GANConfig, ctx: CaseContext) -> CaseOutput:
    if cfg.data_dim != 64:
        raise SkipCase("quality runs on 8x8 digits (data_dim 64); MNIST is not shipped offline")
    evaluator = ev.Evaluator.build()
    sp = evaluator.splits
    seeds = ctx.quality_seeds(cfg.n_seeds)
    out: dict[str, list[float]] = {k: [] for k in (
        "parzen_ll", "parzen_ll_se", "parzen_sigma", "parzen_ll.untrained", "fd", "fd.untrained",
        "steps_to_target", "seconds_to_target", "train_seconds")}
    curves: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        torch.manual_seed(seed)
        g, d = build(cfg)
        g.set_output_bias_from_marginals(sp.train)
        trainer = GANTrainer(_with_batch(cfg, ctx.batch_size), g, d, sp.train, torch.Generator().manual_seed(seed))
        # untrained: the same initialisation, before any update (the bias already matches the pixel means)
        untrained = _sample01(trainer, cfg.n_parzen_samples, seed + 1000)
        out["parzen_ll.untrained"].append(evaluator.parzen(untrained).mean)
        out["fd.untrained"].append(evaluator.fd(untrained[:evaluator.n_fd]))
        run = ev.train_adversarial(
            trainer, cfg.steps, cfg.eval_every, 50, ctx, seed, fd_target=cfg.fd_target,
            fd_of_step=lambda step, trainer=trainer, seed=seed: evaluator.fd(_sample01(trainer, evaluator.n_fd, seed + 2000 + step)))
        run.record(out)
        trained = _sample01(trainer, cfg.n_parzen_samples, seed + 1000)
        pz = evaluator.parzen(trained)
        out["parzen_ll"].append(pz.mean)
        out["parzen_ll_se"].append(pz.se)
        out["parzen_sigma"].append(pz.sigma)
        out["fd"].append(evaluator.fd(trained[:evaluator.n_fd]))
        curves.update(run.curves("gan", seed))
        ctx.seed_done(seed, {"parzen_ll": out["parzen_ll"][-1], "fd": out["fd"][-1]})
    held = ev.generator_improves(out["parzen_ll"], out["parzen_ll.untrained"], out["fd"], out["fd.untrained"])
    rule = PROP2.rule.format(steps=cfg.steps)
    m = _quality_metrics(out, cfg, len(seeds), evaluator)
    m.add("claim_held", "bool", held, note=rule)
    return CaseOutput(metrics=m, artifacts={"curves": curves},
                      info={"seeds": list(seeds), "fd_target": cfg.fd_target, "fd_target_is": "our own proxy target",
                            "steps": cfg.steps, "optimizer": cfg.optimizer, "lr": cfg.lr,
                            "data": "sklearn digits 8x8, pixels in [0,1]; 1147 train / 200 valid (sigma) / 450 test",
                            "claim": "trained generator beats the untrained one on held-out Parzen LL and on FD",
                            "claims": [PROP2.make(held, seeds, ctx.case.scale, steps=cfg.steps)]})


def reference_metrics(m: Metrics, evaluator: ev.Evaluator, n: int) -> None:
    """Context, not a claim: the same measures with real training images in place of generated ones."""
    sp = evaluator.splits
    real = sp.train[torch.randperm(sp.train.shape[0], generator=torch.Generator().manual_seed(0))]
    pz = evaluator.parzen(real)
    m.single("parzen_ll.real_train", "nats", pz.mean, note=f"Parzen centres = the {real.shape[0]} training images")
    m.single("fd.real_train", "fd", evaluator.fd(real[:n]), note="FD of training images vs the test images (the floor)")


def _quality_metrics(out: dict[str, list[float]], cfg, n_seeds: int, evaluator: ev.Evaluator) -> Metrics:
    m = Metrics()
    for k, u in (("parzen_ll", "nats"), ("parzen_ll_se", "nats"), ("parzen_ll.untrained", "nats"), ("fd", "fd"),
                 ("fd.untrained", "fd"), ("train_seconds", "s")):
        m.add(k, u, out[k])
    # The Parzen window width chosen on the validation split: a setting, neither better nor worse.
    m.add("parzen_sigma", "value", out["parzen_sigma"], higher_is_better=False)
    ev.time_to_target_metrics(m, out, n_seeds, cfg.fd_target, cfg.steps)
    reference_metrics(m, evaluator, evaluator.n_fd)
    m.single("classifier_accuracy", "fraction", evaluator.accuracy(),
             note="test accuracy of the digits classifier whose features the FD uses")
    return m


# ---------------------------------------------------------------------------------------------------------
# ---- paper scale (issue 14): Table 1's Parzen-window log-likelihood on MNIST and TFD
# ---------------------------------------------------------------------------------------------------------
import math as _math  # noqa: E402

from milestones.harness.suite_api import Params  # noqa: E402
from milestones.suites import _paper  # noqa: E402

# Table 1's comparison rows (other models, same estimator): cited beside ours, never trained here.
TABLE1_OTHERS = {"dbn": "Deep Belief Net", "stacked_cae": "Stacked CAE", "deep_gsn": "Deep GSN"}
TABLE1 = {"mnist": (225.0, 2.0), "tfd": (2057.0, 26.0)}


@dataclass(frozen=True)
class GANPaperConfig(Params):
    """Table 1's protocol: train on the training split, draw 10,000 samples, fit a Gaussian Parzen window
    to them, choose sigma on the validation split (parzen_ll.py: sigma in logspace(-1, 0, 10)), report the
    mean test log-likelihood +- its standard error (MNIST: across test examples; TFD: across folds).

    MNIST: 50,000 training / 10,000 validation images (the paper's code splits the 60k training set so),
    10,000 test. TFD: the 48x48 images of each fold's train / valid / test sets. The TFD nets of the paper
    (tfd.yaml) are not in our sources; deviation: the MNIST architecture with a 2304-d output."""

    dataset: str = "mnist"  # "mnist" | "tfd"
    gan: GANConfig = GANConfig()
    epochs: int = 300  # not stated in the paper; momentum saturates at epoch 250 in mnist.yaml
    n_valid: int = 10_000
    n_samples: int = 10_000
    folds: tuple[int, ...] = (0,)  # TFD folds to train and score (the paper: all 5)
    eval_every_epochs: int = 25  # a Parzen estimate on the validation split (curve only)
    eval_samples: int = 2_000
    ckpt_every: int = 2000
    steps: int = 0
    n_train: int = 0
    n_test: int = 0


def _gan_splits(cfg: GANPaperConfig, ctx: CaseContext, fold: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from milestones.suites._vision_data import data_path, load_mnist

    if cfg.dataset == "mnist":
        xtr, _, xte, _ = load_mnist(data_path(ctx, "mnist", needed_for="the MNIST IDX files"))
        xtr = xtr.float().reshape(len(xtr), -1) / 255.0
        xte = xte.float().reshape(len(xte), -1) / 255.0
        n_valid = min(cfg.n_valid, len(xtr) // 5)
        train, valid = xtr[:len(xtr) - n_valid], xtr[len(xtr) - n_valid:]
        test = xte
    else:
        d = _paper.load_tfd(data_path(ctx, "tfd", needed_for="TFD_48x48.mat (images + folds)", kind="any"), fold)
        train, valid, test = d["train"], d["valid"], d["test"]
    if cfg.n_train:
        train = train[:cfg.n_train]
    if cfg.n_test:
        valid, test = valid[:cfg.n_test], test[:cfg.n_test]
    return train, valid, test


def train_gan_paper(cfg: GANPaperConfig, ctx: CaseContext, seed: int, fold: int,
                    splits: tuple[torch.Tensor, ...]) -> dict:
    train, valid, test = splits
    gcfg = dataclasses.replace(cfg.gan, data_dim=train.shape[1], batch_size=ctx.batch_size)
    dev = ctx.torch_device
    torch.manual_seed(seed)
    g, d = build(gcfg)
    g.set_output_bias_from_marginals(train)
    g, d = g.to(dev), d.to(dev)
    data = train.to(dev)
    per_epoch = max(1, len(train) // gcfg.batch_size)
    trainer = GANTrainer(gcfg, g, d, data, torch.Generator(device=dev).manual_seed(seed), per_epoch)
    steps = cfg.steps or cfg.epochs * per_epoch

    def step_fn(step: int) -> float:
        # batches and noise are a function of (seed, step): a resumed run repeats them
        trainer.rng = torch.Generator(device=dev).manual_seed(seed * 7_919 + step * 104_729 + 17)
        trainer.step_count = step - 1  # the lr/momentum schedule reads it
        ld, lg = trainer.step()
        ctx.check_finite(step, lg, "g_loss")
        return ld

    def sample(n: int, s: int) -> torch.Tensor:
        g.eval()
        gen = torch.Generator(device=dev).manual_seed(s)
        with torch.no_grad():
            out = torch.cat([g(torch.randn(min(1000, n - i), gcfg.z_dim, generator=gen, device=dev))
                             for i in range(0, n, 1000)])
        g.train()
        return out.float().cpu()

    def eval_fn(step: int) -> dict:
        pz = ev.parzen_evaluate(sample(cfg.eval_samples, seed + 5), valid[:2000], valid[:2])
        return {"valid_parzen_ll": max(pz.valid_by_sigma.values())}

    tag = f"{cfg.dataset} fold {fold} seed {seed}"
    ckpt = _paper.Checkpoint(ctx, f"{ctx.case.config}-fold{fold}-seed{seed}",
                             _paper.config_fingerprint(cfg, seed=seed, fold=fold, batch=gcfg.batch_size), tag)
    res = _paper.train(ctx, ckpt, modules={"g": g, "d": d}, optimizers={"g": trainer.opt_g, "d": trainer.opt_d},
                       steps=steps, step_fn=step_fn, eval_fn=eval_fn, eval_every=cfg.eval_every_epochs * per_epoch,
                       ckpt_every=cfg.ckpt_every, tag=tag)
    pz = ev.parzen_evaluate(sample(cfg.n_samples, seed + 1000), valid, test)
    return {"pz": pz, "res": res}


@SUITE.kind("quality", params=GANPaperConfig, metrics=("parzen_ll", "parzen_ll.*", "parzen_ll_se", "parzen_sigma",))
@_paper.paper_case
def gan_paper_quality(cfg: GANPaperConfig, ctx: CaseContext) -> CaseOutput:
    cfg, over = _paper.prepare(cfg, ctx, lambda c: f"GAN training on {c.dataset.upper()} ({c.epochs} epochs)")
    seeds = ctx.quality_seeds(cfg.n_seeds)
    folds = cfg.folds if cfg.dataset == "tfd" else (0,)
    ll: list[float] = []
    se: list[float] = []
    sig: list[float] = []
    curves: dict = {}
    fold_means: list[float] = []
    for seed in seeds:
        per_fold = []
        for fold in folds:
            r = train_gan_paper(cfg, ctx, seed, fold, _gan_splits(cfg, ctx, fold))
            per_fold.append(r["pz"].mean)
            se.append(r["pz"].se)
            sig.append(r["pz"].sigma)
            ev_ = r["res"].evals
            curves[f"{cfg.dataset}.fold{fold}.seed{seed}"] = curve(
                f"gan-{cfg.dataset}", seed, [e["step"] for e in ev_], valid_parzen_ll=[e["valid_parzen_ll"] for e in ev_])
        fold_means += per_fold
        ll.append(sum(per_fold) / len(per_fold))
        ctx.seed_done(seed, {"parzen_ll": ll[-1]}, {"parzen_ll": "nats"})
    m = Metrics()
    m.add("parzen_ll", "nats", ll, note=f"mean test log-likelihood, {cfg.n_samples} samples, sigma on validation; "
          f"per seed ({'mean over folds ' + str(list(folds)) if cfg.dataset == 'tfd' else 'MNIST test'})")
    if cfg.dataset == "tfd" and len(fold_means) > 1:
        sd = (sum((x - sum(fold_means) / len(fold_means)) ** 2 for x in fold_means) / (len(fold_means) - 1)) ** 0.5
        m.single("parzen_ll_se", "nats", sd / _math.sqrt(len(fold_means)), note="standard error across folds",
                 higher_is_better=False)
    else:
        m.add("parzen_ll_se", "nats", se, note="standard error across test examples (the paper's MNIST +-)",
              higher_is_better=False)
    m.add("parzen_sigma", "value", sig, higher_is_better=False)
    if cfg.dataset == "mnist":
        for key, name in TABLE1_OTHERS.items():
            m.missing(f"parzen_ll.{key}", "nats", f"{name}: a comparison row of Table 1, cited from the paper; "
                      "this suite trains only the adversarial net")
    paper, pm = TABLE1[cfg.dataset]
    held = _paper.near_paper(ll, paper, pm + 10, True)
    claims = [TABLE1_CLAIM.make(held, seeds, ctx.case.scale, dataset=cfg.dataset, paper=paper, pm=pm,
                                upper=cfg.dataset.upper())]
    info = {"seeds": list(seeds), "folds": list(folds), "overrides": over, "claims": claims, "batch": ctx.batch_size,
            "estimator_caveat": "the paper: the estimator 'has somewhat high variance and does not perform well "
                                "in high dimensional spaces'"}
    return CaseOutput(metrics=m, info=info, artifacts={"curves": curves})


SUITE.config("gan-mnist-parzen", GANPaperConfig(batch_size=100, cpu_batch_size=None), scales=("paper",),
             kinds=("quality",), description="Table 1: GAN trained on MNIST, Parzen-window LL of the test set; "
             "--data mnist=DIR")
SUITE.config("gan-tfd-parzen", GANPaperConfig("tfd", folds=(0, 1, 2, 3, 4), batch_size=100, cpu_batch_size=None),
             scales=("paper",), kinds=("quality",),
             description="Table 1: GAN trained per TFD fold, Parzen-window LL +- s.e. across folds; --data tfd=FILE")
