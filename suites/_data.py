"""Offline data shared by the proxy-scale suites: scikit-learn's digits (1797 8x8 images, 10 classes).

Nothing is downloaded: the digits ship inside scikit-learn.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=4)
def _digits_numpy():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype("float32") / 16.0, d.target.astype("int64")


def digits(seed: int = 0, test_fraction: float = 0.25, size: int | None = None, channels: int = 1,
           normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test) as NCHW float tensors; a stratified split fixed by `seed`.

    `size` upsamples the 8x8 images bilinearly (e.g. to 32 for CIFAR-shaped nets); `channels` repeats
    the grey channel (3 for RGB-shaped nets); `normalize` maps pixels to zero mean, unit std.
    """
    from sklearn.model_selection import train_test_split

    x, y = _digits_numpy()
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    out = []
    for a in (xtr, xte):
        t = torch.from_numpy(a).unsqueeze(1)
        if size is not None and size != 8:
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        if channels != 1:
            t = t.repeat(1, channels, 1, 1)
        out.append(t)
    if normalize:
        mean, std = out[0].mean(), out[0].std()
        out = [(t - mean) / std for t in out]
    return out[0], torch.from_numpy(ytr), out[1], torch.from_numpy(yte)


def sgd_on_random_batches(model, opt, x: torch.Tensor, y: torch.Tensor, batch_size: int, steps: int,
                          seed: int, ctx):
    """Cross-entropy steps on minibatches drawn at random from (x, y), the same draws for one seed
    whatever the model (so two nets of a seed see the same batches); yields (step, loss) after each."""
    g = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        yield step, ctx.check_finite(step, loss.item())
