"""Peak memory. CUDA: the caching allocator's peaks after a reset. CPU: the case process's peak RSS
(one process per case keeps it clean; it includes the interpreter and torch, which the record says)."""

from __future__ import annotations

import resource
import sys
from typing import Any


def peak_rss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)  # Linux reports KiB, macOS bytes


def reset_cuda_peaks(device: Any = None) -> None:
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)


def cuda_peaks(device: Any = None) -> dict[str, int]:
    import torch

    torch.cuda.synchronize(device)
    return {"allocated": int(torch.cuda.max_memory_allocated(device)),
            "reserved": int(torch.cuda.max_memory_reserved(device))}
