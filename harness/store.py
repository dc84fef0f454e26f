"""Result storage: results/<machine>/<run-id>/<case>.json, one JSON record per case.

Writes are atomic (temp file, fsync, hard link to the final name, which fails rather than replace)
so nothing existing is ever overwritten and a killed run leaves every finished record intact.
`load_frame(*paths)` reads any number of result folders, from any number of machines, into one tidy
DataFrame with a row per metric per case.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from milestones.harness.errors import RecordError, UsageError
from milestones.harness.privacy import scrub_manifest, scrub_record
from milestones.harness.records import (
    DISK_FULL_KEY,
    RunRecord,
    env_part,
    failed_for_unserialisable,
    minimal_failed,
)

RUN_MANIFEST = "_run.json"


def new_run_id(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def ensure_writable(folder: Path) -> None:
    """Fail early, with one line, when results cannot be written there; leaves nothing behind."""
    probe = folder / f".probe-{secrets.token_hex(4)}"
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        _remove_probe(probe)
        for d in created:  # a full disk at the start leaves no empty run folder behind
            try:
                d.rmdir()
            except OSError:
                break
        raise UsageError(f"cannot write results to {folder}: {e.strerror or e}") from None
    _remove_probe(probe)


def _remove_probe(probe: Path) -> None:
    try:  # a full disk fails the write after the file exists: never leave the probe behind
        probe.unlink()
    except OSError:
        pass


TEMP_PREFIXES = (".tmp-", ".probe-")


def remove_temp_files(folder: Path) -> list[Path]:
    """What a writer killed between its write and its link left in `folder` (never a record: a record
    exists only once linked to its name). Only for a folder whose writer holds its lock."""
    gone = []
    for f in folder.iterdir() if folder.is_dir() else ():
        if f.name.startswith(TEMP_PREFIXES) and f.is_file():
            try:
                f.unlink()
                gone.append(f)
            except OSError:
                pass
    return gone


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_new(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically without replacing an existing file.

    If `path` exists, a suffix -2, -3, ... is added. Returns the path written. On any error the temp
    file is removed and the error re-raised: no partial file is left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{secrets.token_hex(6)}-{path.name}"
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        stem, suffix, n = path.stem, path.suffix, 1
        target = path
        while True:
            try:
                os.link(tmp, target)  # atomic, and never replaces an existing file
                break
            except FileExistsError:
                n += 1
                target = path.with_name(f"{stem}-{n}{suffix}")
        _fsync_dir(path.parent)
        return target
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def run_dir(out: Path, machine_id: str, run_id: str) -> Path:
    return Path(out) / machine_id / run_id


def serialise_record(record: RunRecord, record_host: bool = False) -> tuple[RunRecord, str]:
    """(the record as it will be stored, its JSON). Records are shared artefacts: unless `record_host`,
    host-identifying details and absolute paths are scrubbed (milestones.harness.privacy).

    Never raises for the record's content: one that cannot be serialised (non-JSON keys, a cycle, an
    object whose str() fails...) becomes a `failed` record of the same case saying why, so the case
    is kept and the run goes on."""
    try:
        record = scrub_record(record, record_host)
        return record, record.to_json()
    except Exception as e:  # any failure: the point is that none of them loses the case
        try:
            fallback = scrub_record(failed_for_unserialisable(record, e), record_host)
            return fallback, fallback.to_json()
        except Exception:  # what made it fail is inside a part kept as serialisable alone
            last = minimal_failed(record, e)
            try:
                last = scrub_record(last, record_host)
            except Exception:  # the ids and the case are all it has left; keep them
                pass
            return last, last.to_json()


def save_record(folder: Path, record: RunRecord, *, record_host: bool = False) -> tuple[RunRecord, Path]:
    """Write a record; returns the record as written (scrubbed unless `record_host`; a `failed` one
    when `record` could not be serialised) and its path. The runner reports the returned record."""
    record, text = serialise_record(record, record_host)
    return record, _write_record_text(folder, record, text)


def write_record(folder: Path, record: RunRecord, *, record_host: bool = False) -> Path:
    return save_record(folder, record, record_host=record_host)[1]


def _write_record_text(folder: Path, record: RunRecord, text: str) -> Path:
    try:
        return atomic_write_new(folder / f"{record.case.slug}.json", text)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UsageError(f"results folder {folder} is full: {e.strerror}") from None
        raise UsageError(f"cannot write record to {folder}: {e.strerror or e}") from None


def write_manifest(folder: Path, manifest: dict[str, Any], *, record_host: bool = False) -> Path:
    manifest = scrub_manifest(manifest, record_host)
    return atomic_write_new(folder / RUN_MANIFEST, json.dumps(manifest, indent=1, default=str))


def iter_record_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise UsageError(f"no such results path: {p}")
        if p.is_file():
            yield p
            continue
        for f in sorted(p.rglob("*.json")):
            rel = f.relative_to(p).parts
            # Dot-folders hold a run's workdirs, checkpoints and superseded records: not results.
            if f.name == RUN_MANIFEST or any(x.startswith(".") for x in rel) or "asv" in rel[:1]:
                continue
            yield f


def read_record(path: Path) -> RunRecord:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: cannot read ({e})") from None
    return RunRecord.from_json(text, source=str(path))


def warn_skipped(message: str) -> None:
    print(f"milestones: warning: skipped {message}", file=sys.stderr)


def read_records(files: Iterable[Path], *, strict: bool = False,
                 on_skip: Callable[[str], None] | None = warn_skipped) -> list[tuple[Path, RunRecord]]:
    """(path, record) for each readable file. An unreadable one is named through `on_skip` (one line,
    with its path and why) and skipped, so one bad file does not hide every good one; `strict`
    raises its RecordError instead."""
    out = []
    for f in files:
        try:
            out.append((f, read_record(f)))
        except RecordError as e:
            if strict:
                raise
            if on_skip is not None:
                on_skip(str(e))
    return out


def load_records(*paths: str | os.PathLike) -> list[RunRecord]:
    files = list(iter_record_files(paths))
    return [read_record(f) for f in files]


FRAME_COLUMNS = [
    "run_id", "record_id", "suite", "config", "kind", "scale", "device", "dtype", "batch_size", "mode", "status", "error",
    "suite_version", "started_at", "machine_id", "hostname", "gpu", "cpu_model", "threads", "torch", "cuda", "cudnn",
    "driver", "commit", "dirty", "metric", "unit", "higher_is_better", "n", "median", "mean", "std", "iqr",
    "p10", "p90", "cv", "samples", "note", "path",
]


def record_rows(rec: RunRecord, path: str | None = None) -> list[dict[str, Any]]:
    env = rec.env
    git, nvidia = env_part(env, "git"), env_part(env, "nvidia")
    base = {
        "run_id": rec.run_id, "record_id": rec.record_id, "suite": rec.case.suite, "config": rec.case.config,
        "kind": rec.case.kind, "scale": rec.case.scale, "device": rec.case.device, "dtype": rec.case.dtype,
        "batch_size": rec.case.batch_size, "mode": rec.case.mode, "status": rec.status, "error": rec.error,
        "suite_version": rec.suite_version, "started_at": rec.started_at, "machine_id": env.get("machine_id"),
        "hostname": env.get("hostname"), "gpu": env.get("gpu") if rec.case.device.startswith("cuda") else None,
        "cpu_model": env.get("cpu_model"), "threads": env.get("threads"), "torch": env.get("torch"),
        "cuda": env.get("cuda"), "cudnn": env.get("cudnn"), "driver": nvidia.get("driver"),
        "commit": git.get("commit"), "dirty": git.get("dirty"), "path": path,
    }
    if not rec.metrics:
        return [{**base, "metric": None, "unit": None, "higher_is_better": None, "n": 0, "median": None,
                 "mean": None, "std": None, "iqr": None, "p10": None, "p90": None, "cv": None, "samples": [],
                 "note": None}]
    rows = []
    for name, m in rec.metrics.items():
        st = m.stats
        rows.append({**base, "metric": name, "unit": m.unit, "higher_is_better": m.higher_is_better,
                     "n": 0 if st is None else st.n, "median": None if st is None else st.median,
                     "mean": None if st is None else st.mean, "std": None if st is None else st.std,
                     "iqr": None if st is None else st.iqr, "p10": None if st is None else st.p10,
                     "p90": None if st is None else st.p90, "cv": None if st is None else st.cv,
                     "samples": list(m.samples), "note": m.note})
    return rows


def load_frame(*paths: str | os.PathLike):
    """One tidy DataFrame (a row per metric per case) from any number of result folders or files.

    Raises RecordError (one line) on a malformed record or one of a newer schema, and UsageError on
    a missing path or a folder with no records.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    n = 0
    for f in iter_record_files(paths):
        rows.extend(record_rows(read_record(f), str(f)))
        n += 1
    if n == 0:
        raise UsageError(f"no result records found in {', '.join(str(p) for p in paths)}")
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def find_run(out: str | os.PathLike, run: str) -> tuple[Path, dict[str, Any]]:
    """A run's folder and manifest, from its id (searched under `out`) or its folder path."""
    p = Path(run)
    candidates = [p] if (p / RUN_MANIFEST).exists() else list(Path(out).glob(f"*/{run}"))
    candidates = [c for c in candidates if (c / RUN_MANIFEST).exists()]
    if not candidates:
        raise UsageError(f"no run {run!r} found under {out} (give its id or folder)")
    if len(candidates) > 1:
        raise UsageError(f"run id {run!r} is ambiguous under {out}: {', '.join(map(str, candidates))}")
    folder = candidates[0]
    try:
        manifest = json.loads((folder / RUN_MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"run manifest {folder / RUN_MANIFEST} is unreadable: {e}") from None
    if not isinstance(manifest, dict) or "cases" not in manifest or "run_id" not in manifest:
        raise UsageError(f"run manifest {folder / RUN_MANIFEST} lacks its cases")
    return folder, manifest


def rerun_on_resume(rec: RunRecord) -> bool:
    """A record that --resume replaces: its case was interrupted, or failed for want of disk space."""
    return rec.status == "interrupted" or (rec.status == "failed" and rec.info.get(DISK_FULL_KEY) is True)


def run_record_files(folder: Path) -> list[Path]:
    """The record files of one run folder, as compare and report see them: dot-files (a temporary file a
    killed writer left, `.tmp-*-<case>.json`) and the manifest are not records."""
    return [f for f in sorted(folder.glob("*.json")) if f.name != RUN_MANIFEST and not f.name.startswith(".")]


def record_key(rec: RunRecord) -> str:
    return rec.record_id.split("/", 1)[1] if "/" in rec.record_id else rec.record_id


def finished_keys(folder: Path) -> set[str]:
    """Case keys (slug, plus /rN for repeats) whose records exist and are valid: resume skips them."""
    keys = set()
    for f in run_record_files(folder):
        try:
            rec = read_record(f)
        except RecordError:
            continue  # a corrupt record is re-run, not trusted
        if rerun_on_resume(rec):
            continue
        keys.add(record_key(rec))
    return keys
