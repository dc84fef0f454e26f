"""How claims, their strength and the paper figures read: counts, outcomes, the appendix, units, the
metric declarations `baselines check` holds figures to. Synthetic inputs only (nothing trains)."""

from __future__ import annotations

import pytest

from milestones.harness import baselines, compare, report
from milestones.harness.records import SCHEMA_VERSION, Case, Metric, RunRecord
from milestones.harness.registry import Registry, natural_key
from tests.toy_paper import ToyCfg, toy_toml


def claim(strength, held, tests="a smaller thing", quoted=True):
    return report.Claim("c", "The sentence.", "Paper 2020, Fig. 1", "rule", held, tuple(range(len(held))), "proxy",
                        "toy", "toy-small", "r/1", strength=strength, tests=tests, quoted=quoted)


def test_counts_say_as_stated_apart_from_weaker_analogues():
    cl = [claim("as stated", (1, 1))] * 3 + [claim("weaker analogue", (1, 1))] * 4 + [claim("as stated", (1, 0))]
    assert report.claim_counts_line(cl) == \
        "3 claims held as stated, 4 weaker analogues held, 1 held on some seeds (8 checked)"
    assert report.claim_counts_line([claim("weaker analogue", (1,))]) == "1 weaker analogue held (1 checked)"
    assert report.claim_counts_line([]) == "no paper claim checked"


def test_a_weaker_analogue_never_reads_as_a_plain_held():
    weak, stated, old = claim("weaker analogue", (1, 1)), claim("as stated", (1, 1)), claim(None, (1, 1))
    assert stated.status == "held" and stated.outcome == "held 2/2 seeds (as stated)"
    assert weak.status == "analogue held" and weak.outcome == "weaker analogue held 2/2 seeds"
    assert old.status == "analogue held" and old.strength_text.startswith("strength not recorded")
    assert report.claim_cells(weak)[2] == "weaker analogue (tests a smaller thing)"
    assert report.claim_cells(weak)[4] == "2/2 (analogue)" and report.claim_cells(stated)[4] == "2/2"
    assert claim("weaker analogue", (0, 0)).outcome == "weaker analogue did not hold on any of 2 seeds"


def test_a_table_figure_is_never_shown_in_quotes():
    assert report.claim_statement(claim("as stated", (1,), quoted=False)) == "The sentence."
    assert report.claim_statement(claim("as stated", (1,))) == "\u201cThe sentence.\u201d"


def _rec(kind="quality", scale="proxy", claims=None, metrics=None):
    case = Case("toy", "toy-small", kind, scale, "cpu", "float32", 8)
    return RunRecord(SCHEMA_VERSION, "r1", f"r1/{case.slug}", "2026-01-01T00:00:00", "2026-01-01T00:00:01", 1.0,
                     case, {}, "1", {"note": "hand-built"}, "ok", None, metrics or {},
                     {"claims": claims or [], "seeds": [0, 1]}, {})


def test_appendix_lists_proxy_claims_and_says_what_it_needs_without_any():
    d = {"id": "c", "statement": "The sentence.", "source": "Paper 2020, Fig. 1", "rule": "a rule",
         "strength": "weaker analogue", "tests": "less", "held": [1, 1], "seeds": [0, 1], "scale": "proxy"}
    text = report.markdown_appendix([], report.all_claims([_rec(claims=[d])]))
    assert "## Paper claims" in text and "1 weaker analogue held (1 checked)" in text
    assert "weaker analogue (tests less)" in text and "| proxy |" in text
    empty = report.markdown_appendix([], [])
    assert empty == report.NO_APPENDIX and "paper-scale records" in empty and "--kind quality" in empty


def test_units_and_grammar():
    assert report.fmt_value(3.14e23, "FLOP") == "3.14e+23 FLOP"  # never "3.14e+11 TFLOP"
    assert report.fmt_value(0.001, "1") == "0.001"  # never "0.001 1"
    assert report.fmt_percent(0.001) == "0.1%" and report.fmt_percent(188_480 / 714e6, signed=True) == "+0.026%"
    assert report.fmt_percent(0.1) == "10%" and report.fmt_percent(0.0) == "0%"
    assert report.fmt_percent(1.0) == "100%" and report.fmt_percent(-0.012, signed=True) == "-1.2%"
    sizes = ["gpt3-13b", "gpt3-175b", "gpt3-2.7b", "gpt3-125m", "plain20", "plain8"]
    assert sorted(sizes, key=natural_key) == ["gpt3-125m", "gpt3-2.7b", "gpt3-13b", "gpt3-175b", "plain8", "plain20"]


BASE = dict(id="toy-macs", suite="toy", paper=baselines.Paper("toy", "Toy", "-", 2020), metric="macs",
            configs=("toy-small",), kind="fidelity", value=714_188_480.0, unit="MAC/image", dataset="-", split="-",
            protocol="-", source="Table 1", confirmed=True, higher_is_better=False, tolerance=0.001,
            tolerance_kind="relative")


def test_a_small_relative_tolerance_is_not_printed_as_zero():
    b = baselines.Baseline(**BASE)
    rec = _rec(kind="fidelity", metrics={"macs": Metric.single("macs", "MAC/image", False, 714_000_000.0)})
    row = compare.paper_verdict(b, rec)
    assert row.verdict == "reproduced" and "+-0.1%" in row.reason and "+-0%" not in row.reason
    fig = report.aggregate_paper([row])[0]
    assert fig.shown_verdict == "matches"  # an architecture check, not a reproduction
    assert "±0.1%" in fig.why and "(-0.026%)" in fig.why


def test_a_check_never_reads_reproduced_in_the_appendix():
    b = baselines.Baseline(**{**BASE, "id": "toy-lr", "metric": "default.lr", "unit": "1", "value": 0.001,
                              "tolerance": 0.0, "tolerance_kind": "absolute"})
    rec = _rec(kind="fidelity", metrics={"default.lr": Metric.single("default.lr", "1", True, 0.001)})
    row = compare.paper_verdict(b, rec)
    assert "+-0 1" not in row.reason and "+-0" in row.reason
    text = report.markdown_appendix([(row, rec, None)])
    assert "reproduced" not in text.split("## Paper claims")[0].replace("not a reproduction", "")
    assert "| matches |" in text and "a configuration check, not a reproduction" in text


def test_a_cited_figure_is_cited_not_measured():
    b = baselines.Baseline(**{**BASE, "id": "toy-human", "metric": "human_score", "kind": "quality", "cited": True})
    row = compare.paper_verdict(b, _rec())
    assert row.verdict == "not measured" and row.reason.startswith("cited, not measured")





@pytest.fixture
def declared(tmp_path):
    reg = Registry()
    s = reg.add_suite("toy", title="A Toy Paper", arxiv="2001.00001", year=2020, source_file=__file__)
    s.kind("quality", metrics=("test_accuracy", "bleu.*"))(lambda cfg, ctx: None)
    s.config("toy-small", ToyCfg(), scales=("paper",), kinds=("quality",))
    return reg


@pytest.mark.parametrize("metric,extra,error", [
    ("test_accuracy", "", None),
    ("bleu.en_fr", "", None),                        # a declared pattern
    ("human_score", "", "is not among those the quality function of config 'toy-small' produces"),
    ("human_score", "cited = true\n", None),          # a cited comparison row: no case need produce it
])
def test_baselines_are_held_to_the_metrics_a_kind_declares(tmp_path, declared, metric, extra, error):
    p = tmp_path / "toy.toml"
    p.write_text(toy_toml(metric, extra))
    _, errors = baselines.check([p], declared)
    if error is None:
        assert errors == []
    else:
        assert len(errors) == 1 and error in errors[0] and "cited = true" in errors[0]


def test_a_kind_that_declares_no_metrics_is_reported(tmp_path):
    reg = Registry()
    s = reg.add_suite("toy", title="A Toy Paper", arxiv="2001.00001", year=2020, source_file=__file__)
    s.kind("quality")(lambda cfg, ctx: None)
    s.config("toy-small", ToyCfg(), scales=("paper",), kinds=("quality",))
    p = tmp_path / "toy.toml"
    p.write_text(toy_toml("test_accuracy"))
    _, errors = baselines.check([p], reg)
    assert len(errors) == 1 and "declares no metrics" in errors[0]


def test_every_project_figure_is_measured_by_a_declared_kind_or_cited():
    from milestones.harness.registry import load_suites

    files, errors = baselines.check(baselines.baseline_paths(), load_suites())
    assert errors == []
    cited = {b.id for f in files for b in f.baselines if b.cited}
    assert {"dqn2013-pong-human", "gpt3-175b-lambada-acc-few-shot"} <= cited
    metrics = {b.id: b.metric for f in files for b in f.baselines}
    assert metrics["gpt3-175b-lambada-acc-zero-shot"] == "lambada.zero_shot.accuracy"
    assert metrics["gpt3-175b-lambada-acc-few-shot"] == "lambada.few_shot.accuracy"


def test_the_run_summary_counts_claims_by_strength():
    import io

    stated = {"id": "a", "statement": "S.", "source": "P, Fig. 1", "rule": "r", "strength": "as stated",
              "held": [1, 1], "seeds": [0, 1], "scale": "proxy"}
    weak = {**stated, "id": "b", "strength": "weaker analogue", "tests": "less"}
    out = io.StringIO()
    report.print_run_summary([_rec(claims=[stated, weak])], "results/x", file=out)
    assert "Paper claims: 1 claim held as stated, 1 weaker analogue held (2 checked)" in out.getvalue()
    line = report.case_line(_rec(claims=[weak]))
    assert "weaker analogue held 2/2 seeds" in line and "(as stated)" not in line


def test_the_paper_plot_legend_never_calls_a_check_reproduced():
    from milestones.harness import plots

    b = baselines.Baseline(**BASE)
    rec = _rec(kind="fidelity", metrics={"macs": Metric.single("macs", "MAC/image", False, 714_000_000.0)})
    fig = plots.quality_vs_paper(report.aggregate_paper([compare.paper_verdict(b, rec)]))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "matches" in labels and "reproduced" not in labels
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.endswith(": matches") for t in texts)
