"""`milestones import asv DIR` and `milestones import pytest-benchmark FILE.json`.

Both turn another tool's results into RunRecords in the store, so that load_frame, compare and
report show them beside `milestones run` records. Imports are idempotent: each source run maps to a
fixed run id, and a run already in the store is left alone.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from milestones.harness import store
from milestones.harness.errors import RecordError, UsageError
from milestones.harness.records import SCHEMA_VERSION, Case, Metric, RunRecord


def _iso(ms: float | None) -> str:
    if ms is None:
        return _dt.datetime.fromtimestamp(0, _dt.timezone.utc).isoformat(timespec="milliseconds")
    return _dt.datetime.fromtimestamp(ms / 1000.0, _dt.timezone.utc).isoformat(timespec="milliseconds")


def _load_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: cannot read {what} ({e})") from None
    try:
        return json.loads(text)  # asv writes -Infinity/NaN, which Python's json reads
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not a valid {what} (JSON error: {e.msg} at line {e.lineno})") from None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _write_run(out: Path, machine_id: str, run_id: str, records: list[RunRecord], source: dict[str, Any]) -> tuple[Path, bool]:
    """Write one imported run; (folder, False) when that run was imported before."""
    folder = store.run_dir(out, machine_id, run_id)
    if (folder / store.RUN_MANIFEST).exists():
        return folder, False
    store.ensure_writable(folder)
    for rec in records:
        store.write_record(folder, rec)
    store.write_manifest(folder, {
        "run_id": run_id, "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
        "machine_id": machine_id, "imported_from": source, "cases": [rec.case.__dict__ for rec in records]})
    return folder, True


# ------------------------------------------------------------------------------------------------ asv
ASV_UNITS = {"seconds": "s", "bytes": "B"}


def find_asv_results(path: Path) -> Path:
    """asv's results_dir (holding benchmarks.json and one folder per machine) from DIR or DIR/results."""
    if not path.exists():
        raise UsageError(f"no such asv results folder: {path}")
    for cand in (path, path / "results", path.parent):
        if (cand / "benchmarks.json").is_file():
            return cand
    raise UsageError(f"{path}: no asv results here (expected benchmarks.json and <machine>/machine.json)")


def _asv_groups(name: str, version: str) -> tuple[Case, str, str]:
    """(case, suite version, metric name) for one asv benchmark name."""
    from milestones.harness.asv_bridge import parse_case_version

    method = name.rsplit(".", 1)[-1]
    parsed = parse_case_version(version or "")
    if parsed is not None:
        sv, case = parsed
        return case, sv, f"asv.{method}"
    owner = name.rsplit(".", 1)[0] if "." in name else name
    case = Case(suite="asv", config=owner, kind="speed", scale="asv", device="unknown", dtype="unknown",
                batch_size=None)
    return case, (version or "")[:12], f"asv.{method}"


def _param_labels(params: list[list[Any]]) -> list[str]:
    import itertools

    if not params:
        return [""]
    return ["[" + ", ".join(str(p) for p in combo) + "]" for combo in itertools.product(*params)]


def asv_records(result_path: Path, machine: dict[str, Any], benchmarks: dict[str, Any]) -> tuple[str, str, list[RunRecord]]:
    d = _load_json(result_path, "asv result file")
    if not isinstance(d, dict) or not isinstance(d.get("results"), dict) or not isinstance(d.get("result_columns"), list):
        raise RecordError(f"{result_path}: not an asv result file (no 'results' / 'result_columns')")
    cols = d["result_columns"]
    if "result" not in cols:
        raise RecordError(f"{result_path}: asv result file lacks the 'result' column")
    commit = d.get("commit_hash")
    env_name = d.get("env_name") or ""
    if not isinstance(commit, str) or not commit:
        raise RecordError(f"{result_path}: asv result file lacks commit_hash")
    machine_name = str(machine.get("machine") or d.get("params", {}).get("machine") or "asv-machine")
    existing = env_name.startswith("existing")
    reqs = d.get("requirements") or {}
    env = {
        "machine_id": machine_name, "hostname": None, "cpu_model": machine.get("cpu"),
        "logical_cores": int(machine["num_cpu"]) if str(machine.get("num_cpu", "")).isdigit() else None,
        "arch": machine.get("arch"), "os": machine.get("os"), "ram": machine.get("ram"),
        "python": (d.get("params") or {}).get("python"),
        # asv's `existing` environment reports the matrix entry, not what is installed: do not trust it.
        "torch": None if existing else reqs.get("torch"), "cuda": None, "cudnn": None, "gpu": None, "threads": None,
        "git": {"commit": commit, "dirty": None},
        "source": {"tool": "asv", "file": str(result_path), "env_name": env_name, "requirements": reqs,
                   "env_vars": d.get("env_vars") or {}},
    }
    if existing:
        env["torch_note"] = "asv existing environment: the torch version was not recorded"
    run_id = f"asv-{commit[:8]}-{hashlib.sha256(env_name.encode()).hexdigest()[:6]}"
    groups: dict[tuple, dict[str, Any]] = {}
    for name, row in d["results"].items():
        if not isinstance(row, list) or len(row) < 1:
            raise RecordError(f"{result_path}: result of {name!r} is not a list")

        def get(col: str, row: list = row) -> Any:
            return row[cols.index(col)] if col in cols and cols.index(col) < len(row) else None

        version = get("version")
        case, sv, metric = _asv_groups(name, version if isinstance(version, str) else "")
        g = groups.setdefault((case, sv), {"metrics": {}, "starts": [], "ends": [], "names": {}, "failed": [],
                                           "skipped": []})
        bench = benchmarks.get(name, {}) if isinstance(benchmarks.get(name), dict) else {}
        unit = ASV_UNITS.get(bench.get("unit", ""), bench.get("unit") or ("B" if ".peakmem_" in name else "s"))
        hib = unit.endswith("/s") or "throughput" in metric
        values = get("result")
        values = values if isinstance(values, list) else [values]
        samples = get("samples")
        labels = _param_labels(get("params") or [])
        for i, v in enumerate(values):
            mname = metric + (labels[i] if i < len(labels) else f"[{i}]")
            g["names"][mname] = name
            raw = samples[i] if isinstance(samples, list) and i < len(samples) and isinstance(samples[i], list) else None
            if _finite(v):
                if raw and all(_finite(x) for x in raw):
                    g["metrics"][mname] = Metric.from_values(mname, unit, hib, raw)
                else:
                    g["metrics"][mname] = Metric.single(mname, unit, hib, v,
                                                        note="asv kept no raw samples (run asv with --record-samples)")
            else:
                why = "skipped by asv" if isinstance(v, float) else "failed in asv (no value)"
                (g["skipped"] if isinstance(v, float) else g["failed"]).append(mname)
                g["metrics"][mname] = Metric.missing(mname, unit, hib, why)
        start, dur = get("started_at"), get("duration")
        if _finite(start):
            g["starts"].append(start)
            g["ends"].append(start + (dur * 1000 if _finite(dur) else 0))
    records = []
    for (case, sv), g in groups.items():
        n = len(g["metrics"])
        if g["failed"] and len(g["failed"]) + len(g["skipped"]) == n:
            status, error = "failed", f"asv recorded no value for {', '.join(sorted(g['failed']))}"
        elif len(g["skipped"]) == n:
            status, error = "skipped", "asv skipped every benchmark of this case"
        else:
            status, error = "ok", None
        started, ended = (min(g["starts"]), max(g["ends"])) if g["starts"] else (d.get("date"), d.get("date"))
        records.append(RunRecord(
            schema_version=SCHEMA_VERSION, run_id=run_id, record_id=f"{run_id}/{case.slug}", started_at=_iso(started),
            ended_at=_iso(ended), duration_s=round(((ended or 0) - (started or 0)) / 1000.0, 4), case=case, config={},
            suite_version=sv, env=env, status=status, error=error, metrics=g["metrics"],
            info={"source": "asv", "asv_benchmarks": g["names"], "partial_failures": g["failed"] or None}))
    return machine_name, run_id, records


def import_asv(path: Path, out: Path) -> list[tuple[Path, bool, int]]:
    root = find_asv_results(path)
    bj = _load_json(root / "benchmarks.json", "asv benchmarks.json")
    if not isinstance(bj, dict):
        raise RecordError(f"{root / 'benchmarks.json'}: not an asv benchmarks.json")
    done = []
    machine_dirs = sorted(p for p in root.iterdir() if (p / "machine.json").is_file())
    if not machine_dirs:
        raise UsageError(f"{root}: no machine folders (<machine>/machine.json) in these asv results")
    for mdir in machine_dirs:
        machine = _load_json(mdir / "machine.json", "asv machine.json")
        if not isinstance(machine, dict):
            raise RecordError(f"{mdir / 'machine.json'}: not an asv machine.json")
        for f in sorted(mdir.glob("*.json")):
            if f.name == "machine.json":
                continue
            machine_id, run_id, records = asv_records(f, machine, bj)
            if records:
                folder, new = _write_run(out, machine_id, run_id, records, {"tool": "asv", "file": str(f)})
                done.append((folder, new, len(records)))
    if not done:
        raise UsageError(f"{root}: the asv results hold no benchmark results")
    return done


# ----------------------------------------------------------------------------------- pytest-benchmark
def pytest_benchmark_records(path: Path) -> tuple[str, str, list[RunRecord]]:
    d = _load_json(path, "pytest-benchmark JSON file")
    if not isinstance(d, dict) or not isinstance(d.get("benchmarks"), list) or not isinstance(d.get("machine_info"), dict):
        raise RecordError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list / 'machine_info')")
    mi, ci = d["machine_info"], d.get("commit_info") or {}
    cpu = mi.get("cpu") if isinstance(mi.get("cpu"), dict) else {}
    machine_id = str(mi.get("machine_id") or f"{mi.get('node', 'unknown')}")
    env = {
        "machine_id": machine_id, "hostname": mi.get("node"), "cpu_model": cpu.get("brand_raw") or mi.get("processor"),
        "logical_cores": cpu.get("count"), "arch": mi.get("machine"), "os": f"{mi.get('system')} {mi.get('release')}",
        "python": mi.get("python_version"), "torch": mi.get("torch"), "cuda": mi.get("cuda"), "cudnn": None,
        "gpu": mi.get("gpu"), "threads": mi.get("threads"),
        "git": {"commit": ci.get("id"), "dirty": ci.get("dirty"), "branch": ci.get("branch")},
        "source": {"tool": "pytest-benchmark", "file": str(path), "version": d.get("version")},
    }
    when = d.get("datetime")
    try:
        started = _dt.datetime.fromisoformat(str(when)).astimezone(_dt.timezone.utc).isoformat(timespec="milliseconds")
    except ValueError:
        raise RecordError(f"{path}: 'datetime' {when!r} is not an ISO timestamp") from None
    digest = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:6]
    run_id = "pytest-benchmark-" + started[:19].replace("-", "").replace(":", "") + "Z-" + digest
    records = []
    for i, b in enumerate(d["benchmarks"]):
        if not isinstance(b, dict) or not isinstance(b.get("stats"), dict) or not isinstance(b.get("name"), str):
            raise RecordError(f"{path}: benchmark #{i} lacks 'name' or 'stats'")
        st, extra = b["stats"], b.get("extra_info") or {}
        data = st.get("data")
        if isinstance(data, list) and data and all(_finite(x) for x in data):
            t = Metric.from_values("kernel.step_time", "s", False, data)
        elif _finite(st.get("median")):
            t = Metric.single("kernel.step_time", "s", False, st["median"],
                              note="median only: pytest-benchmark kept no raw samples (use --benchmark-save-data)")
        else:
            raise RecordError(f"{path}: benchmark {b['name']!r} has neither stats.data nor a numeric stats.median")
        metrics = {"kernel.step_time": t}  # one call of the kernel: the "step" compare and reports look for
        bs0 = extra.get("batch_size")
        if isinstance(bs0, int) and not isinstance(bs0, bool) and bs0 > 0:
            metrics["kernel.throughput"] = Metric.from_values("kernel.throughput", "items/s", True,
                                                              [bs0 / x for x in t.samples if x > 0])
        flops = extra.get("flops")
        if _finite(flops) and flops > 0:
            metrics["kernel.flops_per_s"] = Metric.from_values("kernel.flops_per_s", "FLOP/s", True,
                                                               [flops / x for x in t.samples if x > 0])
        bs = extra.get("batch_size")
        case = Case(suite=str(extra.get("suite", "kernels")), config=str(extra.get("case", b["name"])), kind="speed",
                    scale=f"kernel-{extra.get('shapes', 'unknown')}", device=str(extra.get("device", "unknown")),
                    dtype=str(extra.get("dtype", "unknown")),
                    batch_size=bs if isinstance(bs, int) and not isinstance(bs, bool) else None)
        total = st.get("total") if _finite(st.get("total")) else 0.0
        records.append(RunRecord(
            schema_version=SCHEMA_VERSION, run_id=run_id, record_id=f"{run_id}/{case.slug}", started_at=started,
            ended_at=started, duration_s=float(total), case=case, config={"benchmark": b.get("fullname", b["name"])},
            suite_version="pytest-benchmark", env=env, status="ok", error=None, metrics=metrics,
            info={"source": "pytest-benchmark", "group": b.get("group"), "name": b["name"], "extra_info": extra,
                  "rounds": st.get("rounds"), "iterations": st.get("iterations"), "options": b.get("options")}))
    return machine_id, run_id, records


def import_pytest_benchmark(path: Path, out: Path) -> list[tuple[Path, bool, int]]:
    if not path.is_file():
        raise UsageError(f"no such pytest-benchmark JSON file: {path}")
    machine_id, run_id, records = pytest_benchmark_records(path)
    if not records:
        raise UsageError(f"{path}: the file holds no benchmarks")
    folder, new = _write_run(out, machine_id, run_id, records, {"tool": "pytest-benchmark", "file": str(path)})
    return [(folder, new, len(records))]


# ------------------------------------------------------------------------------------------------ CLI
def cmd_import(args: argparse.Namespace) -> int:
    out = Path(args.out)
    path = Path(args.path)
    done = import_asv(path, out) if args.tool == "asv" else import_pytest_benchmark(path, out)
    for folder, new, n in done:
        if args.json:
            continue
        print(f"{'imported' if new else 'already imported'}: {n} record(s) in {folder}")
    if args.json:
        print(json.dumps([{"folder": str(f), "new": new, "records": n} for f, new, n in done]))
    return 0


def register(sub) -> None:
    sp = sub.add_parser("import", help="bring asv or pytest-benchmark results into the store")
    sp.add_argument("tool", choices=("asv", "pytest-benchmark"), help="the tool that wrote the results")
    sp.add_argument("path", help="asv: its results folder (e.g. results/asv); pytest-benchmark: a --benchmark-json file")
    sp.add_argument("--out", default="results", help="results folder to write records to (default results)")
    sp.add_argument("--json", action="store_true", help="print a JSON summary")
    sp.set_defaults(func=cmd_import)
