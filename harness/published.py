"""Published throughput as baselines of their own category: `baselines/published/*.toml`.

A vendor's or the field's figure (NVIDIA DeepLearningExamples, a public benchmark) is not a paper's
result: it is an anchor for "how fast does this train on this GPU, set up the way people run it". Each
says its GPU, batch, precision, memory format, data pipeline, software and source. Beside our records
it becomes a row: ours, the published figure, ours/published, and either "same setup" or "not
comparable: ..." naming every difference (synthetic data against a real input pipeline is said, never
hidden). The ratio is shown either way, labelled, since a newer GPU on synthetic data is expected to
clear an older one's published figure and that is worth seeing.

Loading is strict (unknown keys, wrong types, missing fields are errors), like baselines.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from milestones.harness.errors import BaselineError
from milestones.harness.measure.modes import PRECISIONS, Mode, ModeError

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

FOLDER = "published"  # under the baselines folder
REQUIRED = {"id": str, "model": str, "configs": list, "step": str, "gpu": str, "gpu_names": list, "gpus": int,
            "precision": str, "channels_last": bool, "value": (int, float), "unit": str, "data": str,
            "software": str, "source": str}
OPTIONAL = {"batch": int, "synthetic": bool, "note": str, "compiled": bool}
SOURCE_KEYS = {"id": str, "title": str, "url": str}
# Our speed cases time synthetic batches already on the device: no input pipeline.
OUR_DATA = "synthetic batch on the device"


@dataclass(frozen=True)
class Published:
    id: str
    model: str
    configs: tuple[str, ...]
    step: str
    gpu: str
    gpu_names: tuple[str, ...]
    gpus: int
    precision: str
    channels_last: bool
    value: float
    unit: str
    data: str
    software: str
    source: str
    source_title: str
    url: str
    batch: int | None = None
    synthetic: bool | None = None  # None: the source does not say
    compiled: bool = False
    note: str | None = None
    file: str = ""


def folder_of(baselines_dir: str | Path | None = None) -> Path:
    from milestones.harness.baselines import default_folder

    return Path(baselines_dir or default_folder()) / FOLDER


def _typed(where: str, d: dict[str, Any], required: dict, optional: dict) -> None:
    for k in d:
        if k not in required and k not in optional:
            raise BaselineError(f"{where}: unknown key {k!r}")
    for k in required:
        if k not in d:
            raise BaselineError(f"{where}: missing {k!r}")
    for k, v in d.items():
        t = required.get(k) or optional[k]
        if isinstance(v, bool) and t is not bool or not isinstance(v, t):
            raise BaselineError(f"{where}: {k!r} has the wrong type ({type(v).__name__})")


def load_file(path: Path) -> list[Published]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise BaselineError(f"{path}: cannot read ({e})") from None
    src = raw.get("source")
    if not isinstance(src, dict):
        raise BaselineError(f"{path}: needs a [source] table (id, title, url)")
    _typed(f"{path}: [source]", src, SOURCE_KEYS, {})
    if set(raw) - {"source", "published"}:
        raise BaselineError(f"{path}: unknown tables {sorted(set(raw) - {'source', 'published'})}")
    out = []
    for i, d in enumerate(raw.get("published") or []):
        where = f"{path}: published[{i}]"
        if not isinstance(d, dict):
            raise BaselineError(f"{where}: must be a table")
        _typed(where, d, REQUIRED, OPTIONAL)
        if d["precision"] not in PRECISIONS or d["precision"] == "cast":
            raise BaselineError(f"{where}: precision must be one of {', '.join(PRECISIONS[1:])}")
        if not d["value"] > 0:
            raise BaselineError(f"{where}: value must be positive")
        out.append(Published(
            id=d["id"], model=d["model"], configs=tuple(d["configs"]), step=d["step"], gpu=d["gpu"],
            gpu_names=tuple(d["gpu_names"]), gpus=d["gpus"], precision=d["precision"],
            channels_last=d["channels_last"], value=float(d["value"]), unit=d["unit"], data=d["data"],
            software=d["software"], source=d["source"], source_title=src["title"], url=src["url"],
            batch=d.get("batch"), synthetic=d.get("synthetic"), compiled=d.get("compiled", False),
            note=d.get("note"), file=path.name))
    return out


def check_configs(items: Sequence[Published], registry: Any) -> list[str]:
    """Each figure's configs must be registered speed configs (one-line errors)."""
    errors = []
    for p in items:
        for c in p.configs:
            try:
                entry = registry.config(c)
            except Exception as e:  # the registry's own one-line "unknown config ... did you mean"
                errors.append(f"{p.file}: published {p.id!r}: {e}")
                continue
            if "speed" not in entry.kinds:
                errors.append(f"{p.file}: published {p.id!r}: config {c!r} has no speed kind")
    return errors


def load(baselines_dir: str | Path | None = None) -> list[Published]:
    folder = folder_of(baselines_dir)
    if not folder.is_dir():
        return []
    items = [p for f in sorted(folder.glob("*.toml")) for p in load_file(f)]
    ids = [p.id for p in items]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise BaselineError(f"{folder}: duplicate published ids {dup}")
    return items


# ------------------------------------------------------------------------------------------ comparing
def _family(precision: str) -> str:
    return "amp" if precision.startswith("amp-") else precision


@dataclass(frozen=True)
class AnchorRow:
    published: Published
    record: Any  # the RunRecord
    ours: float | None
    ratio: float | None
    differences: tuple[str, ...]

    @property
    def comparable(self) -> bool:
        return not self.differences

    @property
    def setup(self) -> str:
        return "same setup" if self.comparable else "not comparable: " + "; ".join(self.differences)


def differences(p: Published, rec: Any) -> tuple[str, ...]:
    """Every way our record's setup differs from the published one's."""
    try:
        mode = Mode.parse(rec.case.mode)
    except ModeError:
        mode = Mode()
    precision = "fp32" if mode.precision == "cast" and rec.case.dtype == "float32" else mode.precision
    gpu = rec.env.get("gpu")
    out = []
    if gpu not in p.gpu_names:
        out.append(f"GPU {gpu or 'unknown'} vs {p.gpu}")
    world = rec.info.get("world_size", 1)
    if world != p.gpus:
        out.append(f"{world} vs {p.gpus} GPUs")
    if p.batch is None:
        out.append(f"batch {rec.case.batch_size} vs not stated")
    elif rec.case.batch_size != p.batch:
        out.append(f"batch {rec.case.batch_size} vs {p.batch}")
    if precision != p.precision:
        out.append(f"precision {precision if mode.precision != 'cast' else rec.case.dtype + ' cast'} vs {p.precision}")
    if mode.channels_last != p.channels_last:
        out.append(f"memory format {'NHWC' if mode.channels_last else 'NCHW'} vs "
                   f"{'NHWC' if p.channels_last else 'NCHW'}")
    if mode.compiled != p.compiled:
        out.append(f"{'torch.compile' if mode.compiled else 'eager'} vs {'compiled' if p.compiled else 'eager'}")
    if p.synthetic is not True:
        out.append(f"data: {OUR_DATA} vs {p.data if p.synthetic is False else 'a pipeline the source does not state'}")
    return tuple(out)


def anchor_rows(records: Iterable[Any], published: Sequence[Published]) -> list[AnchorRow]:
    """Each published figure beside each ok GPU record of its configs in the same precision family (fp32,
    tf32, or mixed precision: amp-bf16 stands beside a published float16 AMP figure, and says so)."""
    rows = []
    recs = [r for r in records if r.status == "ok" and r.case.kind == "speed" and r.case.device.startswith("cuda")]
    for p in published:
        for r in recs:
            if r.case.config not in p.configs:
                continue
            try:
                mode = Mode.parse(r.case.mode)
            except ModeError:
                continue
            precision = "fp32" if mode.precision == "cast" and r.case.dtype == "float32" else mode.precision
            if _family(precision) != _family(p.precision):
                continue
            m = r.metrics.get(f"{p.step}.throughput")
            ours = m.value if m is not None else None
            rows.append(AnchorRow(p, r, ours, ours / p.value if ours is not None else None, differences(p, r)))
    return rows


def format_rows(rows: Sequence[AnchorRow]) -> list[list[str]]:
    """Table cells: published figure, its GPU and setup, ours, our mode and GPU, ratio, setup verdict."""
    out = []
    for a in rows:
        p, c = a.published, a.record.case
        out.append([p.id, f"{p.value:g} {p.unit}", f"{p.gpu}, batch {p.batch if p.batch is not None else '?'}, "
                    f"{p.precision}{' NHWC' if p.channels_last else ''}", f"{c.config} ({c.mode})",
                    f"{a.record.env.get('gpu') or '?'}, batch {c.batch_size}",
                    "null" if a.ours is None else f"{a.ours:.1f}",
                    "null" if a.ratio is None else f"{a.ratio:.2f}x", a.setup, f"{p.source_title}: {p.source}"])
    return out


ROW_HEADER = ["published", "value", "their setup", "our case", "our GPU", "ours", "ours/published", "setup",
              "source"]


def markdown(rows: Sequence[AnchorRow]) -> str:
    if not rows:
        return "No GPU record matches a published throughput figure (their configs: " \
               "resnet50-v1.5-speed, train step)."
    lines = ["| " + " | ".join(ROW_HEADER) + " |", "|" + "---|" * len(ROW_HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in format_rows(rows)]
    return "\n".join(lines)
