"""What `milestones list` shows, without importing torch or a single suite.

Importing every suite imports torch and every model: seconds, and more on a loaded machine. The list
needs only names, papers, configs, the claims the quality configs check and how many cases each scale
runs, so those are kept as data: `suite_catalog.json`, shipped with the package (regenerate with
`python -m milestones.harness.catalog`), then a per-user cache. An entry is used only while its suite
file's hash (the suite version) matches; a suite file that matches neither is read the slow way, by
importing the registry, and the cache is refreshed, so the list is never stale, only sometimes slow.
The tests compare the shipped file with the registry on what the list shows, not on the hash, so an
edit to a suite's code fails no test unless it changes the list itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from milestones.harness.registry import EXTRA_SUITES_VAR, KINDS, SCALES

SHIPPED = Path(__file__).with_name("suite_catalog.json")


def suites_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("milestones.suites")
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0])


def file_versions(folder: Path | None = None) -> dict[str, str]:
    """{file name: version} for every suite module, the same hash as registry.Suite.version."""
    folder = folder or suites_dir()
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")}


def entry(suite: Any) -> dict[str, Any]:
    """A suite's list entry: its summary, plus the claims its quality configs check and case counts."""
    s = suite.summary()
    cases = {sc: {k: sum(1 for c in suite.configs.values() if sc in c.scales and k in c.kinds and k in suite.kinds)
                  for k in KINDS} for sc in SCALES}
    claims = [{"config": c.name, "scales": list(c.scales), "text": c.description}
              for c in suite.configs.values() if "quality" in c.kinds and "proxy" in c.scales and c.description]
    return {**s, "file": Path(suite.source_file).name, "claims": claims,
            "cases": {sc: {k: n for k, n in v.items() if n} for sc, v in cases.items()}}


def from_registry(reg: Any) -> list[dict[str, Any]]:
    return [entry(s) for s in reg.suites.values()]


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "milestones" / "suite-catalog.json"


def _read_entries(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) and all(isinstance(e, dict) for e in data) else []


def _shipped() -> list[dict[str, Any]]:
    return _read_entries(SHIPPED)


def _cached() -> list[dict[str, Any]]:
    return _read_entries(_cache_path())


def listed(entry: dict[str, Any]) -> dict[str, Any]:
    """What the list shows of an entry: everything but the suite file's hash."""
    return {k: v for k, v in entry.items() if k != "version"}


def _write_cache(entries: list[dict[str, Any]]) -> None:
    try:
        p = _cache_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries), encoding="utf-8")
        tmp.replace(p)
    except OSError:
        pass  # a read-only home only costs speed


def catalog() -> list[dict[str, Any]] | None:
    """Every suite's entry in registry order, or None when user suites ($MILESTONES_EXTRA_SUITES) need
    the registry itself."""
    if os.environ.get(EXTRA_SUITES_VAR, "").strip():
        return None
    versions = file_versions()
    known: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in _shipped() + _cached():
        if isinstance(e.get("file"), str) and isinstance(e.get("version"), str):
            known.setdefault((e["file"], e["version"]), [])
            if e["suite"] not in {x["suite"] for x in known[(e["file"], e["version"])]}:
                known[(e["file"], e["version"])].append(e)
    if all((f, v) in known for f, v in versions.items()):
        return [e for f, v in versions.items() for e in known[(f, v)]]
    from milestones.harness.registry import load_suites

    entries = from_registry(load_suites())
    _write_cache(entries)
    return entries


MAX_RUNS_READ = 40


def measured_costs(results_root: str | Path = "results") -> dict[str, dict[str, float]]:
    """{suite: {"scale kind": seconds}}: the summed case durations of the newest run here that ran them.

    Read from the records under `results_root` (the newest MAX_RUNS_READ run folders), so a cost is a
    measurement on this machine, never an estimate; a suite not run here has none.
    """
    root = Path(results_root)
    if not root.is_dir():
        return {}
    runs = sorted((d for m in root.iterdir() if m.is_dir() for d in m.iterdir() if d.is_dir()),
                  key=lambda d: d.name, reverse=True)[:MAX_RUNS_READ]
    out: dict[str, dict[str, float]] = {}
    for run in runs:
        this: dict[tuple[str, str], float] = {}
        for f in run.glob("*.json"):
            if f.name.startswith(("_", ".")):  # the manifest; a temporary file a killed write left
                continue
            try:
                d = json.loads(f.read_text(encoding="utf-8"))
                c = d["case"]
                key = (str(c["suite"]), f"{c['scale']} {c['kind']}")
                dur = float(d.get("duration_s") or 0.0)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            this[key] = this.get(key, 0.0) + dur
        for (suite, what), secs in this.items():
            out.setdefault(suite, {}).setdefault(what, secs)  # newest run first: keep its figure
    return out


def write_shipped(entries: Iterable[dict[str, Any]], path: Path = SHIPPED) -> Path:
    path.write_text(json.dumps(list(entries), indent=1) + "\n", encoding="utf-8")
    return path


def main() -> int:
    from milestones.harness.registry import load_suites

    p = write_shipped(from_registry(load_suites()))
    print(f"wrote {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
