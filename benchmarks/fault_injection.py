"""Fault injection against `milestones run` and its readers: each fault injected into real runs (the
console script, case processes, the fork server), then counted: records lost, what was left behind
(processes, lock and temporary files, work folders, empty run folders) and the exit code. Writes the
table into docs/fault-injection.md, so the next pass re-runs every fault with one command:

    python benchmarks/fault_injection.py [--trials 2] [--only NAME ...] [--no-write]

Not a test: it takes minutes (each trial starts the CLI; a loaded 2-core machine makes that 10-40 s).
The faulty cases come from the test suites' fault-injecting configs (tests/fake_suites.py,
tests/case_fault_suites.py), loaded through $MILESTONES_EXTRA_SUITES.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "fault-injection.md"
BEGIN, END = "<!-- fault table: begin -->", "<!-- fault table: end -->"
MACHINE = "fault-machine"


@dataclass
class Trial:
    exit_code: int | None
    lost: int  # expected cases without a record after the run (and its resume, where the fault has one)
    leftovers: list[str] = field(default_factory=list)
    ok: bool = True  # the behaviour the docs promise (status, message) was seen
    note: str = ""


class Sandbox:
    """One trial: its own results folder, TMPDIR and a marker every process it starts inherits."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fault-"))
        self.out = self.dir / "res"
        self.marker = secrets.token_hex(6)
        (self.dir / "tmp").mkdir()
        self.env = dict(os.environ, MILESTONES_MACHINE_ID=MACHINE, FAULT_TRIAL=self.marker,
                        TMPDIR=str(self.dir / "tmp"), PYTHONPATH=str(ROOT),
                        MILESTONES_EXTRA_SUITES="tests.fake_suites,tests.case_fault_suites")

    def popen(self, *args: str, python: str | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "-c", python, *args] if python else ["milestones", *args]
        return subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def run(self, *args: str, python: str | None = None, timeout: float = 600) -> tuple[int, str]:
        p = self.popen(*args, python=python)
        _, err = p.communicate(timeout=timeout)
        return p.returncode, err

    def folders(self) -> list[Path]:
        base = self.out / MACHINE
        return sorted(base.iterdir()) if base.is_dir() else []

    def configs(self) -> list[str]:
        from milestones.harness import store

        return [r.case.config for r in store.load_records(self.out)] if self.folders() else []

    def processes(self) -> list[int]:
        """Live processes started by this trial (they carry its marker), after a grace for dying ones."""
        needle = f"FAULT_TRIAL={self.marker}".encode()
        deadline = time.time() + 15
        while True:
            found = []
            for d in os.listdir("/proc"):
                if not d.isdigit():
                    continue
                try:
                    stat = Path(f"/proc/{d}/stat").read_bytes()
                    if stat[stat.rindex(b")") + 2:].split()[0] in (b"Z", b"X"):
                        continue
                    if needle in Path(f"/proc/{d}/environ").read_bytes():
                        found.append(int(d))
                except (OSError, ValueError):
                    continue
            if not found or time.time() > deadline:
                return found
            time.sleep(0.2)

    def leftovers(self) -> list[str]:
        out = [f"process {pid}" for pid in self.processes()]
        for pid in self.processes():  # a fault table must not leave its own leftovers behind
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for f in self.folders():
            names = [p.name for p in f.iterdir()]
            out += [f"{f.name}/{n}" for n in names if n.startswith((".lock", ".tmp-", ".probe-", ".work"))]
            if not names:
                out.append(f"empty run folder {f.name}")
        # torch's own compile cache folder (torchinductor_<user>, made by importing torch._dynamo) is
        # torch's, kept across runs by design: not counted.
        stray = [p.name for p in (self.dir / "tmp").iterdir() if not p.name.startswith("torchinductor_")]
        out += [f"$TMPDIR/{n}" for n in stray]
        return out

    def wait_for(self, path: Path, timeout: float = 300) -> bool:
        deadline = time.time() + timeout
        while not (path.exists() and path.read_text().strip()) and time.time() < deadline:
            time.sleep(0.1)
        return path.exists()

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _lost(sb: Sandbox, expected: list[str]) -> int:
    got = sb.configs()
    return sum(1 for c in expected if c not in got) + max(0, len(got) - len(expected))  # duplicates count too


def _run_id(sb: Sandbox) -> str:
    return sb.folders()[0].name


def _resume(sb: Sandbox, *extra: str) -> tuple[int, str]:
    return sb.run("run", "--resume", _run_id(sb), "--out", str(sb.out), *extra)


# ------------------------------------------------------------------------------------------ faults
def _kill_runner_mid_case(sig: signal.Signals) -> Callable[[Sandbox], Trial]:
    def trial(sb: Sandbox) -> Trial:
        started = sb.dir / "started"
        sb.env["FAKE_SLOW_STARTED"] = str(started)
        expected = ["fake-ok", "fake-slow", "fake-crash"]
        p = sb.popen("run", *expected, "--kind", "speed", "--out", str(sb.out))
        sb.wait_for(started)
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
        first_rc = p.returncode
        said = "--resume" in err or sig == signal.SIGKILL
        rc, _ = _resume(sb, "--option", "sleep=0")
        return Trial(first_rc, _lost(sb, expected), sb.leftovers(), ok=said and rc == 1,
                     note=f"resume exit {rc}")
    return trial


def fork_server_killed(sb: Sandbox) -> Trial:
    started = sb.dir / "started"
    sb.env["FAKE_SLOW_STARTED"] = str(started)
    expected = ["fake-slow", "fake-ok"]
    p = sb.popen("run", *expected, "--kind", "speed", "--device", "cpu", "--out", str(sb.out))
    sb.wait_for(started)
    case = int(started.read_text())
    server = int(Path(f"/proc/{case}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
    os.kill(server, signal.SIGKILL)
    p.communicate(timeout=600)
    from milestones.harness import store

    recs = {r.case.config: r for r in store.load_records(sb.out)}
    ok = "fork server" in (recs.get("fake-slow").error or "") and recs.get("fake-ok").status == "ok" \
        if set(recs) == set(expected) else False
    return Trial(p.returncode, _lost(sb, expected), sb.leftovers(), ok=ok)


# Runs the CLI with one write made to fail as a full disk fails it (ENOSPC), from the given call on.
FULL_DISK = """
import errno, sys
from milestones.harness import cli, store
from milestones.harness.launch.spec import CaseSpec
what, after = sys.argv[1], int(sys.argv[2])
calls = []
def full(real):
    def f(*a, **kw):
        calls.append(1)
        if len(calls) > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **kw)
    return f
if what == "spec":
    CaseSpec.write = full(CaseSpec.write)
else:
    store.write_manifest = full(store.write_manifest)
sys.exit(cli.main(sys.argv[3:]))
"""


def full_disk_writing_a_spec(sb: Sandbox) -> Trial:
    expected = ["fake-ok", "fake-crash"]
    rc, err = sb.run("spec", "1", "run", *expected, "--kind", "speed", "--out", str(sb.out), python=FULL_DISK)
    said = "No space left" in err and "milestones run --resume" in err and "Traceback" not in err
    rrc, _ = _resume(sb)
    return Trial(rc, _lost(sb, expected), sb.leftovers(), ok=said and rrc == 1, note=f"resume exit {rrc}")


def full_disk_writing_a_result(sb: Sandbox) -> Trial:
    expected = ["casefault-no-space", "fake-ok"]
    rc, err = sb.run("run", *expected, "--kind", "speed", "--out", str(sb.out))
    from milestones.harness import store

    recs = store.load_records(sb.out)
    said = "milestones run --resume" in err and any(r.info.get("disk_full") for r in recs)
    # Resume runs the disk-full case again (it fills the disk again here) and then the rest.
    rrc, _ = _resume(sb)
    n_superseded = len(list(sb.folders()[0].joinpath(".superseded").glob("*.json")))
    return Trial(rc, _lost(sb, ["casefault-no-space"]), sb.leftovers(), ok=said and n_superseded == 1,
                 note="the case re-run on --resume")


def full_disk_at_the_start(sb: Sandbox) -> Trial:
    rc, err = sb.run("manifest", "0", "run", "fake-ok", "--kind", "speed", "--out", str(sb.out), python=FULL_DISK)
    lines = [ln for ln in err.splitlines() if ln.startswith("milestones: error")]
    return Trial(rc, 0, sb.leftovers(), ok=len(lines) == 1 and "Traceback" not in err)


def _case_statuses(configs: list[str], want: str, *flags: str) -> Callable[[Sandbox], Trial]:
    def trial(sb: Sandbox) -> Trial:
        rc, _ = sb.run("run", *configs, "--kind", "speed", "--out", str(sb.out), *flags)
        from milestones.harness import store

        statuses = [r.status for r in store.load_records(sb.out)] if sb.folders() else []
        return Trial(rc, _lost(sb, configs), sb.leftovers(), ok=statuses == [want] * len(configs),
                     note="status " + ",".join(statuses))
    return trial


def leftover_temporary_record(sb: Sandbox) -> Trial:
    expected = ["fake-ok", "fake-crash"]
    sb.run("run", *expected, "--kind", "speed", "--out", str(sb.out))
    folder = sb.folders()[0]
    rec = next(folder.glob("fake.fake-ok.*.json"))
    rec.rename(rec.with_name(f".tmp-0123456789ab-{rec.name}"))  # SIGKILL between fsync and link
    rc, _ = _resume(sb)
    return Trial(rc, _lost(sb, expected), sb.leftovers(), ok=rc == 0)


def _reader(kind: str) -> Callable[[Sandbox], Trial]:
    def trial(sb: Sandbox) -> Trial:
        from milestones.harness import store
        from tests.test_store import make_record

        if kind == "nonfinite":
            for i, s in enumerate([(float("nan"), float("inf"), float("-inf")), (1e308, 1e308, -1e308)]):
                store.write_record(sb.out / MACHINE / f"r{i}", make_record(run_id=f"r{i}", samples=s))
            rc, err = sb.run("report", str(sb.out), "--output", str(sb.dir / "r.html"), "--no-plots")
        elif kind == "nvidia-list":
            a = make_record(run_id="a")
            store.write_record(sb.out / MACHINE / "a", a)
            store.write_record(sb.out / MACHINE / "b", dataclasses.replace(
                make_record(run_id="b"), env={**a.env, "nvidia": [1, 2]}))
            rc, err = sb.run("compare", str(sb.out / MACHINE / "a"), str(sb.out / MACHINE / "b"))
        else:  # an empty --data folder
            (sb.dir / "EMPTY").mkdir()
            rc, err = sb.run("run", "alexnet", "--scale", "paper", "--kind", "quality", "--data",
                             f"imagenet={sb.dir / 'EMPTY'}", "--out", str(sb.out))
        return Trial(rc, 0, sb.leftovers(), ok="Traceback" not in err and rc in ((2,) if kind == "empty-data"
                                                                                 else (0, 1)))
    return trial


FAULTS: dict[str, tuple[str, Callable[[Sandbox], Trial]]] = {
    "runner-sigkill": ("runner SIGKILLed mid-case, then --resume", _kill_runner_mid_case(signal.SIGKILL)),
    "runner-sigint": ("Ctrl-C (SIGINT) mid-case, then --resume", _kill_runner_mid_case(signal.SIGINT)),
    "fork-server-kill": ("fork server SIGKILLed mid-case", fork_server_killed),
    "disk-spec": ("full disk writing a case's spec (ENOSPC), then --resume", full_disk_writing_a_spec),
    "disk-result": ("full disk as a case writes its result, then --resume", full_disk_writing_a_result),
    "disk-start": ("full disk writing the run manifest", full_disk_at_the_start),
    "cpu-oom": ("CPU out of memory (MemoryError; torch's DefaultCPUAllocator)",
                _case_statuses(["casefault-memory-error", "casefault-cpu-alloc"], "oom")),
    "stubborn-child": ("an ok case leaves a child that ignores SIGTERM",
                       _case_statuses(["casefault-stubborn-child"], "ok", "--option", "pidfile=/dev/null")),
    "setsid-child": ("an ok case leaves a child in its own session (setsid)",
                     _case_statuses(["casefault-setsid-child"], "ok", "--option", "pidfile=/dev/null")),
    "tmp-record": ("a leftover .tmp-*-<case>.json (SIGKILL between fsync and link), then --resume",
                   leftover_temporary_record),
    "nonfinite-report": ("`report` on samples nan/inf/-inf and 1e308 overflow", _reader("nonfinite")),
    "nvidia-list": ("`compare` with env.nvidia = [1, 2]", _reader("nvidia-list")),
    "empty-data": ("`run --data imagenet=EMPTY_DIR`", _reader("empty-data")),
}


def table(results: dict[str, list[Trial]]) -> str:
    rows = ["| fault | trials | records lost | leftovers | exit code | as documented |", "|---|---|---|---|---|---|"]
    for name, trials in results.items():
        left = sorted({x for t in trials for x in t.leftovers})
        codes = sorted({t.exit_code for t in trials if t.exit_code is not None})
        notes = sorted({t.note for t in trials if t.note})
        rows.append(f"| {FAULTS[name][0]} | {len(trials)} | {sum(t.lost for t in trials)} | "
                    f"{', '.join(left) if left else 'none'} | {', '.join(map(str, codes))} | "
                    f"{sum(t.ok for t in trials)}/{len(trials)}{' (' + '; '.join(notes) + ')' if notes else ''} |")
    return "\n".join(rows)


def write_doc(text: str, header: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    a, b = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    DOC.write_text(doc[:a] + "\n" + header + "\n\n" + text + "\n" + doc[b:], encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--only", nargs="*", choices=sorted(FAULTS), help="these faults only")
    ap.add_argument("--no-write", action="store_true", help=f"print the table, leave {DOC.name} alone")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = str(ROOT)
    results: dict[str, list[Trial]] = {}
    for name in args.only or FAULTS:
        results[name] = []
        for i in range(args.trials):
            sb = Sandbox()
            t0 = time.time()
            try:
                t = FAULTS[name][1](sb)
            except Exception as e:  # a fault that breaks the script is a finding too: keep going
                t = Trial(None, -1, sb.leftovers(), ok=False, note=f"script error {type(e).__name__}: {e}"[:120])
            finally:
                sb.close()
            results[name].append(t)
            print(f"{name} #{i + 1}: exit {t.exit_code}, lost {t.lost}, leftovers {t.leftovers or 'none'}, "
                  f"{'ok' if t.ok else 'NOT AS DOCUMENTED'} {t.note} ({time.time() - t0:.0f} s)", file=sys.stderr)
    text = table(results)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    header = (f"Measured {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load "
              f"average {load} at the end, {args.trials} trial(s) per fault: "
              f"`python benchmarks/fault_injection.py --trials {args.trials}`.")
    print(header + "\n\n" + text)
    if not args.no_write and not args.only:
        write_doc(text, header)
    return 0 if all(t.ok and t.lost == 0 and not t.leftovers for ts in results.values() for t in ts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
