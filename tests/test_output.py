"""Terminal output a person reads: the quality headline, numbers, the compare digest, `milestones list`."""

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from milestones.harness import catalog, compare, report
from milestones.harness.cli import main
from milestones.harness.records import Metric

F = Path(__file__).parent / "fixtures" / "records"
ROOT = Path(__file__).resolve().parent.parent


def recs(*parts):
    return [x.record for x in compare.load([F.joinpath(*parts)])]


def by_config(config):
    return next(r for r in recs("claims") if r.case.config == config)


def plain(markup: str) -> str:
    from rich.text import Text

    return Text.from_markup(markup).plain


def test_quality_headline_is_the_claim():
    line = plain(report.case_line(by_config("resnet-degradation")))
    assert line.splitlines()[1].strip() == "Fig. 6: deeper plain net trains worse, residual fixes it: held 3/3 seeds (as stated)"
    assert report.headline(by_config("alexnet-relu-vs-tanh")) == \
        "Fig. 1: ReLU reaches 25% training error faster than tanh: weaker analogue held 2/3 seeds"
    # Without info["claims"], the claim_held metric still gives the outcome.
    gan = by_config("gan-digits")
    # (a record with no strength is never shown as a plain "held": it says it is an analogue)
    assert report.headline(gan).endswith(": weaker analogue held 2/2 seeds")
    worded = dataclasses.replace(gan, info={**gan.info, "claim": "trained G beats the untrained one on FD"})
    assert report.headline(worded) == "trained G beats the untrained one on FD: weaker analogue held 2/2 seeds"
    # A claim text with brackets is text, not rich markup.
    r = by_config("resnet-degradation")
    odd = dict(r.info["claims"][0], summary="[bold]x[/] [...]")
    assert "[bold]x[/] [...]" in plain(report.case_line(dataclasses.replace(r, info={**r.info, "claims": [odd]})))


def test_claim_outcomes():
    r = by_config("resnet-degradation")
    base = r.info["claims"][0]

    def outcome(held):
        rec = dataclasses.replace(r, info={**r.info, "claims": [dict(base, held=held)]})
        (c,) = report.claims_of(rec)
        return c.outcome, c.status

    assert outcome([0, 0, 0]) == ("did not hold on any of 3 seeds", "not held")
    assert outcome([1, None, 1]) == ("held 2/2 seeds, 1 undecided (as stated)", "held")
    assert outcome(None) == ("undecided", "undecided")
    assert outcome([1, 0]) == ("held 1/2 seeds (as stated)", "mixed")
    # a weaker analogue never reads as a plain "held"
    weaker = dict(base, strength="weaker analogue", tests="trained beats untrained")
    rec = dataclasses.replace(r, info={**r.info, "claims": [dict(weaker, held=[1, 1])]})
    (c,) = report.claims_of(rec)
    assert (c.outcome, c.status) == ("weaker analogue held 2/2 seeds", "analogue held")


@pytest.mark.parametrize("value, unit, text", [
    (61_100_840, "count", "61,100,840"), (3.86e9, "MAC/image", "3.86 GMAC/image"), (0.0002, "value", "0.0002"),
    (1e-8, "1", "1e-08"), (6.43, "%", "6.43 %"), (0.21, "s", "210 ms"), (354.0, "score/episode", "354 score/episode"),
    (None, "%", "not measured"), (6.0, "ratio", "6×"),
])
def test_numbers_for_people(value, unit, text):
    assert report.fmt_with_unit(value, unit) == text


def test_compare_output_leads_with_action_and_adds_up():
    base, new = recs("regress", "base"), recs("regress", "new")
    rows, notes = compare.compare_runs(base, new)
    d = report.digest(rows)
    shown = sum(len(rs) for _, rs in d.sections) + d.unchanged + sum(n for *_, n in d.by_design) + d.derived_hidden
    assert shown == d.total == len(rows)
    buf = io.StringIO()
    report.print_compare(rows, notes, compare.verdict_counts(rows), file=buf, title="t")
    out = buf.getvalue()
    assert out.index("Regressed") < out.index("Inconclusive") < out.index("Not comparable") < out.index("Unchanged")
    assert len(out.splitlines()) < 60
    assert f"{d.total} rows: 3 regressed" in out
    # Lost in new: listed; absent on the base's side too: one line, not a row each.
    assert "not measured in new: no counter" in out
    full = io.StringIO()
    report.print_compare(rows, notes, None, file=full, title="t", full=True)
    assert len(full.getvalue().splitlines()) > len(out.splitlines())


def synthetic_rows(counts):
    from milestones.harness.compare import CompareRow
    from milestones.harness.stats import Comparison

    rows = []
    for verdict, n in counts.items():
        for i in range(n):
            reason = "not measured in base: NVML absent: CPU device" if verdict == "by design" else f"why {i}"
            res = Comparison("not comparable" if verdict == "by design" else verdict, reason, "blocks", ratio=1.0,
                             change=i / 100, base=1.0, new=1.0)
            rows.append(CompareRow("s", f"c{i}", "speed", "smoke", "cpu", "float32", 8,
                                   f"m{i % 12}.energy" if verdict == "by design" else f"m{i}.step_time", "s", False,
                                   res))
    return rows


@pytest.mark.parametrize("counts", [
    {"regressed": 3, "improved": 5, "inconclusive": 40, "not comparable": 12, "by design": 60, "unchanged": 400},
    {"regressed": 40, "improved": 40, "inconclusive": 40, "not comparable": 40, "by design": 40, "unchanged": 40},
])
def test_compare_output_is_bounded(counts):
    rows = synthetic_rows(counts)
    buf = io.StringIO()
    report.print_compare(rows, [], None, file=buf, title="t")
    out = buf.getvalue()
    assert len(out.splitlines()) < 60, out
    assert f"{len(rows)} rows: " in out
    md = report.markdown_summary(rows, [], {"regressed": counts["regressed"]}, "a", "b")
    assert len(md.splitlines()) < 80
    # The worst regression is listed first.
    if counts["regressed"] > 10:
        first = next(line for line in out.splitlines() if "s/c" in line)
        assert "m39.step_time" in first


def test_not_measured_in_base_collapses_to_one_line_per_metric():
    a, b = recs("torch")[:2], recs("torch")[2:]
    rows, notes = compare.compare_runs(a, b)
    d = report.digest(rows)
    assert d.by_design and all(n >= 1 for *_, n in d.by_design)
    md = report.markdown_compare(rows, notes)
    lines = [x for x in md.splitlines() if "train.energy_per_item" in x]
    assert lines == ["- NVML absent: CPU device: train.energy_per_item (2 rows)"]


def test_compare_json_keeps_every_row(capsys):
    base, new = str(F / "regress" / "base"), str(F / "regress" / "new")
    assert main(["compare", base, new, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert any(r["metric"].endswith(".flops_per_s") for r in data["rows"])
    assert sum(data["counts"].values()) == len(data["rows"])


def test_list_is_static_and_shows_claims_and_cases(tmp_path):
    """`list` imports neither torch nor a suite while the catalog matches the suite files (here the
    per-user cache, primed from the registry, so this holds whether or not the shipped file is fresh)."""
    from milestones.harness.registry import load_suites

    env = {k: v for k, v in os.environ.items() if k != "MILESTONES_EXTRA_SUITES"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    cache = tmp_path / "cache" / "milestones" / "suite-catalog.json"
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps(catalog.from_registry(load_suites())))
    code = ("import sys; from milestones.harness.cli import main; rc = main(['list', '--json']); "
            "print('TORCH', 'torch' in sys.modules, file=sys.stderr); raise SystemExit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "TORCH False" in r.stderr
    rows = {e["suite"]: e for e in json.loads(r.stdout)}
    res = rows["resnet"]
    assert {"suite", "title", "arxiv", "year", "configs", "kinds", "scales", "version"} <= set(res)
    assert [c["config"] for c in res["claims"]] == ["resnet-degradation"]
    assert res["cases"]["proxy"]["quality"] == 1


def test_shipped_catalog_shows_what_the_registry_shows():
    """Keyed on what the list shows, not on the suite files' hashes: an edit to a suite's code fails
    nothing; a new config, claim or scale does, until `python -m milestones.harness.catalog` is re-run
    (the list would stay right, only slower)."""
    from milestones.harness.registry import load_suites

    reg = load_suites()
    want = {e["suite"]: catalog.listed(e) for e in catalog.from_registry(reg) if e["file"] in catalog.file_versions()}
    assert {e["suite"]: catalog.listed(e) for e in catalog._shipped()} == want


def test_catalog_ignores_an_entry_whose_suite_file_changed(tmp_path, monkeypatch):
    monkeypatch.delenv("MILESTONES_EXTRA_SUITES", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fresh = catalog._shipped()
    versions = catalog.file_versions()
    monkeypatch.setattr(catalog, "_shipped", lambda: [dict(e, version=versions[e["file"]]) for e in fresh])
    from milestones.harness import registry

    def no_import():
        raise AssertionError("the registry was imported although every entry matched")

    monkeypatch.setattr(registry, "load_suites", no_import)
    assert [e["suite"] for e in catalog.catalog()] == [e["suite"] for e in fresh]  # all match: no import
    assert not (tmp_path / "milestones").exists()


def test_stale_catalog_falls_back_to_the_registry(tmp_path, monkeypatch):
    monkeypatch.delenv("MILESTONES_EXTRA_SUITES", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    stale = [dict(e, version="000000000000", title="stale") for e in catalog._shipped()]
    monkeypatch.setattr(catalog, "_shipped", lambda: stale)
    entries = catalog.catalog()
    assert entries and all(e["title"] != "stale" for e in entries)
    cached = json.loads((tmp_path / "milestones" / "suite-catalog.json").read_text())
    assert {e["suite"] for e in cached} == {e["suite"] for e in entries}


def test_measured_cost_comes_from_records(tmp_path, capsys):
    costs = catalog.measured_costs(F / "claims")
    assert costs["resnet"] == {"proxy quality": 30.0}
    assert catalog.measured_costs(tmp_path / "none") == {}
    e = {"cases": {"smoke": {"fidelity": 2}, "proxy": {"quality": 1}}, "measured_s": {"proxy quality": 400.0}}
    assert report._cost_text(e) == "smoke: 2 fidelity\nproxy: 1 quality (measured here: quality 400 s)"


def test_metric_values_in_headline_for_speed():
    r = recs("gpus")[0]
    assert report.headline(r).startswith("train.throughput=")
    m = dict(r.metrics)
    m["claim_held"] = Metric.from_values("claim_held", "bool", True, [1.0])
    assert not report.headline(dataclasses.replace(r, metrics=m)).startswith("claim")  # speed: numbers, not claims
