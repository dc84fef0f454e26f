"""Instruction counts under valgrind's callgrind: a CPU measure that the machine's load does not move.

A process started under `valgrind --tool=callgrind --collect-atstart=no` runs with collection off;
`count_instructions` turns it on (torch's `_valgrind_toggle`) around N calls of a step, then dumps
(`_valgrind_toggle_and_dump_stats`) and reads the dump's total of executed instructions (Ir). The
count is of instructions, not time: scheduling, frequency and other processes do not change it; what
the code does (more layers, a slower kernel choice, extra copies) does. It is blind to what costs time
without costing instructions: cache and memory-bandwidth effects, lock waits, and all GPU time.

Importing torch under valgrind is very slow (minutes), so one valgrind process serves many steps
(`serve`): each step is counted in turn, each with its own dump file.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

OUT_ENV = "MILESTONES_CALLGRIND_OUT"   # the --callgrind-out-file of the valgrind process we run in
_TOTAL = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


class CallgrindUnavailable(RuntimeError):
    """valgrind is missing, the platform is unsupported, or this process is not under callgrind."""


def valgrind_path() -> str | None:
    return shutil.which("valgrind")


def valgrind_command(out_file: Path, argv: Sequence[str]) -> list[str]:
    """The command that runs `argv` under callgrind with collection off until toggled on."""
    vg = valgrind_path()
    if vg is None:
        raise CallgrindUnavailable("valgrind is not installed (needed for instruction counts)")
    return [*_no_aslr(), vg, "--tool=callgrind", "--collect-atstart=no", "--dump-instr=no", "--dump-line=no",
            "--compress-strings=no", "--combine-dumps=no", f"--callgrind-out-file={out_file}", *argv]


def _no_aslr() -> list[str]:
    """`setarch <arch> -R`: address-space randomisation off, so pointer-keyed hashing and allocator
    placement repeat run to run. Empty where setarch is missing or not permitted (some containers)."""
    tool = shutil.which("setarch")
    if tool is None:
        return []
    prefix = [tool, os.uname().machine, "-R"]
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return prefix if ok else []


def parse_total(text: bytes) -> int:
    """The total instruction count (Ir) of one callgrind dump."""
    m = _TOTAL.findall(text)
    if not m:
        raise ValueError("no summary/totals line in the callgrind output")
    return int(m[-1])


def _dumps(out_file: Path) -> list[Path]:
    # callgrind names the dumps of one process <out>.<n> (n = 1, 2, ...) and the final one <out>.
    parts = [p for p in out_file.parent.glob(out_file.name + ".*") if p.suffix[1:].isdigit()]
    return sorted(parts, key=lambda p: int(p.suffix[1:]))


def count_instructions(step: Callable[[], Any], iters: int, warmup: int = 3) -> int:
    """Instructions executed by `iters` calls of `step`, counted by the callgrind this process runs
    under (started by `valgrind_command`). `warmup` calls first, uncounted: the first calls of a step
    run lazy initialisation (allocator pools, dispatch caches) that later calls do not."""
    import torch

    out = os.environ.get(OUT_ENV)
    if not out or not torch._C._valgrind_supported_platform():
        raise CallgrindUnavailable("not running under `milestones` callgrind (see valgrind_command)")
    if iters < 1:
        raise ValueError("iters must be >= 1")
    out_file = Path(out)
    for _ in range(warmup):
        step()
    before = len(_dumps(out_file))
    # Python's cyclic collector runs when allocation counters cross thresholds, i.e. at points that
    # depend on everything the process allocated before; a full collection walks every object (all of
    # torch's). Collect first and keep it off while counting, so the count is the step's alone.
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        torch._C._valgrind_toggle()
        for _ in range(iters):
            step()
        torch._C._valgrind_toggle_and_dump_stats()
    finally:
        if was_enabled:
            gc.enable()
    parts = _dumps(out_file)
    if len(parts) != before + 1:
        raise CallgrindUnavailable(f"expected one new callgrind dump, found {len(parts) - before}")
    return parse_total(parts[-1].read_bytes())
