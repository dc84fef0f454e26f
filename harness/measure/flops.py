"""FLOPs by `torch.utils.flop_counter.FlopCounterMode`, counted once, outside any timed loop.

FlopCounterMode counts matrix multiplies and convolutions (2 FLOPs per multiply-add) and works on
the meta device, so even a 175B model costs no memory to count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """Total FLOPs of one call of `fn`, and FLOPs per operator."""
    from torch.utils.flop_counter import FlopCounterMode

    mode = FlopCounterMode(display=False)
    with mode:
        fn()
    per_op: dict[str, int] = {}
    for _module, ops in mode.get_flop_counts().items():
        for op, n in ops.items():
            per_op[str(op)] = max(per_op.get(str(op), 0), int(n))  # "Global" holds the totals
    return int(mode.get_total_flops()), per_op


def count_params(model: Any, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
