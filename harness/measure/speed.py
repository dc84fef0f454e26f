"""The standard speed measurement of declared steps: time, throughput, FLOPs, FLOP/s, MFU, memory, energy
and (with profiling) kernels. Every speed case is measured here, alike; suites only declare steps.

Imports only measure/ modules and the record types below it; never the context, worker or runner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from milestones.harness.measure import canary, memory, modes, peaks
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
    mode: str = modes.DEFAULT  # an execution mode's canonical text (measure/modes.py)

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
    mode = modes.Mode.parse(ms.mode)
    timing, compile_cost = ms.timing, None
    if mode.compiled:
        compile_cost, timing = _compile_warmup(step, device, ms.timing)
        if on_gpu:  # the steady state's peak, not the compiler's (max-autotune benchmarks kernels)
            memory.reset_cuda_peaks(torch.device(device))
    t = time_fn(step.fn, device, timing)
    # Its own loop after timing: the timed loop of a small step is shorter than the counter's update period.
    energy = measure_energy(step.fn, device, _device_index(device) if on_gpu else 0)
    samples = t.samples_s

    def add(name: str, unit: str, hib: bool, values: Any, note: str | None = None) -> None:
        metrics[f"{label}.{name}"] = Metric.from_values(f"{label}.{name}", unit, hib, values, note=note)

    add("step_time", "s", False, samples, step.note)
    if compile_cost is not None:
        metrics.update(_compile_metrics(label, compile_cost, samples))
        artifacts[f"{label}.compile"] = compile_cost
    metrics.update(contention_metrics(label, t))
    add("throughput", f"{step.item_unit}/s", True, [step.items_per_step / s for s in samples if s > 0])
    if step.bytes_per_step:
        add("bytes_per_s", "B/s", True, [step.bytes_per_step / s for s in samples if s > 0],
            note=f"{step.bytes_per_step:.0f} B per step, by the suite's model of the step's memory traffic")
    if flops:
        metrics[f"{label}.flops"] = Metric.single(f"{label}.flops", "FLOP", False, flops)
        achieved = [flops / s for s in samples if s > 0]
        add("flops_per_s", "FLOP/s", True, achieved)
        peak, src = peaks.peak_flops(device_name(device), mode.peak_dtype(ms.dtype), ms.peak_tflops)
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
    warm = t.warmup_iters + (compile_cost["warmup_iters"] if compile_cost else 0)
    artifacts[f"{label}.timing"] = {"warmup_iters": warm, "timer": t.timer, "n": len(samples)}
    if ms.profile:
        artifacts[f"{label}.kernels"] = kernel_table(step.fn, device)
    return metrics, artifacts


def _compile_warmup(step: Step, device: str, s: TimingSettings) -> tuple[dict[str, Any], TimingSettings]:
    """A compiled step's first call (tracing, compiling, one step) and its warm-up, timed apart from the
    steady state; dynamo's counters before, after the first call, and after the warm-up. Returns that and
    the timing settings for the steady-state loop (its warm-up already done here)."""
    import torch

    sync = (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else (lambda: None)
    c0 = modes.dynamo_counts()
    first = modes.first_call(step.fn, sync)
    c1 = modes.dynamo_counts()
    n = max(1, s.warmup_iters)
    for _ in range(n):
        step.fn()
    sync()
    cost = {"first_step_s": first, "before": c0, "after_first": c1, "after_warmup": modes.dynamo_counts(),
            "warmup_iters": 1 + n}
    return cost, dataclasses.replace(s, warmup_iters=0, warmup_time=0.0)


def _compile_metrics(label: str, cost: dict[str, Any], samples: tuple[float, ...]) -> dict[str, Metric]:
    """Compile cost on its own, never mixed into step_time: seconds, first-step latency, graphs, graph
    breaks, and graphs compiled after the first call (recompiles, during warm-up or timing)."""
    import statistics

    from milestones.harness.measure.modes import dynamo_counts

    c0, c1, c2 = cost["before"], cost["after_first"], cost["after_warmup"]
    c3 = cost["after_timing"] = dynamo_counts()
    med = statistics.median(samples) if samples else 0.0
    first = cost["first_step_s"]
    out = {
        f"{label}.first_step_s": Metric.single(f"{label}.first_step_s", "s", False, first,
                                               note="first call of the compiled step: tracing, compiling, one step"),
        f"{label}.compile_s": Metric.single(f"{label}.compile_s", "s", False, max(0.0, first - med),
                                            note="first call minus the steady-state median step"),
        f"{label}.graphs": Metric.single(f"{label}.graphs", "count", False, c3["graphs"] - c0["graphs"],
                                         note="unique graphs torch._dynamo compiled for this step"),
        f"{label}.graph_breaks": Metric.single(f"{label}.graph_breaks", "count", False,
                                               c3["graph_breaks"] - c0["graph_breaks"]),
        f"{label}.recompiles": Metric.single(
            f"{label}.recompiles", "count", False, c3["graphs"] - c1["graphs"],
            note=f"graphs compiled after the first call; {c3['graphs'] - c2['graphs']} during the timed loop"),
    }
    if c3["frames"] == c0["frames"]:
        out[f"{label}.graphs"] = Metric.single(
            f"{label}.graphs", "count", False, 0,
            note="torch._dynamo compiled no frame for this step: its timings are eager")
    return out


@contextmanager
def in_mode(plan: SpeedPlan, ms: MeasureSettings, artifacts: dict[str, Any], info: dict[str, Any]) -> Iterator[SpeedPlan]:
    """The plan in the settings' execution mode, its precision flags held while the block runs; what was
    done goes into `info["execution_mode"]`. Shared by the standard measurement and `ab`'s burst worker.

    Raises modes.ModeUnsupported when the mode cannot run this plan on this device."""
    mode = modes.Mode.parse(ms.mode)
    if mode != modes.Mode():
        why = modes.unsupported_reason(mode, ms.device, plan)
        if why:
            raise modes.ModeUnsupported(why)
    with modes.precision_flags(mode):
        if mode != modes.Mode():
            plan, info["execution_mode"] = modes.apply_eager(plan, mode, ms.device)
        if mode.compiled:
            # FLOPs are counted on the eager step: FlopCounterMode cannot see inside a compiled graph.
            steps = tuple(_with_eager_flops(s, artifacts) for s in plan.steps)
            plan, how = modes.apply_compile(dataclasses.replace(plan, steps=steps), mode)
            info["execution_mode"].update(how)
        yield plan


def measure_plan(plan: SpeedPlan, ms: MeasureSettings) -> tuple[dict[str, Metric], dict[str, Any], dict[str, Any]]:
    """Measure every step of a plan in order, in the settings' execution mode; add the model's parameter
    count and the suite's own figures. Returns (metrics, artifacts, info).

    Raises modes.ModeUnsupported when the mode cannot run this plan on this device (a skipped case)."""
    metrics: dict[str, Metric] = {}
    artifacts: dict[str, Any] = dict(plan.artifacts)
    info = dict(plan.info)
    before = [] if ms.on_gpu else canary.sample()
    with in_mode(plan, ms, artifacts, info) as plan:
        steps = plan.steps
        for step in steps:
            m, a = measure_step(step, ms)
            metrics.update(m)
            artifacts.update(a)
        recompiled = [s.label for s in steps if (c := artifacts.get(f"{s.label}.compile"))
                      and c["after_timing"]["graphs"] > c["after_warmup"]["graphs"]]
        if recompiled:  # the timed loop paid for compiling: its samples are not a steady state
            info["execution_mode"]["recompiled_during_timing"] = recompiled
    if not ms.on_gpu:
        info["canary"] = canary.record(before, canary.sample())
    if plan.model is not None and "params" not in plan.metrics:
        metrics["params"] = Metric.single("params", "count", False, count_params(plan.model))
    metrics.update(plan.metrics)
    if plan.derive is not None:
        metrics.update(plan.derive(metrics))
    return metrics, artifacts, info


def _with_eager_flops(step: Step, artifacts: dict[str, Any]) -> Step:
    if step.flops is not None or not step.count_flops:
        return step
    if step.setup is not None:
        step.setup()
    flops, per_op = count_flops(step.fn)
    artifacts[f"{step.label}.flops_by_op"] = per_op
    return dataclasses.replace(step, flops=flops, count_flops=False)


def classifier_plan(model: Any, opt: Any, x: Any, y: Any, batch_size: int, *, item_unit: str = "images",
                    info: dict[str, Any] | None = None) -> SpeedPlan:
    """The image classifiers' speed case: a cross-entropy training step, then inference, on one batch."""
    import torch
    import torch.nn.functional as F

    def loss() -> Any:
        return F.cross_entropy(model(x), y)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()

    @torch.no_grad()
    def infer_step() -> None:
        model(x)

    return SpeedPlan(steps=(Step("train", train_step, batch_size, item_unit, setup=model.train, inputs=(x,),
                                 loss=loss, optimizer=opt),
                            Step("infer", infer_step, batch_size, item_unit, setup=model.eval, inputs=(x,))),
                     model=model, info=info or {})
