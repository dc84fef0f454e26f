"""Execution modes: how the harness runs a declared step the way GPU users run it.

A mode is a precision, an optional channels-last memory format and an optional torch.compile, all owned
by the harness and applied to every step of every suite (suites keep declaring plain steps):

    cast            today's --dtype: the whole model and its inputs cast to the case's dtype (the default;
                    its records and slugs are those of every run before modes existed)
    fp32 / tf32     float32 weights; TF32 tensor-core matmuls and convolutions off / on (CUDA)
    amp-bf16        float32 master weights, autocast to bfloat16 around each forward
    amp-fp16        the same in float16, with a GradScaler where the step declares its loss and optimizer
    +channels-last  the model (and the step's declared 4-D inputs) in NHWC memory format
    +compile[:M]    model.compile in place (M: default, max-autotune, reduce-overhead); @BACKEND picks the
                    torch.compile backend (default inductor; eager and aot_eager are cheap, for tests)

Canonical text form: PRECISION[+channels-last][+compile[:MODE]][@BACKEND], e.g. `amp-bf16+channels-last`,
`fp32+compile:max-autotune@aot_eager`. It parses back to the same Mode.

Imports nothing above measure/; torch only inside the functions that apply a mode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from milestones.harness.measure.plan import SpeedPlan, Step
from milestones.harness.records import DEFAULT_MODE

PRECISIONS = ("cast", "fp32", "tf32", "amp-bf16", "amp-fp16")
COMPILE_MODES = ("off", "default", "max-autotune", "reduce-overhead")
# Backends torch.compile ships with; a custom registered backend is not something a record could name
# reproducibly, so only these are accepted.
BACKENDS = ("inductor", "eager", "aot_eager", "aot_eager_decomp_partition", "cudagraphs")
CHANNELS_LAST = "channels-last"
DEFAULT = DEFAULT_MODE

# What the field runs (TorchBench precisions, timm's --amp / --channels-last / --torchcompile): the
# eager float32 reference with and without TF32, mixed precision in NHWC, and mixed precision compiled.
PRESETS: dict[str, tuple[str, ...]] = {
    "field": ("fp32", "tf32", "amp-bf16+channels-last", "amp-bf16+compile"),
    # The CPU subset: no TF32 or float16 autocast on a CPU.
    "cpu": ("fp32", "fp32+compile", "amp-bf16"),
}

# The peak-rate table's dtype for each precision (harness/measure/peaks.py); cast uses the case's dtype.
PEAK_DTYPE = {"fp32": "float32", "tf32": "tfloat32", "amp-bf16": "bfloat16", "amp-fp16": "float16"}
AUTOCAST_DTYPE = {"amp-bf16": "bfloat16", "amp-fp16": "float16"}


class ModeError(ValueError):
    """Text that is not a mode; the message is one line with a "did you mean" where it helps."""


class ModeUnsupported(Exception):
    """A mode this step or device cannot run: the case becomes `skipped` with this one-line reason."""


def _did_you_mean(word: str, options: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Mode:
    precision: str = "cast"
    channels_last: bool = False
    compile: str = "off"
    backend: str = "inductor"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ModeError(f"unknown precision {self.precision!r}{_did_you_mean(self.precision, PRECISIONS)}")
        if self.compile not in COMPILE_MODES:
            raise ModeError(f"unknown compile mode {self.compile!r}{_did_you_mean(self.compile, COMPILE_MODES)}")
        if self.backend not in BACKENDS:
            raise ModeError(f"unknown compile backend {self.backend!r}{_did_you_mean(self.backend, BACKENDS)}; "
                            f"choose from {', '.join(BACKENDS)}")
        if self.compile == "off" and self.backend != "inductor":
            raise ModeError(f"backend @{self.backend} needs +compile")

    @property
    def compiled(self) -> bool:
        return self.compile != "off"

    @property
    def autocast_dtype(self) -> str | None:
        return AUTOCAST_DTYPE.get(self.precision)

    def peak_dtype(self, case_dtype: str) -> str:
        return PEAK_DTYPE.get(self.precision, case_dtype)

    def __str__(self) -> str:
        parts = [self.precision]
        if self.channels_last:
            parts.append(CHANNELS_LAST)
        if self.compiled:
            parts.append("compile" if self.compile == "default" else f"compile:{self.compile}")
        text = "+".join(parts)
        return text if self.backend == "inductor" else f"{text}@{self.backend}"

    @classmethod
    def parse(cls, text: str) -> Mode:
        if not isinstance(text, str) or not text.strip():
            raise ModeError("a mode must be a non-empty string such as 'amp-bf16+channels-last'")
        body, _, backend = text.strip().partition("@")
        precision, channels_last, compile_mode = None, False, "off"
        words = PRECISIONS + (CHANNELS_LAST, "compile") + tuple(f"compile:{m}" for m in COMPILE_MODES[1:])
        for part in body.split("+"):
            if part in PRECISIONS:
                if precision is not None:
                    raise ModeError(f"mode {text!r} names two precisions ({precision}, {part})")
                precision = part
            elif part == CHANNELS_LAST:
                channels_last = True
            elif part == "compile" or part.startswith("compile:"):
                compile_mode = part.partition(":")[2] or "default"
                if compile_mode == "off":
                    raise ModeError(f"mode {text!r}: leave out +compile instead of compile:off")
            else:
                raise ModeError(f"mode {text!r}: unknown part {part!r}{_did_you_mean(part, words)}; parts are a "
                                f"precision ({', '.join(PRECISIONS)}), {CHANNELS_LAST}, compile[:"
                                f"{'|'.join(COMPILE_MODES[1:])}] and @BACKEND")
        return cls(precision or "cast", channels_last, compile_mode, backend or "inductor")


def parse_modes(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated modes and presets as canonical mode strings, presets expanded, duplicates dropped."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ModeError(f"a mode must be a string, not {item!r}")
        item = item.strip()
        if not item:
            continue
        names = PRESETS.get(item, (item,))
        for name in names:
            try:
                out.append(str(Mode.parse(name)))
            except ModeError as e:
                if item.isalpha() and "+" not in item and item not in PRECISIONS:
                    hint = _did_you_mean(item, tuple(PRESETS) + PRECISIONS)
                    raise ModeError(f"unknown mode or preset {item!r}{hint}; presets: "
                                    f"{', '.join(PRESETS)}") from None
                raise e from None
    if not out:
        raise ModeError("at least one mode")
    return tuple(dict.fromkeys(out))


# ------------------------------------------------------------------------------------------- applying
def unsupported_reason(mode: Mode, device: str, plan: SpeedPlan) -> str | None:
    """Why this plan cannot run in `mode` on `device`, or None."""
    on_gpu = device.startswith("cuda")
    if mode.precision == "tf32" and not on_gpu:
        return "tf32 is a CUDA tensor-core format: on a CPU it would be plain fp32 under another name"
    if mode.precision == "amp-fp16" and not on_gpu:
        return "amp-fp16 is a GPU mode (CPUs have no fast float16 matmul); use amp-bf16 on a CPU"
    if mode.precision == "amp-bf16" and on_gpu:
        import torch

        if not torch.cuda.is_bf16_supported():
            return f"{torch.cuda.get_device_name()} has no bfloat16 support"
    if mode.channels_last:
        if plan.model is None:
            return "channels-last applies to a conv net's model: this plan declares no model"
        import torch

        if not any(isinstance(m, torch.nn.Conv2d) for m in plan.model.modules()):
            return f"channels-last applies to conv nets: {type(plan.model).__name__} has no 2-D convolution"
    return None


@contextlib.contextmanager
def precision_flags(mode: Mode) -> Iterator[None]:
    """TF32 off (fp32) or on (tf32) for matmuls and cuDNN convolutions, restored afterwards (the in-process
    launcher of tests and asv must not leak it into the next case)."""
    import torch

    if mode.precision not in ("fp32", "tf32"):
        yield
        return
    on = mode.precision == "tf32"
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    torch.set_float32_matmul_precision("high" if on else "highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])


def _to_channels_last(t: Any) -> bool:
    """A declared 4-D input converted in place (the step's closure holds this very tensor object)."""
    import torch

    if isinstance(t, torch.Tensor) and t.dim() == 4:
        t.data = t.data.contiguous(memory_format=torch.channels_last)
        return True
    return False


def _structured_step(step: Step, device_type: str, dtype: Any, scaler: Any) -> Callable[[], Any]:
    """A training step from its declared loss and optimizer: zero_grad, forward under autocast, backward
    outside it (as the AMP recipe says), and with a GradScaler for float16."""
    import torch

    loss_fn, opt = step.loss, step.optimizer

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=dtype):
            loss = loss_fn()
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    return train


def _autocast_around(fn: Callable[[], Any], device_type: str, dtype: Any) -> Callable[[], Any]:
    import torch

    def step() -> Any:
        with torch.autocast(device_type, dtype=dtype):
            return fn()

    return step


def apply_eager(plan: SpeedPlan, mode: Mode, device: str) -> tuple[SpeedPlan, dict[str, Any]]:
    """The plan with the mode's precision and memory format applied (compile comes later, after the FLOPs
    are counted eagerly); returns it and what was done, for the record."""
    import torch

    info: dict[str, Any] = {"mode": str(mode), "precision": mode.precision, "channels_last": mode.channels_last,
                            "compile": mode.compile, "backend": mode.backend if mode.compiled else None}
    if mode.precision in ("fp32", "tf32"):
        info["tf32"] = mode.precision == "tf32"
    if mode.channels_last:
        plan.model.to(memory_format=torch.channels_last)
        converted = sum(_to_channels_last(t) for s in plan.steps for t in s.inputs)
        info["channels_last_inputs"] = converted
    dt_name = mode.autocast_dtype
    if dt_name is None:
        return plan, info
    dtype = getattr(torch, dt_name)
    steps, how = [], {}
    for s in plan.steps:
        dev = (s.device or device).split(":")[0]
        if s.loss is not None and s.optimizer is not None:
            scaler = torch.amp.GradScaler(dev) if dt_name == "float16" else None
            fn = _structured_step(s, dev, dtype, scaler)
            how[s.label] = "autocast forward, backward outside" + (", GradScaler" if scaler is not None else "")
        else:
            fn = _autocast_around(s.fn, dev, dtype)
            how[s.label] = "autocast around the whole step" + (
                "; no GradScaler (the step declares no loss and optimizer: "
                "an inference step needs none, a training step runs unscaled)" if dt_name == "float16" else "")
        steps.append(dataclasses.replace(s, fn=fn))
    info["autocast"] = how
    return dataclasses.replace(plan, steps=tuple(steps)), info


def apply_compile(plan: SpeedPlan, mode: Mode) -> tuple[SpeedPlan, dict[str, Any]]:
    """torch.compile: the plan's model in place (the steps' closures then call the compiled module), or
    each step function when the plan declares no model."""
    import torch

    kw: dict[str, Any] = {"backend": mode.backend}
    if mode.compile != "default":
        kw["mode"] = mode.compile
    if plan.model is not None and hasattr(plan.model, "compile"):
        plan.model.compile(**kw)
        return plan, {"compiled": "model in place (nn.Module.compile)"}
    steps = tuple(dataclasses.replace(s, fn=torch.compile(s.fn, **kw)) for s in plan.steps)
    return dataclasses.replace(plan, steps=steps), {"compiled": "each step function (torch.compile)"}


def dynamo_counts() -> dict[str, int]:
    """torch._dynamo's running totals: frames compiled, unique graphs, graph breaks."""
    from torch._dynamo.utils import counters

    return {"frames": int(counters["frames"].get("ok", 0)),
            "graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


def first_call(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    """Seconds of one call, synchronised: under compile, tracing + compiling + the first step."""
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0
