"""Every paper claim the suites declare, pinned: the sentence, its source, the rule, the strength and what a
weaker analogue tests. A changed quotation or rule fails here and shows up as a diff of
tests/fixtures/claims.json (regenerate it with `python tests/test_claim_texts.py` after a deliberate change)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from milestones.harness.registry import load_suites
from milestones.harness.suite_api import AS_STATED, CLAIM_TEXTS, WEAKER, ClaimText, claim, claim_text

GOLDEN = Path(__file__).parent / "fixtures" / "claims.json"
FIELDS = ("statement", "source", "rule", "strength", "tests", "quoted")


PROJECT_SUITES = {p.stem for p in (Path(__file__).parent.parent / "suites").glob("*.py") if not p.stem.startswith("_")}


def declared() -> dict[str, dict]:
    """The project's claims (a suite registered out of tree, or a test's, is not pinned here)."""
    load_suites()
    return {k: CLAIM_TEXTS[k].to_dict() for k in sorted(CLAIM_TEXTS) if CLAIM_TEXTS[k].suite in PROJECT_SUITES}


def test_every_claim_matches_the_pinned_text_field_by_field():
    want = json.loads(GOLDEN.read_text())
    got = declared()
    assert sorted(got) == sorted(want), "claims added or removed: regenerate tests/fixtures/claims.json"
    diffs = [f"{k}.{f}: pinned {want[k][f]!r}, now {got[k][f]!r}" for k in want for f in FIELDS
             if want[k][f] != got[k][f]]
    assert not diffs, "\n".join(diffs)


def test_quotations_follow_the_rules():
    for key, c in declared().items():
        text = c["statement"]
        assert "(paraphrase)" not in text, f"{key}: a paraphrase is never in quotes (quoted=False)"
        if c["quoted"]:
            assert "{" not in text, f"{key}: a quotation is not a template"
            # A quotation that does not start a sentence says where it was cut.
            assert text[0].isupper() or text.startswith("[...] "), f"{key}: starts mid-sentence without [...]"
        assert c["strength"] in (AS_STATED, WEAKER)
        assert (c["tests"] is not None) == (c["strength"] == WEAKER), f"{key}: tests= says what an analogue tests"


@pytest.mark.parametrize("key,fragment", [
    ("attention/search_beats_encdec", "It is clear from the table that"),
    ("dcgan/generator", "for supervised learning and generative modeling."),
    ("seq2seq/reversal_helps", "By doing so, the LSTM's test perplexity"),
    ("resnet/resnet-fig6-degradation", "the 34-layer plain net has higher training error throughout the whole"),
    ("resnet/resnet-fig6-residual", "We do not observe the degradation problem and thus enjoy significant"),
])
def test_the_audited_quotations_are_fixed(key, fragment):
    assert fragment in declared()[key]["statement"]


def test_sources_name_where_the_sentence_is():
    got = declared()
    assert "Sec. 7" in got["dcgan/generator"]["source"] and "Abstract" not in got["dcgan/generator"]["source"]
    assert "Sec. 4.1" in got["resnet/resnet-fig6-degradation"]["source"]
    assert "Fig. 4" in got["resnet/resnet-fig6-degradation"]["source"]


def test_a_weaker_analogue_must_say_what_it_tests():
    with pytest.raises(ValueError, match="tests="):
        claim("x", "A sentence.", "src", "rule", [1], [0], "proxy", strength=WEAKER)
    with pytest.raises(ValueError, match="strength"):
        claim("x", "A sentence.", "src", "rule", [1], [0], "proxy", strength="held")
    with pytest.raises(TypeError):
        claim("x", "A sentence.", "src", "rule", [1], [0], "proxy")  # no strength: refused


def test_claim_text_fills_templates_and_keeps_fields_apart():
    ct = ClaimText("demo", "c-{n}", "Table figure {n}.", "src {n}", "rule >= {n}", WEAKER, "tests {n}",
                   quoted=False)
    d = ct.make([1, 0, None], [0, 1, 2], "paper", n=3)
    assert d == {"id": "c-3", "statement": "Table figure 3.", "source": "src 3", "rule": "rule >= 3",
                 "strength": WEAKER, "tests": "tests 3", "quoted": False, "held": [1, 0, None],
                 "seeds": [0, 1, 2], "scale": "paper"}
    quoted = ClaimText("demo", "q", "A {literal} sentence.", "src", "rule", AS_STATED)
    assert quoted.make([1], [0], "proxy")["statement"] == "A {literal} sentence."


def test_registering_one_id_twice_with_other_words_is_refused():
    claim_text("demo-suite", "once", "A sentence.", "src", "rule", strength=AS_STATED)
    claim_text("demo-suite", "once", "A sentence.", "src", "rule", strength=AS_STATED)  # the same: fine
    with pytest.raises(ValueError, match="twice"):
        claim_text("demo-suite", "once", "Another sentence.", "src", "rule", strength=AS_STATED)
    CLAIM_TEXTS.pop("demo-suite/once")


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(declared(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
