"""Kernel microbenchmarks of the milestones' building blocks, at the papers' shapes.

Device: MILESTONES_KERNEL_DEVICE (default cuda when torch sees one, else cpu).
Dtype: MILESTONES_KERNEL_DTYPE (default float32).
Shapes: MILESTONES_KERNEL_SHAPES = paper | small. Default: paper on a GPU, small on a CPU (the
paper shapes take seconds per call on a 2-core CPU; small keeps each call in milliseconds).

Run: `pytest tests/bench_kernels --benchmark-only --benchmark-json=kernels.json --benchmark-save-data`,
then `milestones import pytest-benchmark kernels.json`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from milestones.harness.measure.flops import count_flops


def _device() -> torch.device:
    name = os.environ.get("MILESTONES_KERNEL_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


DEVICE = _device()
DTYPE = getattr(torch, os.environ.get("MILESTONES_KERNEL_DTYPE", "float32"))
SHAPES = os.environ.get("MILESTONES_KERNEL_SHAPES") or ("paper" if DEVICE.type == "cuda" else "small")
if SHAPES not in ("paper", "small"):
    raise pytest.UsageError(f"MILESTONES_KERNEL_SHAPES must be 'paper' or 'small', not {SHAPES!r}")
PAPER = SHAPES == "paper"


def pick(paper: Any, small: Any) -> Any:
    return paper if PAPER else small


def synced(fn: Callable[[], Any]) -> Callable[[], Any]:
    """On a GPU the launch returns before the kernel ends: wait inside the timed call."""
    if DEVICE.type != "cuda":
        return fn

    def call() -> Any:
        out = fn()
        torch.cuda.synchronize(DEVICE)
        return out

    return call


def run(benchmark, fn: Callable[[], Any], *, suite: str, case: str, batch: int, source: str, **info: Any) -> None:
    flops, _ = count_flops(fn)  # once, outside the timed calls; doubles as a warm-up call
    benchmark.extra_info.update({
        "suite": suite, "case": case, "device": str(DEVICE), "dtype": str(DTYPE).replace("torch.", ""),
        "shapes": SHAPES, "batch_size": batch, "flops": flops, "source": source,
        "torch": torch.__version__.split("+")[0], "threads": torch.get_num_threads(), **info,
    })
    out = benchmark(synced(fn))
    if isinstance(out, torch.Tensor):
        assert torch.isfinite(out.float()).all(), f"{case}: non-finite output"


def rand(*shape: int, grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, device=DEVICE, dtype=DTYPE, requires_grad=grad)


# ------------------------------------------------------------------------------------ convolutions
@dataclass(frozen=True)
class Conv:
    name: str
    suite: str
    batch: int
    cin: int
    cout: int
    size: int
    kernel: int
    stride: int
    padding: int
    source: str


# AlexNet (Krizhevsky et al. 2012, Sec. 3.5/Fig. 2): batch 128, 224x224x3 input (227 makes the
# arithmetic of the 55x55 output work; we use 227), conv1 96 11x11/4, conv2 256 5x5 on 27x27, conv3 384 3x3 on 13x13.
# ResNet-50 (He et al. 2015, Table 1): batch 256 (Sec. 3.4), conv1 7x7/2 64, a 3x3 of conv2_x at 56x56,
# a 1x1 reduction 256->64 at 56x56, a 3x3 of conv5_x at 7x7.
CONVS = [
    Conv("alexnet.conv1", "alexnet", pick(128, 2), 3, 96, pick(227, 67), 11, 4, 0, "AlexNet Sec. 3.5, Fig. 2"),
    Conv("alexnet.conv2", "alexnet", pick(128, 2), 96, 256, pick(27, 13), 5, 1, 2, "AlexNet Fig. 2"),
    Conv("alexnet.conv3", "alexnet", pick(128, 2), 256, 384, pick(13, 7), 3, 1, 1, "AlexNet Fig. 2"),
    Conv("resnet50.conv1", "resnet", pick(256, 2), 3, 64, pick(224, 32), 7, 2, 3, "ResNet Table 1"),
    Conv("resnet50.conv2_x.3x3", "resnet", pick(256, 2), 64, 64, pick(56, 14), 3, 1, 1, "ResNet Table 1"),
    Conv("resnet50.conv2_x.1x1", "resnet", pick(256, 2), 256, 64, pick(56, 14), 1, 1, 0, "ResNet Table 1"),
    Conv("resnet50.conv5_x.3x3", "resnet", pick(256, 2), 512, 512, 7, 3, 1, 1, "ResNet Table 1"),
]


@pytest.mark.slow
@pytest.mark.benchmark(group="conv")
@pytest.mark.parametrize("c", CONVS, ids=[c.name for c in CONVS])
def test_conv_forward(benchmark, c: Conv) -> None:
    x = rand(c.batch, c.cin, c.size, c.size)
    w = rand(c.cout, c.cin, c.kernel, c.kernel) * (2.0 / (c.cin * c.kernel**2)) ** 0.5

    @torch.no_grad()
    def fn() -> torch.Tensor:
        return F.conv2d(x, w, stride=c.stride, padding=c.padding)

    run(benchmark, fn, suite=c.suite, case=c.name, batch=c.batch, source=c.source,
        input_shape=list(x.shape), weight_shape=list(w.shape))


# --------------------------------------------------------------------------------- recurrent layers
@dataclass(frozen=True)
class Rnn:
    name: str
    suite: str
    cell: str
    batch: int
    steps: int
    input: int
    hidden: int
    layers: int
    bidirectional: bool
    source: str


# Seq2Seq (Sutskever et al. 2014, Sec. 3.4): 4-layer LSTM, 1000 cells, 1000-dim embeddings, batch 128;
# 30 steps stands for a typical WMT'14 sentence. RNNsearch (Bahdanau et al. 2014, App. A.2): a
# bidirectional GRU encoder of 1000 units, 620-dim embeddings, batch 80, sentences up to 50 words.
RNNS = [
    Rnn("seq2seq.lstm4x1000", "seq2seq", "lstm", pick(128, 4), pick(30, 6), pick(1000, 32), pick(1000, 32), 4, False,
        "Seq2Seq Sec. 3.4"),
    Rnn("rnnsearch.bigru1000", "attention", "gru", pick(80, 4), pick(50, 6), pick(620, 24), pick(1000, 32), 1, True,
        "RNNsearch App. A.2"),
]


@pytest.mark.benchmark(group="rnn")
@pytest.mark.parametrize("r", RNNS, ids=[r.name for r in RNNS])
def test_rnn_forward(benchmark, r: Rnn) -> None:
    cls = nn.LSTM if r.cell == "lstm" else nn.GRU
    layer = cls(r.input, r.hidden, num_layers=r.layers, bidirectional=r.bidirectional).to(DEVICE, DTYPE)
    x = rand(r.steps, r.batch, r.input)

    @torch.no_grad()
    def fn() -> torch.Tensor:
        return layer(x)[0]

    run(benchmark, fn, suite=r.suite, case=r.name, batch=r.batch, source=r.source, steps=r.steps,
        hidden=r.hidden, layers=r.layers)


# ------------------------------------------------------------------------------------------- SDPA
@dataclass(frozen=True)
class Attn:
    name: str
    suite: str
    batch: int
    heads: int
    length: int
    head_dim: int
    causal: bool
    source: str


# Transformer base (Vaswani et al. 2017, Sec. 3.2.2/5.1): 8 heads of 64; ~25k tokens a batch: 200 x 128.
# BERT-base (Devlin et al. 2018, Sec. 3/A.2): 12 heads of 64, batch 256 at length 128 (90% of steps).
# GPT-3 175B (Brown et al. 2020, Table 2.1): 96 heads of 128, context 2048, causal; one sequence.
ATTNS = [
    Attn("transformer.base", "transformer", pick(200, 2), 8, pick(128, 16), 64, False, "Transformer Sec. 3.2.2, 5.1"),
    Attn("bert.base", "bert", pick(256, 2), 12, pick(128, 16), 64, False, "BERT Sec. 3, App. A.2"),
    Attn("gpt3.175b", "gpt", 1, pick(96, 4), pick(2048, 32), 128, True, "GPT-3 Table 2.1"),
]


@pytest.mark.benchmark(group="sdpa")
@pytest.mark.parametrize("a", ATTNS, ids=[a.name for a in ATTNS])
def test_sdpa_forward(benchmark, a: Attn) -> None:
    q, k, v = (rand(a.batch, a.heads, a.length, a.head_dim) for _ in range(3))

    @torch.no_grad()
    def fn() -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=a.causal)

    run(benchmark, fn, suite=a.suite, case=a.name, batch=a.batch, source=a.source, heads=a.heads,
        length=a.length, head_dim=a.head_dim, causal=a.causal)


# ------------------------------------------------------------------------------------- layer norm
LAYERNORMS = [  # (name, suite, tokens, hidden, source)
    ("bert.base.layernorm", "bert", pick(256 * 128, 64), 768, "BERT-base: hidden 768, batch 256 x 128"),
    ("gpt3.175b.layernorm", "gpt", pick(2048, 16), pick(12288, 768), "GPT-3 175B: d_model 12288, 2048 tokens"),
]


@pytest.mark.benchmark(group="layernorm")
@pytest.mark.parametrize("name,suite,tokens,hidden,source", LAYERNORMS, ids=[x[0] for x in LAYERNORMS])
def test_layer_norm(benchmark, name: str, suite: str, tokens: int, hidden: int, source: str) -> None:
    x = rand(tokens, hidden)
    ln = nn.LayerNorm(hidden).to(DEVICE, DTYPE)

    @torch.no_grad()
    def fn() -> torch.Tensor:
        return ln(x)

    run(benchmark, fn, suite=suite, case=name, batch=tokens, source=source, hidden=hidden)


# ------------------------------------------------------------------------------------------- Adam
@pytest.mark.benchmark(group="adam")
def test_adam_step(benchmark) -> None:
    # One Adam update (Kingma & Ba 2014, Algorithm 1; lr 1e-3, betas 0.9/0.999, eps 1e-8) over a
    # ResNet-50-sized parameter set (25.6M in 161 tensors); small: 100k parameters.
    sizes = [pick(159_000, 620)] * 161
    params = [torch.zeros(n, device=DEVICE, dtype=DTYPE, requires_grad=True) for n in sizes]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    def fn() -> None:
        opt.step()

    run(benchmark, fn, suite="adam", case="adam.step", batch=1, source="Adam Algorithm 1",
        parameters=sum(sizes), tensors=len(sizes), foreach=True)
    assert all(torch.isfinite(p).all() for p in params)


# -------------------------------------------------------------------------------------------- DQN
class NatureDQN(nn.Module):
    """Mnih et al. 2015 (Methods, 'Model architecture'): 84x84x4 -> 32 8x8/4 -> 64 4x4/2 -> 64 3x3/1
    -> 512 -> one output per action (18 at most)."""

    def __init__(self, actions: int = 18) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(4, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(), nn.Conv2d(64, 64, 3, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.benchmark(group="dqn")
def test_dqn_learner_step(benchmark) -> None:
    # The learner's forward + backward on a minibatch of 32 (Nature DQN, Extended Data Table 1).
    batch = pick(32, 4)
    model = NatureDQN().to(DEVICE, DTYPE)
    x = rand(batch, 4, 84, 84)
    target = rand(batch, 18)

    def fn() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        loss = F.smooth_l1_loss(model(x), target)  # the paper clips the TD error to [-1, 1]: Huber loss
        loss.backward()
        return loss.detach()

    run(benchmark, fn, suite="dqn", case="dqn.nature.learner", batch=batch, source="Nature DQN Methods",
        input_shape=list(x.shape))
