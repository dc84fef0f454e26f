"""The suite contract, typed: the params base every config derives from, the metrics builder that takes a
metric's direction from one table, and curves that name their series.

A suite declares; the harness measures. A suite module:
- subclasses `Params` for each kind of config (the batch and seed fields live here, nowhere else);
- registers one function per (kind, params type): `@SUITE.kind("quality", params=DegradationConfig)`;
- builds its metrics with `Metrics()` (direction looked up by name, never a bare positional flag);
- returns curves with `curve(model, seed, steps, loss=[...], train_error=[...])`;
- a speed kind returns a `SpeedPlan` of `Step`s; the harness times them (measure/speed.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from milestones.harness.measure.plan import SpeedPlan, Step
from milestones.harness.measure.speed import classifier_plan
from milestones.harness.records import Metric

__all__ = ["Params", "Metrics", "curve", "direction", "SpeedPlan", "Step", "classifier_plan", "Claim", "claim",
           "curve_table", "ClaimText", "claim_text", "CLAIM_TEXTS", "AS_STATED", "WEAKER"]


@dataclass(frozen=True, kw_only=True)
class Params:
    """Fields the harness reads from every config. Keyword-only, so a suite's own fields keep their order.

    batch_size: the paper's batch (used on a GPU); cpu_batch_size: a smaller one used on a CPU (None: the
    same); n_seeds: how many consecutive seeds a quality claim runs over (from --seed; --seeds overrides).
    """

    batch_size: int | None = None
    cpu_batch_size: int | None = None
    n_seeds: int = 1


# The one table of directions: a metric's name is split at dots and each part is matched (last part first)
# against these names, then these suffixes. True: higher is better; False: lower is better.
DIRECTION_NAMES: dict[str, bool] = {
    "step_time": False, "throughput": True, "bytes_per_s": True, "flops_per_s": True, "mfu": True, "flops": False, "macs": False,
    "params": False, "peak_rss": False, "peak_mem_allocated": False, "peak_mem_reserved": False,
    "energy_per_item": False, "power": False, "instructions": False, "neurons": False,
    "claim_held": True, "seconds_to_target": False, "seconds_to_best": False,
    "seconds_to_common_target": False, "steps_to_common_target": False, "steps_to_target": False, "frames_to_target": False,
    "perplexity": False, "fd": False, "parzen_ll": True, "log_likelihood": True, "return": True,
    "score": True, "bleu": True, "f1": True, "mcc": True, "pearson": True, "spearman": True, "matthews": True,
    "speedup": True,
    # A config echo (hparam.lr, ...): compared with the paper's value, never better or worse; True by convention.
    "hparam": True,
}
DIRECTION_SUFFIXES: tuple[tuple[str, bool], ...] = (
    ("_within_tolerance", True), ("_rel_error", False), ("_error", False), ("error", False),
    ("_accuracy", True), ("accuracy", True), ("_loss", False), ("loss", False), ("_time", False),
    ("_seconds", False), ("_bytes", False), ("_bleu", True), ("_return", True), ("_gap", False),
    ("_held", True), ("_observed", True), ("_better", True), ("_ratio", True), ("_params", False), ("_se", False),
    ("_gain", True), ("_flops", False), ("_perplexity", False), ("_score", True),
    ("_match", True),
)


def direction(name: str) -> bool:
    """higher_is_better for `name`, from the table; raises for a name the table does not know."""
    parts = name.split(".")
    for part in reversed(parts):
        if part in DIRECTION_NAMES:
            return DIRECTION_NAMES[part]
        for suffix, hib in DIRECTION_SUFFIXES:
            if part.endswith(suffix):
                return hib
    raise KeyError(f"no direction known for metric {name!r}: add it to harness/suite_api.py's table or pass "
                   "higher_is_better= explicitly")


class Metrics(dict):
    """A dict name -> Metric that builds each entry with its name as key and its direction from the table."""

    def add(self, name: str, unit: str, values: Iterable[float], *, note: str | None = None,
            higher_is_better: bool | None = None) -> Metric:
        hib = direction(name) if higher_is_better is None else higher_is_better
        m = Metric.from_values(name, unit, hib, list(values), note=note)
        self[name] = m
        return m

    def single(self, name: str, unit: str, value: float | None, *, note: str | None = None,
               higher_is_better: bool | None = None) -> Metric:
        hib = direction(name) if higher_is_better is None else higher_is_better
        m = Metric.single(name, unit, hib, value, note=note)
        self[name] = m
        return m

    def missing(self, name: str, unit: str, why: str, *, higher_is_better: bool | None = None) -> Metric:
        hib = direction(name) if higher_is_better is None else higher_is_better
        m = Metric.missing(name, unit, hib, why)
        self[name] = m
        return m


def curve(model: str, seed: int | None, steps: Sequence[float], *, x: str = "step",
          **series: Sequence[float]) -> dict[str, Any]:
    """One training curve: which model and seed, the x values, and each named series (loss, return, ...).

    Stored under artifacts["curves"][f"{model}.seed{seed}"]; plots read `series` by name, so an episode
    return is never filed under `loss`.
    """
    n = len(steps)
    for k, v in series.items():
        if len(v) != n:
            raise ValueError(f"curve {model!r}: series {k!r} has {len(v)} points for {n} {x} values")
    return {"model": model, "seed": seed, "x": x, x: [float(s) for s in steps],
            "series": {k: [float(y) for y in v] for k, v in series.items()}}


AS_STATED = "as stated"
WEAKER = "weaker analogue"
STRENGTHS = (AS_STATED, WEAKER)


@dataclass(frozen=True)
class Claim:
    """A paper's claim as a quality case tests it, recorded in `info["claims"]`.

    What the paper says and what we decided are separate fields. id: a short slug (the `claim_held.<id>`
    metric); statement: the paper's sentence, verbatim (a sentence cut from a longer one says so with
    "[...]"), or, when `quoted` is False, our wording of a table's figure (never shown in quotes); source:
    where it is (authors, year, figure/table, section); rule: how our run decides it, in words with
    thresholds; strength: "as stated" when the rule tests what the sentence says, "weaker analogue" when
    it tests less, and then `tests` says what, in a few words; held: 0/1 per seed (None where a seed's
    outcome is undecided, or None for the whole claim when it was not decided); seeds: the seeds run;
    scale: the scale of the case (a proxy's verdict is not the paper's).
    """

    id: str
    statement: str
    source: str
    rule: str
    held: tuple[int | None, ...] | None
    seeds: tuple[int, ...]
    scale: str
    strength: str = AS_STATED
    tests: str | None = None
    quoted: bool = True

    def __post_init__(self) -> None:
        if self.strength not in STRENGTHS:
            raise ValueError(f"claim {self.id!r}: strength must be one of {STRENGTHS}, not {self.strength!r}")
        if self.strength == WEAKER and not self.tests:
            raise ValueError(f"claim {self.id!r}: a weaker analogue says what it tests (tests=...)")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "statement": self.statement, "source": self.source, "rule": self.rule,
                "strength": self.strength, "tests": self.tests, "quoted": self.quoted,
                "held": None if self.held is None else list(self.held), "seeds": list(self.seeds),
                "scale": self.scale}


def claim(id: str, statement: str, source: str, rule: str, held: Iterable[float | bool | None] | None,
          seeds: Iterable[int], scale: str, *, strength: str, tests: str | None = None,
          quoted: bool = True) -> dict[str, Any]:
    """The dict stored in `info["claims"]` for one claim (see `Claim`); per-seed outcomes become 0/1."""
    h = None if held is None else tuple(None if v is None else int(bool(v)) for v in held)
    return Claim(id, statement, source, rule, h, tuple(int(s) for s in seeds), scale, strength, tests,
                 quoted).to_dict()


@dataclass(frozen=True)
class ClaimText:
    """A claim as a suite declares it once, at import: the paper's words, the source, the rule (a
    `str.format` template filled from the run's settings), the strength and what a weaker analogue
    tests (the last three may hold {fields} too). Every one is registered in `CLAIM_TEXTS` and pinned by tests/fixtures/claims.json, so a changed
    quotation or rule is a visible diff. `id` and an unquoted `statement` may hold {fields} too."""

    suite: str
    id: str
    statement: str
    source: str
    rule: str
    strength: str
    tests: str | None = None
    quoted: bool = True
    variant: str = ""  # a second wording of the same claim id (e.g. a config that asks less): its registry key

    def make(self, held: Iterable[float | bool | None] | None, seeds: Iterable[int], scale: str,
             **fields: Any) -> dict[str, Any]:
        """The `info["claims"]` entry of one run: the templates filled from `fields`, the per-seed outcome."""
        statement = self.statement if self.quoted else self.statement.format(**fields)
        return claim(self.id.format(**fields), statement, self.source.format(**fields), self.rule.format(**fields),
                     held, seeds, scale, strength=self.strength,
                     tests=None if self.tests is None else self.tests.format(**fields), quoted=self.quoted)

    def to_dict(self) -> dict[str, Any]:
        return {"statement": self.statement, "source": self.source, "rule": self.rule, "strength": self.strength,
                "tests": self.tests, "quoted": self.quoted}


CLAIM_TEXTS: dict[str, ClaimText] = {}


def claim_text(suite: str, id: str, statement: str, source: str, rule: str, *, strength: str,
               tests: str | None = None, quoted: bool = True, variant: str = "") -> ClaimText:
    """Declare (and register) one claim of `suite`; see `ClaimText`."""
    ct = ClaimText(suite, id, statement, source, rule, strength, tests, quoted, variant)
    Claim(id, statement, source, rule, None, (), "", strength, tests, quoted)  # validates strength and tests
    key = f"{suite}/{id}" + (f" [{variant}]" if variant else "")
    if CLAIM_TEXTS.get(key, ct) != ct:
        raise ValueError(f"claim {key} declared twice with different texts")
    CLAIM_TEXTS[key] = ct
    return ct


def curve_table(model: str, seed: int | None, table: Mapping[str, Sequence[Any]], *, x: str = "step") -> dict[str, Any]:
    """A curve from a table of columns kept while training ({"step": [...], "loss": [...], ...}): column `x`
    gives the x values, every other column a named series; a column with no value at all (None throughout,
    e.g. validation BLEU without a validation split) is left out."""
    series = {k: v for k, v in table.items() if k != x and any(y is not None for y in v)}
    return curve(model, seed, table[x], x=x, **series)
