"""Write the checked-in fixture records of tests/fixtures/records/ (synthetic, from known distributions).

    python scripts/make_fixture_records.py            # rewrites tests/fixtures/records/

Every record goes through milestones.harness.records / milestones.harness.store, so the fixtures are exactly what a real
run writes. Timing samples are log-normal with AR(1) drift (phi 0.6, CV 4%) around known medians, so
the tests know the true ratios. Sets:
  gpus/        one run each on an A100, an H100 and a CPU (same cases, same suite version)
  torch/       the CPU machine under torch 2.13.0 and 2.14.1 (2.14.1: resnet50 train 12% slower)
  regress/     base/ and new/: new is 10% slower on resnet50-smoke train (with kernel tables showing
               why: aten::convolution_backward doubled calls), unchanged elsewhere; a case with a
               different suite version, one with another batch size, one with another dtype, one
               metric missing in new
  quality/     quality records over 3 seeds at paper scale (compared with baselines/resnet.toml) and at
               proxy scale (never compared with the paper), with loss curves
  history/     12 nightly runs of one case; train.step_time steps up 15% from the 8th night on
  hostile/     a record whose config name and error message contain <script> (HTML escaping)
  claims/      proxy quality records with the paper's claim in info["claims"] (held 3/3 and 2/3), per-seed
               training-error curves of four nets, and one record with only the claim_held metric

Every record says it is made up: info["synthetic"] is true (reports print "synthetic"), so a made-up
A100/H100 timing can never pass for a measurement.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from milestones.harness import store  # noqa: E402
from milestones.harness.records import SCHEMA_VERSION, Case, Metric, RunRecord  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "records"
SUITE_VERSION = "a1b2c3d4e5f6"
A100, H100 = "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"
CPU = "AMD EPYC 7B13 64-Core Processor"


def env(gpu: str | None = None, torch: str = "2.13.0", commit: str = "0" * 40, threads: int = 2) -> dict:
    nv = {"available": False, "reason": "no NVIDIA driver (NVML: Driver Not Loaded)", "gpus": []}
    if gpu:
        nv = {"available": True, "driver": "550.54.15", "cuda_driver_version": 12040,
              "gpus": [{"index": 0, "name": gpu, "memory_total_bytes": 85899345920, "power_limit_w": 400.0}]}
    slug = "".join(ch if ch.isalnum() else "-" for ch in (gpu or CPU).lower())[:24].strip("-")
    return {"python": "3.11.7", "os": "Linux 6.1.0", "hostname": f"host-{slug}", "cpu_model": CPU,
            "logical_cores": 2 if not gpu else 32, "torch": torch, "torch_full": torch + ("+cu124" if gpu else "+cpu"),
            "cuda": "12.4" if gpu else None, "cudnn": 90100 if gpu else None, "threads": threads if not gpu else 16,
            "nvidia": nv, "gpu": gpu, "git": {"commit": commit, "dirty": False},
            "machine_id": f"{slug}-0001",
            "milestones": "0.1.0"}


def ar_lognormal(rng: np.random.Generator, median: float, n: int, cv: float = 0.04, phi: float = 0.6) -> list[float]:
    z = np.zeros(n)
    e = rng.standard_normal(n)
    for i in range(n):
        z[i] = (phi * z[i - 1] if i else 0.0) + e[i] * math.sqrt(1 - phi * phi)
    return [float(median * math.exp(cv * v)) for v in z]


def speed_metrics(rng, step_time: float, batch: int, flops: float, peak: float | None, gpu: bool,
                  n: int = 60, energy: bool = True) -> dict[str, Metric]:
    t = ar_lognormal(rng, step_time, n)
    m = {"train.step_time": Metric.from_values("train.step_time", "s", False, t),
         "train.throughput": Metric.from_values("train.throughput", "images/s", True, [batch / x for x in t]),
         "train.flops": Metric.single("train.flops", "FLOP", False, flops)}
    m["train.flops_per_s"] = Metric.from_values("train.flops_per_s", "FLOP/s", True, [flops / x for x in t])
    if peak:
        m["train.mfu"] = Metric.from_values("train.mfu", "fraction", True, [flops / x / peak for x in t],
                                            note="peak from the fixture table")
    else:
        m["train.mfu"] = Metric.missing("train.mfu", "fraction", True, "no peak FLOP/s known for this CPU")
    if gpu:
        m["train.peak_mem_allocated"] = Metric.single("train.peak_mem_allocated", "B", False, 6.2e9)
        m["train.energy_per_item"] = (Metric.single("train.energy_per_item", "J", False, 0.9 * step_time / batch * 300)
                                      if energy else Metric.missing("train.energy_per_item", "J", False, "no counter"))
    else:
        m["train.peak_rss"] = Metric.single("train.peak_rss", "B", False, 1.1e9)
        m["train.energy_per_item"] = Metric.missing("train.energy_per_item", "J", False, "NVML absent: CPU device")
    return m


def kernels(scale_conv: float = 1.0, extra_calls: float = 0.0) -> list[dict]:
    rows = [{"name": "aten::convolution_backward", "self_time_us": 5200.0 * scale_conv, "calls": 53 + extra_calls},
            {"name": "aten::cudnn_convolution", "self_time_us": 3100.0, "calls": 53},
            {"name": "aten::native_batch_norm", "self_time_us": 900.0, "calls": 53},
            {"name": "aten::addmm", "self_time_us": 120.0, "calls": 1},
            {"name": "aten::relu_", "self_time_us": 410.0, "calls": 49}]
    total = sum(r["self_time_us"] for r in rows)
    for r in rows:
        r["share"] = r["self_time_us"] / total
    return rows


class Writer:
    def __init__(self, folder: Path, run_id: str, env: dict, start: dt.datetime):
        self.folder = folder / env["machine_id"] / run_id
        self.run_id, self.env, self.t = run_id, env, start
        self.cases: list[dict] = []

    def add(self, case: Case, metrics: dict[str, Metric], *, status: str = "ok", error: str | None = None,
            suite_version: str = SUITE_VERSION, artifacts: dict | None = None, config: dict | None = None,
            info: dict | None = None) -> None:
        start = self.t
        self.t += dt.timedelta(seconds=30)
        rec = RunRecord(schema_version=SCHEMA_VERSION, run_id=self.run_id, record_id=f"{self.run_id}/{case.slug}",
                        started_at=start.isoformat(), ended_at=self.t.isoformat(), duration_s=30.0, case=case,
                        config=config or {"batch_size": case.batch_size}, suite_version=suite_version, env=self.env,
                        status=status, error=error, metrics=metrics, info={**SYNTHETIC, **(info or {})},
                        artifacts=artifacts or {})
        store.write_record(self.folder, rec)
        self.cases.append({k: getattr(case, k) for k in ("suite", "config", "kind", "scale", "device", "dtype",
                                                          "batch_size")})

    def close(self) -> None:
        store.write_manifest(self.folder, {"run_id": self.run_id, "cases": self.cases, "options": {}})


def speed_case(config: str, device: str, batch: int, dtype: str = "float32", scale: str = "smoke") -> Case:
    return Case("resnet", config, "speed", scale, device, dtype, batch)


T0 = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.timezone.utc)
SYNTHETIC = {"synthetic": True, "synthetic_note": "made up by scripts/make_fixture_records.py for tests"}


def make_gpus(rng) -> None:
    for i, (gpu, t50, t18, peak) in enumerate([(A100, 0.210, 0.070, 312e12), (H100, 0.120, 0.042, 989e12),
                                                (None, 9.5, 3.1, None)]):
        dev = "cuda" if gpu else "cpu"
        w = Writer(OUT / "gpus", f"20260301T0{i}0000Z-gpus{i}", env(gpu), T0 + dt.timedelta(hours=i))
        w.add(speed_case("resnet50-smoke", dev, 64), speed_metrics(rng, t50, 64, 64 * 3 * 4.1e9 * 3, peak, bool(gpu)))
        w.add(speed_case("cifar-resnet20-smoke", dev, 128),
              speed_metrics(rng, t18, 128, 128 * 3 * 41e6 * 3, peak, bool(gpu)))
        w.close()


def make_torch(rng) -> None:
    for i, (tv, slow) in enumerate([("2.13.0", 1.0), ("2.14.1", 1.12)]):
        w = Writer(OUT / "torch", f"20260302T0{i}0000Z-torch{i}", env(None, torch=tv), T0 + dt.timedelta(days=1, hours=i))
        w.add(speed_case("resnet50-smoke", "cpu", 8), speed_metrics(rng, 1.18 * slow, 8, 8 * 3 * 0.33e9 * 3, None, False))
        w.add(speed_case("cifar-resnet20-smoke", "cpu", 32), speed_metrics(rng, 0.45, 32, 32 * 3 * 41e6 * 3, None, False))
        w.close()


def make_regress(rng) -> None:
    for side, slow in (("base", 1.0), ("new", 1.10)):
        e = env(A100, commit=("1" if side == "base" else "2") * 40)
        w = Writer(OUT / "regress" / side, f"20260303T0{int(side == 'new')}0000Z-{side}", e,
                   T0 + dt.timedelta(days=2, hours=int(side == "new")))
        w.add(speed_case("resnet50-smoke", "cuda", 64), speed_metrics(rng, 0.210 * slow, 64, 2.4e12, 312e12, True),
              artifacts={"train.kernels": kernels(1.0 if side == "base" else 1.8, 0 if side == "base" else 53)})
        w.add(speed_case("cifar-resnet20-smoke", "cuda", 128), speed_metrics(rng, 0.070, 128, 4.7e10, 312e12, True),
              artifacts={"train.kernels": kernels()})
        # Same case, another suite version in new: not comparable.
        w.add(speed_case("resnet18-smoke", "cuda", 64), speed_metrics(rng, 0.050, 64, 1.1e12, 312e12, True),
              suite_version=SUITE_VERSION if side == "base" else "ffffeeee0000")
        # Another batch size in new.
        w.add(speed_case("resnet34-smoke", "cuda", 64 if side == "base" else 32),
              speed_metrics(rng, 0.090 if side == "base" else 0.047, 64 if side == "base" else 32, 2e12, 312e12, True))
        # Another dtype in new.
        w.add(speed_case("resnet101-smoke", "cuda", 64, "float32" if side == "base" else "bfloat16"),
              speed_metrics(rng, 0.40 if side == "base" else 0.21, 64, 8e12, 312e12, True))
        # A metric missing in new (the energy counter disappeared).
        w.add(speed_case("resnet152-smoke", "cuda", 64), speed_metrics(rng, 0.55, 64, 1.1e13, 312e12, True,
                                                                       energy=side == "base"))
        w.add(Case("resnet", "resnet50", "fidelity", "smoke", "cpu", "float32", None),
              {"params": Metric.single("params", "count", False, 25557032),
               "macs": Metric.single("macs", "MAC/image", False, 3.86e9)})
        w.close()


def curves(rng, seed: int, final: float) -> dict:
    steps = list(range(0, 2001, 100))
    loss = [float(2.3 * math.exp(-s / 500) + final / 100 + 0.02 * rng.standard_normal()) for s in steps]
    return {f"seed{seed}.train": {"step": steps, "loss": loss}}


def make_quality(rng) -> None:
    w = Writer(OUT / "quality", "20260304T000000Z-quality", env(A100), T0 + dt.timedelta(days=3))
    errs = [6.52, 6.71, 6.60]    # mean 6.61 vs paper 6.43 +- 0.5: reproduced
    cv = {}
    for s, e in zip((0, 1, 2), errs, strict=False):
        cv.update(curves(rng, s, e))
    w.add(Case("resnet", "cifar-resnet110-train", "quality", "paper", "cuda", "float32", 128),
          {"test_error": Metric.from_values("test_error", "%", False, errs),
           "claim_held": Metric.from_values("claim_held", "bool", True, [1.0, 1.0, 1.0])},
          artifacts={"curves": cv})
    top1 = [24.1, 24.4, 23.9]     # 24.13 vs 22.85 +- 0.5: not reproduced
    w.add(Case("resnet", "resnet50-train", "quality", "paper", "cuda", "float32", 256),
          {"top1_error": Metric.from_values("top1_error", "%", False, top1),
           "top5_error": Metric.missing("top5_error", "%", False, "top-5 not evaluated in this run")})
    # Proxy scale: never compared with the paper figure.
    w.add(Case("resnet", "cifar-resnet110-train", "quality", "proxy", "cuda", "float32", 128),
          {"test_error": Metric.from_values("test_error", "%", False, [18.2, 17.9, 18.6])},
          artifacts={"curves": curves(rng, 0, 18.2)})
    w.add(Case("resnet", "resnet50", "fidelity", "paper", "cpu", "float32", None),
          {"params": Metric.single("params", "count", False, 25557032),
           "macs": Metric.single("macs", "MAC/image", False, 3.86e9)})
    w.close()
    # The same quality case, other seeds and a regression (error up by ~1.5 points), for Welch's test.
    w = Writer(OUT / "quality_new", "20260305T000000Z-quality", env(A100, commit="3" * 40), T0 + dt.timedelta(days=4))
    w.add(Case("resnet", "cifar-resnet110-train", "quality", "paper", "cuda", "float32", 128),
          {"test_error": Metric.from_values("test_error", "%", False, [8.1, 8.3, 7.9]),
           "claim_held": Metric.from_values("claim_held", "bool", True, [1.0, 1.0, 1.0])},
          artifacts={"curves": curves(rng, 0, 8.1)})
    w.close()


def make_history(rng) -> None:
    for night in range(12):
        slow = 1.15 if night >= 7 else 1.0
        commit = f"{night:02d}" * 20
        w = Writer(OUT / "history", f"202603{10 + night:02d}T020000Z-nightly", env(A100, commit=commit),
                   T0 + dt.timedelta(days=9 + night))
        # Run-to-run noise of 0.5% on top of the within-run drift.
        level = 0.210 * slow * math.exp(0.005 * rng.standard_normal())
        w.add(speed_case("resnet50-smoke", "cuda", 64), speed_metrics(rng, level, 64, 2.4e12, 312e12, True, n=40))
        w.close()


def make_hostile(rng) -> None:
    w = Writer(OUT / "hostile", "20260306T000000Z-hostile", env(None), T0 + dt.timedelta(days=5))
    w.add(speed_case("evil<script>alert(1)", "cpu", 8),
          speed_metrics(rng, 1.0, 8, 1e9, None, False, n=10))
    w.add(speed_case("resnet50-smoke", "cpu", 8), {}, status="failed",
          error="<script>alert('err')</script> & <b>RuntimeError</b>")
    w.close()


def claim(cid: str, statement: str, source: str, rule: str, held: list[int] | None, seeds: list[int],
          scale: str = "proxy", summary: str | None = None) -> dict:
    d = {"id": cid, "statement": statement, "source": source, "rule": rule, "held": held, "seeds": seeds,
         "scale": scale}
    return {**d, "summary": summary} if summary else d


DEGRADATION = claim(
    "degradation", "When deeper networks are able to start converging, a degradation problem has been exposed: "
    "with the network depth increasing, accuracy gets saturated and then degrades rapidly. [...] the deep "
    "residual net has lower training error than the shallow one and the deep plain one.",
    "He et al. 2015, Fig. 6, Sec. 4.2", "per seed: train error plain-20 > plain-8, and resnet-20 < plain-20 "
    "and <= plain-8", [1, 1, 1], [0, 1, 2], summary="deeper plain net trains worse, residual fixes it")
RELU = claim(
    "relu-faster", "A four-layer convolutional neural network with ReLUs reaches a 25% training error rate on "
    "CIFAR-10 six times faster than an equivalent network with tanh neurons.",
    "Krizhevsky et al. 2012, Fig. 1, Sec. 3.1", "per seed: ReLU reaches the target error in fewer steps than tanh",
    [1, 0, 1], [0, 1, 2], summary="ReLU reaches 25% training error faster than tanh")


def degradation_curves(rng, seeds) -> tuple[dict, dict[str, list[float]]]:
    final = {"plain8": 0.02, "plain20": 0.06, "resnet8": 0.018, "resnet20": 0.012}
    cv, err = {}, {n: [] for n in final}
    steps = list(range(1, 401))
    evals = list(range(20, 401, 20))
    for s in seeds:
        for n, f in final.items():
            loss = [float(2.3 * math.exp(-k / 80) + 3 * f + 0.03 * rng.standard_normal()) for k in steps]
            te = [float(max(0.0, f + 0.8 * math.exp(-k / 70) + 0.004 * rng.standard_normal())) for k in evals]
            cv[f"{n}.seed{s}"] = {"step": steps, "loss": loss, "eval_step": evals, "train_error": te}
            err[n].append(te[-1])
    return cv, err


def make_claims(rng) -> None:
    w = Writer(OUT / "claims", "20260307T000000Z-proxy", env(None, threads=1), T0 + dt.timedelta(days=6))
    cv, err = degradation_curves(rng, [0, 1, 2])
    m = {f"train_error.{n}": Metric.from_values(f"train_error.{n}", "fraction", False, v) for n, v in err.items()}
    m["claim_held"] = Metric.from_values("claim_held", "bool", True, [1.0, 1.0, 1.0])
    w.add(Case("resnet", "resnet-degradation", "quality", "proxy", "cpu", "float32", 32), m,
          artifacts={"curves": cv}, info={"claims": [DEGRADATION], "seeds": [0, 1, 2]})
    w.add(Case("alexnet", "alexnet-relu-vs-tanh", "quality", "proxy", "cpu", "float32", 32),
          {"steps_to_target.relu": Metric.from_values("steps_to_target.relu", "steps", False, [120, 260, 140]),
           "steps_to_target.tanh": Metric.from_values("steps_to_target.tanh", "steps", False, [400, 240, 520]),
           "claim_held": Metric.from_values("claim_held", "bool", True, [1.0, 0.0, 1.0])},
          info={"claims": [RELU], "seeds": [0, 1, 2]})
    # An older record: the claim only as the per-seed metric, no sentence.
    w.add(Case("gan", "gan-digits", "quality", "proxy", "cpu", "float32", 64),
          {"claim_held": Metric.from_values("claim_held", "bool", True, [1.0, 1.0]),
           "fd.trained": Metric.from_values("fd.trained", "value", False, [41.0, 44.5])})
    w.close()


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    rng = np.random.default_rng(20260301)
    make_gpus(rng)
    make_torch(rng)
    make_regress(rng)
    make_quality(rng)
    make_history(rng)
    make_hostile(rng)
    make_claims(rng)
    n = sum(1 for _ in OUT.rglob("*.json"))
    print(f"wrote {n} files under {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
