"""asv benchmarks generated from the registry: one source of truth for asv and `milestones run`.

For every speed case at the chosen scale, two benchmark classes are generated:

- `<scale>_<config>` with `time_step` and `peakmem_step`: asv itself times (and measures the peak
  memory of) the case's own step function: the headline (first) step of the SpeedPlan the suite's speed
  kind declares (the training step by convention).
- `<scale>_<config>_harness` with `track_step_time` and `track_throughput`: the harness's own
  measurement. `setup_cache` runs the case exactly as `milestones run` does (a fresh
  `python -m milestones.harness.worker` process, the same timing settings) and the tracks report the median of
  the first `<label>.step_time` / `<label>.throughput` metric, so asv's history and the records agree.

Chosen by environment variables, read when asv imports the benchmarks:
MILESTONES_SCALE (smoke | proxy | paper; default smoke), MILESTONES_DEVICE (auto | cpu | cuda;
default auto), MILESTONES_DTYPE (default float32), MILESTONES_TIMEOUT (seconds per case; default 900),
MILESTONES_SUITES (comma-separated suite names: generate, and import, only those; default all).

Every generated class carries `version = "<suite hash>|<suite>|<config>|<scale>|<device>|<dtype>|<batch>"`:
asv restarts a benchmark's history when its suite's source changes, and `milestones import asv`
recovers the case from the results alone.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from milestones.harness.errors import UsageError
from milestones.harness.records import Case
from milestones.harness.registry import SCALES, ConfigEntry, Registry, did_you_mean, load_suites

SCALE_ENV, DEVICE_ENV, DTYPE_ENV, TIMEOUT_ENV, SUITES_ENV = (
    "MILESTONES_SCALE", "MILESTONES_DEVICE", "MILESTONES_DTYPE", "MILESTONES_TIMEOUT", "MILESTONES_SUITES")
VERSION_SEP = "|"


@dataclass(frozen=True)
class BridgeSettings:
    scale: str = "smoke"
    device: str = "auto"
    dtype: str = "float32"
    timeout: float = 900.0
    suites: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> BridgeSettings:
        e = os.environ if environ is None else environ
        scale = e.get(SCALE_ENV, "smoke")
        if scale not in SCALES:
            raise UsageError(f"{SCALE_ENV}={scale!r} is not a scale{did_you_mean(scale, SCALES)}; "
                             f"choose from {', '.join(SCALES)}")
        try:
            timeout = float(e.get(TIMEOUT_ENV, "900"))
        except ValueError:
            raise UsageError(f"{TIMEOUT_ENV} must be a number of seconds, not {e.get(TIMEOUT_ENV)!r}") from None
        suites = tuple(x.strip() for x in e.get(SUITES_ENV, "").split(",") if x.strip())
        return cls(scale=scale, device=e.get(DEVICE_ENV, "auto"), dtype=e.get(DTYPE_ENV, "float32"),
                   timeout=timeout, suites=suites)

    def run_options(self):
        from milestones.harness.runner import RunOptions

        return RunOptions(kinds=("speed",), scale=self.scale, device=self.device, dtype=self.dtype,
                          timeout=self.timeout)


def identifier(config: str) -> str:
    """A config name as a Python identifier (asv names benchmarks by attribute names)."""
    return re.sub(r"\W", "_", config)


def case_version(case: Case, suite_version: str) -> str:
    return VERSION_SEP.join([suite_version, case.suite, case.config, case.scale, case.device, case.dtype,
                             "" if case.batch_size is None else str(case.batch_size)])


def parse_case_version(version: str) -> tuple[str, Case] | None:
    """(suite version, case) from a generated benchmark's version string; None for any other benchmark."""
    parts = version.split(VERSION_SEP)
    if len(parts) != 7 or parts[3] not in SCALES:
        return None
    sv, suite, config, scale, device, dtype, bs = parts
    if not bs.isdigit() and bs != "":
        return None
    return sv, Case(suite=suite, config=config, kind="speed", scale=scale, device=device, dtype=dtype,
                    batch_size=int(bs) if bs else None)


def load_registry(settings: BridgeSettings) -> Registry:
    """The registry with every suite, or only the suites named (importing fewer suites starts asv faster)."""
    if not settings.suites:
        return load_suites()
    import importlib

    from milestones.harness.registry import REGISTRY

    for name in settings.suites:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise UsageError(f"{SUITES_ENV}: {name!r} is not a suite name")
        try:
            importlib.import_module(f"milestones.suites.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"milestones.suites.{name}":
                raise
            raise UsageError(f"{SUITES_ENV}: unknown suite {name!r}") from None
        REGISTRY.suite(name)
    return REGISTRY


def speed_cases(settings: BridgeSettings, registry: Registry | None = None) -> list[tuple[ConfigEntry, Case]]:
    from milestones.harness.runner import plan, resolve_device

    reg = registry or load_registry(settings)
    opts = settings.run_options()
    device = resolve_device(opts.device)
    entries = [c for c in reg.configs.values() if not settings.suites or c.suite in settings.suites]
    by_name = {e.name: e for e in entries}
    return [(by_name[c.config], c) for c in plan(entries, opts, device)]


# ------------------------------------------------------------------------------- harness measurement
def harness_measurement(case: Case, settings: BridgeSettings) -> dict[str, Any]:
    """Run the case as `milestones run` does (its own process, same timing); plain data for asv's cache."""
    import dataclasses

    from milestones.harness.launch.process import CaseProcess
    from milestones.harness.registry import REGISTRY
    from milestones.harness.runner import specs_for_cases

    spec = specs_for_cases([case], settings.run_options(), REGISTRY)[0]
    with tempfile.TemporaryDirectory(prefix="milestones-asv-") as tmp:
        run = CaseProcess().run(dataclasses.replace(spec, workdir=tmp))
    return {"status": run.status, "error": run.error,
            "metrics": {k: {"unit": m.unit, "samples": list(m.samples)} for k, m in run.metrics.items()}}


def primary_metric(measurement: dict[str, Any], suffix: str) -> tuple[str, dict[str, Any]]:
    """The first `<label>.<suffix>` metric the case reported: its headline step's."""
    for name, m in measurement["metrics"].items():
        if name.endswith("." + suffix) and m["samples"]:
            return name, m
    raise NotImplementedError(f"the case reported no {suffix!r} metric")


def median(xs: list[float]) -> float:
    from milestones.harness.records import Stats

    st = Stats.from_samples(xs)
    if st is None:
        raise ValueError("no samples")
    return st.median


# ------------------------------------------------------------------------------------- step capture
def capture_step(case: Case, entry: ConfigEntry, registry: Registry | None = None) -> Callable[[], Any]:
    """The headline step the case declares (its SpeedPlan's first step), built in this process and set up.

    Raises NotImplementedError (asv: skipped) when the case skips itself or declares no SpeedPlan.
    """
    from milestones.harness.context import CaseContext, SkipCase
    from milestones.harness.measure.plan import SpeedPlan
    from milestones.harness.registry import REGISTRY
    from milestones.harness.worker import seed_everything

    reg = registry or REGISTRY  # filled when asv imported the generated benchmarks
    fn = reg.suite(case.suite).kind_fn(case.kind, entry.params)
    seed_everything(0, False)
    ctx = CaseContext.for_case(case, workdir=tempfile.mkdtemp(prefix="milestones-asv-step-"))
    try:
        declared = fn(entry.params, ctx)
    except SkipCase as e:
        raise NotImplementedError(f"case skipped: {e}") from None
    if not isinstance(declared, SpeedPlan):
        raise NotImplementedError(f"{case.suite}.{case.kind} declares no SpeedPlan")
    head = declared.step()
    if head.setup is not None:
        head.setup()
    step = head.fn
    if case.device.startswith("cuda"):
        import torch

        def synced() -> None:
            step()
            torch.cuda.synchronize()  # asv's timer is a host clock: wait for the GPU's work

        return synced
    return step


# ----------------------------------------------------------------------------------- class factory
def _step_class(entry: ConfigEntry, case: Case, version: str) -> type:
    def setup(self) -> None:
        self.step = capture_step(case, entry)

    def time_step(self) -> None:
        self.step()

    def peakmem_step(self) -> None:
        self.step()

    doc = f"{case.suite}/{case.config} at scale {case.scale}: the case's own step, timed by asv."
    return type(identifier(f"{case.scale}_{case.config}"), (), {
        "__doc__": doc, "version": version, "setup": setup, "time_step": time_step, "peakmem_step": peakmem_step,
        # One step is ~0.01-1 s at smoke scale: one sample per call, few samples, no second round.
        "number": 1, "repeat": (1, 10, 20.0), "rounds": 1, "warmup_time": 0.5, "min_run_count": 1,
        "timeout": 600.0,
    })


def _harness_class(case: Case, version: str, settings: BridgeSettings) -> type:
    def setup_cache(self) -> dict[str, Any]:
        return harness_measurement(case, settings)

    setup_cache.timeout = settings.timeout + 60  # asv's default (60 s) is shorter than a proxy case

    def setup(self, m: dict[str, Any]) -> None:
        if m["status"] == "skipped":
            raise NotImplementedError(f"case skipped: {m['error']}")
        if m["status"] != "ok":
            raise RuntimeError(f"case {case.slug} ended with status {m['status']}: {m['error']}")

    def track_step_time(self, m: dict[str, Any]) -> float:
        return median(primary_metric(m, "step_time")[1]["samples"])

    track_step_time.unit = "seconds"

    def track_throughput(self, m: dict[str, Any]) -> float:
        return median(primary_metric(m, "throughput")[1]["samples"])

    track_throughput.unit = "items/s"
    doc = f"{case.suite}/{case.config} at scale {case.scale}: medians of the harness's own measurement."
    return type(identifier(f"{case.scale}_{case.config}_harness"), (), {
        "__doc__": doc, "version": version, "setup_cache": setup_cache, "setup": setup,
        "track_step_time": track_step_time, "track_throughput": track_throughput, "timeout": settings.timeout + 60,
    })


def make_benchmarks(settings: BridgeSettings | None = None, registry: Registry | None = None) -> dict[str, type]:
    """{class name: benchmark class} for every speed case at the settings' scale."""
    settings = settings or BridgeSettings.from_env()
    reg = registry or load_registry(settings)
    out: dict[str, type] = {}
    for entry, case in speed_cases(settings, reg):
        version = case_version(case, reg.suite(case.suite).version)
        for cls in (_step_class(entry, case, version), _harness_class(case, version, settings)):
            if cls.__name__ in out:
                raise UsageError(f"two configs map to the asv name {cls.__name__!r}; rename one")
            out[cls.__name__] = cls
    return out


def describe(settings: BridgeSettings | None = None) -> list[dict[str, Any]]:
    """What `make_benchmarks` generates, as plain rows (docs and tests)."""
    settings = settings or BridgeSettings.from_env()
    return [{"config": e.name, "case": dataclasses.asdict(c), "classes": [identifier(f"{c.scale}_{c.config}"),
             identifier(f"{c.scale}_{c.config}_harness")]} for e, c in speed_cases(settings)]
