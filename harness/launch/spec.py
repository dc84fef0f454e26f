"""One frozen case spec going down, one typed case result coming up.

The runner writes a CaseSpec (JSON) for every case; the worker, each torchrun rank and the in-process
launcher read that same spec; every path back (the worker, the torchrun gather, a crash, a timeout)
returns a CaseResult, which the runner turns into a record.
"""

from __future__ import annotations

import dataclasses
import errno
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milestones.harness.errors import RecordError
from milestones.harness.measure.timing import TimingSettings
from milestones.harness.records import STATUSES, Case, Metric

# A write that failed for want of space (a full disk, a quota, a file-size limit): the record says it was
# the disk, the run stops with its resume command, and --resume runs the case again.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# The case process's exit code when it could not write its result for that reason (its log may be
# empty too: the exit code is all that reaches the runner). EX_IOERR from sysexits.h.
DISK_FULL_EXIT = 74


def disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in DISK_ERRNOS


# Where a case's batch size came from: decided once, when the case is planned.
BATCH_SOURCES = ("config default", "--batch-size", "--find-max-batch", "none")


@dataclass(frozen=True)
class CaseSpec:
    """Everything one case process needs; nothing else reaches a suite."""

    case: Case
    batch_size_source: str | None = None  # None: "config default" when the case has a batch, else "none"
    seed: int = 0
    seeds: tuple[int, ...] | None = None  # --seeds as given (even one); None: the suite derives them from seed
    repeat_index: int = 0
    threads: int | None = None
    deterministic: bool = False
    profile: bool = False
    peak_tflops: float | None = None
    timing: TimingSettings | None = None  # None: the scale's default
    data: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    checkpoint_dir: str | None = None
    timeout: float = 900.0
    nproc: int = 1
    torchrun_args: tuple[str, ...] = ()
    # What the user asked for (auto / cpu / cuda): a paper-scale case runs on a CPU only when asked to.
    requested_device: str = "auto"

    def __post_init__(self) -> None:
        if self.batch_size_source is None:
            object.__setattr__(self, "batch_size_source", "none" if self.case.batch_size is None else "config default")
        if self.batch_size_source not in BATCH_SOURCES:
            raise ValueError(f"unknown batch size source {self.batch_size_source!r}")
        if (self.case.batch_size is None) != (self.batch_size_source == "none"):
            raise ValueError(f"case {self.case.slug}: batch size {self.case.batch_size} with source "
                             f"{self.batch_size_source!r}")
        object.__setattr__(self, "data", dict(self.data))
        object.__setattr__(self, "options", dict(self.options))
        if self.seeds is not None:
            object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "torchrun_args", tuple(self.torchrun_args))

    @property
    def key(self) -> str:
        """The case's key within its run: its slug, plus /rN for a repeat."""
        return self.case.slug + (f"/r{self.repeat_index}" if self.repeat_index else "")

    def with_case(self, **changes: Any) -> CaseSpec:
        return dataclasses.replace(self, case=dataclasses.replace(self.case, **changes))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["timing"] = None if self.timing is None else dataclasses.asdict(self.timing)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CaseSpec:
        d = dict(d)
        d["case"] = Case(**d["case"])
        if d.get("timing") is not None:
            d["timing"] = TimingSettings(**d["timing"])
        for k in ("seeds", "torchrun_args"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> CaseSpec:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class CaseResult:
    """What came back from one case, whichever way it ended."""

    status: str
    error: str | None = None
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    def replace(self, **changes: Any) -> CaseResult:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "error": self.error,
                "metrics": {k: m.to_dict() for k, m in self.metrics.items()}, "info": dict(self.info),
                "artifacts": dict(self.artifacts), "started_at": self.started_at, "ended_at": self.ended_at,
                "duration_s": self.duration_s}

    @classmethod
    def from_dict(cls, d: Any, source: str = "case result") -> CaseResult:
        if not isinstance(d, dict) or "status" not in d:
            raise RecordError(f"{source}: not a case result")
        return cls(status=d["status"], error=d.get("error"),
                   metrics={k: Metric.from_dict(k, m) for k, m in (d.get("metrics") or {}).items()},
                   info=dict(d.get("info") or {}), artifacts=dict(d.get("artifacts") or {}),
                   started_at=d.get("started_at"), ended_at=d.get("ended_at"), duration_s=d.get("duration_s"))

    def write(self, path: Path) -> None:
        """Atomically (temp + rename), so the parent never reads half a result. NaN/inf survive as strings
        (Metric.to_dict keeps them); anything else json cannot hold is stored as its repr."""
        import os

        tmp = path.with_suffix(".partial")
        try:
            tmp.write_text(json.dumps(self.to_dict(), default=repr), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def read(cls, path: Path) -> CaseResult:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), str(path))
