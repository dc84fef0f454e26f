"""The NVML energy meter: aligned to a counter update, never a 0 J reading, nothing measured on a CPU."""

import sys
import types

import pytest

from milestones.harness.measure import energy as E


class FakeNvml(types.ModuleType):
    """A total-energy counter that advances `step_mj` every `period_s` of a simulated clock (like NVML's
    coarse updates). Each read moves the clock by 1 ms; a test moves it further with `advance`, so no
    figure depends on how busy the machine is."""

    class NVMLError(Exception):
        pass

    def __init__(self, period_s=0.01, step_mj=1000, frozen=False):
        super().__init__("pynvml")
        self.period_s, self.step_mj, self.frozen, self.now = period_s, step_mj, frozen, 0.0
        self.inits = self.shutdowns = 0

    def advance(self, seconds):
        self.now += seconds

    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if self.frozen:
            return 5
        self.now += 0.001
        return int(self.now / self.period_s) * self.step_mj


@pytest.fixture
def nvml(monkeypatch):
    def install(**kw):
        fake = FakeNvml(**kw)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake
    return install


def test_meter_starts_on_an_update_and_measures_the_window(nvml):
    fake = nvml(period_s=0.01, step_mj=1000)
    with E.EnergyMeter("cuda:0") as m:
        fake.advance(0.2)
    assert m.why is None and fake.inits == fake.shutdowns == 1
    assert m.update_period_s is not None and m.update_period_s >= 0  # real seconds between the two edges seen
    assert m.joules == 20.0  # 20 updates of 1 J in 0.2 s, counted from an update


def test_a_counter_that_does_not_advance_is_not_measured_not_zero(nvml):
    nvml(frozen=True)
    with E.EnergyMeter("cuda") as m:
        pass
    assert m.joules is None and "did not advance" in m.why and m.update_period_s is None


def test_cpu_has_no_counter_and_runs_nothing():
    calls = []
    r = E.measure_energy(lambda: calls.append(1), "cpu")
    assert r.joules is None and r.steps == 0 and "CPU" in r.why and calls == []


def test_nvml_errors_become_a_reason(monkeypatch):
    fake = FakeNvml()

    def boom():
        raise FakeNvml.NVMLError("NVML Shared Library Not Found")
    fake.nvmlInit = boom
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with E.EnergyMeter("cuda") as m:
        pass
    assert m.joules is None and "unavailable" in m.why
