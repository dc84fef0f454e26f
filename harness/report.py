"""All formatting lives here: terminal tables (rich), Markdown and HTML. Nothing else formats."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from milestones.harness.records import DEFAULT_MODE, SUCCESS_STATUSES, RunRecord, env_part

STATUS_STYLE = {"ok": "green", "skipped": "yellow", "failed": "red", "timeout": "red", "oom": "magenta",
                "diverged": "red", "interrupted": "yellow"}

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def fmt_value(v: float | None, unit: str = "") -> str:
    """Human-readable number with its unit: 3.86 GMAC/image, 12.3 ms, 45.1 images/s, 1.2 GiB."""
    if v is None:
        return "null"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if unit == "s":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
            if abs(v) >= scale or name == "ns":
                return f"{v / scale:.3g} {name}"
    if unit == "B":
        for scale, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(v) >= scale:
                return f"{v / scale:.3g} {name}"
        return f"{v:.0f} B"
    if unit == "bool":
        return "yes" if v >= 0.5 else "no"
    if unit == "count" and abs(v) < 1e15 and float(v).is_integer():
        return f"{int(v):,}"
    if unit in ("fraction", "ratio"):
        return f"{v:.4g}"
    if unit in ("1", "value"):  # dimensionless: no unit written ("0.001", not "0.001 1")
        return f"{v:.4g}"
    if abs(v) >= 1e15:  # past tera, SI prefixes read badly ("3.14e+11 TFLOP"): scientific notation
        return f"{v:.3g} {unit}".rstrip()
    for scale, p in _PREFIXES:
        if abs(v) >= scale:
            return f"{v / scale:.4g} {p}{unit}".rstrip()
    return f"{v:.4g} {unit}".rstrip()


def _console(file=None):
    import sys

    from rich.console import Console

    stream = file or sys.stdout
    # Logs (CI, pipes) get a wide fixed width so tables are not folded into unreadable columns.
    width = None if getattr(stream, "isatty", lambda: False)() else 200
    return Console(file=stream, soft_wrap=False, width=width)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], file=None,
                styles: dict[int, str] | None = None) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if x is None else str(x) for x in r))
    _console(file).print(t)


# ------------------------------------------------------------------------------------------ list, env
def _cost_text(e: dict[str, Any]) -> str:
    """Case counts per scale, and the measured seconds where this machine has run them."""
    cases = e.get("cases") or {}
    measured = e.get("measured_s") or {}
    parts = []
    for sc in ("smoke", "proxy", "paper"):
        ks = cases.get(sc) or {}
        if not ks:
            continue
        counts = ", ".join(f"{n} {k}" for k, n in ks.items())
        took = [f"{k} {fmt_value(v, 's')}" for k, v in measured.items() if k.startswith(sc + " ")]
        parts.append(f"{sc}: {counts}" + (f" (measured here: {', '.join(t.split(' ', 1)[1] for t in took)})"
                                         if took else ""))
    return "\n".join(parts) or "-"


def print_suite_list(summaries: list[dict[str, Any]], file=None, results: str = "results") -> None:
    if summaries and "cases" in summaries[0]:
        rows = [(s["suite"], f"{s['title']} ({s['year']}{', arXiv ' + s['arxiv'] if s['arxiv'][:1].isdigit() else ''})",
                 "\n".join(f"{c['config']}: {c['text']}" for c in s.get("claims") or []) or "-",
                 _cost_text(s)) for s in summaries]
        print_table("Suites", ["suite", "paper", "claims checked at proxy scale (config: what)",
                               "configs per scale and kind (time measured here)"], rows, file)
        _console(file).print(f"Times are summed case durations of the newest run under {results}/ on this "
                             "machine; a scale not run here shows none. Details: milestones list --configs SUITE.",
                             markup=False, highlight=False)
        return
    rows = [(s["suite"], s["title"], s["arxiv"], s["year"], ", ".join(s["kinds"]), ", ".join(s["scales"]),
             len(s["configs"])) for s in summaries]
    print_table("Registered suites", ["suite", "title", "arXiv", "year", "kinds", "scales", "configs"], rows, file)


def print_config_list(configs: list[dict[str, Any]], file=None) -> None:
    rows = [(c["config"], c["suite"], ", ".join(c["kinds"]), ", ".join(c["scales"]), c["description"])
            for c in configs]
    print_table("Configs", ["config", "suite", "kinds", "scales", "description"], rows, file)


def print_env(env: dict[str, Any], file=None) -> None:
    nv = env.get("nvidia") or {}
    git = env.get("git") or {}
    rows = [
        ("machine id", env.get("machine_id")), ("host", env.get("hostname")),
        ("python", f"{env.get('python')} ({env.get('python_implementation')})"), ("os", env.get("platform")),
        ("cpu", env.get("cpu_model")), ("logical cores", env.get("logical_cores")),
        ("torch threads", f"{env.get('threads')} (interop {env.get('interop_threads')})"),
        ("torch", env.get("torch_full")), ("CUDA", env.get("cuda") or "none (CPU build)"),
        ("cuDNN", env.get("cudnn") or "none"), ("NCCL", env.get("nccl") or "none"),
        ("NVIDIA driver", nv.get("driver") if nv.get("available") else nv.get("reason")),
        ("git commit", f"{git.get('commit')}{' (dirty)' if git.get('dirty') else ''}"),
        ("load average", ", ".join(f"{x:.2f}" for x in (env.get("hygiene") or {}).get("loadavg") or [])),
        ("cpu governor", (env.get("hygiene") or {}).get("cpu_governor") or "not readable"),
    ]
    for g in nv.get("gpus", []):
        rows.append((f"GPU {g['index']}", f"{g['name']}, {fmt_value(g['memory_total_bytes'], 'B')}, "
                     f"SM {g['sm_clock_mhz']} MHz (max {g['max_sm_clock_mhz']}), mem {g['mem_clock_mhz']} MHz, "
                     f"power limit {g['power_limit_w']} W, compute capability {g['compute_capability']}"))
    print_table("Environment", ["", "value"], rows, file)


# ------------------------------------------------------------------------------------------ run summary
HEADLINE_METRICS = ("train.throughput", "infer.throughput", "train.step_time", "params", "macs")


def headline(rec: RunRecord, k: int = 3) -> str:
    if rec.case.kind == "quality":
        cls = claims_of(rec)
        if cls:
            return "; ".join(claim_headline(cl) for cl in cls)
    names = [n for n in HEADLINE_METRICS if n in rec.metrics] + [n for n in rec.metrics
                                                               if n not in HEADLINE_METRICS]
    parts = []
    for n in names:
        m = rec.metrics[n]
        if m.value is None:
            continue
        parts.append(f"{n}={fmt_value(m.value, m.unit)}")
        if len(parts) >= k:
            break
    return "; ".join(parts)


def case_line(rec: RunRecord) -> str:
    c = rec.case
    err = f"  {rec.error}" if rec.error and rec.status not in ("ok",) else ""
    claim = ""
    if rec.status == "ok" and c.kind == "quality":
        from rich.markup import escape

        claim = "".join(f"\n{'':>12}[bold]{escape(claim_headline(cl))}[/]" for cl in claims_of(rec))
    if c.mode == DEFAULT_MODE:
        mode = ""
    else:
        from rich.markup import escape

        mode = escape(f" [{c.mode}]")  # square brackets are rich markup otherwise, and vanish
    return f"[{STATUS_STYLE.get(rec.status, 'white')}]{rec.status:>11}[/] {c.suite}/{c.config} {c.kind}{mode} " \
           f"({rec.duration_s:.1f} s){err}{claim}"


# ------------------------------------------------------------------------------------------ claims
@dataclass(frozen=True)
class Claim:
    """A paper claim as one quality record states it (info["claims"]), or as its claim_held metric."""

    id: str
    statement: str | None      # the paper's sentence; None for a record with only the claim_held metric
    source: str                # "He et al. 2015, Fig. 6, Sec. 4.2"
    rule: str
    held: tuple[int | None, ...]   # per seed: 1 held, 0 did not, None undecided
    seeds: tuple[int, ...]
    scale: str
    suite: str
    config: str
    record_id: str
    summary: str | None = None
    strength: str | None = None  # "as stated" | "weaker analogue"; None: an older record that does not say
    tests: str | None = None     # what a weaker analogue tests, in a few words
    quoted: bool = True          # False: the statement is our wording of a table figure, never in quotes

    @property
    def decided(self) -> int:
        return sum(h is not None for h in self.held)

    @property
    def k(self) -> int:
        return sum(1 for h in self.held if h)

    @property
    def as_stated(self) -> bool:
        return self.strength == "as stated"

    @property
    def strength_text(self) -> str:
        if self.as_stated:
            return "as stated"
        if self.strength == "weaker analogue":
            return "weaker analogue" + (f" (tests {self.tests})" if self.tests else "")
        return "strength not recorded (an older record): read as a weaker analogue"

    @property
    def outcome(self) -> str:
        if not self.held or not self.decided:
            return "undecided"
        n = len(self.held)
        und = f", {n - self.decided} undecided" if self.decided < n else ""
        seeds = f"seed{'s' if self.decided != 1 else ''}"
        # A weaker analogue never reads as a plain "held" under the paper's sentence.
        lead = "" if self.as_stated else "weaker analogue "
        if self.k == 0:
            return f"{lead}did not hold on any of {self.decided} {seeds}{und}"
        return f"{lead}held {self.k}/{self.decided} {seeds}{und}" + (" (as stated)" if self.as_stated else "")

    @property
    def status(self) -> str:
        """held | analogue held | mixed | not held | undecided: for colouring and counting. Only a claim
        tested as stated can be plainly "held"."""
        if not self.decided:
            return "undecided"
        if self.k == self.decided:
            return "held" if self.as_stated else "analogue held"
        return "not held" if self.k == 0 else "mixed"

    @property
    def where(self) -> str:
        """The figure or table the claim is about, from its source ("Fig. 6")."""
        m = _FIG_RE.search(self.source)
        return m.group(0) if m else (self.source.split(",")[0] if self.source else self.id)

    @property
    def short(self) -> str:
        text = self.summary or self.statement or f"{self.suite} claim ({self.id} metric; no sentence in the record)"
        return text if len(text) <= 90 else text[:87].rsplit(" ", 1)[0] + "..."

    @property
    def command(self) -> str:
        return f"milestones run {self.config} --kind quality --scale {self.scale}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "statement": self.statement, "source": self.source, "rule": self.rule,
                "held": list(self.held), "seeds": list(self.seeds), "scale": self.scale, "suite": self.suite,
                "config": self.config, "record_id": self.record_id, "outcome": self.outcome,
                "strength": self.strength, "tests": self.tests, "quoted": self.quoted}


_FIG_RE = re.compile(r"\b(Fig(?:ure)?\.?|Table|Tab\.|Sec(?:tion)?\.?|Eq\.)\s*[A-Za-z]?\d+(?:\.\d+)*[a-z]?")


def _held_list(v: Any) -> tuple[int | None, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list):
        return None
    out: list[int | None] = []
    for x in v:
        if x is None:
            out.append(None)
        elif isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
            out.append(1 if x >= 0.5 else 0)
        elif isinstance(x, bool):
            out.append(int(x))
        else:
            return None
    return tuple(out)


def claims_of(rec: RunRecord) -> list[Claim]:
    """The record's claims: info["claims"] when it is there, else its claim_held metric (samples 0/1)."""
    c = rec.case
    common = dict(suite=c.suite, config=c.config, record_id=rec.record_id)
    raw = rec.info.get("claims") if isinstance(rec.info, dict) else None
    out: list[Claim] = []
    if isinstance(raw, list):
        for i, d in enumerate(raw):
            if not isinstance(d, dict):
                continue
            held = _held_list(d.get("held"))
            seeds = d.get("seeds") if isinstance(d.get("seeds"), list) else []
            out.append(Claim(
                id=str(d.get("id") or f"claim{i + 1}"),
                statement=str(d["statement"]) if d.get("statement") else None,
                source=str(d.get("source") or ""), rule=str(d.get("rule") or ""),
                held=held if held is not None else (), seeds=tuple(int(s) for s in seeds if isinstance(s, int)),
                scale=str(d.get("scale") or c.scale), summary=str(d["summary"]) if d.get("summary") else None,
                strength=str(d["strength"]) if d.get("strength") else None,
                tests=str(d["tests"]) if d.get("tests") else None, quoted=d.get("quoted") is not False,
                **common))
        if out:
            return out
    for name, m in rec.metrics.items():
        if name == "claim_held" or name.endswith(".claim_held"):
            seeds = rec.info.get("seeds") if isinstance(rec.info.get("seeds"), list) else list(range(len(m.samples)))
            held = tuple(None if not math.isfinite(x) else (1 if x >= 0.5 else 0) for x in m.samples)
            # Older records say the claim in a free-text info field; better than no words at all.
            text = next((rec.info[k] for k in ("claim", "paper") if isinstance(rec.info.get(k), str)), None)
            out.append(Claim(id=name, statement=None, source="", rule=m.note or "", held=held,
                             seeds=tuple(int(s) for s in seeds if isinstance(s, int)), scale=c.scale,
                             summary=text if name == "claim_held" else None, **common))
    return out


def claim_headline(cl: Claim) -> str:
    """'Fig. 6: deeper plain net trains worse, residual fixes it: held 3/3 seeds'."""
    return f"{cl.where}: {cl.short}: {cl.outcome}" if cl.source else f"{cl.short}: {cl.outcome}"


def all_claims(records: Iterable[RunRecord]) -> list[Claim]:
    return [cl for r in records if r.status == "ok" and r.case.kind == "quality" for cl in claims_of(r)]


CLAIM_COLUMNS = ["paper", "claim", "strength", "scale", "held", "per seed", "rule", "command"]


def claim_statement(cl: Claim) -> str:
    """The paper's sentence in quotes; our wording of a table figure (quoted=False) without."""
    if not cl.statement:
        return cl.short
    return f"\u201c{cl.statement}\u201d" if cl.quoted else cl.statement


def claim_cells(cl: Claim) -> list[str]:
    seeds = cl.seeds if len(cl.seeds) == len(cl.held) else tuple(range(len(cl.held)))
    per = " ".join(f"{s}:{'-' if h is None else ('yes' if h else 'no')}" for s, h in zip(seeds, cl.held,
                                                                                        strict=False)) or "-"
    held = (f"{cl.k}/{cl.decided}" + ("" if cl.as_stated else " (analogue)")) if cl.decided else "undecided"
    return [cl.source or f"{cl.suite} (no source in the record)", claim_statement(cl), cl.strength_text, cl.scale,
            held, per, cl.rule or "-", cl.command]


_COUNT_WORDS = (("held", "held as stated", "held as stated"), ("analogue held", "weaker analogue held",
                                                                 "weaker analogues held"),
                ("mixed", "held on some seeds", "held on some seeds"), ("not held", "held on no seed",
                                                                         "held on no seed"),
                ("undecided", "undecided", "undecided"))


def claim_counts_line(claims: Sequence[Claim]) -> str:
    """'3 claims held as stated, 4 weaker analogues held, 1 held on some seeds' (of n checked)."""
    if not claims:
        return "no paper claim checked"
    by: dict[str, int] = {}
    for c in claims:
        by[c.status] = by.get(c.status, 0) + 1
    parts = []
    for key, one, many in _COUNT_WORDS:
        n = by.get(key, 0)
        if n:
            noun = "" if key == "analogue held" else (" claim" if n == 1 else " claims")
            parts.append(f"{n}{noun if not parts else ''} {one if n == 1 else many}")
    return f"{', '.join(parts)} ({len(claims)} checked)"


def print_run_summary(records: list[RunRecord], folder: str, file=None) -> None:
    rows = []
    with_modes = any(r.case.mode != DEFAULT_MODE for r in records)  # a mode column only where modes ran
    for r in records:
        c = r.case
        style = STATUS_STYLE.get(r.status, "white")
        rows.append((c.suite, c.config, c.kind, c.device, c.dtype) + ((c.mode,) if with_modes else ())
                    + (c.batch_size if c.batch_size is not None else "-",
                       f"[{style}]{r.status}[/]", f"{r.duration_s:.1f}",
                       headline(r) if r.status == "ok" else (r.error or "")[:120]))
    print_table("Run summary", ["suite", "config", "kind", "device", "dtype"] + (["mode"] if with_modes else [])
                + ["batch", "status", "s", "headline / error"], rows, file)
    bad = [r for r in records if r.status not in SUCCESS_STATUSES]
    con = _console(file)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    con.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"; records in {folder}")
    claims = all_claims(records)
    if claims:
        con.print("Paper claims: " + claim_counts_line(claims), markup=False, highlight=False)
    if bad:
        con.print("[red]Not successful:[/] " + ", ".join(f"{r.case.suite}/{r.case.config} {r.case.kind} "
                                                         f"({r.status})" for r in bad))


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)


# ============================================================================ comparisons (issue 5)
# Terminal tables, Markdown and JSON for baselines, compare, group and kernel tables. The full
# HTML / Markdown report document is built in milestones.harness.html from the same row helpers.
VERDICT_STYLE = {"regressed": "red", "improved": "green", "unchanged": "white", "inconclusive": "yellow",
                 "not comparable": "magenta", "reproduced": "green", "not reproduced": "red",
                 "not measured": "yellow"}


def baseline_dict(b) -> dict[str, Any]:
    return {"id": b.id, "suite": b.suite, "metric": b.metric, "configs": list(b.configs), "kind": b.kind,
            "value": b.value, "unit": b.unit, "plus_minus": b.plus_minus, "dataset": b.dataset, "split": b.split,
            "protocol": b.protocol, "source": b.source, "confirmed": b.confirmed,
            "higher_is_better": b.higher_is_better, "tolerance": b.tolerance, "tolerance_kind": b.tolerance_kind,
            "scales": list(b.allowed_scales), "paper": b.paper.citation, "note": b.note, "category": b.category}


def baseline_rows(items) -> list[tuple]:
    return [(b.suite, b.id, b.metric, ", ".join(b.configs), b.category, fmt_with_unit(b.value, b.unit, b.plus_minus),
             f"{b.dataset} / {b.split}", b.protocol, b.source, "yes" if b.confirmed else "unconfirmed")
            for b in items]


BASELINE_COLUMNS = ["suite", "id", "metric", "configs", "category", "paper value", "dataset / split", "protocol",
                    "source", "confirmed"]


def print_baselines(items, file=None) -> None:
    print_table(f"Paper baselines ({len(items)})", BASELINE_COLUMNS, baseline_rows(items), file)


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None or not math.isfinite(r) else f"{r:.3f}"


def fmt_ci(lo: float | None, hi: float | None) -> str:
    return "-" if lo is None or hi is None else f"[{lo:.3f}, {hi:.3f}]"


def fmt_p(p: float | None) -> str:
    return "-" if p is None or not math.isfinite(p) else f"{p:.2g}"


COMPARE_COLUMNS = ["case", "scale", "device", "dtype", "batch", "metric", "base", "new", "ratio", "CI", "p",
                   "verdict", "why"]


def compare_row_cells(r) -> list[str]:
    c = r.result
    return [r.case, r.scale, r.device, r.dtype, "-" if r.batch_size is None else str(r.batch_size), r.metric,
            "-" if c.base is None else fmt_value(c.base, r.unit), "-" if c.new is None else fmt_value(c.new, r.unit),
            fmt_ratio(c.ratio), fmt_ci(c.ci_low, c.ci_high), fmt_p(c.p_value), c.verdict, c.reason]


def env_header(env_notes: Sequence[str]) -> str:
    if not env_notes:
        return "Environment: same GPU, driver, torch, CUDA, threads and CPU on both sides."
    return "NOTE: environments differ (" + "; ".join(env_notes) + "): differences may come from the environment."


def slow_machine_line(rows) -> str | None:
    """One line for the timing rows not called because their case's machine canary ran slow."""
    held = [r for r in rows if r.result.canary_ratio is not None and r.verdict != "regressed"]
    if not held:
        return None
    ratios = sorted(r.result.canary_ratio - 1 for r in held)
    span = f"{ratios[0]:+.0%}" if f"{ratios[0]:+.0%}" == f"{ratios[-1]:+.0%}" else f"{ratios[0]:+.0%} to {ratios[-1]:+.0%}"
    return (f"Slow machine: {len(held)} timing row(s) of {len({r.case for r in held})} case(s) were measured while "
            f"the machine canary ran {span} slow; not called, left to `milestones ab`.")


def counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "no metrics compared"


# Rows that move exactly with another row (FLOP/s with the step time): listed only in full output.
DERIVED_SUFFIXES = (".flops_per_s",)
ACTION_VERDICTS = ("regressed", "improved", "inconclusive", "not comparable")
MAX_ROWS_PER_SECTION = 10
# Rows listed in all action sections together, in the order regressed, improved, inconclusive, not
# comparable: with compact tables this keeps a CI log page under ~60 lines whatever the run's size.
MAX_ROWS_LISTED = 30
MAX_DESIGN_LINES = 8
ACTION_COLUMNS = ["case", "setup", "metric", "base", "new", "ratio [CI]", "p", "why"]
WHY_WIDTH = 90


def _by_design(r) -> bool:
    # A metric the base could not measure either (no energy counter on a CPU) is not news; one that the
    # base measured and the new run lost ("not measured in new") needs a look, so it stays listed.
    return r.verdict == "not comparable" and r.result.reason.startswith("not measured in base")


def _derived_row(r) -> bool:
    return r.metric.endswith(DERIVED_SUFFIXES)


def action_cells(r) -> list[str]:
    c = r.result
    where = ", ".join(x for x in (r.scale, r.device, r.dtype, None if r.batch_size is None else f"b{r.batch_size}")
                      if x)
    ratio = fmt_ratio(c.ratio) + ("" if c.ci_low is None else f" {fmt_ci(c.ci_low, c.ci_high)}")
    return [r.case, where, r.metric, "-" if c.base is None else fmt_value(c.base, r.unit),
            "-" if c.new is None else fmt_value(c.new, r.unit), ratio, fmt_p(c.p_value), c.reason]


@dataclass(frozen=True)
class CompareDigest:
    """What a person acts on, in order: regressions, improvements, inconclusive, not comparable; the
    rest collapsed into counts. Built from every row, so the counts add up to len(rows)."""

    sections: tuple[tuple[str, tuple[Any, ...]], ...]
    by_design: tuple[tuple[str, str, int], ...]   # (metric, why, rows)
    unchanged: int
    derived_hidden: int
    total: int

    def counts_line(self) -> str:
        parts = [f"{len(rs)} {v}" for v, rs in self.sections if rs]
        parts.append(f"{self.unchanged} unchanged")
        nd = sum(n for _, _, n in self.by_design)
        if nd:
            parts.append(f"{nd} not measured in base")
        extra = f"; {self.derived_hidden} derived FLOP/s rows among them (listed with --all)" \
            if self.derived_hidden else ""
        return f"{self.total} rows: " + ", ".join(parts) + extra


def digest(rows) -> CompareDigest:
    rows = list(rows)
    design = [r for r in rows if _by_design(r)]
    groups: dict[tuple[str, str], int] = {}
    for r in design:
        why = r.result.reason.split(": ", 1)[-1]
        groups[(r.metric, why)] = groups.get((r.metric, why), 0) + 1
    rest = [r for r in rows if not _by_design(r)]
    derived = [r for r in rest if _derived_row(r) and r.verdict != "unchanged"]
    shown = [r for r in rest if r not in derived]
    sections = tuple((v, tuple(r for r in shown if r.verdict == v)) for v in ACTION_VERDICTS)
    # The biggest changes first: what a capped list keeps is what matters most.
    sections = tuple((v, tuple(sorted(rs, key=lambda r: -abs(r.result.change or 0.0)))) for v, rs in sections)
    unchanged = sum(r.verdict == "unchanged" for r in rest)
    return CompareDigest(sections, tuple((m, w, n) for (m, w), n in groups.items()), unchanged, len(derived),
                         len(rows))


def listed(d: CompareDigest) -> dict[str, int]:
    """How many rows of each section are printed, within MAX_ROWS_PER_SECTION and MAX_ROWS_LISTED."""
    left, out = MAX_ROWS_LISTED, {}
    for v, rs in d.sections:
        out[v] = min(len(rs), MAX_ROWS_PER_SECTION, left)
        left -= out[v]
    return out


def section_title(verdict: str, n: int) -> str:
    what = {"regressed": "Regressed: significant change in the bad direction",
            "improved": "Improved", "inconclusive": "Inconclusive: too noisy to say (why per row)",
            "not comparable": "Not comparable"}[verdict]
    return f"{what} ({n})"


def design_lines(d: CompareDigest) -> list[str]:
    if not d.by_design:
        return []
    by_why: dict[str, list[tuple[str, int]]] = {}
    for m, why, n in d.by_design:
        by_why.setdefault(why, []).append((m, n))
    lines = []
    for why, ms in by_why.items():
        names = ", ".join(m for m, _ in ms[:4]) + (f" and {len(ms) - 4} more" if len(ms) > 4 else "")
        n = sum(k for _, k in ms)
        lines.append(f"  {why}: {names} ({n} row{'s' if n != 1 else ''})")
    if len(lines) > MAX_DESIGN_LINES:
        lines = lines[:MAX_DESIGN_LINES - 1] + [f"  ... and {len(lines) - MAX_DESIGN_LINES + 1} more notes "
                                                "(--format json has every row)"]
    return [f"Not measured in the base run ({sum(n for *_, n in d.by_design)} rows), by the record's note:"] + lines


def print_compare(rows, env_notes, counts=None, file=None, title: str = "Compare", full: bool = False) -> None:
    """Action first: regressions, improvements, inconclusive, not comparable; the rest in counts.
    `full` prints every row in one table (the old, long output)."""
    con = _console(file)
    con.print(env_header(env_notes), markup=False, highlight=False)
    from rich.table import Table
    from rich.text import Text

    d = digest(rows)
    if full:
        t = Table(title=title, title_justify="left", header_style="bold")
        cols = COMPARE_COLUMNS + (["env"] if env_notes else [])
        for c in cols:
            t.add_column(c, overflow="fold")
        for r in rows:
            cells = compare_row_cells(r) + (["differs"] if env_notes else [])
            t.add_row(*[Text(x, style=VERDICT_STYLE.get(x, "")) if i == 11 else Text(x) for i, x in enumerate(cells)])
        con.print(t)
        con.print(d.counts_line(), markup=False, highlight=False)
        return
    con.print(f"{title}: {d.counts_line()}", markup=False, highlight=False)
    if (slow := slow_machine_line(rows)) is not None:
        con.print(slow, markup=False, highlight=False)
    from rich import box

    k = listed(d)
    for verdict, rs in d.sections:
        if not rs:
            continue
        t = Table(title=section_title(verdict, len(rs)), title_justify="left", header_style="bold",
                  title_style=VERDICT_STYLE.get(verdict, ""), box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for c in ACTION_COLUMNS:
            # One line per row: a long "why" is cut on screen (the Markdown summary and JSON keep it whole),
            # so the gate's log stays under ~60 lines.
            if c == "why":
                t.add_column(c, overflow="ellipsis", no_wrap=True, max_width=WHY_WIDTH)
            else:
                t.add_column(c, overflow="fold")
        for r in rs[:k[verdict]]:
            t.add_row(*[Text(x) for x in action_cells(r)])
        if k[verdict]:
            con.print(t)
        else:
            con.print(section_title(verdict, len(rs)), style=VERDICT_STYLE.get(verdict, ""), markup=False,
                      highlight=False)
        if len(rs) > k[verdict]:
            con.print(f"... and {len(rs) - k[verdict]} more {verdict} rows (--all, or --format json "
                      "for every row)", markup=False, highlight=False)
    for line in design_lines(d):
        con.print(line, markup=False, highlight=False)
    con.print(f"Unchanged: {d.unchanged} rows within the threshold (--all lists every row).", markup=False,
              highlight=False)


def md_escape(s: Any) -> str:
    # Backslash escapes: raw Markdown stays readable, and no record text becomes an HTML tag.
    # Only "<" can open a tag; ">" inside a table row cannot start a quote, so it stays as typed.
    return str(s).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "\\<")


def md_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(md_escape(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(md_escape("" if x is None else x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def _markdown_digest(rows, full: bool = False, env_notes: Sequence[str] = ()) -> list[str]:
    d = digest(rows)
    parts = [f"**{md_escape(d.counts_line())}**"]
    if (slow := slow_machine_line(rows)) is not None:
        parts.append(md_escape(slow))
    if full:
        cols = COMPARE_COLUMNS + (["env"] if env_notes else [])
        parts.append(md_table(cols, [compare_row_cells(r) + (["differs"] if env_notes else []) for r in rows]))
        return parts
    k = listed(d)
    for verdict, rs in d.sections:
        if rs:
            parts.append(f"#### {md_escape(section_title(verdict, len(rs)))}")
            if k[verdict]:
                parts.append(md_table(ACTION_COLUMNS, [action_cells(r) for r in rs[:k[verdict]]]))
            if len(rs) > k[verdict]:
                parts.append(f"... and {len(rs) - k[verdict]} more (the JSON output has every row)")
    lines = design_lines(d)
    if lines:
        parts.append(md_escape(lines[0]) + "\n" + "\n".join(f"- {md_escape(x.strip())}" for x in lines[1:]))
    parts.append(f"Unchanged: {d.unchanged} rows within the threshold.")
    return parts


def markdown_compare(rows, env_notes, counts=None, title: str = "Compare", full: bool = False) -> str:
    return "\n\n".join([f"### {md_escape(title)}", md_escape(env_header(env_notes)),
                        *_markdown_digest(rows, full, env_notes)]) + "\n"


def summary_headline(counts: dict[str, int], fails: bool | None = None) -> str:
    """The summary's first words, consistent with the exit code: `fails` is whether this compare fails
    the job (`compare.job_fails`); None: as if --fail-on regression."""
    n = counts.get("regressed", 0)
    if fails is None:
        fails = bool(n)
    if fails:
        return "regressions found (the job fails)"
    if n:
        return (f"no regression that fails the job ({n} timing regression(s) left to `milestones ab` by "
                "--fail-on untimed)")
    return "no significant regression"


def markdown_summary(rows, env_notes, counts, base: str, new: str, fails: bool | None = None) -> str:
    """A short CI job summary: what needs action first, the rest as counts."""
    head = summary_headline(counts, fails)
    parts = [f"## milestones compare: {head}", f"base `{md_escape(base)}` → new `{md_escape(new)}`",
             md_escape(env_header(env_notes)), *_markdown_digest(rows)]
    return "\n\n".join(parts) + "\n"


def compare_json(rows, env_notes, counts) -> str:
    return to_json({"env_differences": list(env_notes), "counts": counts, "rows": [r.to_dict() for r in rows]})


# ------------------------------------------------------------------------------------------- groups
def group_cells(r, groups: Sequence[str]) -> list[str]:
    cells = [f"{r.suite}/{r.config} {r.kind}", r.dtype, "-" if r.batch_size is None else str(r.batch_size), r.metric,
             fmt_value(r.ref_value, r.unit) if r.ref_value is not None else "-"]
    for g in groups:
        if g == r.reference:
            continue
        if r.ratios.get(g) is None:
            v = r.values.get(g)
            cells.append((f"{fmt_value(v, r.unit)} " if v is not None else "") + f"({r.notes.get(g, '-')})")
        else:
            ci = r.cis.get(g)
            cells.append(f"{r.ratios[g]:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""))
    return cells


def group_columns(reference: str, groups: Sequence[str], by: str) -> list[str]:
    return ["case", "dtype", "batch", "metric", f"{by} = {reference} (reference)"] + \
           [f"{g} / ref" for g in groups if g != reference]


GROUP_NOTE = "Ratios are medians over the reference group's median (95% block-bootstrap CI); " \
             "for time and memory lower is better, for throughput and MFU higher."


def print_groups(rows, groups, by: str, file=None) -> None:
    ref = rows[0].reference if rows else groups[0]
    print_table(f"By {by} (reference {ref})", group_columns(ref, groups, by), [group_cells(r, groups) for r in rows],
                file)
    _console(file).print(GROUP_NOTE, markup=False, highlight=False)


def markdown_groups(rows, groups, by: str) -> str:
    ref = rows[0].reference if rows else groups[0]
    return f"### By {md_escape(by)} (reference {md_escape(ref)})\n\n" + \
        md_table(group_columns(ref, groups, by), [group_cells(r, groups) for r in rows]) + f"\n\n{GROUP_NOTE}\n"


# ---------------------------------------------------------------------------------- paper, kernels
# Units a reader does not need to see after the number.
_SILENT_UNITS = ("count", "value", "1", "")


def fmt_percent(x: float, signed: bool = False) -> str:
    """A fraction as a percentage with the digits it needs: 0.1 -> 10%, 0.0005 -> 0.05%, 7.4e-5 -> 0.0074%
    (a fixed .0% or .1% shows a MAC count off by 188,480 as "0%")."""
    pct = 100 * x
    if pct == 0:
        return "0%"
    r = float(f"{pct:.2g}")  # two significant digits, printed without an exponent up to 1e6
    return (f"{r:+g}" if signed else f"{r:g}") + "%"


def fmt_num(v: float | None, unit: str = "") -> str:
    """A number for people, without its unit: 61,100,840; 3.86 G; 0.0002; 6.43. Null says so."""
    if v is None:
        return "not measured"
    if not math.isfinite(v):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e15 and (unit in ("count", "steps", "value", "1") or abs(v) < 1e6):
        return f"{int(v):,}"
    if unit in ("MAC", "MAC/image", "FLOP", "FLOP/s", "B", "s") or abs(v) >= 1e6:
        return fmt_value(v, unit).removesuffix(unit).strip() if unit else fmt_value(v)
    return f"{v:.6g}" if abs(v) < 1e-3 or unit in ("value", "1") else f"{v:.4g}"


def fmt_with_unit(v: float | None, unit: str, pm: float | None = None) -> str:
    """The number, its ± and the unit once: '6.43 ± 0.16 %', '25,557,032', '3.86 GMAC/image'."""
    if v is None:
        return "not measured"
    if unit in ("MAC", "MAC/image", "FLOP", "FLOP/s", "B", "s") and abs(v) >= 1000 or unit == "s":
        text = fmt_value(v, unit)
        return text if pm is None else f"{text} ± {fmt_value(pm, unit)}"
    u = "×" if unit == "ratio" else ("" if unit in _SILENT_UNITS else f" {unit}")
    return fmt_num(v, unit) + ("" if pm is None else f" ± {fmt_num(pm, unit)}") + u


CATEGORY_TITLES = {"result": "Results: does our run reproduce the paper's figure?",
                   "architecture": "Architecture: do we build the network the paper describes (parameters, "
                                   "MACs)? A check, not a reproduction",
                   "configuration": "Configuration: do we set the hyperparameters the paper states? A check, "
                                    "not a reproduction"}
# For checks, "reproduced" would overstate: a configuration echo matching the paper is not a result.
_CHECK_WORDS = {"reproduced": "matches", "not reproduced": "differs"}


@dataclass(frozen=True)
class PaperFigure:
    """One paper figure against every matching record, pooled: one row per (figure, config, scale)."""

    baseline: Any
    config: str
    scale: str
    rows: tuple[Any, ...]
    samples: tuple[float, ...]

    @property
    def category(self) -> str:
        return self.baseline.category

    @property
    def runs(self) -> int:
        return len({r.record_id.split("/")[0] for r in self.rows})

    @property
    def ours(self) -> float | None:
        return math.fsum(self.samples) / len(self.samples) if self.samples else None

    @property
    def ours_std(self) -> float | None:
        xs = self.samples
        if len(xs) < 2:
            return None
        m = math.fsum(xs) / len(xs)
        return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))

    @property
    def exact(self) -> bool:
        return bool(self.samples) and all(x == self.baseline.value for x in self.samples)

    @property
    def verdicts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.verdict] = out.get(r.verdict, 0) + 1
        return out

    @property
    def verdict(self) -> str:
        """The rows' verdict when they agree, else 'mixed'. Verdicts themselves come from compare."""
        vs = self.verdicts
        return next(iter(vs)) if len(vs) == 1 else "mixed"

    @property
    def shown_verdict(self) -> str:
        if self.verdict == "mixed":
            return "mixed: " + ", ".join(f"{n} {self._word(v)}" for v, n in self.verdicts.items())
        if self.category != "result" and self.exact:
            return "exact match"
        return self._word(self.verdict)

    def _word(self, v: str) -> str:
        return _CHECK_WORDS.get(v, v) if self.category != "result" else v

    @property
    def why(self) -> str:
        b = self.baseline
        reasons = list(dict.fromkeys(r.reason for r in self.rows))
        if self.verdict in ("reproduced", "not reproduced") and self.ours is not None:
            if self.exact:
                return "identical"
            d = self.ours - b.value
            rel = f" ({fmt_percent(d / b.value, signed=True)})" if b.value else ""
            tol = f"±{fmt_percent(b.tolerance)}" if b.tolerance_kind == "relative" else \
                f"±{fmt_with_unit(b.tolerance, b.unit)}"
            if self.verdict == "reproduced":
                return f"ours − paper = {fmt_num(d, b.unit) if d else '0'}{rel}, within {tol}"
            better = (d > 0) == b.higher_is_better
            return f"ours − paper = {d:+.4g}{rel}: {'better' if better else 'worse'} than the paper; tolerance {tol}"
        return "; ".join(reasons)

    def to_dict(self) -> dict[str, Any]:
        b = self.baseline
        return {"id": b.id, "suite": b.suite, "config": self.config, "scale": self.scale, "metric": b.metric,
                "category": self.category, "paper": b.value, "unit": b.unit, "ours": self.ours,
                "ours_std": self.ours_std, "n": len(self.samples), "runs": self.runs, "verdict": self.verdict,
                "verdicts": self.verdicts, "citation": b.citation}


def aggregate_paper(rows: Sequence[Any]) -> list[PaperFigure]:
    """compare.PaperRow per (record, figure) -> one PaperFigure per (figure, config, scale), order kept."""
    groups: dict[tuple, list[Any]] = {}
    for r in rows:
        # A fidelity figure (a count) does not depend on the scale: one row for all scales.
        scale = "" if r.baseline.kind == "fidelity" else r.scale
        groups.setdefault((r.baseline.id, r.config, scale), []).append(r)
    return [PaperFigure(rs[0].baseline, rs[0].config, ", ".join(sorted({r.scale for r in rs})), tuple(rs),
                        tuple(x for r in rs for x in r.samples)) for rs in groups.values()]


def paper_counts_line(figs: Sequence[PaperFigure]) -> str:
    """'results: 1 reproduced, 1 not reproduced; architecture: 3 exact match; configuration: 8 matches'."""
    parts = []
    for cat in ("result", "architecture", "configuration"):
        fs = [f for f in figs if f.category == cat]
        if not fs:
            continue
        counts: dict[str, int] = {}
        for f in fs:
            v = f.shown_verdict.split(":")[0]
            counts[v] = counts.get(v, 0) + 1
        label = {"result": "results", "architecture": "architecture checks",
                 "configuration": "configuration checks"}[cat]
        parts.append(f"{label}: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    return "; ".join(parts) + f" ({len(figs)} figures)" if parts else "no paper figure applies"


PAPER_COLUMNS = ["suite", "figure", "scale", "paper", "ours (mean ± std)", "n", "verdict", "why", "source"]


def paper_cells(f: PaperFigure) -> list[str]:
    b = f.baseline
    paper = fmt_with_unit(b.value, b.unit, b.plus_minus)
    if f.ours is None:
        ours = "not measured"
    elif f.exact:
        ours = "= paper"
    else:
        # The unit is in the paper column: printed once.
        ours = fmt_num(f.ours, b.unit) + ("" if not f.ours_std else f" ± {f.ours_std:.2g}")
    n = "-" if not f.samples else (f"{len(f.samples)}" + (f" ({f.runs} runs)" if f.runs > 1 else ""))
    where = "; ".join(x for x in (b.protocol, " ".join(y for y in (b.dataset, b.split) if y and y != "-"))
                      if x and x.strip() != "-")
    unconfirmed = "" if b.confirmed else " (unconfirmed)"
    return [b.suite, f"{f.config}: {b.metric}", f.scale, paper + unconfirmed, ours, n, f.shown_verdict, f.why,
            f"{b.source}{'; ' + where if where else ''}"]


def print_paper(rows, file=None) -> None:
    figs = aggregate_paper(rows)
    for cat in ("result", "architecture", "configuration"):
        fs = [f for f in figs if f.category == cat]
        if fs:
            print_table(CATEGORY_TITLES[cat], PAPER_COLUMNS, [paper_cells(f) for f in fs], file)
    _console(file).print(paper_counts_line(figs), markup=False, highlight=False)


KERNEL_COLUMNS = ["kernel / op", "base µs", "new µs", "Δ µs", "ratio", "base calls", "new calls"]


def kernel_cells(d) -> list[str]:
    return [d.name, f"{d.base_us:.1f}", f"{d.new_us:.1f}", f"{d.delta_us:+.1f}", fmt_ratio(d.ratio),
            f"{d.base_calls:g}", f"{d.new_calls:g}"]


def print_kernel_diffs(diffs, file=None) -> None:
    for case, ds in diffs:
        print_table(f"Kernels that changed most: {case}", KERNEL_COLUMNS, [kernel_cells(d) for d in ds], file)


def markdown_kernel_diffs(diffs) -> str:
    return "\n\n".join(f"### Kernels that changed most: {md_escape(case)}\n\n" +
                       md_table(KERNEL_COLUMNS, [kernel_cells(d) for d in ds]) for case, ds in diffs) + "\n"


HISTORY_COLUMNS = ["case", "metric", "runs", "step at run", "started", "commit", "before", "after", "change", ""]


def history_cells(h) -> list[list[str]]:
    out = []
    for s in h.steps:
        out.append([f"{h.suite}/{h.config} {h.kind}", h.metric, str(len(h.run_ids)), s.run_id, s.started_at,
                    (s.commit or "-")[:10], fmt_value(s.before, h.unit), fmt_value(s.after, h.unit),
                    f"{s.change:+.1%}", ("worse" if s.worse else "better") + (" (tentative: one run)" if s.tentative
                                                                             else "")])
    return out


def print_history(hs, file=None) -> None:
    rows = [c for h in hs for c in history_cells(h)]
    print_table(f"Step changes ({len(rows)} in {len(hs)} series)", HISTORY_COLUMNS, rows, file)


# ------------------------------------------------------------------------- paper appendix (issue 14)
def appendix_command(case: Any, info: dict[str, Any], options: dict[str, Any] | None) -> str:
    """The `milestones run` command that reproduces a record (from its case and its run's options)."""
    parts = ["milestones", "run", case.config, "--scale", case.scale, "--kind", case.kind, "--device", case.device,
             "--dtype", case.dtype]
    if case.batch_size is not None:
        parts += ["--batch-size", str(case.batch_size)]
    seeds = info.get("seeds")
    if isinstance(seeds, list) and seeds:
        parts += ["--seeds", ",".join(str(s) for s in seeds)]
    opts = options or {}
    for k, v in sorted((opts.get("data") or {}).items()):
        parts += ["--data", f"{k}={v}"]
    for k, v in sorted((opts.get("options") or {}).items()):
        parts += ["--option", f"{k}={v}"]
    return " ".join(parts)


def appendix_env(env: dict[str, Any]) -> str:
    nv, git = env_part(env, "nvidia"), env_part(env, "git")
    dev = env.get("gpu") or env.get("cpu_model") or "unknown device"
    bits = [dev, f"driver {nv['driver']}" if nv.get("driver") else None,
            f"torch {env.get('torch_full') or env.get('torch')}", f"CUDA {env['cuda']}" if env.get("cuda") else None,
            f"cuDNN {env['cudnn']}" if env.get("cudnn") else None, f"Python {env.get('python')}", env.get("os"),
            f"commit {git['commit'][:10]}" if isinstance(git.get("commit"), str) else None,
            f"machine {env.get('machine_id')}"]
    return ", ".join(b for b in bits if b)


def appendix_verdict(r: Any) -> str:
    """A PaperRow's verdict as the appendix prints it: a check (architecture, configuration) "matches" or
    "differs"; only a result is "reproduced"."""
    return r.verdict if r.baseline.category == "result" else _CHECK_WORDS.get(r.verdict, r.verdict)


def markdown_claims(claims: Sequence[Claim]) -> str:
    """The claims table of the appendix: every claim of the records, at every scale, with its strength."""
    out = ["## Paper claims\n", claim_counts_line(claims) + ". \"As stated\": the rule tests what the sentence "
           "says; \"weaker analogue\": it tests less (the strength column says what). A proxy-scale claim is "
           "not the paper's result.\n", md_table(CLAIM_COLUMNS, [claim_cells(c) for c in claims])]
    return "\n".join(out) + "\n"


NO_APPENDIX = ("No record matches a paper baseline and no record states a paper claim. The appendix needs "
               "paper-scale records of configs named in baselines/*.toml (`milestones baselines list`; proxy and "
               "smoke records are listed with --all-scales) for the figures, or quality records "
               "(`--kind quality`, any scale) for the claims.\n")


def markdown_appendix(items: Sequence[tuple[Any, Any, dict[str, Any] | None]],
                      claims: Sequence[Claim] = ()) -> str:
    """A reproduction appendix: per paper, each figure with the paper's value, ours (mean ± std over seeds),
    the verdict and its tolerance, the paper's claims as decided per seed, the command and the environment;
    then the claims table of every quality record given in `claims` (every scale).
    `items`: (PaperRow, its RunRecord, its run's manifest options or None)."""
    out: list[str] = []
    by_paper: dict[str, list] = {}
    for it in items:
        by_paper.setdefault(it[0].baseline.paper.citation, []).append(it)
    for citation, rows in by_paper.items():
        out.append(f"## {md_escape(citation)}\n")
        cols = ["figure", "paper", "ours (mean ± std, n)", "verdict", "why"]
        cells = []
        for r, _, _ in rows:
            b = r.baseline
            ours = "not measured" if r.ours is None else f"{fmt_with_unit(r.ours, b.unit, r.ours_std)} (n={r.n})"
            why = r.reason if b.category == "result" else f"a {b.category} check, not a reproduction: {r.reason}"
            cells.append([f"{b.source}: {b.metric} ({b.dataset} {b.split}; {r.config})",
                          fmt_with_unit(b.value, b.unit, b.plus_minus), ours, appendix_verdict(r), why])
        out.append(md_table(cols, cells) + "\n")
        seen: set[str] = set()
        for _, rec, opts in rows:
            if rec.record_id in seen:
                continue
            seen.add(rec.record_id)
            out.append(f"**{md_escape(rec.case.config)}** ({rec.case.scale}, {rec.status})  ")
            for c in claims_of(rec) if rec.case.kind == "quality" else ():
                verdict = "not decided" if not c.decided else c.outcome
                out.append(f"- {md_escape(c.source)}: {md_escape(claim_statement(c))} — rule: "
                           f"{md_escape(c.rule)}; {md_escape(c.strength_text)}; {verdict}")
            if rec.info.get("overrides"):
                out.append(f"- shortened on purpose: {md_escape(rec.info['overrides'])}")
            out.append(f"- command: `{appendix_command(rec.case, rec.info, opts)}`")
            out.append(f"- environment: {md_escape(appendix_env(rec.env))}\n")
    if claims:
        out.append(markdown_claims(claims))
    return "\n".join(out) if out else NO_APPENDIX


# ------------------------------------------------------------------------------- interleaved A/B
def _ab_cells(row: dict[str, Any], max_ratios: int = 0) -> list[str]:
    """A row of `ab` in compare's shape: the verdict's ratio and interval, the rounds and the spread of
    the per-round ratios (their SD), not the raw ratios (JSON and `--all` keep them)."""
    ratios = [x for x in (row.get("round_ratios") or []) if x and math.isfinite(x) and x > 0]
    logs = [math.log(x) for x in ratios]
    sd = statistics.stdev(logs) if len(logs) > 2 else None
    ratio = fmt_ratio(row.get("ratio")) + ("" if row.get("ci_low") is None
                                           else f" {fmt_ci(row.get('ci_low'), row.get('ci_high'))}")
    cells = [f"{row['config']} {row['kind']}", row["metric"], row["verdict"], ratio, str(row.get("rounds", 0)),
             "-" if sd is None else f"{sd:.1%}", fmt_p(row.get("p_value")), row.get("reason", "")]
    if max_ratios:
        cells.insert(-1, " ".join(f"{x:.3f}" for x in ratios[:max_ratios]) + (" ..." if len(ratios) > max_ratios else ""))
    return cells


AB_COLUMNS = ("case", "metric", "verdict", "ratio [CI]", "rounds", "round SD", "p", "why")
AB_COLUMNS_RATIOS = AB_COLUMNS[:-1] + ("per-round ratios", "why")


def text_ab(rows: Sequence[dict[str, Any]], stop: str, rounds: int) -> str:
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    con = Console(file=buf, width=200, soft_wrap=False)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in dict.fromkeys(r["verdict"] for r in rows)}
    con.print(f"A/B: stopped ({stop}) after {rounds} round(s): "
              + (", ".join(f"{n} {v}" for v, n in counts.items()) or "no metric"), markup=False, highlight=False)
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, header_style="bold")
    for c in AB_COLUMNS:
        if c == "why":
            t.add_column(c, overflow="ellipsis", no_wrap=True, max_width=WHY_WIDTH)
        else:
            t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*_ab_cells(r))
    con.print(t)
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip("\n").splitlines())


def markdown_ab(rows: Sequence[dict[str, Any]], stop: str, rounds: int) -> str:
    return f"### A/B: stopped ({stop}) after {rounds} round(s)\n\n" + md_table(AB_COLUMNS, [_ab_cells(r) for r in rows])
