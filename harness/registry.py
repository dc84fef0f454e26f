"""The one registry of suites and their named configs, feeding the CLI, the tests and asv alike.

Strict by design: a duplicate name raises, an unknown name raises with a "did you mean" suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import os
import pkgutil
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milestones.harness.errors import UsageError

KINDS: tuple[str, ...] = ("fidelity", "speed", "quality")
SCALES: tuple[str, ...] = ("smoke", "proxy", "paper")


class DuplicateNameError(ValueError):
    """A suite or config registered twice under one name."""


class UnknownNameError(UsageError):
    """A name that is not registered; the message carries the closest registered names."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=3, cutoff=0.5)
    # A word cut short ("smal" for "smoke") scores under 0.5; only when nothing closer exists.
    close = close or [c for c in difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.4)
                      if c[:2] == name[:2]]
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


@dataclass(frozen=True)
class ConfigEntry:
    """A named, frozen configuration of a suite; `params` is the suite's own frozen dataclass."""

    name: str
    suite: str
    params: Any
    scales: tuple[str, ...]
    kinds: tuple[str, ...]
    description: str = ""

    def params_dict(self) -> dict[str, Any]:
        if dataclasses.is_dataclass(self.params):
            return dataclasses.asdict(self.params)
        return dict(self.params)


_SIZE = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9}


def natural_key(name: str) -> list:
    """Sort key that reads numbers as numbers, with a model-size suffix: gpt3-125m before gpt3-2.7b before
    gpt3-13b before gpt3-175b, plain8 before plain20 (a plain string sort puts 13b, 175b, 2.7b)."""
    out: list = []
    for num, suffix, text in re.findall(r"(\d+(?:\.\d+)?)([kmb]?)(?![a-z])|([^\d]+|\d+)", name):
        out.append((0, float(num) * _SIZE[suffix], "") if num else (1, 0.0, text))
    return out


# A kind function takes the config's params and the case context and returns a CaseOutput.
KindFn = Callable[[Any, Any], Any]


@dataclass
class Suite:
    """One milestone paper: its identity, the functions for each kind, and its named configs."""

    name: str
    title: str
    arxiv: str
    year: int
    source_file: str
    kind_table: dict[str, dict[type, KindFn]] = field(default_factory=dict)
    # (kind, params type) -> the metric names (fnmatch patterns) its function declares it produces
    kind_metrics: dict[tuple[str, type], tuple[str, ...]] = field(default_factory=dict)
    configs: dict[str, ConfigEntry] = field(default_factory=dict)
    registry: Registry | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        """A hash of the suite's source: records of different versions are never compared."""
        return hashlib.sha256(Path(self.source_file).read_bytes()).hexdigest()[:12]

    def kind(self, name: str, params: type | None = None,
             metrics: Iterable[str] | None = None) -> Callable[[KindFn], KindFn]:
        """Decorator registering the function that runs cases of one kind for one params type.

        `params=DegradationConfig` registers it for configs whose params are of that type (or a subclass);
        without `params` it serves every params type of the suite that has no function of its own.
        `metrics`: the metric names it produces (fnmatch patterns, "top1_error*"), which `baselines check`
        holds every paper figure of its configs to. Two functions for one (kind, params type) raise.
        """
        if name not in KINDS:
            raise ValueError(f"unknown kind {name!r}{did_you_mean(name, KINDS)}")
        key = params if params is not None else object

        def deco(fn: KindFn) -> KindFn:
            table = self.kind_table.setdefault(name, {})
            if key in table:
                what = "" if key is object else f" for {key.__name__}"
                raise DuplicateNameError(f"suite {self.name!r} already has a {name!r} function{what}")
            table[key] = fn
            if metrics is not None:
                self.kind_metrics[(name, key)] = tuple(metrics)
            return fn

        return deco

    @property
    def kinds(self) -> dict[str, KindFn]:
        """Kind name -> its default function (kept for listings; cases dispatch with `kind_fn`)."""
        return {k: t.get(object) or next(iter(t.values())) for k, t in self.kind_table.items()}

    def kind_fn(self, kind: str, params: Any) -> KindFn:
        """The function for `kind` registered for the most specific type of `params` (its MRO)."""
        table = self.kind_table.get(kind)
        if not table:
            raise UnknownNameError(f"suite {self.name!r} has no {kind!r} kind")
        for t in type(params).__mro__:
            if t in table:
                return table[t]
        raise UnknownNameError(f"suite {self.name!r} has no {kind!r} function for {type(params).__name__} "
                               f"(registered for: {', '.join(t.__name__ for t in table)})")

    def declared_metrics(self, kind: str, params: Any) -> tuple[str, ...] | None:
        """The metric patterns the function for (`kind`, type of `params`) declares; None: it declares none."""
        table = self.kind_table.get(kind) or {}
        for t in type(params).__mro__:
            if t in table:
                return self.kind_metrics.get((kind, t))
        return None

    def config(self, name: str, params: Any, *, scales: Iterable[str], kinds: Iterable[str] | None = None,
               description: str = "") -> ConfigEntry:
        scales, kinds = tuple(scales), tuple(kinds) if kinds is not None else tuple(self.kind_table)
        for s in scales:
            if s not in SCALES:
                raise ValueError(f"config {name!r}: unknown scale {s!r}{did_you_mean(s, SCALES)}")
        for k in kinds:
            if k not in KINDS:
                raise ValueError(f"config {name!r}: unknown kind {k!r}{did_you_mean(k, KINDS)}")
        if dataclasses.is_dataclass(params) and not params.__dataclass_params__.frozen:
            raise TypeError(f"config {name!r}: params must be a frozen dataclass")
        entry = ConfigEntry(name=name, suite=self.name, params=params, scales=scales, kinds=kinds,
                            description=description)
        if self.registry is not None:
            self.registry._add_config(entry)
        if name in self.configs:
            raise DuplicateNameError(f"config {name!r} is already registered in suite {self.name!r}")
        self.configs[name] = entry
        return entry

    def summary(self) -> dict[str, Any]:
        return {
            "suite": self.name, "title": self.title, "arxiv": self.arxiv, "year": self.year,
            "configs": sorted(self.configs, key=natural_key), "kinds": [k for k in KINDS if k in self.kinds],
            "scales": [s for s in SCALES if any(s in c.scales for c in self.configs.values())],
            "version": self.version,
        }


class Registry:
    def __init__(self) -> None:
        self.suites: dict[str, Suite] = {}
        self.configs: dict[str, ConfigEntry] = {}

    def add_suite(self, name: str, *, title: str, arxiv: str, year: int, source_file: str | None = None) -> Suite:
        if name in self.suites:
            raise DuplicateNameError(f"suite {name!r} is already registered")
        if name in self.configs:
            raise DuplicateNameError(f"suite name {name!r} clashes with a config of that name")
        if source_file is None:
            source_file = sys._getframe(1).f_code.co_filename
        suite = Suite(name=name, title=title, arxiv=arxiv, year=year, source_file=source_file, registry=self)
        self.suites[name] = suite
        return suite

    def _add_config(self, entry: ConfigEntry) -> None:
        # Config names are global so `milestones run resnet50-smoke` needs no suite prefix.
        if entry.name in self.configs:
            other = self.configs[entry.name].suite
            raise DuplicateNameError(f"config {entry.name!r} is already registered (suite {other!r})")
        if entry.name in self.suites and entry.name != entry.suite:
            raise DuplicateNameError(f"config name {entry.name!r} clashes with a suite of that name")
        self.configs[entry.name] = entry

    def suite(self, name: str) -> Suite:
        try:
            return self.suites[name]
        except KeyError:
            raise UnknownNameError(f"unknown suite {name!r}{did_you_mean(name, self.suites)}") from None

    def config(self, name: str) -> ConfigEntry:
        try:
            return self.configs[name]
        except KeyError:
            raise UnknownNameError(f"unknown config {name!r}{did_you_mean(name, self.configs)}") from None

    def resolve(self, names: Iterable[str]) -> list[ConfigEntry]:
        """Suite names expand to all their configs; config names stand for themselves. Order kept."""
        names = list(names)
        if not names:
            return [c for s in self.suites.values() for c in s.configs.values()]
        out: list[ConfigEntry] = []
        for n in names:
            if n in self.suites:
                out.extend(self.suites[n].configs.values())
            elif n in self.configs:
                out.append(self.configs[n])
            else:
                known = list(self.suites) + list(self.configs)
                raise UnknownNameError(f"unknown suite or config {n!r}{did_you_mean(n, known)}")
        seen: set[str] = set()
        return [c for c in out if not (c.name in seen or seen.add(c.name))]


REGISTRY = Registry()


def register_suite(name: str, *, title: str, arxiv: str, year: int) -> Suite:
    """Called once at the top of each `suites/<paper>.py`."""
    # The calling module's file, from its frame alone: inspect.stack() reads the source of every frame on
    # the stack (0.35 s of CPU for the 14 suites, in every process that loads them).
    return REGISTRY.add_suite(name, title=title, arxiv=arxiv, year=year, source_file=sys._getframe(1).f_code.co_filename)


_loaded = False


EXTRA_SUITES_VAR = "MILESTONES_EXTRA_SUITES"


def load_suites(package: str = "milestones.suites") -> Registry:
    """Import every module of the suites package so that each registers itself; idempotent.

    Modules named in $MILESTONES_EXTRA_SUITES (comma-separated import paths) are imported too: a
    user's own suites, or the test suite's fault-injecting ones.
    """
    global _loaded
    if not _loaded:
        pkg = importlib.import_module(package)
        for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")):
            importlib.import_module(f"{package}.{mod}")
        for extra in filter(None, (x.strip() for x in os.environ.get(EXTRA_SUITES_VAR, "").split(","))):
            try:
                importlib.import_module(extra)
            except ImportError as e:
                raise UsageError(f"${EXTRA_SUITES_VAR}: cannot import {extra!r}: {e}") from None
        _loaded = True
    return REGISTRY


def load_suite(name: str, package: str = "milestones.suites") -> Registry:
    """Import just what registers suite `name` (its module `suites/<name>.py`, else the extra modules),
    falling back to every suite. A case process needs one suite, not the import cost of all of them."""
    if name not in REGISTRY.suites:
        try:
            importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.{name}":
                raise
    if name not in REGISTRY.suites:
        for extra in filter(None, (x.strip() for x in os.environ.get(EXTRA_SUITES_VAR, "").split(","))):
            importlib.import_module(extra)
    if name not in REGISTRY.suites:
        load_suites(package)
    return REGISTRY
