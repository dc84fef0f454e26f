"""Typed result records. Raw samples are kept; statistics are derived from them, never stored alone.

Imports nothing else from the harness except the error vocabulary.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from milestones.harness.errors import RecordError

SCHEMA_VERSION = 1
DEFAULT_MODE = "cast"  # measure/modes.py's default mode: the pure --dtype cast of every run before modes
STATUSES = ("ok", "failed", "timeout", "oom", "skipped", "diverged", "interrupted")
# info key of a case that failed because a write found no space (disk, quota, file-size limit): the
# run stops with its resume command, and --resume runs the case again.
DISK_FULL_KEY = "disk_full"
# Statuses that do not make `milestones run` exit non-zero.
SUCCESS_STATUSES = ("ok", "skipped")


# Student-t 0.975 quantiles by degrees of freedom (scipy.stats.t.ppf(0.975, df)); beyond 30, the
# normal 1.96 is within 2%. Kept inline so records import nothing heavy.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042}


def _fsum(xs: list[float]) -> float:
    """math.fsum, except where it raises: +inf with -inf (nan, as IEEE says) or finite samples whose sum
    leaves the float range (the plain sum's inf). Records store such samples (diverged runs, overflowed
    counters), so their stats must not crash a reader."""
    try:
        return math.fsum(xs)
    except ValueError:
        return math.nan
    except OverflowError:
        return sum(xs)


def _mean(xs: list[float]) -> float:
    m = _fsum(xs) / len(xs)
    if not math.isfinite(m) and all(math.isfinite(x) for x in xs):  # 1e308 + 1e308: scale first
        m = _fsum([x / len(xs) for x in xs])
    return m


def _quantile(sorted_xs: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), without numpy."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = q * (len(sorted_xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    n: int
    median: float
    mean: float
    std: float
    iqr: float
    p10: float
    p90: float
    cv: float | None
    min: float
    max: float
    # Over seeds: a 95% Student-t interval of the mean; MLPerf's olympic mean (drop best and worst).
    ci95_low: float | None = None
    ci95_high: float | None = None
    olympic_mean: float | None = None

    @classmethod
    def from_samples(cls, samples: list[float] | tuple[float, ...]) -> Stats | None:
        xs = sorted(float(x) for x in samples)
        if not xs:
            return None
        n = len(xs)
        mean = _mean(xs)
        # Plain formula (statistics.stdev rejects NaN): a diverged sample makes the std NaN, honestly.
        # d * d, not d ** 2: float ** raises OverflowError where * gives inf.
        std = math.sqrt(_fsum([(x - mean) * (x - mean) for x in xs]) / (n - 1)) if n > 1 else 0.0
        half = _T975.get(len(xs) - 1, 1.96) * std / math.sqrt(len(xs)) if len(xs) > 1 else None
        return cls(
            n=n, median=_quantile(xs, 0.5), mean=mean, std=std,
            iqr=_quantile(xs, 0.75) - _quantile(xs, 0.25), p10=_quantile(xs, 0.1), p90=_quantile(xs, 0.9),
            cv=(std / abs(mean)) if mean else None, min=xs[0], max=xs[-1],
            ci95_low=None if half is None else mean - half, ci95_high=None if half is None else mean + half,
            olympic_mean=_mean(xs[1:-1]) if n >= 3 else None,
        )


@dataclass(frozen=True)
class Metric:
    """A measured quantity: raw samples and the stats derived from them.

    `samples` is empty when the figure was not measured; `note` then says why (it is never faked).
    """

    name: str
    unit: str
    higher_is_better: bool
    samples: tuple[float, ...] = ()
    note: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples", tuple(float(x) for x in self.samples))

    @classmethod
    def from_values(cls, name: str, unit: str, higher_is_better: bool, values, note: str | None = None) -> Metric:
        return cls(name=name, unit=unit, higher_is_better=higher_is_better, samples=tuple(values), note=note)

    @classmethod
    def single(cls, name: str, unit: str, higher_is_better: bool, value: float | None,
               note: str | None = None) -> Metric:
        if value is None:
            return cls.missing(name, unit, higher_is_better, note or "not measured")
        return cls(name=name, unit=unit, higher_is_better=higher_is_better, samples=(float(value),), note=note)

    @classmethod
    def missing(cls, name: str, unit: str, higher_is_better: bool, why: str) -> Metric:
        return cls(name=name, unit=unit, higher_is_better=higher_is_better, samples=(), note=why)

    @property
    def stats(self) -> Stats | None:
        return Stats.from_samples(self.samples)

    @property
    def value(self) -> float | None:
        s = self.stats
        return None if s is None else s.median

    def to_dict(self) -> dict[str, Any]:
        st = self.stats
        return {"unit": self.unit, "higher_is_better": self.higher_is_better,
                "samples": [_finite_or_str(x) for x in self.samples],
                "stats": None if st is None else {k: _finite_or_str(v) for k, v in asdict(st).items()},
                "note": self.note}

    @classmethod
    def from_dict(cls, name: str, d: Any) -> Metric:
        if not isinstance(d, dict):
            raise RecordError(f"metric {name!r} is not an object")
        try:
            unit, hib, samples = d["unit"], d["higher_is_better"], d["samples"]
        except KeyError as e:
            raise RecordError(f"metric {name!r} lacks field {e.args[0]!r}") from None
        if not isinstance(unit, str) or not isinstance(hib, bool) or not isinstance(samples, list):
            raise RecordError(f"metric {name!r}: unit must be a string, higher_is_better a bool, samples a list")
        vals = []
        for x in samples:
            if isinstance(x, bool) or not isinstance(x, (int, float, str)):
                raise RecordError(f"metric {name!r}: sample {x!r} is not a number")
            try:
                vals.append(float(x))
            except (ValueError, OverflowError):
                raise RecordError(f"metric {name!r}: sample {x!r:.40} is not a number") from None
        note = d.get("note")
        if note is not None and not isinstance(note, str):
            raise RecordError(f"metric {name!r}: note must be a string")
        return cls(name=name, unit=unit, higher_is_better=hib, samples=tuple(vals), note=note)


def _finite_or_str(x: Any) -> Any:
    # JSON has no NaN/inf: keep them as strings so a diverged value is recorded, not lost.
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


# Where a record says which of its values were non-finite (info[NONFINITE_KEY]["where"]).
NONFINITE_KEY = "nonfinite_values"
NONFINITE_NOTE = "JSON has no NaN or infinity: these values are stored as the strings 'nan', 'inf', '-inf'"


def json_safe(value: Any, where: str, notes: list[str]) -> Any:
    """`value` with every non-finite float (nested, dict keys included) replaced by its string; each
    replacement's place is appended to `notes`, so nothing is dropped or altered silently."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        notes.append(f"{where} = {value}")
        return str(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = k
            if isinstance(k, float) and not math.isfinite(k):
                key = str(k)
                notes.append(f"{where}: key {k}")
            elif k is not None and not isinstance(k, (str, int, float, bool)):
                key = str(k)  # JSON keys are strings; json.dumps rejects any other type outright
                notes.append(f"{where}: key {k!r} stored as the string {key!r}")
            out[key] = json_safe(v, f"{where}[{k!r}]", notes)
        return out
    if isinstance(value, (list, tuple)):
        return [json_safe(x, f"{where}[{i}]", notes) for i, x in enumerate(value)]
    return value


def _with_nonfinite_note(info: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    if not notes:
        return info
    prev = info.get(NONFINITE_KEY)
    where = list(prev["where"]) if isinstance(prev, dict) and isinstance(prev.get("where"), list) else []
    where += [n for n in notes if n not in where]
    return {**info, NONFINITE_KEY: {"note": NONFINITE_NOTE, "where": where}}


def env_part(env: Any, key: str) -> dict[str, Any]:
    """env[key] when it is an object (env.nvidia, env.git), else {}: a hand-edited or foreign record may
    hold a list or a string there, and a reader must not crash on it."""
    part = env.get(key) if isinstance(env, dict) else None
    return part if isinstance(part, dict) else {}


@dataclass(frozen=True)
class CaseFields:
    """The fields that name a case, in their order: one home for a Case and for what is reported per case
    (compare's rows), so the two cannot drift apart."""

    suite: str
    config: str
    kind: str
    scale: str
    device: str
    dtype: str
    batch_size: int | None


@dataclass(frozen=True)
class Case(CaseFields):
    """One (suite, config, kind, scale, device, dtype, batch size, execution mode) to run; it yields one record.

    mode: the execution mode's canonical text (harness/measure/modes.py); the default, the pure --dtype
    cast, leaves the slug as it was before modes existed, and a record without a mode reads as it."""

    mode: str = DEFAULT_MODE

    @property
    def config_label(self) -> str:
        """The config, with the execution mode when it is not the default: where rows are keyed and shown
        by config (by-GPU tables, histories), two modes stay two rows. Parentheses, not brackets: the
        terminal tables render square brackets as markup."""
        return self.config if self.mode == DEFAULT_MODE else f"{self.config} ({self.mode})"

    @property
    def slug(self) -> str:
        bs = "" if self.batch_size is None else f"-b{self.batch_size}"
        mode = "" if self.mode == DEFAULT_MODE else f".{self.mode}"
        return f"{self.suite}.{self.config}.{self.kind}.{self.scale}.{self.device}.{self.dtype}{bs}{mode}"


@dataclass(frozen=True)
class CaseOutput:
    """What a suite's kind function returns."""

    metrics: dict[str, Metric] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    schema_version: int
    run_id: str
    record_id: str
    started_at: str
    ended_at: str
    duration_s: float
    case: Case
    config: dict[str, Any]
    suite_version: str
    env: dict[str, Any]
    status: str
    error: str | None
    metrics: dict[str, Metric]
    info: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        notes: list[str] = []
        config, env = json_safe(self.config, "config", notes), json_safe(self.env, "env", notes)
        info, artifacts = json_safe(self.info, "info", notes), json_safe(self.artifacts, "artifacts", notes)
        return {
            "schema_version": self.schema_version, "run_id": self.run_id, "record_id": self.record_id,
            "started_at": self.started_at, "ended_at": self.ended_at, "duration_s": self.duration_s,
            "case": asdict(self.case), "config": config, "suite_version": self.suite_version,
            "env": env, "status": self.status, "error": self.error,
            "metrics": {str(k): m.to_dict() for k, m in self.metrics.items()},
            "info": _with_nonfinite_note(info, notes), "artifacts": artifacts,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False, default=str, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "record") -> RunRecord:
        if not isinstance(d, dict):
            raise RecordError(f"{source}: a record must be a JSON object")
        v = d.get("schema_version")
        if not isinstance(v, int) or isinstance(v, bool):
            raise RecordError(f"{source}: missing or non-integer schema_version")
        if v > SCHEMA_VERSION:
            raise RecordError(f"{source}: schema_version {v} is newer than this milestones understands "
                              f"({SCHEMA_VERSION}); upgrade milestones to read it")
        if v < 1:
            raise RecordError(f"{source}: unknown schema_version {v}")
        required = ("run_id", "record_id", "started_at", "ended_at", "case", "suite_version", "env",
                    "status", "metrics")
        for k in required:
            if k not in d:
                raise RecordError(f"{source}: missing field {k!r}")
        c = d["case"]
        if not isinstance(c, dict):
            raise RecordError(f"{source}: field 'case' must be an object")
        try:
            case = Case(**{k: c[k] for k in ("suite", "config", "kind", "scale", "device", "dtype", "batch_size")},
                        mode=c.get("mode", DEFAULT_MODE))
        except KeyError as e:
            raise RecordError(f"{source}: case lacks field {e.args[0]!r}") from None
        for k in ("suite", "config", "kind", "scale", "device", "dtype", "mode"):
            if not isinstance(getattr(case, k), str):
                raise RecordError(f"{source}: case.{k} must be a string")
        if case.batch_size is not None and (not isinstance(case.batch_size, int) or isinstance(case.batch_size, bool)):
            raise RecordError(f"{source}: case.batch_size must be an integer or null")
        for k in ("run_id", "record_id", "started_at", "ended_at", "suite_version", "status"):
            if not isinstance(d[k], str):
                raise RecordError(f"{source}: field {k!r} must be a string")
        if d["status"] not in STATUSES:
            raise RecordError(f"{source}: unknown status {d['status']!r}")
        if not isinstance(d["metrics"], dict) or not isinstance(d["env"], dict):
            raise RecordError(f"{source}: fields 'metrics' and 'env' must be objects")
        dur = d.get("duration_s", 0.0)
        if isinstance(dur, bool) or not isinstance(dur, (int, float)) or not _finite_number(dur):
            raise RecordError(f"{source}: duration_s must be a finite number")
        err = d.get("error")
        if err is not None and not isinstance(err, str):
            raise RecordError(f"{source}: error must be a string or null")
        for k in ("config", "info", "artifacts"):
            if not isinstance(d.get(k, {}), dict):
                raise RecordError(f"{source}: field {k!r} must be an object")
        return cls(
            schema_version=v, run_id=d["run_id"], record_id=d["record_id"], started_at=d["started_at"],
            ended_at=d["ended_at"], duration_s=float(dur), case=case, config=d.get("config", {}),
            suite_version=d["suite_version"], env=d["env"], status=d["status"], error=err,
            metrics=_metrics_from_dict(d["metrics"], source),
            info=d.get("info", {}), artifacts=d.get("artifacts", {}),
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = "record") -> RunRecord:
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RecordError(f"{source}: not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
        except RecursionError:
            raise RecordError(f"{source}: JSON nested too deeply") from None
        return cls.from_dict(d, source=source)


def _finite_number(x: int | float) -> bool:
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def _metrics_from_dict(raw: dict[str, Any], source: str) -> dict[str, Metric]:
    try:
        return {str(k): Metric.from_dict(str(k), m) for k, m in raw.items()}
    except RecordError as e:
        raise RecordError(f"{source}: {e}") from None


def failed_for_unserialisable(rec: RunRecord, err: BaseException) -> RunRecord:
    """The same case as a `failed` record, because `rec` itself cannot be written as JSON.

    Keeps every part (config, env, info, artifacts, metrics) that serialises on its own and names the
    ones it had to leave out, so the run goes on and the case is not lost without a trace.
    """
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for part in ("config", "env", "info", "artifacts"):
        value = getattr(rec, part)
        try:
            json.dumps(json_safe(value, part, []), allow_nan=False, default=str)
            kept[part] = value
        except Exception as e:  # any failure here is the one being recorded
            kept[part] = {}
            dropped.append(f"{part} ({type(e).__name__})")
    metrics = {}
    for k, m in rec.metrics.items():
        try:
            json.dumps(m.to_dict(), allow_nan=False)
            metrics[str(k)] = m
        except Exception as e:  # likewise
            dropped.append(f"metrics[{k!r}] ({type(e).__name__})")
    if not kept["env"] and isinstance(rec.env, dict) and isinstance(rec.env.get("machine_id"), str):
        kept["env"] = {"machine_id": rec.env["machine_id"]}
    first = (_text(err).splitlines() or [""])[0][:300]
    info = {**kept["info"], "status_before_serialisation": rec.status, "error_before_serialisation": rec.error,
            "serialisation_dropped": dropped}
    dur = rec.duration_s if isinstance(rec.duration_s, (int, float)) and _finite_number(rec.duration_s) else 0.0
    return RunRecord(
        schema_version=rec.schema_version, run_id=rec.run_id, record_id=rec.record_id, started_at=rec.started_at,
        ended_at=rec.ended_at, duration_s=float(dur), case=rec.case, config=kept["config"],
        suite_version=rec.suite_version, env=kept["env"], status="failed",
        error=f"record could not be serialised ({type(err).__name__}: {first})", metrics=metrics, info=info,
        artifacts=kept["artifacts"])


def minimal_failed(rec: RunRecord, err: BaseException) -> RunRecord:
    """The last resort when even `failed_for_unserialisable` cannot be written: ids, case and error only."""
    machine = rec.env.get("machine_id") if isinstance(rec.env, dict) else None
    first = (_text(err).splitlines() or [""])[0][:300]
    return RunRecord(
        schema_version=SCHEMA_VERSION, run_id=_text(rec.run_id), record_id=_text(rec.record_id),
        started_at=_text(rec.started_at), ended_at=_text(rec.ended_at), duration_s=0.0, case=rec.case, config={},
        suite_version=_text(rec.suite_version), env={"machine_id": machine} if isinstance(machine, str) else {},
        status="failed", error=f"record could not be serialised ({type(err).__name__}: {first})", metrics={},
        info={"serialisation_dropped": ["everything but the ids, the case and this error"]})


def _text(x: Any) -> str:
    if isinstance(x, str):
        return x
    try:
        return str(x)
    except Exception:  # an object whose str() fails is exactly what is being recovered from
        return f"<unprintable {type(x).__name__}>"
