"""Paper-scale training shared by the suites (issue 14): the device guard, checkpoints that survive a
restart, a resumable training loop with MLLOG time-to-quality events, the papers' claims as data, and
the loaders the vision loaders module does not have (SVHN .mat, TFD .mat, ImageNet training folders).

A paper-scale case runs the paper's schedule on the user's data (`--data NAME=PATH`). Its batch order
and augmentations are functions of (seed, epoch, index), so a run resumed from a checkpoint sees the
same batches as one that never stopped; the checkpoint holds the model, the optimizers, the step, the
global RNG states and the evaluation history, written atomically (temporary file, then rename).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.errors import UsageError


# ------------------------------------------------------------------------------------------ guards
def require_paper_device(ctx: CaseContext, what: str) -> None:
    """A paper-scale training run takes GPU-days; on a CPU it runs only when `--device cpu` was asked
    for explicitly (a test on tiny data, or a user who means it)."""
    if ctx.on_gpu:
        return
    if ctx.requested_device == "cpu" or str(ctx.options.get("force_cpu", "")) in ("1", "true", "yes"):
        return
    raise SkipCase(f"{what} needs a GPU (none found); pass --device cpu to force it on the CPU")


def paper_case(fn: Callable) -> Callable:
    """A kind function whose bad input (data in the wrong layout, a checkpoint of another config) ends as a
    `skipped` record with the loader's one-line reason, not a traceback."""

    @functools.wraps(fn)
    def wrapper(cfg, ctx: CaseContext):
        try:
            return fn(cfg, ctx)
        except UsageError as e:
            raise SkipCase(str(e)) from None

    return wrapper


def option_int(ctx: CaseContext, name: str, default: int) -> int:
    raw = ctx.options.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"--option {name}={raw}: expected an integer") from None


def near_paper(values: Sequence[float], paper: float, points: float, higher_is_better: bool) -> list[bool]:
    """Per seed: held when the value is no worse than the paper's figure by more than `points` (in the
    metric's own units): >= paper - points for accuracy-like figures, <= paper + points for errors."""
    return [v >= paper - points if higher_is_better else v <= paper + points for v in values]


# Options a user (or a test on tiny data) may set per run; each one used is recorded in info["overrides"].
PAPER_OVERRIDES = ("steps", "eval_every", "ckpt_every", "n_train", "n_test", "epochs", "workers", "n_seeds")


def apply_overrides(cfg, ctx: CaseContext, names: tuple[str, ...] = PAPER_OVERRIDES):
    """`--option steps=N` etc.: shorten a paper run on purpose (recorded, so no record passes for the paper's)."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    over: dict = {}
    for k in names:
        if k in ctx.options and k in fields:
            cur = getattr(cfg, k)
            over[k] = float(ctx.options[k]) if isinstance(cur, float) else option_int(ctx, k, 0)
    return (dataclasses.replace(cfg, **over) if over else cfg), over


def prepare(cfg, ctx: CaseContext, what: str | Callable[[Any], str]):
    """The opening of a paper-scale case: `apply_overrides`, then `require_paper_device`. `what` names the
    run in the guard's reason; a function of the config is given the overridden one, so that the reason
    names the run that was asked for (`--option epochs=2`: "2 epochs"). Returns (cfg, overrides)."""
    cfg, over = apply_overrides(cfg, ctx)
    require_paper_device(ctx, what if isinstance(what, str) else what(cfg))
    return cfg, over


# ------------------------------------------------------------------------------------- checkpoints
def config_fingerprint(cfg: Any, **extra: Any) -> str:
    d = asdict(cfg) if is_dataclass(cfg) else dict(cfg)
    d.update(extra)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    out: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                           "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                                     int(np_state[3]), float(np_state[4]))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    n = s["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


class Checkpoint:
    """One resumable training run's state file: `<dir>/<name>.ckpt`, tagged with its config's fingerprint.

    The folder is `ctx.checkpoint_dir` (kept across `--resume`), else the case's workdir, else none
    (then nothing is saved). Loading a file written for another config is refused with one line.
    """

    def __init__(self, ctx: CaseContext, name: str, fingerprint: str, describe: str) -> None:
        root = ctx.checkpoint_dir or ctx.workdir
        self.path = Path(root) / f"{name}.ckpt" if root else None
        self.fingerprint, self.describe = fingerprint, describe

    def load(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file: torch raises several types
            raise UsageError(f"checkpoint {self.path} cannot be read ({type(e).__name__}); remove it to start over") from None
        if not isinstance(state, dict) or "fingerprint" not in state:
            raise UsageError(f"checkpoint {self.path} is not a milestones checkpoint; remove it to start over")
        if state["fingerprint"] != self.fingerprint:
            raise UsageError(f"checkpoint {self.path} was written for another config ({state.get('describe')}); "
                             f"this case is {self.describe}: remove it or use another --out")
        return state

    def save(self, state: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".ckpt.partial")
        torch.save({**state, "fingerprint": self.fingerprint, "describe": self.describe}, tmp)
        os.replace(tmp, self.path)


# ----------------------------------------------------------------------------------- training loop
@dataclass
class TrainResult:
    step: int
    seconds: float  # training + evaluation wall time, summed over restarts (MLPerf's run time)
    evals: list[dict[str, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    loss_steps: list[int] = field(default_factory=list)
    reached: dict[str, float] | None = None  # first eval at the target: {"step", "seconds", "value"}
    resumed_from: int | None = None


def _unwrap(m: nn.Module) -> nn.Module:
    return getattr(m, "module", m)


def train(ctx: CaseContext, ckpt: Checkpoint, *, modules: dict[str, nn.Module],
          optimizers: dict[str, torch.optim.Optimizer], steps: int, step_fn: Callable[[int], float],
          lr_fn: Callable[[int], float | dict[str, float]] | None = None,
          eval_fn: Callable[[int], dict[str, float]] | None = None, eval_every: int = 0,
          ckpt_every: int = 0, target: tuple[str, float, bool] | None = None, log_every: int = 0,
          tag: str = "") -> TrainResult:
    """Run `step_fn(step)` for steps 1..`steps` (it does forward, backward and the update, and returns
    the loss), resuming from the checkpoint when there is one.

    lr_fn(step) -> a learning rate for every optimizer (or one per optimizer name), set before the step;
    a function with the attribute `uses_evals = True` is called as lr_fn(step, evaluations so far).
    eval_fn(step) -> named values, every `eval_every` steps and after the last; `target` =
    (name, value, higher_is_better) records the first evaluation that reaches it (time to quality) and
    logs MLLOG eval_accuracy events. A checkpoint is written every `ckpt_every` steps and at the end.
    """
    from milestones.harness import mllog

    log = mllog.logger_for(ctx)
    res = TrainResult(step=0, seconds=0.0)
    state = ckpt.load()
    if state is not None:
        for k, m in modules.items():
            _unwrap(m).load_state_dict(state["modules"][k])
        for k, o in optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        set_rng_state(state["rng"])
        res = TrainResult(step=int(state["step"]), seconds=float(state["seconds"]), evals=list(state["evals"]),
                          losses=list(state["losses"]), loss_steps=list(state["loss_steps"]),
                          reached=state.get("reached"), resumed_from=int(state["step"]))
        ctx.progress(f"{tag} resumed from checkpoint", step=res.step)

    def save() -> None:
        ckpt.save({"modules": {k: _unwrap(m).state_dict() for k, m in modules.items()},
                   "optimizers": {k: o.state_dict() for k, o in optimizers.items()}, "rng": rng_state(),
                   "step": res.step, "seconds": res.seconds, "evals": res.evals, "losses": res.losses,
                   "loss_steps": res.loss_steps, "reached": res.reached})

    def evaluate(step: int) -> None:
        for m in modules.values():
            m.eval()
        with torch.no_grad():
            vals = {k: float(v) for k, v in eval_fn(step).items()}
        for m in modules.values():
            m.train()
        res.evals.append({"step": step, "seconds": res.seconds + (time.perf_counter() - t0), **vals})
        ctx.progress(f"{tag} eval", step=step, **vals)
        if target is not None and target[0] in vals:
            log.eval_accuracy(vals[target[0]], samples_count=step)
            hit = vals[target[0]] >= target[1] if target[2] else vals[target[0]] <= target[1]
            if hit and res.reached is None:
                res.reached = {"step": step, "seconds": res.seconds + (time.perf_counter() - t0),
                               "value": vals[target[0]]}
                log.event("target_reached", vals[target[0]], {"step": step, "tag": tag})

    every_loss = log_every or max(1, steps // 200)
    for m in modules.values():
        m.train()
    t0 = time.perf_counter()
    for step in range(res.step + 1, steps + 1):
        if lr_fn is not None:
            lr = lr_fn(step, res.evals) if getattr(lr_fn, "uses_evals", False) else lr_fn(step)
            for k, o in optimizers.items():
                v = lr[k] if isinstance(lr, dict) else lr
                for g in o.param_groups:
                    g["lr"] = v
        loss = ctx.check_finite(step, float(step_fn(step)), f"{tag} loss".strip())
        if step % every_loss == 0 or step == steps:
            res.losses.append(loss)
            res.loss_steps.append(step)
        res.step = step
        if eval_fn is not None and ((eval_every and step % eval_every == 0) or step == steps):
            evaluate(step)
        if (ckpt_every and step % ckpt_every == 0) or step == steps:
            res.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            save()
    res.seconds += time.perf_counter() - t0
    return res


def cross_entropy_step(model: nn.Module, opt: torch.optim.Optimizer, batches: Any, dev: Any
                       ) -> Callable[[int], float]:
    """The classifiers' training step of `train`: batch `step` of `batches` (its `.at(step)`), cross-entropy,
    one optimizer step; returns the loss."""

    def step_fn(step: int) -> float:
        x, y = batches.at(step)
        loss = F.cross_entropy(model(x.to(dev, non_blocking=True)), y.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step_fn


def step_lr(base: float, milestones: Sequence[int], factor: float = 0.1) -> Callable[[int], float]:
    """lr = base x factor^(number of milestones passed): the papers' "divide by 10 at ..." schedules."""
    return lambda step: base * factor ** sum(step > m for m in milestones)


# ---------------------------------------------------------------------------------- batches, augment
def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of one epoch, a function of (seed, epoch) only: a resumed run repeats it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_indices(n: int, batch: int, seed: int, step: int) -> torch.Tensor:
    """Indices of training step `step` (1-based): consecutive slices of each epoch's order, the last
    partial batch of an epoch dropped (as DataLoader(drop_last=True))."""
    per_epoch = max(1, n // batch)
    epoch, i = divmod(step - 1, per_epoch)
    return epoch_order(n, seed, epoch)[i * batch:(i + 1) * batch]


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7_919 + step * 104_729 + 17)


def pad_crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """ResNet Sec. 4.2 (after Lee et al.): pad 4 pixels each side, a random 32x32 crop, a random flip."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        crop = xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def split_validation(n: int, n_valid: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices): a fixed random hold-out (e.g. ResNet's 45k/5k split)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 99_991))
    return perm[n_valid:], perm[:n_valid]


@torch.no_grad()
def classify_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device, batch: int = 1000,
                   transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """Top-1 error (fraction) of `model` on in-memory images, in batches."""
    wrong = 0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        xb = transform(xb) if transform is not None else xb
        wrong += int((model(xb.to(device)).argmax(1).cpu() != y[i:i + batch]).sum())
    return wrong / max(1, len(x))


def cifar_normalise(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float, per-channel mean subtracted (ResNet Sec. 4.2: "per-pixel mean subtracted";
    the per-channel mean of the training set is the common reading) and scaled by the channel std."""
    x = x_uint8.float() / 255.0
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    return (x - mean) / std


# -------------------------------------------------------------------------------------------- SVHN
def load_svhn(root: str | Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The cropped-digits SVHN .mat files (`train_32x32.mat`, `test_32x32.mat`, optional `extra_32x32.mat`):
    X is 32x32x3xN uint8, y is N labels 1..10 with 10 for the digit 0. -> {split: (uint8 N,3,32,32, int64 N)}."""

    from milestones.suites._vision_data import checked_path

    root = checked_path(root, "svhn")
    out = {}
    for split in ("train", "test", "extra"):
        p = root / f"{split}_32x32.mat"
        if not p.is_file():
            if split == "extra":
                continue
            raise UsageError(f"{root}: missing {p.name} (the cropped-digits SVHN format)")
        d = _load_mat(p)
        if "X" not in d or "y" not in d:
            raise UsageError(f"{p}: a SVHN file needs 'X' and 'y'")
        x, y = np.asarray(d["X"]), np.asarray(d["y"]).reshape(-1).astype(np.int64)
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
            raise UsageError(f"{p}: X must be 32x32x3xN with N labels, got {x.shape} and {y.shape}")
        if len(y) and (y.min() < 1 or y.max() > 10):
            raise UsageError(f"{p}: labels must be 1..10 (10 = digit 0)")
        out[split] = (torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8)),
                      torch.from_numpy(y % 10))
    return out


def _load_mat(p: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    try:
        return loadmat(str(p))
    except (ValueError, OSError, TypeError) as e:
        raise UsageError(f"{p}: not a MATLAB .mat file ({e})") from None


# --------------------------------------------------------------------------------------------- TFD
def load_tfd(path: str | Path, fold: int = 0) -> dict[str, torch.Tensor]:
    """The Toronto Face Database as pylearn2 reads it: `TFD_48x48.mat` with `images` (N x 48 x 48 uint8)
    and `folds` (N x 5: 0 unlabelled, 1 train, 2 valid, 3 test). -> {"unlabeled", "train", "valid",
    "test"}: float images in [0, 1], flattened (N, 2304)."""

    from milestones.suites._vision_data import checked_path

    p = checked_path(path, "tfd", "any")
    if p.is_dir():
        cands = sorted(p.glob("TFD_*.mat"))
        if not cands:
            raise UsageError(f"{p}: no TFD_*.mat file (expected e.g. TFD_48x48.mat)")
        p = cands[0]
    d = _load_mat(p)
    if "images" not in d or "folds" not in d:
        raise UsageError(f"{p}: a TFD file needs 'images' and 'folds'")
    imgs, folds = np.asarray(d["images"]), np.asarray(d["folds"])
    if imgs.ndim != 3 or folds.ndim != 2 or folds.shape[0] != imgs.shape[0] or not 0 <= fold < folds.shape[1]:
        raise UsageError(f"{p}: images must be N x H x W and folds N x F with fold {fold} < F; got "
                         f"{imgs.shape} and {folds.shape}")
    x = torch.from_numpy(imgs.reshape(imgs.shape[0], -1).astype(np.float32) / 255.0)
    f = torch.from_numpy(folds[:, fold].astype(np.int64))
    out = {name: x[f == code] for name, code in (("unlabeled", 0), ("train", 1), ("valid", 2), ("test", 3))}
    if not len(out["test"]) or not len(out["valid"]):
        raise UsageError(f"{p}: fold {fold} has no valid or no test images")
    return out


# ------------------------------------------------------------------------------ ImageNet training
# The ImageNet colour eigen-decomposition used for "PCA lighting" noise (AlexNet Sec. 4.1), as in
# fb.resnet.torch and the pytorch examples.
PCA_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
PCA_EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def pca_lighting(t: torch.Tensor, g: torch.Generator, std: float = 0.1) -> torch.Tensor:
    alpha = torch.randn(3, generator=g) * std
    rgb = (PCA_EIGVEC * alpha * PCA_EIGVAL).sum(1)
    return t + rgb.view(3, 1, 1)


def train_view(img, g: torch.Generator, recipe: str, crop: int, short: tuple[int, int] = (256, 480)) -> torch.Tensor:
    """One augmented training view.

    "alexnet" (Sec. 4.1): shorter side 256, central 256x256, a random crop x crop patch, a random
    reflection, PCA lighting noise. "resnet" (Sec. 3.4): shorter side random in [256, 480], a random
    224x224 crop, a random reflection, PCA lighting (deviation: the "standard colour augmentation" of
    [21] is read as AlexNet's PCA lighting, as fb.resnet.torch does).
    """
    from milestones.suites._vision_data import center_crop, resize_shorter, to_tensor

    if recipe == "gan":  # DCGAN Sec. 5.1: ImageNet-1k downscaled; centre square, pixels in [-1, 1]
        return center_crop(to_tensor(resize_shorter(img, crop), (0.5,) * 3, (0.5,) * 3), crop)
    if recipe == "inception":  # random resized crop (area 8-100%, aspect 3/4-4/3) + flip: SimCLR's eval
        t = to_tensor(img)
        h, w = t.shape[-2:]
        for _ in range(10):
            area = h * w * float(torch.empty(1).uniform_(0.08, 1.0, generator=g))
            ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g)))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                break
        else:
            ch = cw = min(h, w)
        top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
        t = F.interpolate(t[None, :, top:top + ch, left:left + cw], size=(crop, crop), mode="bilinear",
                          align_corners=False)[0]
        return t.flip(-1) if float(torch.rand(1, generator=g)) < 0.5 else t
    if recipe == "alexnet":
        t = center_crop(to_tensor(resize_shorter(img, short[0])), short[0])
    elif recipe == "resnet":
        s = int(torch.randint(short[0], short[1] + 1, (1,), generator=g))
        t = to_tensor(resize_shorter(img, s))
    else:
        raise ValueError(f"unknown recipe {recipe!r}")
    h, w = t.shape[-2:]
    top = int(torch.randint(0, h - crop + 1, (1,), generator=g))
    left = int(torch.randint(0, w - crop + 1, (1,), generator=g))
    t = t[:, top:top + crop, left:left + crop]
    if float(torch.rand(1, generator=g)) < 0.5:
        t = t.flip(-1)
    return pca_lighting(t, g)


class ImageNetTrain(torch.utils.data.Dataset):
    """Training images in one epoch's seeded order, from `start` (a resumed run skips what it has seen)."""

    def __init__(self, samples, recipe: str, crop: int, seed: int, epoch: int, start: int = 0,
                 short: tuple[int, int] = (256, 480)) -> None:
        self.samples, self.recipe, self.crop, self.seed, self.epoch = samples, recipe, crop, seed, epoch
        self.short = short
        self.order = epoch_order(len(samples), seed, epoch)[start:]

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from milestones.suites._vision_data import load_image

        j = int(self.order[i])
        p, y = self.samples[j]
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, j)) & 0x7FFF_FFFF)
        return train_view(load_image(p), g, self.recipe, self.crop, self.short), y


def imagenet_splits(ctx: CaseContext, key: str = "imagenet"):
    """(train samples, val samples, classes) from `--data KEY=ROOT` (ROOT/train and ROOT/val)."""
    from milestones.suites._vision_data import data_path, image_folder, imagenet_val

    root = data_path(ctx, key, needed_for="an ImageNet root holding train/ and val/ class folders")
    if not (root / "train").is_dir():
        raise UsageError(f"--data {key}={root}: no train/ folder (expected {root}/train/<wnid>/*.JPEG)")
    train, classes = image_folder(root / "train")
    val, _ = imagenet_val(root, ctx.data.get("imagenet-labels"), classes=classes)
    return train, val, classes


class ImageNetBatches:
    """Batches of one epoch after another; `at(step)` gives step's batch (1-based), re-creating the
    loader at epoch boundaries and after a resume."""

    def __init__(self, samples, recipe: str, crop: int, batch: int, seed: int, workers: int,
                 short: tuple[int, int] = (256, 480)) -> None:
        self.samples, self.recipe, self.crop, self.batch, self.seed, self.workers = samples, recipe, crop, batch, seed, workers
        self.short = short
        self.per_epoch = max(1, len(samples) // batch)
        self._it, self._next = None, None

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._it is None or self._next != step:
            epoch, i = divmod(step - 1, self.per_epoch)
            ds = ImageNetTrain(self.samples, self.recipe, self.crop, self.seed, epoch, start=i * self.batch,
                               short=self.short)
            self._it = iter(torch.utils.data.DataLoader(ds, batch_size=self.batch, num_workers=self.workers,
                                                        drop_last=True, pin_memory=torch.cuda.is_available()))
            self._left = self.per_epoch - i
        x, y = next(self._it)
        self._left -= 1
        self._next = step + 1 if self._left > 0 else None
        return x, y


def epochs_to_steps(epochs: float, n: int, batch: int) -> int:
    return max(1, math.ceil(epochs * max(1, n // batch)))


# ------------------------------------------------------------------------------------ linear SVM
def l2_svm(f_train: torch.Tensor, y_train: torch.Tensor, f_eval: torch.Tensor, *, c: float, n_classes: int,
           iters: int = 200, device=None) -> torch.Tensor:
    """One-vs-rest L2-SVM (squared hinge loss, the DCGAN paper's classifier), trained by L-BFGS on the
    primal: 0.5 ||w||^2 + C sum max(0, 1 - y w.x)^2. Returns predicted classes for `f_eval`."""
    device = device or f_train.device
    x = f_train.to(device, torch.float32)
    xb = torch.cat([x, torch.ones(len(x), 1, device=device)], 1)
    t = -torch.ones(len(x), n_classes, device=device)
    t[torch.arange(len(x)), y_train.to(device)] = 1.0
    w = torch.zeros(xb.shape[1], n_classes, device=device, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        margin = (1 - t * (xb @ w)).clamp_min(0)
        loss = 0.5 * (w[:-1] ** 2).sum() + c * (margin ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    fe = torch.cat([f_eval.to(device, torch.float32), torch.ones(len(f_eval), 1, device=device)], 1)
    with torch.no_grad():
        return (fe @ w).argmax(1).cpu()


def standardise(f_train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mu, sd = f_train.mean(0, keepdim=True), f_train.std(0, keepdim=True).clamp_min(1e-6)
    return [(f_train - mu) / sd] + [(o - mu) / sd for o in others]


# ------------------------------------------------------------------------------- evaluation views
def sized_protocol(base: str, resize: int, crop: int) -> str:
    """The name of `base` (a key of the vision loaders' PROTOCOLS) at another resize/crop, registered on
    first use: the 2012 AlexNet needs 227x227 views, tests need tiny ones."""
    from milestones.suites import _vision_data as V

    if (resize, crop) == (256, 224):
        return base
    name = f"{base}@{resize}/{crop}"
    if name not in V.PROTOCOLS:
        V.PROTOCOLS[name] = functools.partial(V.PROTOCOLS[base], resize=resize, crop=crop)
    return name


def plateau_lr(base: float, evals: Sequence[dict[str, float]], key: str, *, patience: int = 1,
               max_drops: int = 3, factor: float = 0.1) -> float:
    """AlexNet Sec. 5: "divide the learning rate by 10 when the validation error rate stopped improving
    with the current learning rate" (three times). A pure function of the evaluation history, so a resumed
    run sets the same rate: a drop after `patience` evaluations without a new best of `key` (lower is better)."""
    lr, best, stale, drops = base, math.inf, 0, 0
    for e in evals:
        if key not in e:
            continue
        if e[key] < best:
            best, stale = e[key], 0
        else:
            stale += 1
            if stale >= patience and drops < max_drops:
                lr, stale, drops = lr * factor, 0, drops + 1
    return lr
