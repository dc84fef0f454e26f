"""Shared evaluation for the generative and contrastive suites (gan, dcgan, simclr).

- A small digits classifier that the suites train themselves (nothing downloaded): its penultimate
  layer is the feature space of the Fréchet distance, the proxy-scale stand-in for Inception features.
- Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017's FID formula).
- The Gaussian Parzen-window log-likelihood of the GAN paper (Goodfellow et al. 2014, Sec. 5 and
  `goodfeli/adversarial` parzen_ll.py): kernels centred on generated samples, sigma chosen on a
  validation split from a log-spaced grid, mean log-likelihood of held-out data with its standard error.
- A linear probe (logistic regression on frozen features), used by dcgan and simclr.

Images handed to the evaluator are 8x8 digits with pixels in [0, 1] (the range of `digits(normalize=False)`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EVAL_SEED = 12345  # one fixed yardstick: the classifier does not change between the seeds it measures


# ------------------------------------------------------------------------------------- Fréchet distance
def gaussian_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of an (n, d) feature matrix, in float64."""
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be an (n>=2, d) matrix, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the 2-Wasserstein distance between Gaussians.

    The trace of (S1 S2)^(1/2) is the sum of square roots of the eigenvalues of S1 S2, which are those of
    the symmetric PSD matrix S1^(1/2) S2 S1^(1/2): computed that way it needs no complex sqrtm.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ s2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def frechet_distance_features(a, b) -> float:
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


# ------------------------------------------------------------------------------------ Parzen window
def parzen_log_likelihood(centres: torch.Tensor, x: torch.Tensor, sigma: float, chunk: int = 256) -> torch.Tensor:
    """log p(x) under an equal mixture of isotropic Gaussians N(centre, sigma^2 I), one value per row of x.

    log p(x) = logmeanexp_j(-||x - c_j||^2 / (2 sigma^2)) - d log(sigma sqrt(2 pi)), as parzen_ll.py.
    """
    c = centres.reshape(centres.shape[0], -1).double()
    xs = x.reshape(x.shape[0], -1).double()
    if c.shape[1] != xs.shape[1]:
        raise ValueError(f"dimension mismatch: centres have {c.shape[1]}, data {xs.shape[1]}")
    d = c.shape[1]
    c_sq = (c * c).sum(1)
    out = []
    for i in range(0, xs.shape[0], chunk):
        xb = xs[i:i + chunk]
        sq = ((xb * xb).sum(1, keepdim=True) - 2 * xb @ c.T + c_sq).clamp_min(0)
        out.append(torch.logsumexp(-sq / (2 * sigma**2), dim=1) - math.log(c.shape[0]))
    return torch.cat(out) - d * math.log(sigma * math.sqrt(2 * math.pi))


# The paper's search: numpy.logspace(-1, 0, 10) for pixels in [0, 1] (parzen_ll.py defaults).
PAPER_SIGMAS = tuple(float(s) for s in np.logspace(-1, 0, 10))


@dataclass(frozen=True)
class ParzenResult:
    mean: float  # mean log-likelihood of the test rows (nats)
    se: float  # standard error across test rows, as the paper reports for MNIST
    sigma: float  # chosen on the validation rows
    valid_by_sigma: dict[float, float]


def parzen_evaluate(centres: torch.Tensor, valid: torch.Tensor, test: torch.Tensor,
                    sigmas: tuple[float, ...] = PAPER_SIGMAS) -> ParzenResult:
    """Choose sigma by the mean validation log-likelihood, then score the test rows with it."""
    if not sigmas:
        raise ValueError("no sigma to choose from")
    by_sigma = {s: float(parzen_log_likelihood(centres, valid, s).mean()) for s in sigmas}
    best = max(by_sigma, key=lambda s: by_sigma[s])
    ll = parzen_log_likelihood(centres, test, best)
    return ParzenResult(float(ll.mean()), float(ll.std() / math.sqrt(ll.numel())), best, by_sigma)


# ------------------------------------------------------------------------------ digits classifier
class DigitsClassifier(nn.Module):
    """An MLP on 8x8 digits in [0, 1] (~97% test accuracy); `features` is its 64-d penultimate layer.

    An MLP rather than a CNN: it trains in about a second on a shared 2-core CPU, and the FD only needs a
    fixed feature space that separates the classes.
    """

    def __init__(self, hidden: int = 256, feature_dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, feature_dim),
                                  nn.ReLU())
        self.head = nn.Linear(feature_dim, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.reshape(-1, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_digits_classifier(x: torch.Tensor, y: torch.Tensor, *, epochs: int = 30, seed: int = EVAL_SEED,
                            batch: int = 64, lr: float = 1e-3) -> DigitsClassifier:
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DigitsClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model


@torch.no_grad()
def classifier_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


@torch.no_grad()
def classifier_features(model: DigitsClassifier, x: torch.Tensor) -> torch.Tensor:
    return model.features(x.float().clamp(0, 1))


def to_digit_pixels(images: torch.Tensor, *, tanh_range: bool) -> torch.Tensor:
    """Generator output -> (n, 1, 8, 8) in [0, 1]: area-downsample larger maps, map [-1, 1] to [0, 1]."""
    x = images.detach().float()
    if x.dim() == 2:
        x = x.reshape(-1, 1, 8, 8)
    if x.shape[1] != 1:
        x = x.mean(1, keepdim=True)
    if x.shape[-1] != 8:
        x = F.adaptive_avg_pool2d(x, 8)
    if tanh_range:
        x = (x + 1) / 2
    return x.clamp(0, 1)


# ------------------------------------------------------------------------------------ linear probe
def linear_probe_accuracy(f_train, y_train, f_test, y_test, *, seed: int = 0, max_iter: int = 2000) -> float:
    """Multinomial logistic regression on standardised frozen features; test accuracy in [0, 1]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def np_(a):
        return a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)

    scaler = StandardScaler().fit(np_(f_train))
    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    clf.fit(scaler.transform(np_(f_train)), np_(y_train).astype(int))
    return float(clf.score(scaler.transform(np_(f_test)), np_(y_test).astype(int)))


# ------------------------------------------------------------------------------- the digits yardstick
@dataclass
class DigitsSplits:
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    y_train: torch.Tensor
    y_valid: torch.Tensor
    y_test: torch.Tensor


def digit_splits(n_valid: int = 200) -> DigitsSplits:
    """8x8 digits in [0, 1]: the fixed 75/25 split, and `n_valid` training images held out to choose sigma."""
    from milestones.suites._data import digits

    xtr, ytr, xte, yte = digits(seed=0, normalize=False)
    return DigitsSplits(xtr[n_valid:], xtr[:n_valid], xte, ytr[n_valid:], ytr[:n_valid], yte)


@dataclass
class Evaluator:
    """The fixed yardstick for every seed: a digits classifier, test-set features, the Parzen splits.

    `roundtrip` maps 8x8 images in [0, 1] the way a suite's generator sees them and back (e.g. upsample
    to 16x16, then `to_digit_pixels`), so real and generated images reach the yardstick alike.
    """

    splits: DigitsSplits
    classifier: DigitsClassifier
    n_fd: int = 1000  # generated samples per Fréchet distance (the test set has 450 images)

    @classmethod
    def build(cls, roundtrip: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Evaluator:
        s = digit_splits()
        if roundtrip is not None:
            s = DigitsSplits(roundtrip(s.train), roundtrip(s.valid), roundtrip(s.test), s.y_train, s.y_valid, s.y_test)
        return cls(s, train_digits_classifier(s.train, s.y_train))

    def fd(self, images01: torch.Tensor) -> float:
        f_gen = classifier_features(self.classifier, images01)
        f_test = classifier_features(self.classifier, self.splits.test)
        return frechet_distance_features(f_gen, f_test)

    def parzen(self, images01: torch.Tensor) -> ParzenResult:
        def flat(t):
            return t.reshape(t.shape[0], -1)

        return parzen_evaluate(flat(images01), flat(self.splits.valid), flat(self.splits.test))

    def accuracy(self) -> float:
        return classifier_accuracy(self.classifier, self.splits.test, self.splits.y_test)




# ------------------------------------------------------------------------------ claims over seeds
def generator_improves(ll: list[float], ll_untrained: list[float], fd: list[float],
                       fd_untrained: list[float]) -> list[float]:
    """Per seed: held when training raised the held-out Parzen log-likelihood AND lowered the FD of the
    generator's samples, against the same generator before any update."""
    return [float(a > b and c < e) for a, b, c, e in zip(ll, ll_untrained, fd, fd_untrained, strict=True)]


GENERATOR_RULE = ("per seed: after {steps} steps, the trained generator's samples score a higher held-out Parzen "
                  "log-likelihood AND a lower Fréchet distance (digits-classifier features) than the same "
                  "generator before training")


def time_to_target_metrics(m: Any, out: dict[str, list[float]], n_seeds: int, fd_target: float | None,
                           steps: int) -> None:
    """`steps_to_target` and `seconds_to_target` over the seeds that reached the FD target (a note counts the
    seeds that did not); a missing metric with the reason where none did."""
    missed = n_seeds - len(out["steps_to_target"])
    why = (f"FD target {fd_target} (our own proxy target) not reached in {steps} steps" if fd_target is not None
           else "no FD target set")
    for k, u in (("steps_to_target", "steps"), ("seconds_to_target", "s")):
        if out[k]:
            m.add(k, u, out[k], note=f"{missed} of {n_seeds} seeds did not reach the target" if missed else None)
        else:
            m.missing(k, u, why)


@dataclass
class AdversarialRun:
    """One seed's GAN training: the FD curve (TrainLog), the logged losses and the wall seconds."""

    log: Any
    losses: dict[str, list[float]]
    seconds: float

    def record(self, out: dict[str, list[float]]) -> None:
        """Appends this seed's training seconds to out["train_seconds"] and, where it reached the FD target,
        its steps and seconds to out["steps_to_target"] and out["seconds_to_target"]."""
        out["train_seconds"].append(self.seconds)
        if self.log.step_to_target is not None:
            out["steps_to_target"].append(self.log.step_to_target)
            out["seconds_to_target"].append(self.log.seconds_to_target)

    def curves(self, name: str, seed: int) -> dict[str, dict]:
        """`{name}.seed{seed}.losses`: the D and G losses; `{name}.seed{seed}`: the FD and clock at each evaluation."""
        from milestones.harness.suite_api import curve

        return {f"{name}.seed{seed}.losses": curve(name, seed, self.losses["step"], d_loss=self.losses["d_loss"],
                                                   g_loss=self.losses["g_loss"]),
                f"{name}.seed{seed}": curve(name, seed, self.log.steps, fd=self.log.values, seconds=self.log.seconds)}


def train_adversarial(trainer: Any, steps: int, eval_every: int, loss_every: int, ctx: Any, seed: int,
                      fd_of_step: Callable[[int], float], fd_target: float) -> AdversarialRun:
    """GAN and DCGAN share this loop: alternate D/G updates, stop on a non-finite loss, log the losses
    every `loss_every` steps and the FD of fresh samples every `eval_every` steps (and at the end)."""
    import time

    from milestones.harness.measure.training import TrainLog

    log = TrainLog(target=fd_target, higher_is_better=False)
    losses: dict[str, list[float]] = {"step": [], "d_loss": [], "g_loss": []}
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        ld, lg = trainer.step()
        ctx.check_finite(step, ld, "d_loss")
        ctx.check_finite(step, lg, "g_loss")
        if step % loss_every == 0:
            losses["step"].append(step)
            losses["d_loss"].append(ld)
            losses["g_loss"].append(lg)
        if step % eval_every == 0 or step == steps:
            log.log(step, fd_of_step(step))
            ctx.progress(f"seed {seed}", step=step, fd=log.values[-1])
    return AdversarialRun(log, losses, time.perf_counter() - t0)
