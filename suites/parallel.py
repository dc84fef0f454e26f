"""One weird trick for parallelizing convolutional neural networks (Krizhevsky; arXiv 1404.5997, 2014).

The paper's scheme on K workers: data parallelism in the convolutional layers (each worker runs the
replicated convolutions on its own slice of the batch, and the convolutional gradients are summed
across workers) and model parallelism in the fully connected layers (each worker holds 1/K of the
output units of every FC layer and computes them for the whole batch of all workers). It is measured
against pure data parallelism (DistributedDataParallel over the whole net) on the single-column
AlexNet, with torch.distributed collectives under `milestones run parallel --nproc K`.

How the hybrid step moves data (the paper's first variant, "each worker sends its last-stage
convolutional activities to every other worker"):
  conv features of my b examples --all_gather(batch)--> features of all K*b examples
  -> my column slice of fc1 -> all_gather(units) -> my slice of fc2 -> all_gather(units)
  -> my slice of fc3 -> all_gather(classes) -> the loss over all K*b examples (identical everywhere)
Backward mirrors it: the gradient of a gathered tensor whose consumers differ per worker (the next
layer's slices) is summed across workers (all_reduce) before each worker keeps its own part; the
gradient of the gathered logits, whose consumer (the loss) is replicated, is only sliced. The
paper's pipelined variants (one worker's batch at a time, overlapping communication with compute)
are not implemented: PyTorch's blocking collectives would not overlap them without streams.

Also here: the paper's learning-rate rule for bigger batches (p. 5: multiply the learning rate by
sqrt(k) when the batch grows k-fold, which keeps the variance of the SGD step constant), checked on
real per-example gradients; and an FSDP2 (torch.distributed.fsdp.fully_shard) step for the gpt suite's
GPT at the GPT-3 sizes that do not fit one GPU.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from milestones.harness import ranks as distributed
from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.measure.flops import count_params
from milestones.harness.records import CaseOutput
from milestones.harness.registry import register_suite
from milestones.harness.suite_api import WEAKER, Metrics, Params, SpeedPlan, Step, claim_text
from milestones.suites._speed import skip_float16_on_cpu

SUITE = register_suite("parallel", title="One weird trick for parallelizing convolutional neural networks",
                       arxiv="1404.5997", year=2014)

PAPER_CONVS = (64, 192, 384, 256, 256)  # torchvision's single-column AlexNet, the paper's net
PAPER_FC = 4096
PAPER_PARAMS = 61_100_840  # torchvision alexnet num_params (paper-baselines.md section 1)


# ---------------------------------------------------------------------------------------------- model
class SingleColumnAlexNet(nn.Module):
    """torchvision's alexnet layout with configurable widths (smoke configs shrink them)."""

    def __init__(self, convs=PAPER_CONVS, fc: int = PAPER_FC, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        c1, c2, c3, c4, c5 = convs
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(c5 * 36, fc), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Linear(fc, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def build_alexnet(cfg: ParallelConfig) -> nn.Module:
    """The alexnet suite's torchvision-identical net at the paper's widths, ours (same layout) otherwise."""
    if tuple(cfg.convs) == PAPER_CONVS and cfg.fc == PAPER_FC:
        try:
            from milestones.suites.alexnet import AlexNetOWT

            return AlexNetOWT(num_classes=cfg.num_classes, dropout=cfg.dropout)
        except ImportError:
            pass
    return SingleColumnAlexNet(cfg.convs, cfg.fc, cfg.num_classes, cfg.dropout)


class _Gather(torch.autograd.Function):
    """all_gather along `dim`; backward sums the gradient across workers first when `reduce_grad`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, reduce_grad: bool) -> torch.Tensor:
        rank, world = distributed.world()
        ctx.dim, ctx.reduce_grad, ctx.rank, ctx.world = dim, reduce_grad, rank, world
        if world == 1:
            return x.clone()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        if ctx.world == 1:
            return g, None, None
        if ctx.reduce_grad:
            g = g.contiguous().clone()
            dist.all_reduce(g)
        return g.chunk(ctx.world, ctx.dim)[ctx.rank].contiguous(), None, None


def gather(x: torch.Tensor, dim: int, *, reduce_grad: bool) -> torch.Tensor:
    return _Gather.apply(x, dim, reduce_grad)


class HybridAlexNet(nn.Module):
    """Conv layers replicated (data parallel), each FC layer's output units split over workers."""

    def __init__(self, full: nn.Module) -> None:
        super().__init__()
        rank, world = distributed.world()
        self.rank, self.world = rank, world
        self.features, self.avgpool = full.features, full.avgpool
        linears = [m for m in full.classifier if isinstance(m, nn.Linear)]
        self.dropout = next((m.p for m in full.classifier if isinstance(m, nn.Dropout)), 0.0)
        self.fcs = nn.ModuleList()
        for lin in linears:
            if lin.out_features % world:
                raise ValueError(f"{lin.out_features} units do not split over {world} workers")
            part = nn.Linear(lin.in_features, lin.out_features // world).to(lin.weight.device, lin.weight.dtype)
            with torch.no_grad():
                part.weight.copy_(lin.weight.chunk(world, 0)[rank])
                part.bias.copy_(lin.bias.chunk(world, 0)[rank])
            self.fcs.append(part)

    def conv_parameters(self) -> list[nn.Parameter]:
        return list(self.features.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every worker's examples (rank order), the same tensor on every worker."""
        h = gather(torch.flatten(self.avgpool(self.features(x)), 1), 0, reduce_grad=True)
        last = len(self.fcs) - 1
        for i, fc in enumerate(self.fcs):
            if i < last:
                # Same seed on every worker -> the same dropout mask on the replicated input.
                h = F.dropout(h, self.dropout, self.training)
                h = gather(F.relu(fc(h)), 1, reduce_grad=True)
            else:
                h = gather(fc(h), 1, reduce_grad=False)  # its consumer, the loss, is replicated
        return h

    def sync_conv_grads(self) -> None:
        """Sum the convolutional gradients: each worker's covers only its own examples."""
        if self.world == 1:
            return
        grads = [p.grad for p in self.conv_parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        off = 0
        for g in grads:
            g.copy_(flat[off: off + g.numel()].view_as(g))
            off += g.numel()


def gather_labels(y: torch.Tensor) -> torch.Tensor:
    _, world = distributed.world()
    if world == 1:
        return y
    parts = [torch.empty_like(y) for _ in range(world)]
    dist.all_gather(parts, y)
    return torch.cat(parts)


# --------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class ParallelConfig(Params):
    image_size: int = 224
    convs: tuple[int, ...] = PAPER_CONVS
    fc: int = PAPER_FC
    num_classes: int = 1000
    dropout: float = 0.5
    lr: float = 0.01  # AlexNet's SGD: lr 0.01, momentum 0.9, weight decay 5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4


@dataclass(frozen=True)
class LrRuleConfig(Params):
    batch: int = 16  # base batch B (our choice; the rule is about the ratio k)
    ks: tuple[int, ...] = (2, 4, 8)  # batch multipliers
    draws: int = 400  # mini-batches drawn per batch size
    tolerance: float = 0.1  # sampling error of a std over 400 draws is ~3.5%


@dataclass(frozen=True)
class FsdpGptConfig(Params):
    layers: int = 2
    d_model: int = 64
    heads: int = 4
    vocab: int = 256  # smoke: a byte vocabulary; the paper's models use 50257 (GPT-2 BPE)
    seq_len: int = 32  # smoke; the paper's context is 2048
    lr: float = 6e-4


# Paper: 128 examples per worker (batch 128*K in all); deviation: a CPU-sized per-worker batch of 8.
_BATCH = dict(batch_size=128, cpu_batch_size=8)
_GPT_BATCH = dict(batch_size=1, cpu_batch_size=4)  # sequences per GPU
SUITE.config("parallel-alexnet", ParallelConfig(**_BATCH), scales=("smoke", "proxy", "paper"), kinds=("fidelity",),
             description="single-column AlexNet (torchvision layout): parameters of the paper's net")
SUITE.config("parallel-alexnet-paper", ParallelConfig(**_BATCH), scales=("paper",), kinds=("speed",),
             description="hybrid vs pure data parallelism, 224x224, 128 images per worker, on GPUs")
SUITE.config("parallel-alexnet-cpu", ParallelConfig(**_BATCH), scales=("proxy",), kinds=("speed",),
             description="the paper's net at 224x224, 8 images per worker on CPUs (full-size FC all-reduce)")
SUITE.config("parallel-alexnet-smoke",
             ParallelConfig(image_size=64, convs=(16, 48, 96, 64, 64), fc=256, num_classes=100, batch_size=8,
                            cpu_batch_size=8),
             scales=("smoke",), kinds=("speed",),
             description="hybrid vs pure data parallelism at 64x64 with narrow layers (deviation: CI-sized)")
SUITE.config("parallel-lr-rule", LrRuleConfig(), scales=("smoke", "proxy", "paper"), kinds=("fidelity",),
             description="p. 5: lr x sqrt(k) for batch x k keeps the SGD step's variance constant")
SUITE.config("parallel-gpt-fsdp-smoke", FsdpGptConfig(**_GPT_BATCH), scales=("smoke",), kinds=("speed",),
             description="FSDP2 (fully_shard per block) train step of a tiny GPT under --nproc N")
# GPT-3 sizes (Table 2.1) whose fp32 weights + Adam state (16 bytes/parameter) exceed one 80 GB GPU.
for _name, (_l, _d, _h) in {"gpt3-6.7b": (32, 4096, 32), "gpt3-13b": (40, 5120, 40),
                            "gpt3-175b": (96, 12288, 96)}.items():
    SUITE.config(f"parallel-{_name}-fsdp", FsdpGptConfig(_l, _d, _h, vocab=50257, seq_len=2048, **_GPT_BATCH),
                 scales=("paper",), kinds=("speed",),
                 description=f"{_name} train step sharded with FSDP2 over --nproc N GPUs (x --nnodes)")


# ------------------------------------------------------------------------------------------ fidelity
@SUITE.kind("fidelity", params=ParallelConfig, metrics=("params", "params_match_torchvision",))
def fidelity(cfg: ParallelConfig, ctx: CaseContext) -> CaseOutput:
    with torch.device("meta"):
        model = build_alexnet(cfg)
    params = count_params(model)
    m = Metrics()
    m.single("params", "count", params)
    m.single("params_match_torchvision", "bool", float(params == PAPER_PARAMS), higher_is_better=True)
    return CaseOutput(metrics=m, info={"torchvision_params": PAPER_PARAMS})


LR_RULE = claim_text(
    "parallel", "sqrt_lr_rule",
    "Theory suggests that when multiplying the batch size by k, one should multiply the learning rate by "
    "sqrt(k) to keep the variance in the gradient expectation constant.",
    "Krizhevsky 2014, Sec. 5 (p. 5)",
    "on softmax regression over the digits (one seed, {draws} mini-batches per size), the SGD step's noise at "
    "batch {batch}k with lr x sqrt(k) is within {tol:g} (relative) of the noise at batch {batch} with lr, for k "
    "in {ks}. A variance identity: with batches drawn with replacement it holds exactly in expectation, so "
    "this check can fail only by sampling noise (or a bug in the measurement)",
    strength=WEAKER, tests="the arithmetic of the variance identity, not that training keeps its quality")


def lr_rule_decision(sqrt_ratios: list[float], tolerance: float) -> bool:
    """Held when every noise ratio of the sqrt(k) rule (step noise at batch kB, lr x sqrt(k), over the noise
    at batch B, lr) is within `tolerance` of 1."""
    return all(abs(r - 1) <= tolerance for r in sqrt_ratios)


@SUITE.kind("fidelity", params=LrRuleConfig, metrics=("lr_rule.*", "claim_held",))
def lr_rule_check(cfg: LrRuleConfig, ctx: CaseContext) -> CaseOutput:
    """Measure the std of SGD steps lr * mean-gradient over random mini-batches on real data.

    Softmax regression on the digits at a fixed random weight; per-example gradients are exact. The
    step's noise (its std around the full-data gradient step) at batch kB with lr*sqrt(k) should equal
    the noise at batch B with lr (ratio 1); with lr*k it grows as sqrt(k). Mini-batches are drawn with
    replacement, so the variance of their mean is exactly 1/(batch) of the per-example variance.
    """
    from milestones.suites._data import digits

    x, y, _, _ = digits(seed=ctx.seed)
    x = x.flatten(1).double()
    g = torch.Generator().manual_seed(ctx.seed)
    w = torch.randn(x.shape[1], 10, generator=g, dtype=torch.float64) * 0.1
    p = torch.softmax(x @ w, 1)
    p[torch.arange(len(y)), y] -= 1.0
    per_example = torch.einsum("ni,nc->nic", x, p).flatten(1)  # exact gradient of each example's loss
    full = per_example.mean(0)

    def step_noise(batch: int, lr: float) -> float:
        idx = torch.randint(0, len(per_example), (cfg.draws, batch), generator=g)
        steps = lr * per_example[idx].mean(1)
        return float((steps - lr * full).pow(2).sum(1).mean().sqrt())

    base = step_noise(cfg.batch, 1.0)
    sqrt_ratio, linear_ratio = [], []
    for k in cfg.ks:
        sqrt_ratio.append(step_noise(cfg.batch * k, math.sqrt(k)) / base)
        linear_ratio.append(step_noise(cfg.batch * k, float(k)) / base)
    held = lr_rule_decision(sqrt_ratio, cfg.tolerance)
    fields = dict(draws=cfg.draws, batch=cfg.batch, tol=cfg.tolerance, ks=list(cfg.ks))
    rule = LR_RULE.rule.format(**fields)
    m = Metrics()
    # A ratio that should equal 1, not be large or small: recorded lower-is-better, as before.
    m.add("lr_rule.sqrt_scaling_noise_ratio", "ratio", sqrt_ratio, higher_is_better=False,
          note=f"step noise at batch {cfg.batch}k, lr x sqrt(k) over batch {cfg.batch}, lr; k = {list(cfg.ks)}")
    m.add("lr_rule.linear_scaling_noise_ratio", "ratio", linear_ratio, higher_is_better=False,
          note=f"the same with lr x k; theory: sqrt(k) = {[round(math.sqrt(k), 3) for k in cfg.ks]}")
    m.single("claim_held", "bool", float(held), note=rule)
    return CaseOutput(metrics=m, info={"claims": [LR_RULE.make([held], [ctx.seed], ctx.case.scale, **fields)],
                                       "ks": list(cfg.ks), "base_batch": cfg.batch, "draws": cfg.draws,
                                       "data": "scikit-learn digits, train split", "model": "softmax regression"})


# --------------------------------------------------------------------------------------------- speed
def _batch(cfg: ParallelConfig, batch: int, seed: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # Each worker draws its own examples (seeded by rank): the slices of the global batch differ.
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, cfg.image_size, cfg.image_size, generator=g).to(device, dtype)
    y = torch.randint(0, cfg.num_classes, (batch,), generator=g).to(device)
    return x, y


def hybrid_gradient_error(cfg: ParallelConfig, batch: int, device, dtype, seed: int) -> tuple[float, float]:
    """Max |grad(hybrid) - grad(one process, whole batch)| over all parameters, and its relative size.

    Dropout off (its masks are random); both nets start from the same weights.
    """
    import copy

    rank, world = distributed.world()
    torch.manual_seed(seed)
    full = build_alexnet(cfg).to(device, dtype).eval()
    hybrid = HybridAlexNet(copy.deepcopy(full)).eval()  # slices of the same weights
    x, y = _batch(cfg, batch, seed + 1000 + rank, device, dtype)
    F.cross_entropy(hybrid(x), gather_labels(y)).backward()
    hybrid.sync_conv_grads()
    X, Y = gather(x, 0, reduce_grad=False).detach(), gather_labels(y)
    F.cross_entropy(full(X), Y).backward()
    err, scale = 0.0, 0.0
    for a, b in zip(hybrid.features.parameters(), full.features.parameters()):
        err, scale = max(err, float((a.grad - b.grad).abs().max())), max(scale, float(b.grad.abs().max()))
    for part, lin in zip(hybrid.fcs, [m for m in full.classifier if isinstance(m, nn.Linear)]):
        for a, b in ((part.weight.grad, lin.weight.grad.chunk(world, 0)[rank]),
                     (part.bias.grad, lin.bias.grad.chunk(world, 0)[rank])):
            err, scale = max(err, float((a - b).abs().max())), max(scale, float(b.abs().max()))
    if world > 1:
        t = torch.tensor([err, scale], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        err, scale = float(t[0]), float(t[1])
    return err, err / scale if scale else 0.0


def _sgd(cfg: ParallelConfig, params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _step_time_ratio(metrics) -> dict:
    """hybrid / dp median step time, once both are measured."""
    med = {k: metrics[f"{k}.train.step_time"].value for k in ("dp", "hybrid")}
    m = Metrics()
    if med["dp"] and med["hybrid"]:
        m.single("hybrid_over_dp.step_time_ratio", "ratio", med["hybrid"] / med["dp"], higher_is_better=False,
                 note="median hybrid step time / median pure data-parallel step time, this rank")
    return m


@SUITE.kind("speed", params=ParallelConfig, metrics=("params", "hybrid.*", "dp.*", "hybrid_over_dp.*", "train.*",))
def speed(cfg: ParallelConfig, ctx: CaseContext) -> SpeedPlan:
    skip_float16_on_cpu(ctx)
    rank, world = distributed.world()
    dev, dt, b = ctx.torch_device, ctx.torch_dtype, ctx.batch_size
    x, y = _batch(cfg, b, ctx.seed + rank, dev, dt)
    m = Metrics()
    err, rel = hybrid_gradient_error(cfg, b, dev, dt, ctx.seed)
    m.single("hybrid.grad_max_abs_diff", "abs", err, higher_is_better=False,
             note=f"hybrid on {world} worker(s) vs one process on the whole batch, dropout off")
    m.single("hybrid.grad_max_rel_diff", "fraction", rel, higher_is_better=False)
    with torch.device("meta"):
        m.single("params", "count", count_params(build_alexnet(cfg)))
    # One net at a time: each step's setup frees the previous one's net before building its own.
    live: dict = {}

    def setup_dp() -> None:  # pure data parallelism: the whole net replicated, gradients all-reduced by DDP
        live.clear()
        torch.manual_seed(ctx.seed)
        live["net"] = distributed.data_parallel(build_alexnet(cfg).to(dev, dt)).train()
        live["opt"] = _sgd(cfg, live["net"].parameters())

    def setup_hybrid() -> None:  # the paper's hybrid: conv data parallel, FC model parallel
        live.clear()
        torch.manual_seed(ctx.seed)
        live["net"] = HybridAlexNet(build_alexnet(cfg).to(dev, dt)).train()
        if world > 1:
            distributed.register_gradients(live["net"].conv_parameters(), "hybrid")
        live["opt"] = _sgd(cfg, live["net"].parameters())

    y_all = gather_labels(y)

    def dp_step() -> None:
        live["opt"].zero_grad(set_to_none=True)
        F.cross_entropy(live["net"](x), y).backward()
        live["opt"].step()

    def hybrid_step() -> None:
        live["opt"].zero_grad(set_to_none=True)
        # The loss is the mean over all K*b examples, so the summed conv gradients need no rescaling.
        F.cross_entropy(live["net"](x), y_all).backward()
        live["net"].sync_conv_grads()
        live["opt"].step()

    return SpeedPlan(steps=(Step("dp.train", dp_step, b, "images", setup=setup_dp),
                            Step("hybrid.train", hybrid_step, b, "images", setup=setup_hybrid)),
                     metrics=m, derive=_step_time_ratio,
                     info={"image_size": cfg.image_size, "workers": world, "global_batch": b * world,
                           "hybrid_variant": "all-gather all conv activations (the paper's first scheme)"})


# ------------------------------------------------------------------------------------------ FSDP GPT
def build_gpt(cfg: FsdpGptConfig) -> tuple[nn.Module, type]:
    """The gpt suite's GPT and its block type (the unit FSDP shards)."""
    from milestones.suites.gpt import GPT, Block, GPTArch

    return GPT(GPTArch(cfg.layers, cfg.d_model, cfg.heads, vocab_size=cfg.vocab, n_ctx=cfg.seq_len)), Block


@SUITE.kind("speed", params=FsdpGptConfig, metrics=("params", "params_per_rank", "train.*",))
def fsdp_gpt_speed(cfg: FsdpGptConfig, ctx: CaseContext) -> SpeedPlan:
    n_params = 12 * cfg.layers * cfg.d_model**2
    if n_params > 1e9 and not ctx.on_gpu:
        raise SkipCase(f"{n_params / 1e9:.0f}B parameters: needs GPUs (run with --device cuda --nproc N)")
    rank, world = distributed.world()
    dev = ctx.torch_device
    torch.manual_seed(ctx.seed)
    gpt, block = build_gpt(cfg)
    model = distributed.fully_shard_model(gpt.to(dev), (block,))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(ctx.seed + rank)
    idx = torch.randint(0, cfg.vocab, (ctx.batch_size, cfg.seq_len + 1), generator=g).to(dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        logits, _ = model(idx[:, :-1])
        F.cross_entropy(logits.reshape(-1, cfg.vocab), idx[:, 1:].reshape(-1)).backward()
        opt.step()

    local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())
    m = Metrics()
    m.single("params_per_rank", "count", local, note=f"parameters held by one of {world} rank(s)",
             higher_is_better=False)
    m.single("params", "count", sum(p.numel() for p in gpt.parameters()))
    return SpeedPlan(steps=(Step("train", step, ctx.batch_size * cfg.seq_len, "tokens"),), metrics=m,
                     info={"sharding": "fsdp2 per block" if world > 1 else "none", "model": "milestones.suites.gpt.GPT"})


# ---------------------------------------------------------------------------------------------------------
# ---- paper scale (issue 14): Table 1, training the single-column AlexNet on 1/2/4/8 GPUs (time, error)
# ---------------------------------------------------------------------------------------------------------
from milestones.harness.suite_api import Params, curve  # noqa: E402
from milestones.suites import _paper  # noqa: E402


@dataclass(frozen=True)
class OWTTableConfig(Params):
    """One row of Table 1: the paper's hybrid scheme on `gpus` workers, 128 images per worker (batch
    128 x K), the single-column AlexNet trained on ImageNet for `epochs`, the learning rate scaled for
    the K-fold batch by `lr_rule` ("sqrt": p. 5's rule; "linear": the alternative; "none"), then the
    top-1 error on val (centre crop) and the wall time.

    Run under `milestones run CONFIG --nproc K` (one rank per GPU). Deviations: lr drops by 10 at epochs
    30 and 60 of 90 (the paper's exact schedule is not in our sources); Table 1's numbers are not in our
    sources either, so the record carries ours only (no claim is checked)."""

    gpus: int = 1
    epochs: int = 90
    lr_drops: tuple[int, ...] = (30, 60)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_rule: str = "sqrt"
    crop: int = 224
    resize: int = 256
    eval_limit: int = 0
    workers: int = 8
    ckpt_every: int = 2000
    steps: int = 0
    n_train: int = 0
    n_test: int = 0
    model: ParallelConfig = ParallelConfig()


def owt_lr(cfg: OWTTableConfig, k: int) -> float:
    return cfg.lr * {"sqrt": math.sqrt(k), "linear": float(k), "none": 1.0}[cfg.lr_rule]


@SUITE.kind("quality", params=OWTTableConfig)
@_paper.paper_case
def owt_table_quality(cfg: OWTTableConfig, ctx: CaseContext) -> CaseOutput:
    from milestones.suites._vision_data import PROTOCOLS, load_image

    cfg, over = _paper.prepare(cfg, ctx, f"the one-weird-trick training run on {cfg.gpus} GPU(s)")
    rank, world = distributed.world()
    if world != cfg.gpus:
        raise SkipCase(f"needs {cfg.gpus} rank(s), one per GPU (this process group has {world}): run it with "
                       f"--nproc {cfg.gpus}")
    train_s, val_s, classes = _paper.imagenet_splits(ctx)
    if cfg.n_train:
        train_s = train_s[:cfg.n_train]
    if cfg.n_test:
        val_s = val_s[:cfg.n_test]
    if cfg.eval_limit:
        val_s = val_s[:cfg.eval_limit]
    seed = ctx.quality_seeds(1)[0]
    b, dev = ctx.batch_size, ctx.torch_device
    shard_n = len(train_s) // world  # equal shards keep every rank's step count (and collectives) in lockstep
    shard = train_s[rank::world][:shard_n]
    per_epoch = max(1, shard_n // b)
    steps = cfg.steps or cfg.epochs * per_epoch
    torch.manual_seed(seed)  # the same initial weights on every rank, then each keeps its FC slices
    mcfg = dataclasses.replace(cfg.model, num_classes=len(classes), image_size=cfg.crop)
    model = HybridAlexNet(build_alexnet(mcfg).to(dev)).train()
    base_lr = owt_lr(cfg, world)
    opt = torch.optim.SGD(model.parameters(), lr=base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    batches = _paper.ImageNetBatches(shard, "alexnet", cfg.crop, b, seed * 1000 + rank, cfg.workers,
                                     (cfg.resize, cfg.resize))
    view = PROTOCOLS[_paper.sized_protocol("center", cfg.resize, cfg.crop)]

    def step_fn(step: int) -> float:
        x, y = batches.at(step)
        torch.manual_seed(seed * 1_000_003 + step)  # one dropout mask for the replicated FC input
        loss = F.cross_entropy(model(x.to(dev, non_blocking=True)), gather_labels(y.to(dev)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        model.sync_conv_grads()
        opt.step()
        return loss.item()

    def eval_fn(step: int) -> dict:
        mine = val_s[rank::world][:len(val_s) // world]
        correct = torch.zeros(2, device=dev)
        for i in range(0, len(mine), b):
            part = mine[i:i + b]
            x = torch.cat([view(load_image(p)) for p, _ in part]).to(dev)
            y = gather_labels(torch.tensor([c for _, c in part], device=dev))
            logits = model(x)
            correct[0] += (logits.argmax(1) == y).sum()
            correct[1] += len(y)
        if world > 1:
            dist.all_reduce(correct)  # every rank saw the gathered logits of all: divide the double count
            correct /= world
        return {"top1_error": 100 * (1 - float(correct[0] / correct[1].clamp_min(1)))}

    tag = f"owt-{world}gpu"
    ckpt = _paper.Checkpoint(ctx, f"{ctx.case.config}-rank{rank}-seed{seed}",
                             _paper.config_fingerprint(cfg, seed=seed, batch=b, rank=rank, world=world), tag)
    res = _paper.train(ctx, ckpt, modules={"model": model}, optimizers={"sgd": opt}, steps=steps, step_fn=step_fn,
                       lr_fn=_paper.step_lr(base_lr, [d * per_epoch for d in cfg.lr_drops]), eval_fn=eval_fn,
                       eval_every=per_epoch, ckpt_every=cfg.ckpt_every, tag=tag)
    m = Metrics()
    m.single("top1_error", "%", res.evals[-1]["top1_error"], note="ImageNet val, centre crop")
    m.single("train_hours", "h", res.seconds / 3600, note="training + per-epoch evaluation, summed over restarts",
             higher_is_better=False)
    m.single("throughput", "images/s", steps * b * world / max(res.seconds, 1e-9), note="all workers")
    info = {"gpus": world, "global_batch": b * world, "lr": base_lr, "lr_rule": cfg.lr_rule, "steps": steps,
            "epochs": steps / per_epoch, "overrides": over, "seed": seed, "resumed_from": res.resumed_from,
            "claims": [], "claims_note": "Table 1's figures are not in our sources (one unconfirmed secondary note)"}
    arts = {"curves": {f"{tag}.seed{seed}": curve(tag, seed, [e["step"] for e in res.evals],
                                                  top1_error=[e["top1_error"] for e in res.evals])}}
    return CaseOutput(metrics=m, info=info, artifacts=arts)


for _k in (1, 2, 4, 8):
    SUITE.config(f"parallel-owt-{_k}gpu", OWTTableConfig(gpus=_k, batch_size=128, cpu_batch_size=None),
                 scales=("paper",), kinds=("quality",),
                 description=f"Table 1 row: hybrid scheme on {_k} GPU(s), batch 128x{_k}, 90 epochs of ImageNet; "
                 f"--nproc {_k} --data imagenet=ROOT")
