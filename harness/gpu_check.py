"""The GPU acceptance check, second version (scripts/gpu_check.sh runs the `milestones run` steps):

    python -m milestones.harness.gpu_check plan [--quick]           # CONFIG MODES lines for the script
    python -m milestones.harness.gpu_check crosscheck OUT [--quick] # CUDA events vs torch.utils.benchmark.Timer
    python -m milestones.harness.gpu_check summary OUT [--quick]    # PASS/FAIL per check; exit 1 on any FAIL

The cases: paper-size speed configs that fit one GPU, at the paper's batch, in the field preset of
execution modes (docs/modes.md); `--quick` keeps ResNet-50 v1.5 alone, so that two GPU kinds fit in one
lease. `summary` reads the ordinary records under OUT (and OUT/crosscheck.jsonl) and decides each
condition from them; it never measures anything itself, so it runs (and is tested) on any machine. It
also prints the execution-mode table and the published throughput anchors beside our records.
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
from milestones.harness.measure.modes import Mode, parse_modes

# JSON lines, one per (config, mode): not *.json, so the record loaders (and reports) never read it as a record
CROSSCHECK_FILE = "crosscheck.jsonl"
SUMMARY_FILE = "gpu-check-summary.md"
RATIO_BAND = (0.9, 1.1)  # CUDA events vs Timer: within 10% of each other on the same step

# (config, modes) at --scale paper. ResNet-50 v1.5 carries the published anchors; the others are the
# paper-size configs that fit one 80 GB GPU at the paper's batch. Only the first two compile (each
# compile costs a minute or more), which keeps the full check within its 10 minutes.
QUICK_PLAN: tuple[tuple[str, str], ...] = (("resnet50-v1.5-speed", "field"),)
FULL_PLAN: tuple[tuple[str, str], ...] = QUICK_PLAN + (
    ("bert-base-paper", "field"),
    ("gpt3-small-paper", "fp32,amp-bf16"),
    ("alexnet2012-paper", "fp32,amp-bf16+channels-last"),
    ("transformer-base-paper", "fp32,amp-bf16"),
    ("dcgan-64-paper", "fp32,amp-bf16+channels-last"),
    ("gan-mnist-paper", "fp32,amp-bf16"),
)
# The timer cross-check's steps (paper size, in the mode people run).
QUICK_CROSSCHECK: tuple[tuple[str, str], ...] = (("resnet50-v1.5-speed", "amp-bf16+channels-last"),)
FULL_CROSSCHECK = QUICK_CROSSCHECK + (("resnet50-v1.5-speed", "fp32"), ("bert-base-paper", "amp-bf16"))


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def expected_cases(quick: bool) -> list[tuple[str, str]]:
    """(config, canonical mode) of every paper speed case the check runs."""
    return [(c, m) for c, modes in (QUICK_PLAN if quick else FULL_PLAN) for m in parse_modes(modes)]


def _metric_values(rec: Any, suffix: str) -> list[tuple[str, float | None]]:
    return [(n, m.value) for n, m in rec.metrics.items() if n.endswith(suffix)]


def _cuda_ok(records: Iterable[Any], kind: str = "speed") -> list[Any]:
    return [r for r in records if r.case.device.startswith("cuda") and r.case.kind == kind and r.status == "ok"]


def _cases_check(records: Sequence[Any], expected: Iterable[tuple[str, str]]) -> Check:
    speed = [r for r in records if r.case.kind == "speed" and r.case.device.startswith("cuda")]
    missing, bad, skipped, oom = [], [], [], []
    for config, mode in expected:
        mine = [r for r in speed if r.case.config == config and r.case.mode == mode]
        if not mine:
            missing.append(f"{config} [{mode}]")
        for r in mine:
            if r.status == "skipped":  # a mode this case cannot run, with its one-line reason
                skipped.append(f"{config} [{mode}] ({r.error})")
            elif r.status == "oom":  # does not fit this GPU at the paper's batch: said, allowed
                oom.append(f"{config} [{mode}]")
            elif r.status != "ok":
                bad.append(f"{config} [{mode}]: {r.status} {(r.error or '')[:80]}")
    detail = "; ".join(x for x in (
        f"missing {missing}" if missing else "", f"not ok {bad}" if bad else "",
        f"do not fit at the paper's batch (oom) {oom}" if oom else "",
        f"skipped with a reason {skipped}" if skipped else "") if x)
    return Check("paper speed cases in the field preset", not missing and not bad,
                 detail or "every expected (config, mode) has an ok record")


def _compile_check(records: Sequence[Any]) -> Check:
    compiled = [r for r in _cuda_ok(records) if Mode.parse(r.case.mode).compiled]
    if not compiled:
        return Check("compile cost measured apart", False, "no ok compiled case on cuda")
    problems, parts = [], []
    for r in compiled:
        for n, v in _metric_values(r, ".compile_s"):
            label = n[: -len(".compile_s")]
            graphs = r.metrics.get(f"{label}.graphs")
            if v is None or graphs is None or not graphs.value:
                problems.append(f"{r.case.config} {label}: no compile time or no graph")
            else:
                parts.append(f"{r.case.config} {label} {v:.0f} s")
        again = (r.info.get("execution_mode") or {}).get("recompiled_during_timing")
        if again:
            problems.append(f"{r.case.config}: recompiled during timing ({', '.join(again)})")
    return Check("compile cost measured apart", not problems, "; ".join(problems) or ", ".join(parts))


def _crosscheck(cc: list[dict[str, Any]] | None) -> Check:
    name = f"CUDA events vs benchmark.Timer within {round((RATIO_BAND[1] - 1) * 100)}%"
    if not cc:
        return Check(name, False, f"no {CROSSCHECK_FILE}")
    ratios = [(f"{c.get('config', '?')} [{c.get('mode') or c.get('dtype')}]", c.get("ratio")) for c in cc]
    ok = all(r is not None and RATIO_BAND[0] <= r <= RATIO_BAND[1] for _, r in ratios)
    return Check(name, ok, ", ".join(f"{w}: {r:.3f}" if r is not None else f"{w}: no ratio" for w, r in ratios)
                 + f" (band {RATIO_BAND[0]}-{RATIO_BAND[1]})")


def _quality_check(records: Sequence[Any]) -> Check:
    """An ok quality record on the GPU whose claim was decided: an ok record whose every seed was
    undecided proves nothing about the GPU run."""
    from milestones.harness.report import claims_of

    name = "proxy quality case on the GPU, claim decided"
    quality = _cuda_ok(records, "quality")
    if not quality:
        return Check(name, False, "no ok quality record on cuda")
    words = []
    for r in quality:
        claims = claims_of(r)
        if not claims or not all(c.decided for c in claims):
            return Check(name, False, f"{r.case.config}: claim undecided")
        held = all(c.k == c.decided for c in claims)
        words.append(f"{r.case.config}: claim {'held' if held else 'did not hold'} ({len(claims)} claim(s))")
    return Check(name, True, "; ".join(words))


def summarize(records: Sequence[Any], crosscheck: list[dict[str, Any]] | None,
              expected: Iterable[tuple[str, str]], *, quick: bool = False) -> list[Check]:
    """Each acceptance condition, decided from the records (RunRecord objects) and the cross-check."""
    checks = [_cases_check(records, expected), _compile_check(records), _crosscheck(crosscheck)]
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
    measured_power = sorted(p for p in power if p)
    checks.append(Check("power not null", p_ok, f"{len(measured_power)} of {len(power)}; "
                        + (f"median {measured_power[len(measured_power) // 2]:.1f} W" if measured_power else "none")
                        + " (energy per item x throughput)"))

    peaks = [v for r in ok_speed for _, v in _metric_values(r, ".peak_mem_allocated")]
    checks.append(Check("CUDA memory peaks", bool(peaks) and all(v is not None and v > 0 for v in peaks),
                        f"{len(peaks)} peaks" + (f", max {max(v for v in peaks if v) / 2**20:.0f} MiB" if any(peaks)
                                                 else "")))
    if quick:
        return checks

    kernels = [(r.case.config, k) for r in ok_speed for k, v in r.artifacts.items()
               if k.endswith(".kernels") and isinstance(v, list) and v]
    checks.append(Check("--profile kernel table", bool(kernels), f"{len(kernels)} tables"
                        + (f", e.g. {kernels[0][0]}:{kernels[0][1]}" if kernels else "")))

    nccl = [r for r in ok_speed if r.info.get("backend") == "nccl" and r.info.get("world_size")]
    checks.append(Check("NCCL torchrun case", bool(nccl),
                        f"{nccl[0].case.config}, world size {nccl[0].info['world_size']}" if nccl
                        else "no ok cuda record with backend nccl"))
    checks.append(_quality_check(records))
    return checks


def format_summary(checks: Sequence[Check], records: Sequence[Any] = (), published: Sequence[Any] = ()) -> str:
    """The PASS/FAIL table, then the execution modes side by side and the published anchors."""
    from milestones.harness import modes_report
    from milestones.harness import published as pub

    lines = ["| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'PASS' if c.passed else 'FAIL'} | {c.detail} |" for c in checks]
    n_fail = sum(not c.passed for c in checks)
    lines += ["", f"{len(checks) - n_fail} passed, {n_fail} failed"]
    cuda = [r for r in records if r.case.device.startswith("cuda")]
    if cuda:
        lines += ["", "## Execution modes", "", modes_report.markdown(modes_report.mode_rows(cuda))]
        lines += ["", "## Published throughput (not paper results)", "",
                  pub.markdown(pub.anchor_rows(cuda, published))]
    return "\n".join(lines)


def cmd_summary(out: Path, quick: bool) -> int:
    from milestones.harness import published, store

    if not out.is_dir():
        raise UsageError(f"{out}: no such results folder")
    records = store.load_records(out)
    cc_path = next(iter(sorted(out.rglob(CROSSCHECK_FILE))), None)
    cc = [json.loads(ln) for ln in cc_path.read_text().splitlines() if ln.strip()] if cc_path else None
    checks = summarize(records, cc, expected_cases(quick), quick=quick)
    text = format_summary(checks, records, published.load())
    print(text)
    (out / SUMMARY_FILE).write_text(text + "\n")
    return 0 if all(c.passed for c in checks) else 1


def crosscheck_step(config: str, mode: str, device: str = "cuda") -> tuple[Any, str]:
    """The train step of a registered speed config at its paper batch, in `mode` without compile (a
    compiled step's first calls are compilation, not what the two clocks are compared on), built through
    the registry as every command builds its cases. Returns (step function, what it is)."""
    import dataclasses

    from milestones.harness.launch.inprocess import declared_plan
    from milestones.harness.measure import modes
    from milestones.harness.options import RunOptions
    from milestones.harness.registry import load_suites
    from milestones.harness.runner import plan_specs

    reg = load_suites()
    m = Mode.parse(mode)
    if m.compiled:
        raise UsageError(f"the cross-check times eager steps; {mode!r} compiles")
    spec = plan_specs([reg.config(config)], RunOptions(kinds=("speed",), scale="paper", modes=(str(m),)), device)[0]
    spec = dataclasses.replace(spec, requested_device=device)
    plan = declared_plan(spec)
    why = modes.unsupported_reason(m, device, plan)
    if why:
        raise UsageError(f"{config} [{mode}]: {why}")
    plan, _ = modes.apply_eager(plan, m, device)
    step = plan.step("train") if any(s.label == "train" for s in plan.steps) else plan.step()
    if step.setup is not None:
        step.setup()
    return step.fn, f"{config} {step.label} step, batch {spec.case.batch_size}, {mode}"


def cmd_crosscheck(out: Path, quick: bool, iters: int = 30) -> int:
    import torch

    from milestones.harness.measure import modes
    from milestones.harness.measure.crosscheck import timer_crosscheck

    if not torch.cuda.is_available():
        raise UsageError("the cross-check needs a CUDA device (torch sees none)")
    results = []
    for config, mode in (QUICK_CROSSCHECK if quick else FULL_CROSSCHECK):
        fn, what = crosscheck_step(config, mode)
        with modes.precision_flags(Mode.parse(mode)):
            r = timer_crosscheck(fn, "cuda", iters)
        results.append({"config": config, "mode": mode, "step": what, "device_name": torch.cuda.get_device_name(),
                        **r})
        print(f"{what}: CUDA events {r['harness_median_s'] * 1e3:.3f} ms, Timer "
              f"{r['benchmark_timer_median_s'] * 1e3:.3f} ms, ratio {r['ratio']:.3f}")
        del fn
        torch.cuda.empty_cache()
    out.mkdir(parents=True, exist_ok=True)
    (out / CROSSCHECK_FILE).write_text("".join(json.dumps(r) + "\n" for r in results))
    return 0


def cmd_plan(quick: bool) -> int:
    for config, modes in (QUICK_PLAN if quick else FULL_PLAN):
        print(config, ",".join(parse_modes(modes)))
    return 0


USAGE = "usage: python -m milestones.harness.gpu_check {plan [--quick] | crosscheck OUT [--quick] | summary OUT [--quick]}"


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    args = [a for a in argv if a != "--quick"]
    if not args or args[0] not in ("plan", "summary", "crosscheck") or len(args) != (1 if args[0] == "plan" else 2):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if args[0] == "plan":
            return cmd_plan(quick)
        return cmd_summary(Path(args[1]), quick) if args[0] == "summary" else cmd_crosscheck(Path(args[1]), quick)
    except UsageError as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
