"""The standard speed measurement of one step function: time, throughput, FLOPs, FLOP/s, MFU,
memory, energy and (with --profile) kernels. Suites call this so every speed case measures alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from milestones.harness.context import CaseContext
from milestones.harness.measure import memory, peaks
from milestones.harness.measure.energy import EnergyMeter
from milestones.harness.measure.flops import count_flops
from milestones.harness.measure.kernels import kernel_table
from milestones.harness.measure.timing import contention_metrics, time_fn
from milestones.harness.records import Metric


def device_name(ctx: CaseContext) -> str | None:
    if ctx.on_gpu:
        import torch

        return torch.cuda.get_device_name(ctx.torch_device)
    return None


def measure_speed(ctx: CaseContext, step: Callable[[], Any], *, label: str, items_per_step: float,
                  item_unit: str = "samples", flops: int | None = None,
                  count: bool = True) -> tuple[dict[str, Metric], dict[str, Any]]:
    """Measure `step` (one training or inference step). Returns (metrics, artifacts).

    FLOPs are counted once with FlopCounterMode before timing (that call also serves as warm-up),
    unless `flops` is given or `count` is False.
    """
    metrics: dict[str, Metric] = {}
    artifacts: dict[str, Any] = {}
    if flops is None and count:
        flops, per_op = count_flops(step)
        artifacts[f"{label}.flops_by_op"] = per_op
    if ctx.on_gpu:
        memory.reset_cuda_peaks(ctx.torch_device)
    with EnergyMeter(ctx.device, ctx.torch_device.index or 0 if ctx.on_gpu else 0) as energy:
        t = time_fn(step, ctx.device, ctx.timing)
    samples = t.samples_s
    metrics[f"{label}.step_time"] = Metric.from_values(f"{label}.step_time", "s", False, samples)
    metrics.update(contention_metrics(label, t))
    metrics[f"{label}.throughput"] = Metric.from_values(
        f"{label}.throughput", f"{item_unit}/s", True, [items_per_step / s for s in samples if s > 0])
    if flops:
        metrics[f"{label}.flops"] = Metric.single(f"{label}.flops", "FLOP", False, flops)
        achieved = [flops / s for s in samples if s > 0]
        metrics[f"{label}.flops_per_s"] = Metric.from_values(f"{label}.flops_per_s", "FLOP/s", True, achieved)
        peak, src = peaks.peak_flops(device_name(ctx), ctx.case.dtype, ctx.peak_tflops)
        if peak:
            metrics[f"{label}.mfu"] = Metric.from_values(f"{label}.mfu", "fraction", True, [a / peak for a in achieved],
                                                         note=src)
        else:
            metrics[f"{label}.mfu"] = Metric.missing(f"{label}.mfu", "fraction", True, src)
    if ctx.on_gpu:
        pk = memory.cuda_peaks(ctx.torch_device)
        metrics[f"{label}.peak_mem_allocated"] = Metric.single(f"{label}.peak_mem_allocated", "B", False, pk["allocated"])
        metrics[f"{label}.peak_mem_reserved"] = Metric.single(f"{label}.peak_mem_reserved", "B", False, pk["reserved"])
    else:
        metrics[f"{label}.peak_rss"] = Metric.single(
            f"{label}.peak_rss", "B", False, memory.peak_rss_bytes(),
            note="peak RSS of the case process so far (includes Python and torch)")
    total_items = items_per_step * len(samples)
    if energy.joules is not None:
        metrics[f"{label}.energy_per_item"] = Metric.single(f"{label}.energy_per_item", "J", False,
                                                            energy.joules / total_items)
    else:
        metrics[f"{label}.energy_per_item"] = Metric.missing(f"{label}.energy_per_item", "J", False,
                                                             energy.why or "not measured")
    artifacts[f"{label}.timing"] = {"warmup_iters": t.warmup_iters, "timer": t.timer, "n": len(samples)}
    if ctx.profile:
        artifacts[f"{label}.kernels"] = kernel_table(step, ctx.device)
    return metrics, artifacts


def measure_classifier(ctx: CaseContext, model: Any, opt: Any, x: Any, y: Any, *,
                       item_unit: str = "images") -> tuple[dict[str, Metric], dict[str, Any]]:
    """The image classifiers' speed case: a cross-entropy training step, then inference, on one batch.

    Returns (metrics, artifacts) with `train.*`, `infer.*` and `params`.
    """
    import torch
    import torch.nn.functional as F

    from milestones.harness.measure.flops import count_params

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    @torch.no_grad()
    def infer_step() -> None:
        model(x)

    model.train()
    metrics, artifacts = measure_speed(ctx, train_step, label="train", items_per_step=ctx.batch_size,
                                       item_unit=item_unit)
    model.eval()
    m2, a2 = measure_speed(ctx, infer_step, label="infer", items_per_step=ctx.batch_size, item_unit=item_unit)
    metrics.update(m2)
    artifacts.update(a2)
    metrics["params"] = Metric.single("params", "count", False, count_params(model))
    return metrics, artifacts
