"""What a speed case declares: the steps to measure. The harness measures them (measure/speed.py), and the
asv bridge, torchrun lock-step, A/B rounds and instruction counts consume the same declaration.

Imports nothing from the harness: suites build these, measure/ reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Step:
    """One step to time: a training step, an inference batch, an optimizer update, an emulator frame.

    label: metric prefix (`train` gives train.step_time, train.throughput, ...).
    items_per_step / item_unit: what one call processes (images, tokens, transitions), for throughput.
    flops: analytic FLOPs of one call when the suite knows them better than FlopCounterMode; count_flops
    False for steps with no matmul/conv work worth counting (an emulator, an optimizer over fused buffers).
    device: where to time it when not the case's device (e.g. a CPU emulator step in a CUDA case).
    setup: called once before this step is measured (e.g. model.train() / model.eval()).
    bytes_per_step: the memory traffic of one call by the suite's own model of it (e.g. an optimizer's
    reads and writes), for a `<label>.bytes_per_s` rate; None: no rate.
    inputs: the tensors `fn` reads, which an execution mode may convert in place (channels-last for 4-D).
    loss / optimizer: a training step in structured form: `loss()` runs one forward pass and returns the
    loss; `fn` must equal zero_grad + loss().backward() + optimizer.step(). With them the harness builds
    the step itself under mixed precision (autocast around the forward only, a GradScaler for float16);
    without them an execution mode wraps `fn` whole (harness/measure/modes.py).
    """

    label: str
    fn: Callable[[], Any]
    items_per_step: float
    item_unit: str = "samples"
    flops: int | None = None
    count_flops: bool = True
    device: str | None = None
    setup: Callable[[], Any] | None = None
    note: str | None = None
    bytes_per_step: float | None = None
    inputs: tuple[Any, ...] = ()
    loss: Callable[[], Any] | None = None
    optimizer: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if (self.loss is None) != (self.optimizer is None):
            raise ValueError(f"step {self.label!r}: a structured training step declares both loss and optimizer")
        if not self.label or any(c in self.label for c in " /"):
            raise ValueError(f"step label {self.label!r} must be a non-empty name without spaces or slashes")
        if not self.items_per_step > 0:
            raise ValueError(f"step {self.label!r}: items_per_step must be positive, not {self.items_per_step}")


@dataclass(frozen=True)
class SpeedPlan:
    """A speed case's declaration: the steps (in order; the first is the headline step), the model whose
    parameters are counted, and whatever figures the suite computed itself (e.g. bytes an optimizer moves).

    derive: called once with the measured metrics after every step is timed, for figures defined on them
    (e.g. the ratio of two steps' median times); returns more metrics.
    """

    steps: tuple[Step, ...]
    model: Any = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    derive: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        if not self.steps:
            raise ValueError("a speed plan needs at least one step")
        labels = [s.label for s in self.steps]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"step labels must be unique: {', '.join(dup)}")

    def step(self, label: str | None = None) -> Step:
        """The step called `label`, or the headline (first) step."""
        if label is None:
            return self.steps[0]
        for s in self.steps:
            if s.label == label:
                return s
        raise KeyError(f"no step {label!r}; steps: {', '.join(s.label for s in self.steps)}")
