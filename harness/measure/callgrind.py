"""Instruction counts under valgrind's callgrind: a CPU measure that the machine's load does not move.

A process started under `valgrind --tool=callgrind --collect-atstart=no` runs with collection off;
`count_instructions` turns it on (torch's `_valgrind_toggle`) around N calls of a step, then dumps
(`_valgrind_toggle_and_dump_stats`) and reads the dump's total of executed instructions (Ir). The
count is of instructions, not time: scheduling, frequency and other processes do not change it; what
the code does (more layers, a slower kernel choice, extra copies) does. It is blind to what costs time
without costing instructions: cache and memory-bandwidth effects, lock waits, and all GPU time.

Importing torch under valgrind is very slow (minutes), so one valgrind process serves many steps
(`serve`): each step is counted in turn, each with its own dump file. Where it can (Linux on x86-64),
the process also starts with callgrind's instrumentation off (`--instr-atstart=no`) and turns it on
only when it first counts a step (`start_instrumentation`): valgrind then runs the torch import and
the model's construction about 3x faster, and the counted instructions are the same.
"""

from __future__ import annotations

import ctypes
import gc
import mmap
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

OUT_ENV = "MILESTONES_CALLGRIND_OUT"   # the --callgrind-out-file of the valgrind process we run in
_TOTAL = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


class CallgrindUnavailable(RuntimeError):
    """valgrind is missing, the platform is unsupported, or this process is not under callgrind."""


def valgrind_path() -> str | None:
    return shutil.which("valgrind")


def valgrind_command(out_file: Path, argv: Sequence[str], *, late_instrumentation: bool = False) -> list[str]:
    """The command that runs `argv` under callgrind with collection off until toggled on (and, with
    `late_instrumentation`, instrumentation off until `start_instrumentation`)."""
    vg = valgrind_path()
    if vg is None:
        raise CallgrindUnavailable("valgrind is not installed (needed for instruction counts)")
    late = ["--instr-atstart=no"] if late_instrumentation else []
    return [*_no_aslr(), vg, "--tool=callgrind", "--collect-atstart=no", *late, "--dump-instr=no", "--dump-line=no",
            "--compress-strings=no", "--combine-dumps=no", f"--callgrind-out-file={out_file}", *argv]


# A valgrind client request, as valgrind.h's VALGRIND_DO_CLIENT_REQUEST_EXPR emits it on x86-64: rotations
# of rdi by 3+13+61+51 bits (a no-op natively, the marker valgrind looks for), then `xchg rbx,rbx`, with
# rax -> the request's six words and the default in rdx, which valgrind replaces with the answer. As a
# function: (words, default) -> rdx. torch exposes callgrind's collection toggle but not this request, and
# compiling valgrind.h would need a C compiler on every user's machine.
_X86_64_CLIENT_REQUEST = bytes.fromhex(
    "4889f8" "4889f2"                       # mov rax, rdi; mov rdx, rsi
    "48c1c703" "48c1c70d" "48c1c73d" "48c1c733"  # rol rdi, 3; 13; 61; 51
    "4887db"                                # xchg rbx, rbx
    "4889d0" "c3")                          # mov rax, rdx; ret
RUNNING_ON_VALGRIND = 0x1001                # valgrind.h: VG_USERREQ__RUNNING_ON_VALGRIND
START_INSTRUMENTATION = 0x43540004          # callgrind.h: VG_USERREQ_TOOL_BASE('C','T') + 4
_request_fn: Any = None
_request_page: mmap.mmap | None = None
_instrumenting = False


def client_request(request: int, default: int = 0) -> int | None:
    """Send valgrind a client request; natively the answer is `default`. None: not possible here."""
    global _request_fn, _request_page
    if _request_fn is None:
        if sys.platform != "linux" or platform.machine() != "x86_64":
            return None
        try:
            page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        except (OSError, ValueError, AttributeError):  # a W^X policy, or no PROT_EXEC
            return None
        page.write(_X86_64_CLIENT_REQUEST)
        proto = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong), ctypes.c_ulong)
        _request_fn, _request_page = proto(ctypes.addressof(ctypes.c_char.from_buffer(page))), page
    words = (ctypes.c_ulong * 6)(request, 0, 0, 0, 0, 0)
    return int(_request_fn(words, default))


def late_instrumentation_works() -> bool:
    """Whether a valgrind process here can turn its instrumentation on itself: the request runs natively
    (checked in a child process, so that a platform that refuses it cannot crash this one)."""
    code = ("import sys; from milestones.harness.measure import callgrind as c; "
            "sys.exit(0 if c.client_request(c.RUNNING_ON_VALGRIND, 7) == 7 else 1)")
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_instrumentation() -> None:
    """Turn callgrind's instrumentation on (a no-op when it is on already)."""
    global _instrumenting
    if _instrumenting:
        return
    if client_request(RUNNING_ON_VALGRIND, 0) == 0:
        raise CallgrindUnavailable("this process is not running under valgrind")
    client_request(START_INSTRUMENTATION, 0)
    _instrumenting = True


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
    start_instrumentation()
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
    total = parse_total(parts[-1].read_bytes())
    if total == 0:
        raise CallgrindUnavailable("callgrind counted no instructions: its instrumentation was off "
                                   "(started with --instr-atstart=no on a platform that cannot turn it on)")
    return total
