"""Paper figures as data: `baselines/<suite>.toml` -> cited `Baseline`s, and their validation.

The schema is documented in docs/baselines.md. Loading is strict (unknown keys, wrong types and
missing fields are errors) so that a typo never silently drops a tolerance or a citation.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from milestones.harness.errors import BaselineError, MilestonesError
from milestones.harness.registry import did_you_mean as _did_you_mean

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

KINDS = ("fidelity", "speed", "quality")
SCALES = ("smoke", "proxy", "paper")
TOLERANCE_KINDS = ("relative", "absolute")
PAPER_REQUIRED = {"suite": str, "title": str, "arxiv": str, "year": int}
PAPER_OPTIONAL = {"url": str, "venue": str, "authors": str, "note": str}
REQUIRED = {"id": str, "metric": str, "configs": list, "kind": str, "value": (int, float), "unit": str,
            "dataset": str, "split": str, "protocol": str, "source": str, "confirmed": bool,
            "higher_is_better": bool, "tolerance": (int, float), "tolerance_kind": str}
OPTIONAL = {"plus_minus": (int, float), "scale": (str, list), "note": str, "record_factor": (int, float),
            "protocol_ours": str, "category": str, "cited": bool}
# What a figure is evidence of. Only a `result` can be reproduced; an `architecture` figure (parameters,
# MACs) and a `configuration` echo (a hyperparameter the suite sets) are checks that the suite builds
# what the paper describes, and the report counts them apart.
CATEGORIES = ("result", "architecture", "configuration")
_CONFIGURATION_PREFIXES = ("hparam.", "default.", "lr_rule.")
_ARCHITECTURE_METRICS = ("params", "macs", "neurons", "recurrent_params", "param_elements", "train_compute")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
METRIC_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")


@dataclass(frozen=True)
class Paper:
    suite: str
    title: str
    arxiv: str
    year: int
    url: str | None = None

    @property
    def citation(self) -> str:
        arxiv = f", arXiv {self.arxiv}" if self.arxiv and self.arxiv != "-" else ""
        return f"{self.title} ({self.year}{arxiv})"


@dataclass(frozen=True)
class Baseline:
    """One cited figure of a paper and the records it applies to."""

    id: str
    suite: str
    paper: Paper
    metric: str
    configs: tuple[str, ...]
    kind: str
    value: float
    unit: str
    dataset: str
    split: str
    protocol: str
    source: str
    confirmed: bool
    higher_is_better: bool
    tolerance: float
    tolerance_kind: str
    plus_minus: float | None = None
    scales: tuple[str, ...] = ()
    note: str | None = None
    record_factor: float = 1.0
    protocol_ours: str | None = None
    file: str = ""
    category_override: str | None = None
    # A comparison row of the paper's table (another method, the human score): cited, never measured here.
    cited: bool = False

    @property
    def category(self) -> str:
        """result | architecture | configuration: the one place that decides it (a TOML `category` wins)."""
        if self.category_override:
            return self.category_override
        if self.metric.startswith(_CONFIGURATION_PREFIXES):
            return "configuration"
        if self.metric.split(".")[0] in _ARCHITECTURE_METRICS:
            return "architecture"
        return "result"

    @property
    def allowed_scales(self) -> tuple[str, ...]:
        """Scales whose records may be compared with this figure (docs/baselines.md, "Scale")."""
        if self.scales:
            return self.scales
        return SCALES if self.kind == "fidelity" else ("paper",)

    @property
    def tolerance_abs(self) -> float:
        return self.tolerance * abs(self.value) if self.tolerance_kind == "relative" else self.tolerance

    @property
    def citation(self) -> str:
        return f"{self.paper.citation}, {self.source}"

    def applies_to(self, suite: str, config: str, kind: str, metric: str) -> bool:
        return suite == self.suite and config in self.configs and kind == self.kind and metric == self.metric


@dataclass(frozen=True)
class BaselineFile:
    path: str
    paper: Paper
    baselines: tuple[Baseline, ...]


def _type_name(t: Any) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list"}[t] \
        if t in (int, float, str, bool, list) else t.__name__


def _check_type(v: Any, t: Any) -> bool:
    if isinstance(v, bool) and t is not bool and not (isinstance(t, tuple) and bool in t):
        return False
    return isinstance(v, t)


def parse_file(path: str | Path) -> tuple[BaselineFile | None, list[str]]:
    """Parse one baselines file. Returns (file or None, errors); never raises on bad content."""
    path = Path(path)
    errors: list[str] = []
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [f"{path}: no such baselines file"]
    except (OSError, UnicodeDecodeError) as e:
        return None, [f"{path}: cannot read ({e})"]
    except tomllib.TOMLDecodeError as e:
        return None, [f"{path}: not valid TOML ({e})"]
    unknown_top = set(raw) - {"paper", "baseline"}
    for k in sorted(unknown_top):
        errors.append(f"{path}: unknown top-level key {k!r}{_did_you_mean(k, ['paper', 'baseline'])}")
    p = raw.get("paper")
    if not isinstance(p, dict):
        return None, errors + [f"{path}: missing [paper] table (suite, title, arxiv, year)"]
    for k, t in PAPER_REQUIRED.items():
        if k not in p:
            errors.append(f"{path}: [paper] lacks {k!r}")
        elif not _check_type(p[k], t):
            errors.append(f"{path}: [paper] {k} must be {_type_name(t)}")
    for k, t in PAPER_OPTIONAL.items():
        if k in p and not _check_type(p[k], t):
            errors.append(f"{path}: [paper] {k} must be {_type_name(t)}")
    for k in sorted(set(p) - set(PAPER_REQUIRED) - set(PAPER_OPTIONAL)):
        errors.append(f"{path}: [paper] unknown key {k!r}{_did_you_mean(k, {**PAPER_REQUIRED, **PAPER_OPTIONAL})}")
    if errors:
        return None, errors
    paper = Paper(suite=p["suite"], title=p["title"], arxiv=p["arxiv"], year=p["year"], url=p.get("url"))
    entries = raw.get("baseline", [])
    if not isinstance(entries, list):
        return None, [f"{path}: 'baseline' must be an array of tables ([[baseline]])"]
    out: list[Baseline] = []
    for i, b in enumerate(entries):
        if not isinstance(b, dict):
            errors.append(f"{path}: baseline #{i + 1} is not a table")
            continue
        where = f"{path}: baseline {b['id']!r}" if isinstance(b.get("id"), str) else f"{path}: baseline #{i + 1}"
        bad = False
        # Unknown keys first: a typo ("tolerence") is the cause of the "missing" error that follows.
        for k in sorted(set(b) - set(REQUIRED) - set(OPTIONAL)):
            errors.append(f"{where}: unknown key {k!r}{_did_you_mean(k, {**REQUIRED, **OPTIONAL})}")
            bad = True
        for k, t in REQUIRED.items():
            if k not in b:
                errors.append(f"{where}: missing {k!r}")
                bad = True
            elif not _check_type(b[k], t):
                errors.append(f"{where}: {k} must be {_type_name(t)}, got {type(b[k]).__name__}")
                bad = True
        for k, t in OPTIONAL.items():
            if k in b and not _check_type(b[k], t):
                errors.append(f"{where}: {k} must be {_type_name(t)}, got {type(b[k]).__name__}")
                bad = True
        if bad:
            continue
        msgs = _check_values(b)
        errors.extend(f"{where}: {m}" for m in msgs)
        if msgs:
            continue
        scale = b.get("scale", ())
        out.append(Baseline(
            id=b["id"], suite=paper.suite, paper=paper, metric=b["metric"], configs=tuple(b["configs"]),
            kind=b["kind"], value=float(b["value"]), unit=b["unit"], dataset=b["dataset"], split=b["split"],
            protocol=b["protocol"], source=b["source"], confirmed=b["confirmed"],
            higher_is_better=b["higher_is_better"], tolerance=float(b["tolerance"]),
            tolerance_kind=b["tolerance_kind"],
            plus_minus=None if b.get("plus_minus") is None else float(b["plus_minus"]),
            scales=(scale,) if isinstance(scale, str) else tuple(scale), note=b.get("note"),
            record_factor=float(b.get("record_factor", 1.0)), protocol_ours=b.get("protocol_ours"),
            file=str(path), category_override=b.get("category"), cited=bool(b.get("cited", False))))
    return BaselineFile(str(path), paper, tuple(out)), errors


def _check_values(b: Mapping[str, Any]) -> list[str]:
    msgs = []
    if not ID_RE.match(b["id"]):
        msgs.append(f"id {b['id']!r} must be lower-case letters, digits, '.', '-', '_'")
    if not METRIC_RE.match(b["metric"]):
        msgs.append(f"metric {b['metric']!r} is not a metric name (lower-case, dots to group)")
    if not b["configs"] or not all(isinstance(c, str) and c for c in b["configs"]):
        msgs.append("configs must be a non-empty list of config names")
    if b["kind"] not in KINDS:
        msgs.append(f"unknown kind {b['kind']!r}{_did_you_mean(b['kind'], KINDS)}")
    if b["tolerance_kind"] not in TOLERANCE_KINDS:
        msgs.append(f"tolerance_kind {b['tolerance_kind']!r} must be relative or absolute"
                    f"{_did_you_mean(b['tolerance_kind'], TOLERANCE_KINDS)}")
    for k in ("value", "tolerance", "plus_minus", "record_factor"):
        v = b.get(k)
        if v is not None and v != v:
            msgs.append(f"{k} is NaN")
    if b["tolerance"] < 0:
        msgs.append("tolerance must be >= 0")
    if b.get("plus_minus") is not None and b["plus_minus"] < 0:
        msgs.append("plus_minus must be >= 0")
    if b.get("record_factor") is not None and not b["record_factor"] > 0:
        msgs.append("record_factor must be > 0")
    if "category" in b and b["category"] not in CATEGORIES:
        msgs.append(f"unknown category {b['category']!r} (result, architecture or configuration)"
                    f"{_did_you_mean(b['category'], CATEGORIES)}")
    scale = b.get("scale", [])
    for s in [scale] if isinstance(scale, str) else scale:
        if s not in SCALES:
            msgs.append(f"unknown scale {s!r}{_did_you_mean(str(s), SCALES)}")
    return msgs


def default_folder() -> Path:
    return Path(__file__).resolve().parent.parent / "baselines"


def baseline_paths(folder: str | Path | None = None) -> list[Path]:
    folder = Path(folder) if folder is not None else default_folder()
    if not folder.is_dir():
        raise BaselineError(f"no baselines folder at {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix == ".toml")


def check(paths: Iterable[str | Path], registry: Any = None,
          record_metrics: Mapping[tuple[str, str, str], set[str]] | None = None,
          warnings: list[str] | None = None) -> tuple[list[BaselineFile], list[str]]:
    """Parse and validate baselines files. Returns (parsed files, all errors as one-line strings).

    A config that exists but does not (yet) register the baseline's kind is a warning, appended to
    `warnings`: a paper figure may be written down before the suite can measure it.

    `registry` (milestones.harness.registry.Registry) enables the suite/config checks; `record_metrics` maps
    (suite, config, kind) to the metric names seen in records and enables the metric-existence check.
    """
    files: list[BaselineFile] = []
    errors: list[str] = []
    seen: dict[str, str] = {}
    for path in paths:
        f, errs = parse_file(path)
        errors.extend(errs)
        if f is None:
            continue
        files.append(f)
        stem = Path(path).stem
        if stem != f.paper.suite:
            errors.append(f"{path}: [paper] suite {f.paper.suite!r} does not match the file name {stem!r}")
        suite = None
        if registry is not None:
            suite = registry.suites.get(f.paper.suite)
            if suite is None:
                errors.append(f"{path}: unknown suite {f.paper.suite!r}{_did_you_mean(f.paper.suite, registry.suites)}")
        for b in f.baselines:
            where = f"{path}: baseline {b.id!r}"
            if b.id in seen:
                errors.append(f"{where}: duplicate id (also in {seen[b.id]})")
            else:
                seen[b.id] = str(path)
            if suite is not None:
                for c in b.configs:
                    entry = suite.configs.get(c)
                    if entry is None:
                        errors.append(f"{where}: unknown config {c!r} of suite {b.suite!r}"
                                      f"{_did_you_mean(c, suite.configs)}")
                    elif b.kind not in entry.kinds:
                        if warnings is not None:
                            warnings.append(f"{where}: config {c!r} does not register kind {b.kind!r} "
                                            f"(it has {', '.join(entry.kinds)})")
                    elif not b.cited:
                        errors.extend(f"{where}: {e}" for e in _metric_declared(suite, entry, b))
            if record_metrics is not None:
                known = set().union(*[record_metrics.get((b.suite, c, b.kind), set()) for c in b.configs])
                if known and b.metric not in known:
                    errors.append(f"{where}: metric {b.metric!r} is not in the records of "
                                  f"{', '.join(b.configs)} ({b.kind}){_did_you_mean(b.metric, known)}")
    return files, errors


def _metric_declared(suite: Any, entry: Any, b: Baseline) -> list[str]:
    """[] when the kind function of `entry` declares that it produces `b.metric`; else one error."""
    try:
        suite.kind_fn(b.kind, entry.params)
        pats = suite.declared_metrics(b.kind, entry.params)
    except (AttributeError, MilestonesError):  # no function for the kind yet, or an older plug-in: nothing to hold
        return []
    if pats is None:
        return [f"the {b.kind} function of config {entry.name!r} declares no metrics, so no case is known to "
                f"measure {b.metric!r} (declare them: SUITE.kind(..., metrics=[...]), or mark the figure "
                "cited = true)"]
    if not any(fnmatch.fnmatchcase(b.metric, p) for p in pats):
        return [f"metric {b.metric!r} is not among those the {b.kind} function of config {entry.name!r} produces "
                f"({', '.join(pats)}); a figure no case measures is marked cited = true"]
    return []


def load(folder: str | Path | None = None, suites: Iterable[str] | None = None) -> list[Baseline]:
    """Every baseline (of `suites`, if given). Any schema error raises BaselineError (one line)."""
    files, errors = check(baseline_paths(folder))
    if errors:
        more = f" (and {len(errors) - 1} more; run `milestones baselines check`)" if len(errors) > 1 else ""
        raise BaselineError(errors[0] + more)
    wanted = set(suites) if suites else None
    out = [b for f in files for b in f.baselines if wanted is None or b.suite in wanted]
    if wanted:
        have = {b.suite for b in out}
        for s in sorted(wanted - have):
            names = sorted({f.paper.suite for f in files})
            raise BaselineError(f"no baselines for suite {s!r}{_did_you_mean(s, names)}")
    return out
