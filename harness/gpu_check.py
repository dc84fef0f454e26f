"""The GPU acceptance check's two Python steps (scripts/gpu_check.sh runs the `milestones run` steps):

    python -m milestones.harness.gpu_check crosscheck OUT   # CUDA events vs torch.utils.benchmark.Timer
    python -m milestones.harness.gpu_check summary OUT      # PASS/FAIL per check; exit 1 on any FAIL

`summary` reads the ordinary records under OUT (and OUT/crosscheck.json) and decides each condition of
the check from them; it never measures anything itself, so it runs (and is tested) on any machine.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from milestones.harness.errors import UsageError
from milestones.harness.measure.energy import NO_CPU_COUNTER

# JSON lines, one per dtype: not *.json, so the record loaders (and reports) never read it as a record
CROSSCHECK_FILE = "crosscheck.jsonl"
SUMMARY_FILE = "gpu-check-summary.md"
RATIO_BAND = (0.8, 1.25)  # CUDA events vs Timer: within 25% of each other on the same step
DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def _metric_values(rec: Any, suffix: str) -> list[tuple[str, float | None]]:
    return [(n, m.value) for n, m in rec.metrics.items() if n.endswith(suffix)]


def _cuda_ok(records: Iterable[Any], kind: str = "speed") -> list[Any]:
    return [r for r in records if r.case.device.startswith("cuda") and r.case.kind == kind and r.status == "ok"]


def summarize(records: Sequence[Any], crosscheck: list[dict[str, Any]] | None,
              expected_configs: Iterable[str]) -> list[Check]:
    """Each acceptance condition, decided from the records (RunRecord objects) and the cross-check."""
    checks: list[Check] = []
    speed = [r for r in records if r.case.kind == "speed" and r.case.device.startswith("cuda")]
    for dtype in DTYPES:
        missing, bad, skipped = [], [], []
        for config in sorted(set(expected_configs)):
            mine = [r for r in speed if r.case.config == config and r.case.dtype == dtype]
            if not mine:
                missing.append(config)
            for r in mine:  # every speed case must run; bf16 may be skipped with its reason
                if r.status == "skipped" and dtype != "float32":
                    skipped.append(f"{r.case.config} ({r.error})")
                elif r.status != "ok":
                    bad.append(f"{r.case.config}: {r.status}")
        ok = not missing and not bad
        detail = (f"missing {missing}; " if missing else "") + (f"not ok {bad}; " if bad else "") + \
            (f"skipped (allowed for {dtype}) {skipped}" if skipped else "")
        checks.append(Check(f"speed cases on cuda, {dtype}", ok, detail or f"every smoke speed config has an ok {dtype} record"))

    if not crosscheck:
        checks.append(Check("CUDA events vs benchmark.Timer", False, f"no {CROSSCHECK_FILE}"))
    else:
        ratios = [(c.get("dtype"), c.get("ratio")) for c in crosscheck]
        ok = all(r is not None and RATIO_BAND[0] <= r <= RATIO_BAND[1] for _, r in ratios)
        checks.append(Check("CUDA events vs benchmark.Timer", ok,
                            ", ".join(f"{d}: ratio {r:.3f}" if r is not None else f"{d}: no ratio" for d, r in ratios)
                            + f" (band {RATIO_BAND[0]}-{RATIO_BAND[1]})"))

    ok_speed = _cuda_ok(records)
    mfus = [(r.case.config, n, v) for r in ok_speed for n, v in _metric_values(r, ".mfu")]
    measured = [x for x in mfus if x[2] is not None]
    out_of_range = [x for x in measured if not 0.0 < x[2] < 1.0]
    checks.append(Check("MFU in (0, 1)", bool(measured) and not out_of_range,
                        f"{len(measured)} MFU values, {len(mfus) - len(measured)} null"
                        + (f"; out of range: {out_of_range[:3]}" if out_of_range else "")
                        + (f"; range {min(v for *_, v in measured):.3g}-{max(v for *_, v in measured):.3g}"
                           if measured else "")))

    energy, power, cpu_steps = [], [], 0
    for r in ok_speed:
        for n, v in _metric_values(r, ".energy_per_item"):
            if v is None and r.metrics[n].note == NO_CPU_COUNTER:
                cpu_steps += 1  # a step the suite runs on the host (DQN's emulator): no GPU energy by design
                continue
            energy.append(v)
            thr = r.metrics.get(n.replace(".energy_per_item", ".throughput"))
            # mean power over the timed loop = J/item x items/s
            power.append(v * thr.value if v is not None and thr is not None and thr.value else None)
    e_ok = bool(energy) and all(v is not None and v > 0 for v in energy)
    p_ok = bool(power) and all(v is not None and v > 0 for v in power)
    zeros = sum(v == 0 for v in energy)
    checks.append(Check("NVML energy per item not null", e_ok,
                        f"{sum(v is not None and v > 0 for v in energy)} of {len(energy)} energy figures measured"
                        + (f", {zeros} read 0 J (a window shorter than the counter's update period)" if zeros else "")
                        + (f"; {cpu_steps} host-side steps not counted" if cpu_steps else "")))
    checks.append(Check("power not null", p_ok, f"{sum(v is not None for v in power)} of {len(power)}; "
                        + (f"median {sorted(p for p in power if p)[len([p for p in power if p]) // 2]:.1f} W"
                           if any(power) else "none") + " (energy per item x throughput)"))

    peaks = [v for r in ok_speed for _, v in _metric_values(r, ".peak_mem_allocated")]
    checks.append(Check("CUDA memory peaks", bool(peaks) and all(v is not None and v > 0 for v in peaks),
                        f"{len(peaks)} peaks" + (f", max {max(v for v in peaks if v) / 2**20:.0f} MiB" if any(peaks)
                                                 else "")))

    kernels = [(r.case.config, k) for r in ok_speed for k, v in r.artifacts.items()
               if k.endswith(".kernels") and isinstance(v, list) and v]
    checks.append(Check("--profile kernel table", bool(kernels), f"{len(kernels)} tables"
                        + (f", e.g. {kernels[0][0]}:{kernels[0][1]}" if kernels else "")))

    nccl = [r for r in ok_speed if r.info.get("backend") == "nccl" and r.info.get("world_size")]
    checks.append(Check("NCCL torchrun case", bool(nccl),
                        f"{nccl[0].case.config}, world size {nccl[0].info['world_size']}" if nccl
                        else "no ok cuda record with backend nccl"))

    from milestones.harness.report import claims_of

    # An ok record whose claim was never decided (every seed undecided) proves nothing about the GPU run.
    quality = [r for r in _cuda_ok(records, "quality") if any(c.decided for c in claims_of(r))]
    checks.append(Check("proxy quality case on the GPU", bool(quality),
                        ", ".join(sorted({r.case.config for r in quality}))
                        or "no ok quality record on cuda with a decided claim"))
    return checks


def format_summary(checks: Sequence[Check]) -> str:
    lines = ["| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'PASS' if c.passed else 'FAIL'} | {c.detail} |" for c in checks]
    n_fail = sum(not c.passed for c in checks)
    lines.append("")
    lines.append(f"{len(checks) - n_fail} passed, {n_fail} failed")
    return "\n".join(lines)


def expected_speed_configs() -> list[str]:
    """Every smoke-scale speed config (each suite has at least one): the cases the check runs."""
    from milestones.harness.registry import load_suites

    reg = load_suites()
    return sorted({c.name for s in reg.suites.values() for c in s.configs.values()
                   if "speed" in c.kinds and "smoke" in c.scales})


def cmd_summary(out: Path) -> int:
    from milestones.harness import store

    if not out.is_dir():
        raise UsageError(f"{out}: no such results folder")
    records = store.load_records(out)
    cc_path = next(iter(sorted(out.rglob(CROSSCHECK_FILE))), None)
    cc = [json.loads(ln) for ln in cc_path.read_text().splitlines() if ln.strip()] if cc_path else None
    checks = summarize(records, cc, expected_speed_configs())
    text = format_summary(checks)
    print(text)
    (out / SUMMARY_FILE).write_text(text + "\n")
    return 0 if all(c.passed for c in checks) else 1


def cmd_crosscheck(out: Path, iters: int = 30) -> int:
    import torch

    from milestones.harness.measure.crosscheck import timer_crosscheck
    from milestones.suites.resnet import CifarResNet

    if not torch.cuda.is_available():
        raise UsageError("the cross-check needs a CUDA device (torch sees none)")
    def make_step(dt):
        model = CifarResNet(20).to("cuda", dt)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(128, 3, 32, 32, device="cuda", dtype=dt)
        y = torch.randint(0, 10, (128,), device="cuda")

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        return step

    results = []
    for dtype in DTYPES:
        step = make_step(getattr(torch, dtype))
        r = timer_crosscheck(step, "cuda", iters)
        results.append({"dtype": dtype, "step": "cifar-resnet20 train step, batch 128",
                        "device_name": torch.cuda.get_device_name(), **r})
        print(f"{dtype}: CUDA events {r['harness_median_s'] * 1e3:.3f} ms, Timer "
              f"{r['benchmark_timer_median_s'] * 1e3:.3f} ms, ratio {r['ratio']:.3f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / CROSSCHECK_FILE).write_text("".join(json.dumps(r) + "\n" for r in results))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("summary", "crosscheck"):
        print("usage: python -m milestones.harness.gpu_check {crosscheck|summary} OUT", file=sys.stderr)
        return 2
    try:
        return cmd_summary(Path(argv[1])) if argv[0] == "summary" else cmd_crosscheck(Path(argv[1]))
    except UsageError as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
