"""Interleaved A/B runs (`milestones ab`): the same cases under two environments, alternately, in one job.

An environment ("side") is an interpreter and a checkout of the project: two virtualenvs
(`--base-python/--new-python`), two git revisions (`--base-rev/--new-rev`, checked out as worktrees),
or both. Each round starts one fresh case process per side, the order alternating from round to
round (AB, BA, AB, ...: ABBA over two rounds), and takes the log ratio of the two processes' medians.
Adjacent processes share the machine's state (a busy minute, the CPU frequency), so that state cancels
in the ratio. Rounds are added until `stats.paired_verdict` is conclusive for every tested metric or
the budget (`max_rounds`, `max_time`) is spent; the error rates hold over all the looks.

Speed cases run by the burst protocol where both sides have it (`harness/ab_bursts.py`): a round's two
processes stay alive and take turns timing short bursts of steps, so one round yields many paired
bursts and load changes cancel within seconds; rounds still restart both processes (a new memory
layout each). `--protocol processes` (and any case or revision without it) times each side's whole
case process instead, one median per side and round.

Records of both sides are ordinary records, marked in `info["ab"]` (side, round, pair id), written into
one run folder (one sub-folder per round and side).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milestones.harness import ab_bursts, stats
from milestones.harness.errors import UsageError
from milestones.harness.records import Case, RunRecord

SIDES = ("base", "new")
PROTOCOLS = ("bursts", "processes")
# CPU time per sample: what a 1-thread CPU step costs, whatever share of a core the scheduler gave it
# (measured on a loaded 2-core machine: per-round log-ratio SD 3-5% in CPU time, 11-56% in wall time).
# GPU timings have no CPU time: their step time is decided on instead.
DEFAULT_METRICS = ("*.cpu_time",)
FALLBACK_METRICS = ("*.step_time",)
AB_SUMMARY = "_ab_summary.jsonl"
AB_RESUME = "_ab_resume.jsonl"  # one line: the sides as given (unscrubbed paths), for --resume only (not *.json: no reader takes it for a record)
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Prints what a side can run: its environment and, per config, the suite and the suite's version.
# Tries the installed layout (milestones.harness) first, then the older top-level `harness` package.
_PROBE = r"""
import importlib.util, json, sys
try:
    from milestones.harness import env as E
    from milestones.harness.registry import load_suites
    layout = "milestones"
except ImportError:
    from harness import env as E
    from harness.registry import load_suites
    layout = "toplevel"
reg = load_suites()
configs = {}
for s in reg.suites.values() if hasattr(reg, "suites") else []:
    for name, c in s.configs.items():
        configs[name] = {"suite": s.name, "version": s.version, "kinds": list(c.kinds), "scales": list(c.scales)}
pkg = "milestones.harness" if layout == "milestones" else "harness"
bursts = importlib.util.find_spec(pkg + ".burst_worker") is not None
print("MILESTONES_PROBE" + json.dumps({"layout": layout, "env": E.capture(), "configs": configs,
                                       "bursts": bursts}, default=str))
"""


@dataclass(frozen=True)
class Side:
    """One environment: how to start its case processes."""

    name: str                      # base | new
    python: str                    # interpreter
    pythonpath: tuple[str, ...]    # put first on PYTHONPATH
    worker_module: str             # milestones.harness.worker, or harness.worker for old checkouts
    label: str                     # what the user named (the interpreter, or the revision)
    rev: str | None = None         # resolved commit, for a revision
    current: bool = False          # this very interpreter and checkout: run through the runner's own launcher
    bursts: bool = False           # its checkout has the burst worker (set by probe)
    env: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    metrics: tuple[str, ...] = DEFAULT_METRICS
    threshold: float = stats.DEFAULT_THRESHOLD
    alpha: float = stats.DEFAULT_ALPHA
    max_rounds: int = 256  # with max_time 600 s: rounds of ~1-3 s on a CPU fit the 10 minutes
    max_time: float = 600.0
    protocol: str = "bursts"       # bursts | processes (see the module's docstring)
    bursts: int = ab_bursts.DEFAULT_BURSTS
    burst_time: float = ab_bursts.DEFAULT_BURST_TIME

    def __post_init__(self) -> None:
        if self.max_rounds < 2:
            raise UsageError(f"--max-rounds must be at least 2 (a paired test needs two rounds), not {self.max_rounds}")
        if not self.max_time > 0 or self.max_time != self.max_time:
            raise UsageError(f"--max-time must be a positive number of seconds, not {self.max_time}")
        if not 0 < self.alpha < 1:
            raise UsageError(f"--alpha must be between 0 and 1, not {self.alpha}")
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")
        if self.bursts < 2:
            raise UsageError(f"--bursts must be at least 2 (one per order of the sides), not {self.bursts}")
        if not 0 < self.burst_time < 60:
            raise UsageError(f"--burst-time must be between 0 and 60 seconds, not {self.burst_time}")


# ------------------------------------------------------------------------------------------ sides
def _layout_root(checkout: Path, work: Path, name: str) -> tuple[tuple[str, ...], str]:
    """PYTHONPATH and worker module for a checkout: a `milestones/` folder of links to its harness/ and
    suites/ (the installed layout), or the checkout itself for revisions with top-level packages."""
    worker = (checkout / "harness" / "worker.py")
    if not worker.exists():
        raise UsageError(f"{checkout} has no harness/worker.py: not a milestones checkout")
    if "milestones.harness" in worker.read_text(encoding="utf-8", errors="replace"):
        shim = work / f"pkg-{name}"
        pkg = shim / "milestones"
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text("")
        for sub in ("harness", "suites"):
            link = pkg / sub
            if not link.exists():
                link.symlink_to(checkout / sub, target_is_directory=True)
        # The checkout itself second: modules named in $MILESTONES_EXTRA_SUITES come from that revision too.
        return (str(shim), str(checkout)), "milestones.harness.worker"
    return (str(checkout),), "harness.worker"


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)


def resolve_rev(repo: Path, rev: str) -> str:
    r = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if r.returncode != 0 or not r.stdout.strip():
        raise UsageError(f"revision {rev!r} does not exist in {repo}")
    return r.stdout.strip()


def add_worktree(repo: Path, commit: str, where: Path) -> Path:
    r = _git(repo, "worktree", "add", "--detach", str(where), commit)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["git worktree add failed"])[-1]
        raise UsageError(f"cannot check out {commit[:12]} as a worktree: {last}")
    return where


def remove_worktree(repo: Path, where: Path) -> None:
    _git(repo, "worktree", "remove", "--force", str(where))
    shutil.rmtree(where, ignore_errors=True)


def _side_environ(side: Side) -> dict[str, str]:
    env = dict(os.environ)
    # The side's own code first, ahead of the caller's PYTHONPATH and any editable install of another
    # checkout: a revision is measured with that revision's harness and suites.
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([*side.pythonpath, *rest])
    env["PYTHONNOUSERSITE"] = "1"
    return env


def probe(side: Side, timeout: float = 600.0) -> Side:
    """Check that the side can import the project (UsageError if not) and read its environment."""
    try:
        r = subprocess.run([side.python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout,
                           env=_side_environ(side), cwd=tempfile.gettempdir(), stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UsageError(f"{side.name} interpreter {side.python!r} not found") from None
    except PermissionError:
        raise UsageError(f"{side.name} interpreter {side.python!r} is not executable") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"{side.name} environment ({side.label}) did not import the project within "
                         f"{timeout:g} s") from None
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("MILESTONES_PROBE")), None)
    if r.returncode != 0 or line is None:
        last = next((ln for ln in reversed(r.stderr.strip().splitlines()) if ln.strip()), f"exit {r.returncode}")
        raise UsageError(f"{side.name} environment ({side.label}) cannot import the project: {last.strip()[:300]}")
    data = json.loads(line[len("MILESTONES_PROBE"):])
    return dataclasses.replace(side, env=data["env"], configs=data["configs"], bursts=bool(data.get("bursts")))


def make_sides(*, base_python: str | None, new_python: str | None, base_rev: str | None, new_rev: str | None,
               repo: Path, work: Path) -> list[Side]:
    """The two sides, not yet probed. Revisions are checked out as worktrees under `work`."""
    if not any((base_python, new_python, base_rev, new_rev)):
        raise UsageError("ab needs two environments: --base-python/--new-python and/or --base-rev/--new-rev")
    # One side given: the other is this interpreter and checkout (a revision against the working tree).
    sides = []
    for name, py, rev in (("base", base_python, base_rev), ("new", new_python, new_rev)):
        python = str(Path(py).expanduser()) if py else sys.executable
        if py and shutil.which(python) is None and not Path(python).is_file():
            raise UsageError(f"--{name}-python {py!r}: no such interpreter")
        if rev is not None:
            commit = resolve_rev(repo, rev)
            checkout = add_worktree(repo, commit, work / f"rev-{name}")
            path, module = _layout_root(checkout, work, name)
            sides.append(Side(name, python, path, module, f"{rev} ({commit[:10]})", rev=commit))
        else:
            path, module = _layout_root(PROJECT_ROOT, work, name)
            sides.append(Side(name, python, path, module, python, current=(py is None)))
    return sides


# --------------------------------------------------------------------------------------- launching
def case_spec(case: Case, opts: Any, *, seed: int, workdir: Path) -> Any:
    """The CaseSpec of one side's case, planned as `milestones run` plans it. Its JSON is also what an older
    checkout's worker reads (it takes the keys it knows)."""
    from milestones.harness.launch.spec import CaseSpec

    return CaseSpec(case=case, seed=seed, seeds=opts.seeds, threads=opts.threads, deterministic=opts.deterministic,
                    profile=opts.profile, peak_tflops=opts.peak_tflops, options=opts.options,
                    data={k: str(Path(v).resolve()) for k, v in opts.data.items()},
                    workdir=str(workdir), timeout=opts.timeout_for(case.scale),
                    requested_device=opts.device.split(":")[0])


def launcher(side: Side) -> Any:
    """The case-process launcher for a side: its interpreter, its checkout's code first on the import path."""
    from milestones.harness.launch.process import CaseProcess

    return CaseProcess(python=side.python, pythonpath=side.pythonpath, worker_module=side.worker_module,
                       extra_env=(("PYTHONNOUSERSITE", "1"),))


def run_case(side: Side, case: Case, opts: Any, *, seed: int, workdir: Path):
    """THE seam: every case process of `ab` starts here, through the same case-process launcher as
    `milestones run` (the current checkout's, or the side's interpreter and checkout)."""
    spec = case_spec(case, opts, seed=seed, workdir=workdir)
    if side.current:
        from milestones.harness.launch.process import CaseProcess

        return CaseProcess().run(spec)
    return launcher(side).run(spec)


def uses_bursts(case: Case, sides: Sequence[Side], settings: Settings) -> bool:
    """The burst protocol for this case: asked for, a speed case (the only kind with steps to time), and
    every side's checkout has the burst worker (an older revision falls back to whole processes)."""
    return settings.protocol == "bursts" and case.kind == "speed" and all(s.bursts for s in sides)


def run_burst_round(sides: Sequence[Side], case: Case, opts: Any, settings: Settings, *, i: int, seed: int,
                    workdir: Path) -> dict[str, Any]:
    """THE seam of the burst protocol: one round of live processes, a CaseResult per side."""
    specs = {s.name: case_spec(case, opts, seed=seed, workdir=workdir / s.name) for s in sides}
    orders = [round_order(i + k) for k in range(settings.bursts)]
    return ab_bursts.run_round({s.name: launcher(s) for s in sides}, specs, orders,
                               burst_time=settings.burst_time, timeout=opts.timeout_for(case.scale))


# ----------------------------------------------------------------------------------------- rounds
def round_order(i: int) -> tuple[str, str]:
    """AB, BA, AB, ...: over any two consecutive rounds each side runs first once (ABBA)."""
    return SIDES if i % 2 == 0 else SIDES[::-1]


def clean_median(rec: RunRecord, metric: str) -> float | None:
    from milestones.harness.compare import clean_samples

    if rec.status != "ok":
        return None
    xs, _ = clean_samples(rec, metric)
    xs = [x for x in xs if math.isfinite(x)]
    return statistics.median(xs) if xs and min(xs) > 0 else None


def round_log_ratio(base: RunRecord, new: RunRecord, metric: str) -> float | None:
    """The round's log ratio: the trimmed mean of its burst pairs' ratios (burst protocol), or the ratio
    of the two processes' medians."""
    per_burst = ab_bursts.burst_log_ratios(base, new, metric)
    if per_burst is not None:
        return ab_bursts.trimmed_mean(per_burst) if per_burst else None
    a, b = clean_median(base, metric), clean_median(new, metric)
    return None if a is None or b is None else math.log(b / a)


def tested_metrics(rec: RunRecord, patterns: Sequence[str]) -> list[str]:
    return [n for n, m in rec.metrics.items() if m.samples and any(fnmatch.fnmatchcase(n, p) for p in patterns)]


@dataclass
class Track:
    """One (case, metric) of an A/B run: its per-round log ratios and its current look."""

    case: Case
    metric: str
    higher_is_better: bool
    ratios: list[float] = field(default_factory=list)
    result: stats.PairedResult | None = None
    failed: str | None = None        # a side failed: the verdict says so
    spending: stats.Spending | None = None
    left_out: list[dict[str, Any]] = field(default_factory=list)   # rounds without a ratio, and why
    contended: list[dict[str, Any]] = field(default_factory=list)  # rounds kept, measured under contention
    logged: int = 0                  # looks already written to the run's look log

    @property
    def done(self) -> bool:
        return self.failed is not None or (self.result is not None and self.result.decided)


def verdicts(tracks: Sequence[Track], settings: Settings, *, final: bool, planned: int | None = None) -> None:
    """Look at every open track. The error rate is split over the tracks (Bonferroni) and spent over the
    looks (O'Brien-Fleming-type, `stats.Spending`); `planned`: the rounds the budget is expected to allow
    (default max_rounds; a time budget estimates it from the rounds so far)."""
    n_tests = max(1, len(tracks))
    looks = stats.looks_until(settings.max_rounds)
    planned = settings.max_rounds if planned is None else max(2, min(planned, settings.max_rounds))
    for t in tracks:
        if t.done:
            continue
        n = len(t.ratios)
        if not final and n not in looks:
            continue
        if t.spending is None:
            t.spending = stats.Spending(settings.alpha / n_tests)
        level = t.spending.level(n, planned, final=final) if n >= 2 else None
        t.result = stats.paired_verdict(t.ratios, higher_is_better=t.higher_is_better, threshold=settings.threshold,
                                        alpha=settings.alpha / n_tests, n_looks=len(looks), final=final, level=level)


def replay_verdicts(tracks: Sequence[Track], settings: Settings) -> None:
    """Decide finished tracks as a live run would have, look by look, with the rounds known (read back)."""
    n_tests = max(1, len(tracks))
    for t in tracks:
        if t.failed is not None or not t.ratios:
            continue
        t.result = stats.sequential_verdict(t.ratios, planned=len(t.ratios), higher_is_better=t.higher_is_better,
                                            alpha=settings.alpha / n_tests, threshold=settings.threshold)


def summary_rows(tracks: Sequence[Track]) -> list[dict[str, Any]]:
    out = []
    for t in tracks:
        c = t.case
        row: dict[str, Any] = {"suite": c.suite, "config": c.config, "kind": c.kind, "scale": c.scale,
                               "metric": t.metric, "rounds": len(t.ratios),
                               "round_ratios": [math.exp(min(x, 700.0)) for x in t.ratios],
                               "left_out": list(t.left_out), "contended": list(t.contended)}
        if t.failed:
            row.update(verdict="not comparable", reason=t.failed)
        elif t.result is None:
            row.update(verdict="inconclusive", reason="no round finished")
        else:
            row.update(t.result.comparison.to_dict(), decided=t.result.decided)
        if t.left_out:
            row["reason"] = (f"{row['reason']}; {len(t.left_out)} round(s) left out: "
                             f"{t.left_out[0]['why']}" + (" ..." if len(t.left_out) > 1 else ""))
        out.append(row)
    return out


# ------------------------------------------------------------------------------------------ the run
@dataclass
class AbResult:
    run_id: str
    folder: Path
    tracks: list[Track]
    rounds: int
    stop: str                 # why it stopped: "conclusive", "max rounds", "max time", "interrupted"
    elapsed_s: float
    paths: list[Path] = field(default_factory=list)


def check_cases(cases: Sequence[Case], sides: Sequence[Side]) -> None:
    """Every case must exist, with this kind and scale, on both sides."""
    for c in cases:
        have = [s.name for s in sides if c.config in s.configs and c.kind in s.configs[c.config].get("kinds", [])
                and c.scale in s.configs[c.config].get("scales", [])]
        if len(have) != len(sides):
            where = f"on the {have[0]} side only" if have else "on neither side"
            raise UsageError(f"case {c.config} ({c.kind}, {c.scale}) exists {where}")


def _record(side: Side, case: Case, run: Any, *, run_id: str, entry: Any, opts: Any, i: int, seed: int,
            settings: Settings) -> RunRecord:
    from milestones.harness.runner import build_record

    version = side.configs.get(case.config, {}).get("version", "unknown")
    spec = dataclasses.replace(case_spec(case, opts, seed=seed, workdir=Path(".")), repeat_index=i)
    rec = build_record(spec, run, run_id=run_id, entry=entry, suite_version=version, env=side.env)
    rec.info["ab"] = {"side": side.name, "round": i, "pair": f"{case.slug}/r{i}", "order": round_order(i).index(side.name),
                      "label": side.label, "rev": side.rev, "python": side.python,
                      "max_rounds": settings.max_rounds, "threshold": settings.threshold, "alpha": settings.alpha,
                      "metrics": list(settings.metrics), "protocol": "bursts" if ab_bursts.sizes(rec) else "processes"}
    return dataclasses.replace(rec, record_id=f"{run_id}/{side.name}/{case.slug}/r{i}")


# Options a resumed run must reuse (what it measures); stored in the run's manifest.
RESUME_OPTIONS = ("kinds", "scale", "device", "dtype", "threads", "timeout", "seed")


def _estimate_next(durations: Sequence[float]) -> float:
    """What the next round may take: the slowest of the recent rounds (a round's cost drifts with load)."""
    return max(durations[-8:]) if durations else 0.0


def _planned_rounds(settings: Settings, done: int, elapsed: float, durations: Sequence[float]) -> int:
    """The rounds the budget is expected to allow, estimated from the rounds so far."""
    if not durations:
        return settings.max_rounds
    pace = statistics.fmean(durations[-8:])
    more = int(max(0.0, settings.max_time - elapsed) // pace) if pace > 0 else settings.max_rounds
    return max(done, min(settings.max_rounds, done + more))


def _finish(result: AbResult, tracks: list[Track], settings: Settings, folder: Path, run_id: str, elapsed: float) -> AbResult:
    from milestones.harness import store

    result.tracks = tracks
    verdicts(result.tracks, settings, final=True)
    result.elapsed_s = elapsed
    # JSON Lines, not *.json: record loaders read every *.json of a run folder. A resumed run writes
    # a new summary beside the old (never overwritten): the newest one is the run's.
    head = {"run_id": run_id, "rounds": result.rounds, "stop": result.stop, "elapsed_s": result.elapsed_s}
    name = AB_SUMMARY
    k = 1
    while (folder / name).exists():
        name = f"_ab_summary.{k}.jsonl"
        k += 1
    store.atomic_write_new(folder / name, "\n".join(json.dumps(x, default=str)
                                                    for x in [head, *summary_rows(result.tracks)]) + "\n")
    return result


def execute(cases: Sequence[Case], opts: Any, registry: Any, sides: Sequence[Side], settings: Settings, *,
            on_record: Callable[[RunRecord, Path], None] | None = None,
            on_round: Callable[[int, list[Track]], None] | None = None,
            clock: Callable[[], float] = time.monotonic, started: float | None = None,
            work: Path | None = None, resume: Path | None = None, first_round_estimate: float = 0.0) -> AbResult:
    """Rounds of fresh case processes, sides alternating, until every track is conclusive or the budget ends.

    The time budget counts from `started` (default: now): no round starts that the slowest of the
    recent rounds says would end past `max_time`; before the first round, `first_round_estimate` (what
    starting the sides' interpreters took when they were probed: a round starts two) stands in. Ctrl-C stops it with the verdicts of the finished
    rounds. `resume`: the folder of a killed run, continued from its last complete round. Case workdirs
    live under `work` (a folder owned by this run, see `claim_workdir`), or a temporary one.
    """
    from milestones.harness import store

    check_cases(cases, sides)
    by_name = {s.name: s for s in sides}
    t0 = clock() if started is None else started
    tracks: dict[str, list[Track]] = {c.slug: [] for c in cases}
    first = 0
    if resume is not None:
        folder = Path(resume)
        manifest = json.loads((folder / store.RUN_MANIFEST).read_text())
        run_id = manifest["run_id"]
        old = [rec for f in store.iter_record_files([folder]) for rec in [store.read_record(f)]]
        old = [r for r in old if r.run_id == run_id]
        done, _ = tracks_from_records(old) if old else ([], settings)
        _restore_looks(done, settings, folder)
        for t in done:
            if t.case.slug in tracks:
                tracks[t.case.slug].append(t)
        first = 1 + max((int(r.info["ab"]["round"]) for r in old), default=-1)
    else:
        run_id = store.new_run_id()
        machine = sides[0].env.get("machine_id") or "unknown-machine"
        folder = store.run_dir(opts.out, machine, run_id)
        store.ensure_writable(folder)
        # The manifest is scrubbed like every record (an interpreter outside home and checkout reads
        # .../python there), so what --resume needs to start the same interpreters again is kept apart, as
        # given, in a local file no reader of results opens.
        store.atomic_write_new(folder / AB_RESUME, json.dumps(
            {"sides": [{"name": s.name, "python": s.python, "rev": s.rev} for s in sides]}))
        store.write_manifest(folder, {"run_id": run_id, "machine_id": machine, "ab": True,
                                      "cases": [dataclasses.asdict(c) for c in cases],
                                      "sides": [{"name": s.name, "label": s.label, "python": s.python, "rev": s.rev,
                                                 "current": s.current} for s in sides],
                                      "options": {k: getattr(opts, k, None) for k in RESUME_OPTIONS},
                                      "settings": dataclasses.asdict(settings)})
    result = AbResult(run_id, folder, [], first, "max rounds", 0.0)
    own_work = None
    if work is None:
        own_work = tempfile.TemporaryDirectory(prefix=WORK_PREFIX)
        work = claim_workdir(Path(own_work.name))
    durations: list[float] = []
    try:
        for i in range(first, settings.max_rounds):
            open_cases = [c for c in cases if not tracks[c.slug] or not all(t.done for t in tracks[c.slug])]
            if not open_cases:
                result.stop = "conclusive"
                break
            est = _estimate_next(durations) if durations else first_round_estimate
            if (clock() - t0) + est > settings.max_time:
                result.stop = "max time"
                break
            r0 = clock()
            # Fresh fork servers each round: forks share their server's address-space layout (ASLR happens at
            # exec, not fork), which moved one side's step by 16% in every round of an A/A pair (DQN's
            # learner). New servers draw a new layout per round, as fresh interpreters do.
            from milestones.harness.launch import forkserver

            forkserver.close_all()
            for case in open_cases:
                entry = registry.config(case.config)
                recs: dict[str, RunRecord] = {}
                runs: dict[str, Any] = {}
                if uses_bursts(case, sides, settings):
                    with tempfile.TemporaryDirectory(prefix="case-", dir=work) as tmp:
                        runs = run_burst_round([by_name[n] for n in round_order(i)], case, opts, settings, i=i,
                                               seed=opts.seed, workdir=Path(tmp))
                for name in round_order(i):
                    if name in runs:
                        run = runs[name]
                    else:
                        with tempfile.TemporaryDirectory(prefix="case-", dir=work) as tmp:
                            run = run_case(by_name[name], case, opts, seed=opts.seed, workdir=Path(tmp))
                    rec = _record(by_name[name], case, run, run_id=run_id, entry=entry, opts=opts, i=i,
                                  seed=opts.seed, settings=settings)
                    path = store.write_record(folder / f"r{i:04d}-{name}", rec)
                    result.paths.append(path)
                    recs[name] = rec
                    if on_record:
                        on_record(rec, path)
                    if run.status == "interrupted":
                        raise KeyboardInterrupt
                _add_round(tracks[case.slug], case, recs, settings)
            durations.append(clock() - r0)
            result.rounds = i + 1
            all_tracks = [t for ts in tracks.values() for t in ts]
            verdicts(all_tracks, settings, final=False,
                     planned=_planned_rounds(settings, i + 1, clock() - t0, durations))
            _log_looks(folder, all_tracks)
            if on_round:
                on_round(i, all_tracks)
        else:
            if all(t.done for ts in tracks.values() for t in ts if ts):
                result.stop = "conclusive"
    except KeyboardInterrupt:
        # The verdict so far: the finished rounds are decided as at the budget's end.
        result.stop = "interrupted"
    finally:
        if own_work is not None:
            own_work.cleanup()
    return _finish(result, [t for ts in tracks.values() for t in ts], settings, folder, run_id, clock() - t0)


AB_LOOKS = "_ab_looks.jsonl"


def _log_looks(folder: Path, tracks: Sequence[Track]) -> None:
    """Append each new look's level: a resumed run continues the same error spending."""
    lines = []
    for t in tracks:
        looks = t.spending.looks if t.spending else []
        for n, lvl in looks[t.logged:]:
            lines.append(json.dumps({"case": t.case.slug, "metric": t.metric, "rounds": n, "level": lvl}))
        t.logged = len(looks)
    if lines:
        with open(folder / AB_LOOKS, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


def _restore_looks(tracks: Sequence[Track], settings: Settings, folder: Path) -> None:
    """Rebuild each resumed track's looks from the run's look log, as the killed run made them."""
    logged: dict[tuple[str, str], list[tuple[int, float]]] = {}
    try:
        text = (folder / AB_LOOKS).read_text(encoding="utf-8")
    except OSError:
        text = ""
    for line in text.splitlines():
        try:
            d = json.loads(line)
            logged.setdefault((d["case"], d["metric"]), []).append((int(d["rounds"]), float(d["level"])))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by the kill
    n_tests = max(1, len(tracks))
    for t in tracks:
        t.result = None
        t.spending = stats.Spending(settings.alpha / n_tests)
        for n, lvl in logged.get((t.case.slug, t.metric), []):
            t.spending.spent += lvl
            t.spending.looks.append((n, lvl))
            if t.failed is None and n <= len(t.ratios):
                r = stats.paired_verdict(t.ratios[:n], higher_is_better=t.higher_is_better,
                                         threshold=settings.threshold, alpha=settings.alpha / n_tests, level=lvl)
                t.result = r
                if r.decided:
                    break
        t.logged = len(t.spending.looks)


# ------------------------------------------------------------------------------ leftovers of killed runs
WORK_PREFIX = "milestones-ab-"
OWNER = ".owner-pid"
# A work folder of an older milestones has no owner file: removed once it is this old.
UNOWNED_AGE_S = 6 * 3600


def claim_workdir(work: Path) -> Path:
    """Mark `work` as this process's (its pid), so that the next `ab` can tell a leftover from a live run."""
    (work / OWNER).write_text(str(os.getpid()))
    return work


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftover(work: Path, now: float) -> bool:
    try:
        pid = int((work / OWNER).read_text().strip())
    except (OSError, ValueError):
        try:
            return now - work.stat().st_mtime > UNOWNED_AGE_S
        except OSError:
            return False
    return pid != os.getpid() and not _alive(pid)


def clean_leftovers(repo: Path | None, tmp: Path | None = None) -> list[str]:
    """Remove what killed `ab` runs left: their work folders in $TMPDIR (case workdirs, checkouts) and
    the git worktrees registered for them in `repo`. Folders of live runs are kept. Returns what went."""
    tmp = Path(tmp or tempfile.gettempdir())
    now = time.time()
    gone: list[str] = []
    dead = [w for w in tmp.glob(WORK_PREFIX + "*") if w.is_dir() and _leftover(w, now)]
    if repo is not None and (repo / ".git").exists():
        r = _git(repo, "worktree", "list", "--porcelain")
        for line in r.stdout.splitlines() if r.returncode == 0 else []:
            if not line.startswith("worktree "):
                continue
            wt = Path(line[len("worktree "):])
            owner = next((w for w in dead if wt.is_relative_to(w)), None)
            if owner is not None or (wt.name.startswith("rev-") and wt.parent.name.startswith(WORK_PREFIX)
                                     and wt.parent.parent == tmp and not wt.parent.exists()):
                _git(repo, "worktree", "remove", "--force", str(wt))
                gone.append(f"worktree {wt}")
        if gone:
            _git(repo, "worktree", "prune")
    for w in dead:
        shutil.rmtree(w, ignore_errors=True)
        gone.append(str(w))
    return gone


def _add_round(tracks: list[Track], case: Case, recs: dict[str, RunRecord], settings: Settings) -> None:
    # The side that failed, before one skipped only because its partner failed (burst rounds).
    bad = next((r for r in sorted((recs["base"], recs["new"]), key=lambda r: r.status == "skipped")
                if r.status != "ok"), None)
    if bad is not None:
        side = bad.info["ab"]["side"]
        why = f"{side} side {bad.status}: {(bad.error or '')[:200]}"
        if not tracks:
            tracks.append(Track(case, "*", False))
        for t in tracks:
            if t.failed is None:
                t.failed = why
        return
    if not tracks:
        names = tested_metrics(recs["base"], settings.metrics)
        if not names and settings.metrics == DEFAULT_METRICS:
            names = tested_metrics(recs["base"], FALLBACK_METRICS)
        if not names:
            tracks.append(Track(case, "*", False, failed=f"no metric matches {', '.join(settings.metrics)}"))
            return
        tracks.extend(Track(case, n, recs["base"].metrics[n].higher_is_better) for n in names)
    i = int(recs["base"].info.get("ab", {}).get("round", -1))
    for t in tracks:
        missing = [n for n in SIDES if t.metric not in recs[n].metrics]
        if missing:
            t.failed = t.failed or f"{t.metric} not measured on the {missing[0]} side in round {i}"
            continue
        lr = round_log_ratio(recs["base"], recs["new"], t.metric)
        if lr is None or not math.isfinite(lr):
            # Left out, and said: a round without a usable median on one side carries no ratio.
            bad = next((n for n in SIDES if clean_median(recs[n], t.metric) is None), "new")
            t.left_out.append({"round": i, "why": f"no positive finite sample of {t.metric} on the {bad} side"})
            continue
        t.ratios.append(lr)
        busy = [n for n in SIDES if _all_descheduled(recs[n], t.metric)]
        if busy:
            t.contended.append({"round": i, "why": f"every sample of the {'/'.join(busy)} side was descheduled "
                                                   "(kept: CPU time still counts the work)"})


def _all_descheduled(rec: RunRecord, metric: str) -> bool:
    from milestones.harness.compare import descheduled_mask

    mask = descheduled_mask(rec, metric)
    return bool(mask) and all(mask)


# --------------------------------------------------------------------------------- reading it back
def tracks_from_records(records: Sequence[RunRecord]) -> tuple[list[Track], Settings]:
    """Rebuild the tracks of an A/B run from its records (what `compare` and `report` read)."""
    from milestones.harness.compare import check_not_mixed, is_ab

    check_not_mixed(records)
    if not records or not all(is_ab(r) for r in records):
        raise UsageError("not the records of a `milestones ab` run")
    info = records[0].info["ab"]
    settings = Settings(metrics=tuple(info.get("metrics") or DEFAULT_METRICS),
                        threshold=float(info.get("threshold", stats.DEFAULT_THRESHOLD)),
                        alpha=float(info.get("alpha", stats.DEFAULT_ALPHA)),
                        max_rounds=int(info.get("max_rounds", 64)))
    runs = {r.run_id for r in records}
    if len(runs) > 1:
        raise UsageError(f"records of {len(runs)} different ab runs; compare one ab run at a time")
    pairs: dict[tuple[str, int], dict[str, RunRecord]] = {}
    cases: dict[str, Case] = {}
    for r in records:
        ab = r.info["ab"]
        pairs.setdefault((r.case.slug, int(ab["round"])), {})[ab["side"]] = r
        cases[r.case.slug] = r.case
    tracks: dict[str, list[Track]] = {slug: [] for slug in cases}
    for (slug, _i), recs in sorted(pairs.items(), key=lambda kv: kv[0][1]):
        if set(recs) != set(SIDES):
            continue  # an interrupted round: one side only
        _add_round(tracks[slug], cases[slug], recs, settings)
    out = [t for ts in tracks.values() for t in ts]
    replay_verdicts(out, settings)
    return out, settings


def compare_rows(records: Sequence[RunRecord]):
    """CompareRows (method `paired`) for an A/B run, plus its tracks (per-round ratios)."""
    tracks, _ = tracks_from_records(records)
    return rows_from_tracks(tracks), tracks


def rows_from_tracks(tracks: Sequence[Track]):
    from milestones.harness.compare import CompareRow, case_key

    rows = []
    for t in tracks:
        c = t.case
        if t.failed or t.result is None:
            res = stats.Comparison("not comparable", t.failed or "no complete round", method="paired")
        else:
            res = t.result.comparison
        rows.append(CompareRow(c.suite, c.config, c.kind, c.scale, c.device, c.dtype, c.batch_size, t.metric,
                               "s" if t.metric.endswith("_time") else "", t.higher_is_better, res,
                               mode=c.mode, key=case_key(c)))
    return rows
