"""pytest-benchmark settings for the kernel microbenchmarks.

- Timing happens only when asked for (any of --benchmark-enable/-only/-json/-save/-autosave/
  -compare): a plain `pytest` run calls each benchmarked function once, as a test of the kernel code,
  so the test suite stays fast.
- The machine info carries the harness's hardware machine id, and the fields that change with every
  CI runner (host name, the CPU's momentary clock) are replaced or dropped, so `--benchmark-compare`
  against a run saved on another runner of the same hardware does not report a different machine.
"""

from __future__ import annotations

import os

import pytest

ASKED_FOR = ("benchmark_enable", "benchmark_only", "benchmark_json", "benchmark_save", "benchmark_autosave",
             "benchmark_compare")


@pytest.hookimpl(trylast=True)  # after pytest-benchmark has built its session
def pytest_configure(config: pytest.Config) -> None:
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or config.getoption("benchmark_disable"):
        return
    if not any(config.getoption(o, None) for o in ASKED_FOR):
        bs.disabled = True


def pytest_benchmark_update_machine_info(config, machine_info: dict) -> None:
    import torch

    from milestones.harness import env

    gpus = env.nvidia_gpus()["gpus"]
    mid = env.machine_id(env.cpu_model(), os.cpu_count() or 1, gpus)
    machine_info["machine_id"] = mid
    machine_info["node"] = mid  # the runner's host name changes with every CI job; the hardware does not
    cpu = machine_info.get("cpu")
    if isinstance(cpu, dict):
        for k in ("hz_actual", "hz_actual_friendly"):
            cpu.pop(k, None)
    machine_info["torch"] = torch.__version__.split("+")[0]
    machine_info["cuda"] = torch.version.cuda
    machine_info["gpu"] = gpus[0]["name"] if gpus else None
    machine_info["threads"] = torch.get_num_threads()
