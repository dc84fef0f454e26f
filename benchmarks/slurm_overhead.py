"""What a Slurm job adds to a run (issue 26's measured note), on the tests' single-node cluster.

Starts the cluster of tests/slurm_cluster.py (root, Debian's slurm-wlm and munge), then, in alternating
rounds, runs the same fault-suite cases (tests/fake_suites.py: a few ms of work each) with
`milestones run` on this machine and with `milestones submit ... --wait` as one job, for 1 case and for
K cases. Per job: wall time of submit+wait less the local run's; per case: the slope between 1 and K
cases, less the cases' own recorded durations. Also the phases of a job from its own report: submit
command, queue and start until the job's report, the job's set-up until its first case.

    python benchmarks/slurm_overhead.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import slurm_cluster  # noqa: E402

CASES = ["fake-ok", "fake-crash", "fake-oom", "fake-nan", "fake-oom-above-8"]
COMMON = ["--kind", "speed", "--device", "cpu", "--threads", "1"]


def _ts(s: str) -> float:
    return dt.datetime.fromisoformat(s).timestamp()


def _records(out: Path) -> list[dict]:
    return [json.loads(f.read_text()) for f in out.glob("*/*/*.json")
            if f.name != "_run.json" and not f.relative_to(out).parts[0].startswith(".")]


def _cmd(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(["milestones", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode not in (0, 1):
        raise SystemExit(f"milestones {' '.join(args)} failed: {r.stderr[-2000:]}")
    return time.perf_counter() - t0


def local(cases: list[str], env: dict[str, str], work: Path) -> dict:
    out = Path(tempfile.mkdtemp(dir=work))
    wall = _cmd(["run", *cases, *COMMON, "--out", str(out)], env)
    return {"wall": wall, "cases_s": sum(r["duration_s"] for r in _records(out))}


def slurm(cases: list[str], env: dict[str, str], work: Path) -> dict:
    out = Path(tempfile.mkdtemp(dir=work))
    t0 = time.time()
    submit = _cmd(["submit", *cases, *COMMON, "--out", str(out), "--slurm-partition", "a100=a100"], env)
    (sub,) = (out / ".slurm").iterdir()
    wait = _cmd(["jobs", str(sub), "--wait", "--poll", "0.2"], env)
    recs = _records(out)
    (report,) = [json.loads(f.read_text()) for f in (sub / "jobs").glob("*.json")]
    first = min(_ts(r["started_at"]) for r in recs)
    return {"wall": submit + wait, "cases_s": sum(r["duration_s"] for r in recs), "submit_cmd": submit,
            "to_job_report": _ts(report["started_at"]) - t0, "job_setup": first - _ts(report["started_at"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    why = slurm_cluster.missing()
    if why:
        raise SystemExit(why)
    work = Path(tempfile.mkdtemp(prefix="slurm-overhead-"))
    c = slurm_cluster.Cluster(work / "cluster")
    c.start()
    env = {**os.environ, **c.env, "MILESTONES_EXTRA_SUITES": "tests.fake_suites",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows: dict[tuple[str, int], list[dict]] = {}
    try:
        for _ in range(a.rounds):
            for k in (1, len(CASES)):
                for name, fn in (("local", local), ("slurm", slurm)):
                    rows.setdefault((name, k), []).append(fn(CASES[:k], env, work))
    finally:
        c.stop()
    med = {key: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for key, rs in rows.items()}
    k = len(CASES)
    print(f"load average at the end: {os.getloadavg()}")
    for key, m in sorted(med.items()):
        print(key, {n: round(v, 2) for n, v in m.items()})
    per_job = med[("slurm", 1)]["wall"] - med[("local", 1)]["wall"]
    for name in ("local", "slurm"):
        slope = (med[(name, k)]["wall"] - med[(name, 1)]["wall"]
                 - (med[(name, k)]["cases_s"] - med[(name, 1)]["cases_s"])) / (k - 1)
        print(f"{name}: per-case overhead beyond the case's own duration: {slope:.2f} s")
    print(f"per job (1 case, slurm - local wall): {per_job:.2f} s; submit command {med[('slurm', 1)]['submit_cmd']:.2f} s,"
          f" submit -> job report {med[('slurm', 1)]['to_job_report']:.2f} s, job report -> first case "
          f"{med[('slurm', 1)]['job_setup']:.2f} s (medians of {a.rounds} rounds)")


if __name__ == "__main__":
    main()
