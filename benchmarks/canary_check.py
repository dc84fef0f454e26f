"""Does the machine-speed canary see a slow machine? (a benchmark, not a test)

Runs one CPU speed case as separate `milestones run` processes, alternately on a quiet machine and
with a memory-bandwidth hog on every other core (a process copying a 256 MiB buffer in a loop: the
kind of neighbour that slows a core's work without taking the core), and reports, per condition, the
case's CPU time per step and its canary (`info.canary`), and their hog/quiet ratios per round.

    python benchmarks/canary_check.py cifar-resnet20-smoke --rounds 5 --out /tmp/canary-check

A canary that tracks the case (both slower under the hog) is what lets `compare` recognise a slow
machine; a canary that stays put while the case slows would be blind to this kind of event.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HOG = ("import numpy as np\n"
       "a = np.ones(32 << 20); b = np.empty_like(a)\n"
       "while True:\n    np.copyto(b, a)\n")


def _hogs(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(n)]


def _one(case: str, out: Path) -> tuple[float, float]:
    from milestones.harness import compare
    from milestones.harness.measure import canary
    from milestones.harness.store import load_records

    before = {r.run_id for r in load_records(out)} if out.exists() else set()
    subprocess.run(["milestones", "run", case, "--kind", "speed", "--threads", "1", "--out", str(out)],
                   check=True, capture_output=True)
    (rec,) = [r for r in load_records(out) if r.run_id not in before]
    label = next(m[: -len(".cpu_time")] for m in rec.metrics if m.endswith(".cpu_time"))
    cpu = statistics.median(compare.clean_samples(rec, f"{label}.cpu_time")[0])
    can = canary.median_total(rec.info.get("canary"))
    if can is None:
        raise SystemExit("the record has no canary: is this a CPU speed case of this revision?")
    return cpu, can


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="/tmp/canary-check")
    args = ap.parse_args()
    out = Path(args.out)
    n_hogs = max(1, (os.cpu_count() or 2) - 1)
    rows = []
    for i in range(args.rounds):
        quiet = _one(args.case, out)
        procs = _hogs(n_hogs)
        try:
            time.sleep(1.0)  # let the hogs import numpy and reach their copy loop before the case starts
            hog = _one(args.case, out)
        finally:
            for p in procs:
                p.kill()
                p.wait()
        rows.append((quiet, hog))
        print(f"round {i + 1}: case cpu/step {quiet[0] * 1e3:.2f} -> {hog[0] * 1e3:.2f} ms "
              f"(x{hog[0] / quiet[0]:.2f}); canary {quiet[1] * 1e3:.2f} -> {hog[1] * 1e3:.2f} ms "
              f"(x{hog[1] / quiet[1]:.2f})", flush=True)
    case_r = statistics.median(h[0] / q[0] for q, h in rows)
    can_r = statistics.median(h[1] / q[1] for q, h in rows)
    print(f"median hog/quiet ratio over {len(rows)} rounds: case x{case_r:.2f}, canary x{can_r:.2f} "
          f"({n_hogs} hog process(es), load now {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
