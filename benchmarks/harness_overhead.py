"""Benchmarks of the harness itself (issue 2's goals), not tests:

1. timing overhead per iteration on the CPU (goal < 20 µs): time an empty function with the harness
   loop and with the tightest possible bare loop;
2. the harness's median ResNet-50 train-step time against a plain hand-written loop over the same model
   in the same process (goal: within 3%), interleaved in rounds so drift hits both alike.

    python benchmarks/harness_overhead.py [--rounds 5] [--batch 8] [--size 224]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

# The module, not its names: asv takes any top-level `time_*` name in benchmarks/ for a benchmark.
from milestones.harness.measure import timing
from milestones.suites.resnet import ResNetConfig, build


def overhead_us(n: int = 200_000) -> tuple[float, float]:
    noop = lambda: None  # noqa: E731
    r = timing.time_cpu(noop, timing.TimingSettings(warmup_iters=10, warmup_time=0, min_iters=n, max_iters=n, min_time=0))
    per_sample = statistics.median(r.samples_s) * 1e6
    t0 = time.perf_counter_ns()
    for _ in range(n):
        noop()
    bare = (time.perf_counter_ns() - t0) / n / 1e3
    # Per-iteration cost of the harness loop, measured as wall time of the whole loop.
    t0 = time.perf_counter_ns()
    timing.time_cpu(noop, timing.TimingSettings(warmup_iters=0, warmup_time=0, min_iters=n, max_iters=n, min_time=0))
    loop = (time.perf_counter_ns() - t0) / n / 1e3
    return per_sample, loop - bare


def resnet_compare(rounds: int, batch: int, size: int, iters: int) -> tuple[list[float], list[float]]:
    torch.manual_seed(0)
    cfg = ResNetConfig("imagenet", 50, image_size=size)
    model = build(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 1000, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    harness_medians, plain_medians = [], []
    for _ in range(rounds):
        r = timing.time_cpu(step, timing.TimingSettings(warmup_iters=1, warmup_time=0, min_iters=iters, max_iters=iters,
                                          min_time=0))
        harness_medians.append(statistics.median(r.samples_s))
        plain = []
        step()
        for _ in range(iters):
            t0 = time.perf_counter()
            step()
            plain.append(time.perf_counter() - t0)
        plain_medians.append(statistics.median(plain))
    return harness_medians, plain_medians


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    sample_us, loop_us = overhead_us()
    print(f"timing overhead: median recorded sample of an empty call {sample_us:.3f} µs; "
          f"harness loop cost per iteration beyond a bare loop {loop_us:.3f} µs")
    h, p = resnet_compare(a.rounds, a.batch, a.size, a.iters)
    hm, pm = statistics.median(h), statistics.median(p)
    print(f"ResNet-50 train step, batch {a.batch}, {a.size}x{a.size}, {torch.get_num_threads()} threads, "
          f"{a.rounds} interleaved rounds of {a.iters}:")
    print(f"  harness median {hm * 1e3:.1f} ms, plain loop median {pm * 1e3:.1f} ms, ratio {hm / pm:.4f} "
          f"(per-round ratios {', '.join(f'{x / y:.3f}' for x, y in zip(h, p))})")


if __name__ == "__main__":
    main()
