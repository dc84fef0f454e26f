"""What a suite uses inside a rank of a torchrun case: wrap the model for data parallelism and ask which
rank this is. Outside a process group every function leaves the model alone (rank 0 of 1).

A suite takes part in `milestones run --nproc N` by wrapping its model with `data_parallel(model)`
(DistributedDataParallel) or `fully_shard_model(...)` (FSDP2); the wrappers register the gradient each
step all-reduces, which the torchrun launcher (harness/launch/torchrun.py) then times on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _RankState:
    # scheme -> (gradient elements all-reduced per step, dtype), in registration order
    gradients: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def schemes(self) -> list[str]:
        return list(self.gradients)


_STATE = _RankState()


def active() -> bool:
    """Whether this process is a rank of a process group with more than one member."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def register_gradients(params: Iterable[Any], scheme: str) -> None:
    """Note the gradient a scheme all-reduces each step: the harness times an all-reduce of that size."""
    ps = [p for p in params if p.requires_grad]
    n, dtype = _STATE.gradients.get(scheme, (0, "float32"))
    if ps:
        dtype = str(ps[0].dtype).replace("torch.", "")
    _STATE.gradients[scheme] = (n + sum(p.numel() for p in ps), dtype)


def data_parallel(model, **ddp_kwargs: Any):
    """DistributedDataParallel(model) under a process group of several ranks; `model` itself otherwise."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    register_gradients(model.parameters(), "ddp")
    p = next(model.parameters())
    ids = [p.device.index] if p.device.type == "cuda" else None
    return DDP(model, device_ids=ids, **ddp_kwargs)


def fully_shard_model(model, block_types: tuple[type, ...], *, reshard_after_forward: bool = True):
    """FSDP2 (torch.distributed.fsdp.fully_shard): each block of `block_types`, then the root.

    For models whose parameters, gradients and optimizer state do not fit one device: every rank
    holds 1/N of each. Works with gloo on CPUs and NCCL on GPUs. Outside a process group: `model`.
    """
    if not active():
        return model
    from torch.distributed.fsdp import fully_shard

    register_gradients(model.parameters(), "fsdp")
    for m in model.modules():
        if isinstance(m, block_types):
            fully_shard(m, reshard_after_forward=reshard_after_forward)
    fully_shard(model, reshard_after_forward=reshard_after_forward)
    return model
