"""`milestones merge SRC... --out DIR`: gather result folders from many machines into one tree.

Each record lands at DIR/<machine id>/<run id>/<file name>, read and validated first (a malformed
record stops the merge with one line). Nothing is overwritten: a byte-identical record already there
is skipped, a different one with the same name is written beside it with a -2, -3... suffix.
`load_frame(DIR)` (and so compare, report and plots) then sees every machine at once.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class MergeResult:
    written: list[Path] = field(default_factory=list)
    already_there: list[Path] = field(default_factory=list)
    machines: set[str] = field(default_factory=set)


def _same_file_there(folder: Path, name: str, text: str) -> Path | None:
    stem, suffix = Path(name).stem, Path(name).suffix
    for cand in [folder / name, *sorted(folder.glob(f"{stem}-*{suffix}"))]:
        try:
            if cand.is_file() and cand.read_text(encoding="utf-8") == text:
                return cand
        except (OSError, UnicodeDecodeError):
            continue
    return None


def merge(sources: list[str], out: str | Path) -> MergeResult:
    from milestones.harness import store

    out = Path(out)
    files = list(store.iter_record_files(sources))
    records = [(f, store.read_record(f)) for f in files]  # validate everything before writing anything
    store.ensure_writable(out)
    res = MergeResult()
    manifests: dict[Path, Path] = {}
    for f, rec in records:
        machine = str(rec.env.get("machine_id") or "unknown-machine")
        folder = out / machine / rec.run_id
        text = f.read_text(encoding="utf-8")
        res.machines.add(machine)
        there = _same_file_there(folder, f.name, text)
        if there is not None:
            res.already_there.append(there)
        else:
            res.written.append(store.atomic_write_new(folder / f.name, text))
        src_manifest = f.parent / store.RUN_MANIFEST
        if src_manifest.is_file():
            manifests.setdefault(folder, src_manifest)
    for folder, src in manifests.items():
        if not (folder / store.RUN_MANIFEST).exists():
            try:
                json.loads(src.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # a broken manifest only loses --resume for that run, never a record
            store.atomic_write_new(folder / store.RUN_MANIFEST, src.read_text(encoding="utf-8"))
    return res


def cmd_merge(args: argparse.Namespace) -> int:
    res = merge(args.sources, args.out)
    print(f"merged {len(res.written)} record(s) from {len(res.machines)} machine(s) into {args.out}"
          + (f"; {len(res.already_there)} already there" if res.already_there else ""))
    return 0


def register(sub) -> None:
    sp = sub.add_parser("merge", help="merge result folders from many machines into one tree")
    sp.add_argument("sources", nargs="+", metavar="SRC", help="result folders or record files")
    sp.add_argument("--out", required=True, metavar="DIR", help="the merged results folder")
    sp.set_defaults(func=cmd_merge)
