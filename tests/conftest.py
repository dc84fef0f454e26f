import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
# The fault-injecting suites are registered in every process the tests start (CLI, case workers).
os.environ.setdefault("MILESTONES_EXTRA_SUITES", "tests.fake_suites")
# ...which must be importable from the console script and the case processes.
os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")


# Hypothesis draws the same examples on every run (a seed derived from each test), with no example
# database replaying yesterday's failures: a fuzz test then fails for the code, never for the seed.
# Examples found worth keeping are written into the tests as @example(...).
settings.register_profile("milestones", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "milestones"))


@pytest.fixture
def cli(tmp_path):
    """Run the installed `milestones` console script; returns CompletedProcess."""

    def run(*args: str, timeout: float = 300, env: dict | None = None, cwd: Path | None = None):
        e = dict(os.environ, MILESTONES_MACHINE_ID="test-machine")
        e.update(env or {})
        return subprocess.run(["milestones", *args], capture_output=True, text=True, timeout=timeout, env=e,
                              cwd=cwd or ROOT)

    return run


def pytest_configure(config):
    # Under pytest-xdist every worker is a process of its own: two workers with torch's default two
    # OpenMP threads each would put four spinning threads on a 2-core machine (30x slower when busy).
    # The case processes the tests start choose their threads themselves, so only this process is pinned.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def pytest_report_header(config):
    import torch

    return f"torch {torch.__version__}, threads {torch.get_num_threads()}, python {sys.version.split()[0]}"


@pytest.fixture
def one_thread():
    """One torch thread for the test: two OpenMP threads on a shared 2-core machine spin against other
    processes, so small models run faster and give identical results on one."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def fake_clock(monkeypatch):
    """The timing module's clocks replaced by a fake one (tests/fake_clock.py) that moves only with `work`."""
    from milestones.harness.measure import timing
    from tests.fake_clock import Clock

    c = Clock()
    monkeypatch.setattr(timing.time, "perf_counter_ns", c.ns)
    monkeypatch.setattr(timing.time, "perf_counter", c.s)
    return c
