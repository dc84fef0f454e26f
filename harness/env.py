"""Environment capture: what a result was measured on. Every record carries it.

Only an allow-list of environment variables is ever recorded, so tokens and secrets never reach a
record or a report.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

# Variables that change results (threading, allocator, determinism, device selection). Nothing else.
ENV_ALLOW_LIST = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG", "PYTORCH_CUDA_ALLOC_CONF", "NCCL_DEBUG", "NCCL_P2P_DISABLE", "NCCL_IB_DISABLE",
    "TORCH_CUDNN_V8_API_ENABLED", "MILESTONES_MACHINE_ID", "MILESTONES_SCALE", "CI",
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "note": "not a git checkout"}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def nvidia_gpus() -> dict[str, Any]:
    """Every NVIDIA GPU through nvidia-ml-py, or an explicit 'no NVIDIA driver' entry."""
    try:
        import pynvml
    except ImportError as e:
        return {"available": False, "reason": f"nvidia-ml-py not installed: {e}", "gpus": []}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return {"available": False, "reason": f"no NVIDIA driver (NVML: {e})", "gpus": []}
    try:
        def opt(fn, *a):
            try:
                v = fn(*a)
                return v.decode() if isinstance(v, bytes) else v
            except pynvml.NVMLError:
                return None

        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = opt(pynvml.nvmlDeviceGetMemoryInfo, h)
            cc = opt(pynvml.nvmlDeviceGetCudaComputeCapability, h)
            power = opt(pynvml.nvmlDeviceGetPowerManagementLimit, h)
            gpus.append({
                "index": i,
                "name": opt(pynvml.nvmlDeviceGetName, h),
                "uuid": opt(pynvml.nvmlDeviceGetUUID, h),
                "memory_total_bytes": None if mem is None else int(mem.total),
                "sm_clock_mhz": opt(pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM),
                "mem_clock_mhz": opt(pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_MEM),
                "max_sm_clock_mhz": opt(pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_SM),
                "power_limit_w": None if power is None else power / 1000.0,
                "compute_capability": None if cc is None else f"{cc[0]}.{cc[1]}",
                "temperature_c": opt(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU),
                "throttle_reasons": opt(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons, h),
                "other_processes": len(opt(pynvml.nvmlDeviceGetComputeRunningProcesses, h) or []),
            })
        return {"available": True, "driver": opt(pynvml.nvmlSystemGetDriverVersion),
                "cuda_driver_version": opt(pynvml.nvmlSystemGetCudaDriverVersion), "gpus": gpus}
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def torch_info() -> dict[str, Any]:
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    try:
        nccl = ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None
    except Exception:  # NCCL absent from some builds; its absence is the fact to record
        nccl = None
    return {
        "torch": torch.__version__.split("+")[0], "torch_full": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": cudnn, "nccl": nccl,
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
    }


def machine_hygiene() -> dict[str, Any]:
    """What could bias a measurement: load, frequency governor. Read, never changed."""
    out: dict[str, Any] = {}
    try:
        out["loadavg"] = list(os.getloadavg())
    except OSError:
        out["loadavg"] = None
    gov = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    out["cpu_governor"] = gov.read_text().strip() if gov.exists() else None
    out["busy_processes"] = busy_processes()
    return out


def _proc_ticks() -> dict[int, tuple[str, int]]:
    ticks = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.find("(") + 1: raw.rfind(")")]
        fields = raw[raw.rfind(")") + 2:].split()
        ticks[int(d.name)] = (name, int(fields[11]) + int(fields[12]))  # utime + stime
    return ticks


def busy_processes(window: float = 0.25, threshold: float = 0.2, limit: int = 5) -> list[dict[str, Any]] | None:
    """Other processes using more than `threshold` of a core over a short window (Linux /proc)."""
    import time

    if not Path("/proc/self/stat").exists():
        return None
    hz = os.sysconf("SC_CLK_TCK")
    a = _proc_ticks()
    time.sleep(window)
    b = _proc_ticks()
    me = {os.getpid(), os.getppid()}
    busy = []
    for pid, (name, t) in b.items():
        if pid in me or pid not in a:
            continue
        share = (t - a[pid][1]) / hz / window
        if share >= threshold:
            busy.append({"pid": pid, "name": name, "cpu": round(share, 2)})
    return sorted(busy, key=lambda x: -x["cpu"])[:limit]


def machine_id(cpu: str, cores: int, gpus: list[dict[str, Any]]) -> str:
    """Stable across reboots and across ephemeral CI runners of the same hardware: it hashes the
    hardware description, not the host name. MILESTONES_MACHINE_ID overrides it."""
    override = os.environ.get("MILESTONES_MACHINE_ID")
    if override:
        return override
    key = "|".join([platform.machine(), cpu, str(cores)] + sorted(f"{g.get('name')}:{g.get('memory_total_bytes')}"
                                                                   for g in gpus))
    slug = "".join(ch if ch.isalnum() else "-" for ch in (gpus[0]["name"] if gpus else cpu).lower())
    slug = "-".join(p for p in slug.split("-") if p)[:32]
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def capture() -> dict[str, Any]:
    cores = os.cpu_count() or 1
    cpu = cpu_model()
    nv = nvidia_gpus()
    env = {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "arch": platform.machine(),
        "hostname": socket.gethostname(),
        "cpu_model": cpu,
        "logical_cores": cores,
        **torch_info(),
        "nvidia": nv,
        "gpu": nv["gpus"][0]["name"] if nv["gpus"] else None,
        "git": git_state(),
        "machine_id": machine_id(cpu, cores, nv["gpus"]),
        "hygiene": machine_hygiene(),
        "env_vars": {k: os.environ[k] for k in ENV_ALLOW_LIST if k in os.environ},
        "argv0": Path(sys.argv[0]).name if sys.argv else None,
    }
    from milestones.harness import __version__

    env["milestones"] = __version__
    return env
