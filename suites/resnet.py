"""ResNet: Deep Residual Learning for Image Recognition (He, Zhang, Ren, Sun; arXiv 1512.03385, 2015).

Model, data, step and metric in one file. The paper's hyperparameters are the defaults; every
deviation is commented where it is made.

- ImageNet ResNet-18/34/50/101/152 (Table 1) with projection shortcuts where dimensions change
  (option B, Sec. 3.3), the stride-2 on the first 1x1 convolution of a bottleneck as in the paper;
  "v1.5" puts it on the 3x3 convolution instead (torchvision's weights use that).
- plain-18/34: the same stacks with no shortcuts (Fig. 3 middle).
- CIFAR ResNet-20/32/44/56/110 (Sec. 4.2: 6n+2 layers, 16/32/64 filters, option A shortcuts:
  identity with zero-padded channels and stride-2 subsampling) and their plain counterparts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.distributed import data_parallel
from milestones.harness.measure.flops import count_flops, count_params
from milestones.harness.measure.plan import SpeedPlan
from milestones.harness.measure.speed import classifier_plan
from milestones.harness.records import CaseOutput, Metric
from milestones.harness.registry import register_suite

SUITE = register_suite("resnet", title="Deep Residual Learning for Image Recognition", arxiv="1512.03385", year=2015)


# ---------------------------------------------------------------------------------------------- model
def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, shortcut: str = "B", residual: bool = True,
                 v15: bool = False) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.residual, self.shortcut_kind = residual, shortcut
        self.downsample: nn.Module | None = None
        self.pad = 0
        if residual and (stride != 1 or cin != planes):
            if shortcut == "B":  # projection only where dimensions change (Eq. 2)
                self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
            else:  # option A: identity, subsample by stride, zero-pad the new channels (no parameters)
                self.pad, self.stride = planes - cin, stride

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            return self.downsample(x)
        if self.pad or getattr(self, "stride", 1) != 1:
            x = x[:, :, :: self.stride, :: self.stride]
            return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self._shortcut(x)
        return F.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, shortcut: str = "B", residual: bool = True,
                 v15: bool = False) -> None:
        super().__init__()
        out = planes * 4
        # Paper (v1): stride on the first 1x1; v1.5: stride on the 3x3 (more FLOPs, +~0.5% top-1).
        s1, s3 = (1, stride) if v15 else (stride, 1)
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, s1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, s3, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out)
        self.residual = residual
        self.downsample = None
        if residual and (stride != 1 or cin != out):
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out)


IMAGENET_LAYERS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3)),
                   101: (Bottleneck, (3, 4, 23, 3)), 152: (Bottleneck, (3, 8, 36, 3))}


class ImageNetResNet(nn.Module):
    """Table 1: 7x7/2 conv, 3x3/2 max pool, four stages (64..512 planes), global average pool, 1000-way fc."""

    def __init__(self, depth: int, residual: bool = True, v15: bool = False, num_classes: int = 1000) -> None:
        super().__init__()
        block, layers = IMAGENET_LAYERS[depth]
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, stages = 64, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                stride = 2 if (j == 0 and i > 0) else 1
                blocks.append(block(cin, planes, stride, "B", residual, v15))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init (the paper's ref. [13])
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class CifarResNet(nn.Module):
    """Sec. 4.2: 3x3 conv of 16, then 3 stages of n blocks (16/32/64 filters, 32/16/8 maps), pool, 10-way fc."""

    def __init__(self, depth: int, residual: bool = True, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, not {depth}")
        n = (depth - 2) // 6
        self.conv1, self.bn1 = conv3x3(in_channels, 16), nn.BatchNorm2d(16)
        cin, stages = 16, []
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(cin, planes, 2 if (j == 0 and i > 0) else 1, "A", residual))
                cin = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class ResNetConfig:
    family: str  # "imagenet" | "cifar"
    depth: int
    residual: bool = True
    v15: bool = False
    image_size: int = 224  # paper: 224x224 crops (ImageNet), 32x32 (CIFAR)
    num_classes: int = 1000
    batch_size: int = 256  # paper: mini-batch 256 (ImageNet), 128 (CIFAR)
    cpu_batch_size: int = 8  # deviation: a CPU cannot hold 256 ImageNet images in a useful time
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # Paper figures for the fidelity check (Table 1 multiply-adds, Table 6 parameters); None = not given.
    paper_macs: float | None = None
    paper_params: float | None = None
    tolerance: float = 0.05  # relative: the paper rounds to two significant figures


def build(cfg: ResNetConfig) -> nn.Module:
    if cfg.family == "imagenet":
        return ImageNetResNet(cfg.depth, cfg.residual, cfg.v15, cfg.num_classes)
    return CifarResNet(cfg.depth, cfg.residual, cfg.num_classes)


PAPER_MACS = {18: 1.8e9, 34: 3.6e9, 50: 3.8e9, 101: 7.6e9, 152: 11.3e9}  # Table 1
CIFAR_PARAMS = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6}  # Table 6

_ALL = ("smoke", "proxy", "paper")  # fidelity runs on the meta device: cheap at every scale
# The default smoke run checks a representative subset (each case costs a process start); proxy and
# paper runs check every architecture.
_SMOKE_FIDELITY = {"resnet18", "resnet50", "resnet152", "resnet50-v1.5", "plain34", "cifar-resnet20",
                   "cifar-resnet110", "cifar-plain20"}


def _scales(name: str) -> tuple[str, ...]:
    return _ALL if name in _SMOKE_FIDELITY else ("proxy", "paper")

for d in (18, 34, 50, 101, 152):
    SUITE.config(f"resnet{d}", ResNetConfig("imagenet", d, paper_macs=PAPER_MACS[d]), scales=_scales(f"resnet{d}"),
                 kinds=("fidelity",), description=f"ResNet-{d}, Table 1, option B shortcuts")
    SUITE.config(f"resnet{d}-paper", ResNetConfig("imagenet", d), scales=("paper",), kinds=("speed",),
                 description=f"ResNet-{d} train/inference step at 224x224, batch 256 on a GPU")
for d in (18, 50):
    SUITE.config(f"resnet{d}-v1.5", ResNetConfig("imagenet", d, v15=True), scales=_scales(f"resnet{d}-v1.5"),
                 kinds=("fidelity",),
                 description=f"ResNet-{d} v1.5 (stride on the 3x3), as torchvision's weights")
for d in (18, 34):
    # The paper states plain nets have the same FLOPs as their residual counterparts (Sec. 3.3).
    SUITE.config(f"plain{d}", ResNetConfig("imagenet", d, residual=False, paper_macs=PAPER_MACS[d]),
                 scales=_scales(f"plain{d}"),
                 kinds=("fidelity",), description=f"plain-{d}: no shortcuts")
for d in (20, 32, 44, 56, 110):
    cifar = dict(family="cifar", depth=d, image_size=32, num_classes=10, batch_size=128, cpu_batch_size=32)
    SUITE.config(f"cifar-resnet{d}", ResNetConfig(**cifar, paper_params=CIFAR_PARAMS[d]),
                 scales=_scales(f"cifar-resnet{d}"),
                 kinds=("fidelity",), description=f"CIFAR ResNet-{d}, option A shortcuts (Table 6)")
    SUITE.config(f"cifar-plain{d}", ResNetConfig(**cifar, residual=False), scales=_scales(f"cifar-plain{d}"),
                 kinds=("fidelity",),
                 description=f"CIFAR plain-{d}")
# Smoke speed configs: tiny inputs so every CI run exercises the whole train + inference path.
SUITE.config("resnet50-smoke", ResNetConfig("imagenet", 50, image_size=64, num_classes=100, batch_size=8,
                                            cpu_batch_size=2), scales=("smoke",), kinds=("speed",),
             description="ResNet-50 at 64x64, batch 2 on CPU (deviation: tiny input for CI)")
SUITE.config("cifar-resnet20-smoke", ResNetConfig(family="cifar", depth=20, image_size=32, num_classes=10,
                                                  batch_size=128, cpu_batch_size=16),
             scales=("smoke", "proxy"), kinds=("speed",), description="CIFAR ResNet-20 step at batch 16 on CPU")
SUITE.config("resnet50-cpu", ResNetConfig("imagenet", 50), scales=("proxy",), kinds=("speed",),
             description="ResNet-50 at 224x224, batch 8 on CPU (the paper's model, a CPU-sized batch)")


# ------------------------------------------------------------------------------------------ fidelity
def architecture_figures(cfg: ResNetConfig) -> tuple[int, int]:
    """(parameters, multiply-adds per image), on the meta device: no memory, even for ResNet-152."""
    with torch.device("meta"):
        model = build(cfg)
        x = torch.empty(1, 3, cfg.image_size, cfg.image_size)
    flops, _ = count_flops(lambda: model(x))
    return count_params(model), flops // 2  # FlopCounterMode counts 2 FLOPs per multiply-add


@SUITE.kind("fidelity")
def fidelity(cfg: ResNetConfig, ctx: CaseContext) -> CaseOutput:
    params, macs = architecture_figures(cfg)
    m = {"params": Metric.single("params", "count", False, params),
         "macs": Metric.single("macs", "MAC/image", False, macs)}
    info: dict = {"image_size": cfg.image_size}
    if cfg.paper_macs:
        rel = macs / cfg.paper_macs - 1
        m["macs_rel_error"] = Metric.single("macs_rel_error", "fraction", False, abs(rel))
        m["macs_within_tolerance"] = Metric.single("macs_within_tolerance", "bool", True, float(abs(rel) <= cfg.tolerance))
        info["paper_macs"] = cfg.paper_macs
    if cfg.paper_params:
        rel = params / cfg.paper_params - 1
        m["params_rel_error"] = Metric.single("params_rel_error", "fraction", False, abs(rel))
        m["params_within_tolerance"] = Metric.single("params_within_tolerance", "bool", True,
                                                     float(abs(rel) <= cfg.tolerance))
        info["paper_params"] = cfg.paper_params
    info["tolerance"] = cfg.tolerance
    return CaseOutput(metrics=m, info=info)


# --------------------------------------------------------------------------------------------- speed
def synthetic_batch(cfg: ResNetConfig, batch: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic inputs: speed does not depend on pixel values; labels uniform over the classes."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, cfg.image_size, cfg.image_size, generator=g).to(device, dtype)
    y = torch.randint(0, cfg.num_classes, (batch,), generator=g).to(device)
    return x, y


@SUITE.kind("speed")
def speed(cfg: ResNetConfig, ctx: CaseContext) -> SpeedPlan:
    if ctx.case.dtype == "float16" and not ctx.on_gpu:
        raise SkipCase("float16 training on the CPU is not a supported torch path; use bfloat16")
    # DistributedDataParallel under `milestones run --nproc N`; the plain model otherwise.
    model = data_parallel(build(cfg).to(ctx.torch_device, ctx.torch_dtype))
    # SGD with momentum 0.9 and weight decay 1e-4, as in Sec. 3.4
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    x, y = synthetic_batch(cfg, ctx.batch_size, ctx.torch_device, ctx.torch_dtype)

    return classifier_plan(model, opt, x, y, ctx.batch_size, info={"image_size": cfg.image_size})


# ------------------------------------------------------------------------------------------ quality
# Proxy scale: the degradation problem (Sec. 4.2, Fig. 6) on scikit-learn's digits. Paper scale:
# torchvision-format ImageNet weights evaluated on the user's validation set (single crop and 10-crop).
# (imported here so that the quality section stays self-contained below the worked example)
from milestones.suites._vision_data import pretrained_imagenet_quality  # noqa: E402


@dataclass(frozen=True)
class DegradationConfig:
    """Fig. 6: a deeper plain net has higher training error than a shallower one; with shortcuts the deeper
    net trains better. CIFAR-style nets (6n+2 layers, option A) on the 8x8 grey digits (deviation: CIFAR-10
    does not ship offline; at 8x8 the three stages see 8/4/2 maps, so the 56-layer nets fit a CPU budget)."""

    # Deviation: plain-8 vs plain-32 (n=1 vs n=5) rather than Fig. 6's 20 vs 56: a 56-layer step at 8x8
    # costs ~3x a 20-layer one here, and the whole case must fit a few CPU minutes.
    shallow: int = 8
    deep: int = 32
    n_seeds: int = 3
    image_size: int = 8
    batch_size: int = 128  # Sec. 4.2: mini-batch 128
    cpu_batch_size: int = 32  # deviation: a CPU-sized batch; the same for every net compared
    lr: float = 0.1  # Sec. 4.2: 0.1 (no warm-up at these depths), momentum 0.9, weight decay 1e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    steps: int = 150  # deviation: a short fixed budget (the paper trains 64k iterations)
    eval_every: int = 25
    eval_subset: int = 512  # training error on a fixed subset of the training images
    final_evals: int = 2  # training error = mean of the last evals (less noise than one)
    target_train_error: float = 0.05  # time to quality: our own proxy target, not a paper figure


@dataclass(frozen=True)
class ResNetEvalConfig:
    """torchvision-format ResNet weights (v1.5: stride on the 3x3, the architecture of torchvision's
    weights) on ImageNet val: protocol "center" (torchvision's 76.130/92.862) or "ten_crop" (Table 3)."""

    depth: int = 50
    v15: bool = True
    protocol: str = "center"
    batch_size: int = 256
    cpu_batch_size: int = 8


SUITE.config("resnet-degradation", DegradationConfig(), scales=("proxy",), kinds=("quality",),
             description="Fig. 6 on digits: plain-32 trains worse than plain-8, ResNet-32 better, 3 seeds")
SUITE.config("resnet50-v1.5-paper", ResNetEvalConfig(), scales=("paper",), kinds=("quality",),
             description="torchvision-format ResNet-50 weights on ImageNet val, single centre crop")
SUITE.config("resnet50-v1.5-paper-10crop", ResNetEvalConfig(protocol="ten_crop"), scales=("paper",),
             kinds=("quality",), description="torchvision-format ResNet-50 weights on ImageNet val, 10-crop")


@torch.no_grad()
def _train_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    err = (model(x).argmax(1) != y).float().mean().item()
    model.train()
    return err


def train_digits(cfg: DegradationConfig, ctx: CaseContext, depth: int, residual: bool, seed: int,
                 data: tuple[torch.Tensor, ...]) -> dict:
    """Train one CIFAR-style net for cfg.steps; its loss curve, training-error curve and time to target."""
    from milestones.harness.measure.training import TrainLog

    xtr, ytr = data[0], data[1]
    torch.manual_seed(seed)  # same batches for every net of a seed
    model = CifarResNet(depth, residual, num_classes=10, in_channels=1).to(ctx.torch_device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(seed)
    log = TrainLog(target=cfg.target_train_error, higher_is_better=False)
    losses: list[float] = []
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(0, len(xtr), (ctx.batch_size,), generator=g)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(ctx.check_finite(step, loss.item()))
        if step % cfg.eval_every == 0:
            log.log(step, _train_error(model, xtr[: cfg.eval_subset], ytr[: cfg.eval_subset]))
    final = sum(log.values[-cfg.final_evals:]) / len(log.values[-cfg.final_evals:])
    return {"final_train_error": final, "step_to_target": log.step_to_target,
            "seconds_to_target": log.seconds_to_target, "losses": losses, "log": log}


def degradation(cfg: DegradationConfig, ctx: CaseContext) -> CaseOutput:
    from milestones.suites._data import digits

    seeds = ctx.quality_seeds(cfg.n_seeds)
    nets = [(f"plain{cfg.shallow}", cfg.shallow, False), (f"plain{cfg.deep}", cfg.deep, False),
            (f"resnet{cfg.shallow}", cfg.shallow, True), (f"resnet{cfg.deep}", cfg.deep, True)]
    err: dict[str, list[float]] = {n: [] for n, _, _ in nets}
    to_target: dict[str, list] = {n: [] for n, _, _ in nets}
    secs: dict[str, list] = {n: [] for n, _, _ in nets}
    curves: dict[str, dict] = {}
    for seed in seeds:
        data = [t.to(ctx.torch_device) for t in digits(seed, size=cfg.image_size)]
        for name, depth, residual in nets:
            r = train_digits(cfg, ctx, depth, residual, seed, data)
            err[name].append(r["final_train_error"])
            to_target[name].append(r["step_to_target"])
            secs[name].append(r["seconds_to_target"])
            curves[f"{name}.seed{seed}"] = {"step": list(range(1, cfg.steps + 1)), "loss": r["losses"],
                                           "eval_step": r["log"].steps, "train_error": r["log"].values}
    ps, pd, rd = f"plain{cfg.shallow}", f"plain{cfg.deep}", f"resnet{cfg.deep}"
    m: dict[str, Metric] = {}
    for name in err:
        m[f"train_error.{name}"] = Metric.from_values(f"train_error.{name}", "fraction", False, err[name],
                                                      note=f"after {cfg.steps} steps, one sample per seed")
        reached = [s for s in to_target[name] if s is not None]
        note = None if len(reached) == len(seeds) else (
            f"{len(seeds) - len(reached)} seed(s) did not reach {cfg.target_train_error:.0%} in {cfg.steps} steps")
        m[f"steps_to_target.{name}"] = Metric.from_values(f"steps_to_target.{name}", "steps", False, reached, note=note)
        m[f"seconds_to_target.{name}"] = Metric.from_values(
            f"seconds_to_target.{name}", "s", False, [s for s in secs[name] if s is not None], note=note)
    degraded = [float(b > a) for a, b in zip(err[ps], err[pd])]
    fixed = [float(c < b) for b, c in zip(err[pd], err[rd])]
    m["degradation_observed"] = Metric.from_values(
        "degradation_observed", "bool", True, degraded, note=f"per seed: {pd} ends with higher training error than {ps}")
    m["residual_trains_better"] = Metric.from_values(
        "residual_trains_better", "bool", True, fixed, note=f"per seed: {rd} ends with lower training error than {pd}")
    m["claim_held"] = Metric.from_values("claim_held", "bool", True, [a * b for a, b in zip(degraded, fixed)],
                                         note="per seed: both of the above")
    info = {"seeds": list(seeds), "steps": cfg.steps, "image_size": cfg.image_size, "lr": cfg.lr,
            "paper": "Fig. 6 (CIFAR-10): plain-56 higher training error than plain-20; ResNet-56 lower than both"}
    return CaseOutput(metrics=m, info=info, artifacts={"curves": curves})


@SUITE.kind("quality")
def quality(cfg, ctx: CaseContext) -> CaseOutput:
    if isinstance(cfg, DegradationConfig):
        return degradation(cfg, ctx)
    if not isinstance(cfg, ResNetEvalConfig):
        raise SkipCase(f"no quality case for config {ctx.case.config}")
    model = ImageNetResNet(cfg.depth, residual=True, v15=cfg.v15)
    protocol = "center" if cfg.protocol == "center" else "ten_crop_resnet"
    metrics, info = pretrained_imagenet_quality(ctx, model, f"resnet{cfg.depth}-weights", protocol)
    return CaseOutput(metrics=metrics, info=info)
