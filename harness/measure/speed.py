"""The standard speed measurement of declared steps: time, throughput, FLOPs, FLOP/s, MFU, memory, energy
and (with profiling) kernels. Every speed case is measured here, alike; suites only declare steps.

Imports only measure/ modules and the record types below it; never the context, worker or runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from milestones.harness.measure import canary, memory, peaks
from milestones.harness.measure.energy import measure_energy
from milestones.harness.measure.flops import count_flops, count_params
from milestones.harness.measure.kernels import kernel_table
from milestones.harness.measure.plan import SpeedPlan, Step
from milestones.harness.measure.timing import TimingSettings, contention_metrics, time_fn
from milestones.harness.records import Metric


@dataclass(frozen=True)
class MeasureSettings:
    """How to measure, decided by the runner once per case."""

    device: str = "cpu"
    dtype: str = "float32"
    timing: TimingSettings = TimingSettings()
    profile: bool = False
    peak_tflops: float | None = None

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


def device_name(device: str) -> str | None:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return None


def _device_index(device: str) -> int:
    return int(device.split(":")[1]) if ":" in device else 0


def measure_step(step: Step, ms: MeasureSettings) -> tuple[dict[str, Metric], dict[str, Any]]:
    """Measure one declared step. FLOPs are counted once with FlopCounterMode before timing (that call also
    serves as warm-up), unless the step gives them or opts out."""
    import torch

    label, device = step.label, step.device or ms.device
    on_gpu = device.startswith("cuda")
    metrics: dict[str, Metric] = {}
    artifacts: dict[str, Any] = {}
    if step.setup is not None:
        step.setup()
    flops = step.flops
    if flops is None and step.count_flops:
        flops, per_op = count_flops(step.fn)
        artifacts[f"{label}.flops_by_op"] = per_op
    if on_gpu:
        memory.reset_cuda_peaks(torch.device(device))
    t = time_fn(step.fn, device, ms.timing)
    # Its own loop after timing: the timed loop of a small step is shorter than the counter's update period.
    energy = measure_energy(step.fn, device, _device_index(device) if on_gpu else 0)
    samples = t.samples_s

    def add(name: str, unit: str, hib: bool, values: Any, note: str | None = None) -> None:
        metrics[f"{label}.{name}"] = Metric.from_values(f"{label}.{name}", unit, hib, values, note=note)

    add("step_time", "s", False, samples, step.note)
    metrics.update(contention_metrics(label, t))
    add("throughput", f"{step.item_unit}/s", True, [step.items_per_step / s for s in samples if s > 0])
    if step.bytes_per_step:
        add("bytes_per_s", "B/s", True, [step.bytes_per_step / s for s in samples if s > 0],
            note=f"{step.bytes_per_step:.0f} B per step, by the suite's model of the step's memory traffic")
    if flops:
        metrics[f"{label}.flops"] = Metric.single(f"{label}.flops", "FLOP", False, flops)
        achieved = [flops / s for s in samples if s > 0]
        add("flops_per_s", "FLOP/s", True, achieved)
        peak, src = peaks.peak_flops(device_name(device), ms.dtype, ms.peak_tflops)
        if peak:
            add("mfu", "fraction", True, [a / peak for a in achieved], note=src)
        else:
            metrics[f"{label}.mfu"] = Metric.missing(f"{label}.mfu", "fraction", True, src)
    if on_gpu:
        pk = memory.cuda_peaks(torch.device(device))
        metrics[f"{label}.peak_mem_allocated"] = Metric.single(f"{label}.peak_mem_allocated", "B", False,
                                                               pk["allocated"])
        metrics[f"{label}.peak_mem_reserved"] = Metric.single(f"{label}.peak_mem_reserved", "B", False,
                                                              pk["reserved"])
    else:
        metrics[f"{label}.peak_rss"] = Metric.single(
            f"{label}.peak_rss", "B", False, memory.peak_rss_bytes(),
            note="peak RSS of the case process so far (includes Python and torch)")
    if energy.joules is not None:
        period = f", counter update every {energy.update_period_s * 1e3:.0f} ms" if energy.update_period_s else ""
        metrics[f"{label}.energy_per_item"] = Metric.single(
            f"{label}.energy_per_item", "J", False, energy.joules / (step.items_per_step * energy.steps),
            note=f"NVML counter over {energy.steps} steps in {energy.window_s:.2f} s{period}")
    else:
        metrics[f"{label}.energy_per_item"] = Metric.missing(f"{label}.energy_per_item", "J", False,
                                                             energy.why or "not measured")
    artifacts[f"{label}.timing"] = {"warmup_iters": t.warmup_iters, "timer": t.timer, "n": len(samples)}
    if ms.profile:
        artifacts[f"{label}.kernels"] = kernel_table(step.fn, device)
    return metrics, artifacts


def measure_plan(plan: SpeedPlan, ms: MeasureSettings) -> tuple[dict[str, Metric], dict[str, Any], dict[str, Any]]:
    """Measure every step of a plan in order; add the model's parameter count and the suite's own figures.
    Returns (metrics, artifacts, info)."""
    metrics: dict[str, Metric] = {}
    artifacts: dict[str, Any] = dict(plan.artifacts)
    info = dict(plan.info)
    before = [] if ms.on_gpu else canary.sample()
    for step in plan.steps:
        m, a = measure_step(step, ms)
        metrics.update(m)
        artifacts.update(a)
    if not ms.on_gpu:
        info["canary"] = canary.record(before, canary.sample())
    if plan.model is not None and "params" not in plan.metrics:
        metrics["params"] = Metric.single("params", "count", False, count_params(plan.model))
    metrics.update(plan.metrics)
    if plan.derive is not None:
        metrics.update(plan.derive(metrics))
    return metrics, artifacts, info


def classifier_plan(model: Any, opt: Any, x: Any, y: Any, batch_size: int, *, item_unit: str = "images",
                    info: dict[str, Any] | None = None) -> SpeedPlan:
    """The image classifiers' speed case: a cross-entropy training step, then inference, on one batch."""
    import torch
    import torch.nn.functional as F

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    @torch.no_grad()
    def infer_step() -> None:
        model(x)

    return SpeedPlan(steps=(Step("train", train_step, batch_size, item_unit, setup=model.train),
                            Step("infer", infer_step, batch_size, item_unit, setup=model.eval)),
                     model=model, info=info or {})
