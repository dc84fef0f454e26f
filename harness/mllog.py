"""MLPerf-style logs: `:::MLLOG {json}` events that MLPerf's tools (mlperf-logging's parser, the
result summarizer) read to get time to quality.

Each line: `:::MLLOG {"namespace", "time_ms", "event_type", "key", "value", "metadata": {"file", "lineno"}}`
with event_type INTERVAL_START / INTERVAL_END / POINT_IN_TIME, as mlperf_logging.mllog writes them.

Enabled per run by `--option mllog=PATH` (read from `ctx.options`) or, for every case, by the
environment variable MILESTONES_MLLOG=PATH; lines are appended, so several seeds or cases share a
file. Disabled, every call is a no-op, so quality suites call it unconditionally:

    with mllog.run(ctx, benchmark="resnet", global_batch_size=ctx.batch_size, opt_base_learning_rate=0.1) as log:
        for epoch in ...:
            log.start("epoch_start", metadata={"epoch_num": epoch})
            ...
            log.eval_accuracy(acc, epoch_num=epoch)
            if acc >= target:
                log.success()
                break

`run_stop` carries status "success" only after `log.success()` (the target quality was reached),
"aborted" otherwise, exception included.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

TOKEN = ":::MLLOG "
ENV = "MILESTONES_MLLOG"
OPTION = "mllog"
INTERVAL_START, INTERVAL_END, POINT_IN_TIME = "INTERVAL_START", "INTERVAL_END", "POINT_IN_TIME"
REQUIRED_KEYS = ("namespace", "time_ms", "event_type", "key", "value", "metadata")
EVENT_TYPES = (INTERVAL_START, INTERVAL_END, POINT_IN_TIME)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN: a diverged accuracy is logged as text, not dropped
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    return str(v)


def _caller() -> tuple[str, int]:
    """The first frame outside this module: what MLPerf's `metadata.file/lineno` point to."""
    f = sys._getframe(1)
    here = os.path.abspath(__file__)
    while f is not None and os.path.abspath(f.f_code.co_filename) in (here, os.path.abspath(__import__("contextlib").__file__)):
        f = f.f_back
    if f is None:
        return "<unknown>", 0
    return f.f_code.co_filename, f.f_lineno


class MLLogger:
    """Writes events to `path` (appended) and/or `stream`; with neither, does nothing."""

    def __init__(self, path: str | os.PathLike | None = None, *, stream: TextIO | None = None, namespace: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path) if path else None
        self.stream = stream
        self.namespace = namespace
        self.clock = clock
        self.status = "aborted"
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def enabled(self) -> bool:
        return self.path is not None or self.stream is not None

    def _emit(self, event_type: str, key: str, value: Any, metadata: dict[str, Any] | None) -> str | None:
        if not self.enabled:
            return None
        file, lineno = _caller()
        meta = {"file": file, "lineno": lineno, **(_json_value(metadata) or {})}
        line = TOKEN + json.dumps({"namespace": self.namespace, "time_ms": round(self.clock() * 1000.0, 3),
                                   "event_type": event_type, "key": key, "value": _json_value(value),
                                   "metadata": meta}, allow_nan=False)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:  # one append per line: processes may share it
                f.write(line + "\n")
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()
        return line

    def event(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None) -> str | None:
        return self._emit(POINT_IN_TIME, key, value, metadata)

    def start(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None) -> str | None:
        return self._emit(INTERVAL_START, key, value, metadata)

    def end(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None) -> str | None:
        return self._emit(INTERVAL_END, key, value, metadata)

    def eval_accuracy(self, value: float, *, epoch_num: int | None = None, samples_count: int | None = None) -> str | None:
        meta = {k: v for k, v in (("epoch_num", epoch_num), ("samples_count", samples_count)) if v is not None}
        return self.event("eval_accuracy", value, meta)

    def success(self) -> None:
        """The target quality was reached: run_stop will say status "success"."""
        self.status = "success"


def logger_for(ctx: Any = None) -> MLLogger:
    """The logger a case should use: `--option mllog=PATH`, else $MILESTONES_MLLOG, else disabled."""
    options = getattr(ctx, "options", None) or {}
    path = options.get(OPTION) or os.environ.get(ENV)
    return MLLogger(path) if path else MLLogger()


@contextmanager
def run(ctx: Any = None, *, benchmark: str, seed: int | None = None, global_batch_size: int | None = None,
        logger: MLLogger | None = None, **hyperparameters: Any) -> Iterator[MLLogger]:
    """submission_benchmark, seed, global_batch_size and the hyperparameters as POINT_IN_TIME events,
    init_start/init_stop, then run_start ... run_stop (status success|aborted) around the block."""
    log = logger or logger_for(ctx)
    if seed is None and ctx is not None:
        seed = getattr(ctx, "seed", None)
    log.event("submission_benchmark", benchmark)
    log.event("submission_org", "milestones")
    log.event("submission_division", "open")  # our models follow the papers, not MLPerf's closed rules
    log.start("init_start")
    if seed is not None:
        log.event("seed", seed)
    if global_batch_size is not None:
        log.event("global_batch_size", global_batch_size)
    for k, v in hyperparameters.items():
        log.event(k, v)
    log.end("init_stop")
    log.start("run_start")
    try:
        yield log
    except BaseException:
        log.status = "aborted"
        log.end("run_stop", metadata={"status": "aborted"})
        raise
    log.end("run_stop", metadata={"status": log.status})


# ------------------------------------------------------------------------------------------ reading
def parse_line(line: str) -> dict[str, Any] | None:
    """The event of one `:::MLLOG` line (None for other lines); ValueError when it is malformed."""
    i = line.find(TOKEN)
    if i < 0:
        return None
    try:
        ev = json.loads(line[i + len(TOKEN):])
    except json.JSONDecodeError as e:
        raise ValueError(f"MLLOG line is not JSON: {e.msg}") from None
    if not isinstance(ev, dict):
        raise ValueError("MLLOG payload is not an object")
    missing = [k for k in REQUIRED_KEYS if k not in ev]
    if missing:
        raise ValueError(f"MLLOG event lacks {', '.join(missing)}")
    if ev["event_type"] not in EVENT_TYPES:
        raise ValueError(f"MLLOG event_type {ev['event_type']!r} is not one of {', '.join(EVENT_TYPES)}")
    if not isinstance(ev["metadata"], dict) or not {"file", "lineno"} <= set(ev["metadata"]):
        raise ValueError("MLLOG metadata lacks file/lineno")
    float(ev["time_ms"])
    return ev


def time_to_quality(lines: list[str]) -> list[dict[str, Any]]:
    """One entry per run_start..run_stop: seconds between them, the status, the last eval_accuracy."""
    out, cur = [], None
    for line in lines:
        ev = parse_line(line)
        if ev is None:
            continue
        if ev["key"] == "run_start":
            cur = {"start_ms": float(ev["time_ms"]), "accuracy": None}
        elif ev["key"] == "eval_accuracy" and cur is not None:
            cur["accuracy"] = ev["value"]
        elif ev["key"] == "run_stop" and cur is not None:
            out.append({"seconds": (float(ev["time_ms"]) - cur["start_ms"]) / 1000.0,
                        "status": ev["metadata"].get("status"), "accuracy": cur["accuracy"]})
            cur = None
    return out
