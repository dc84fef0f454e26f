"""Attention suite: Appendix A shapes, the alignment model, smoke cases."""

from dataclasses import replace

import pytest
import torch

from milestones.harness.context import CaseContext
from milestones.harness.launch.inprocess import run_kind
from milestones.harness.records import Case
from milestones.suites import _translation as T
from milestones.suites import attention as A
from tests.quick_timing import quick

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def _ctx(config, kind, batch=None):
    return CaseContext.for_case(Case("attention", config, kind, "smoke", "cpu", "float32", batch))


@pytest.mark.parametrize("cfg", [A.SEARCH, A.ENCDEC])
def test_paper_shapes_and_counts(cfg):
    out = A.fidelity(cfg, _ctx("rnnsearch" if cfg.search else "rnnencdec", "fidelity"))
    assert out.metrics["shapes_match"].value == 1.0 and out.info["mismatched"] == {}
    # weights of Appendix A counted by hand from the paper's symbols (K=30000, m=620, n=1000, n'=1000, l=500)
    K, m, n, l = 30_000, 620, 1000, 500
    if cfg.search:
        want = (2 * K * m + 2 * (3 * n * m + 3 * n * n) + 3 * n * (m + 2 * n) + 3 * n * n + n * n
                + 1000 * n + 1000 * 2 * n + 1000 + 2 * l * n + 2 * l * m + 2 * l * 2 * n + K * l)
        assert out.metrics["encoder_params"].value == 2 * (3 * n * m + 3 * n * n + 6 * n)  # bidirectional, 1000 each
    else:
        want = (2 * K * m + (3 * n * m + 3 * n * n) + 3 * n * (m + n) + 3 * n * n + 2 * n * n
                + 2 * l * n + 2 * l * m + 2 * l * n + K * l)
    assert out.metrics["weight_params"].value == want


def test_shape_check_catches_a_wrong_width():
    bad = A.paper_shapes(replace(A.SEARCH, align=999))
    with torch.device("meta"):
        model = A.build(A.SEARCH)
    got = {k: tuple(p.shape) for k, p in model.named_parameters()}
    assert any(got[k] != v for k, v in bad.items())


def test_alignment_ignores_padding_and_step_matches_forward():
    torch.manual_seed(0)
    model = A.BahdanauModel(20, 15, emb=6, hidden=8, align=5, maxout=4, search=True).eval()
    src, lens = T.pad_batch([[5, 6, 7, 8], [9, 10]], eos=True)
    state = model.encode(src, lens)
    # the second sentence's padded positions must get no attention: change them, same context
    src2 = src.clone()
    src2[1, 3:] = 11
    state2 = model.encode(src2, lens)
    c1, c2 = model._context(state, state["s"]), model._context(state2, state2["s"])
    assert torch.allclose(c1[1], c2[1], atol=1e-6) and state["ann"].shape == (2, 5, 16)
    tgt, _ = T.pad_batch([[4, 5], [6, 7]], bos=True)
    full = torch.log_softmax(model(src, lens, tgt), -1)
    st = model.encode(src, lens)
    for i in range(tgt.shape[1]):
        logp, st = model.step(st, tgt[:, i])
        assert torch.allclose(logp, full[:, i], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rnnsearch-smoke", "rnnencdec-smoke"])
def test_smoke_speed_cases(name):
    from milestones.harness.registry import load_suites

    entry = load_suites().config(name)
    out = run_kind(A.speed, entry.params, quick(_ctx(name, "speed", batch=4)))
    assert out.metrics["train.throughput"].value > 0 and out.metrics["decode.throughput"].value > 0
    assert out.metrics["train.flops"].value > out.info["rnn_flops_from_shapes"]["train"] > 0


def test_proxy_claim_plumbing_on_a_tiny_task():
    # Not the proxy run: 2 steps on 60 sentences, to check metrics and the bleu_by_length artifact.
    from milestones.harness.registry import load_suites

    base = load_suites().config("attention-length").params
    cfg = replace(base, task=T.NumberTask(tgt_lang="fr", max_numbers=3, max_digits=2, n_train=60, n_valid=10, n_test=30),
                  proxy_train=replace(base.proxy_train, max_steps=2, eval_every=2))
    ctx = CaseContext.for_case(Case("attention", "attention-length", "quality", "proxy", "cpu", "float32", 8),
                               options={"n_seeds": "1"})
    assert A.SUITE.kind_fn("quality", cfg) is A.length_proxy
    out = A.length_proxy(cfg, ctx)
    series = out.artifacts["bleu_by_length"]
    assert set(series) == {"rnnsearch", "rnnencdec"}
    assert series["rnnsearch"]["bucket"] == ["1-5", "6-10", "11-15", "16+"]
    assert len(series["rnnencdec"]["bleu"]) == 4 and sum(series["rnnencdec"]["count"]) == 30
    m = out.metrics
    enc = out.artifacts["bleu_by_length"]["rnnencdec"]["per_seed"]
    filled = [i for i, c in enumerate(series["rnnencdec"]["count"]) if c and all(b[i] is not None for b in enc)]
    want = A.length_decision(list(m["bleu.gap"].samples), list(m["bleu.gap.shortest"].samples),
                             list(m["bleu.gap.longest"].samples), [b[filled[0]] for b in enc],
                             [b[filled[-1]] for b in enc], cfg.dramatic_drop)
    for k in ("claim_held", "claim_held.search_beats_encdec", "claim_held.gap_grows_with_length"):
        assert m[k].samples == tuple(want[k.removeprefix("claim_held.")])
    assert [c["id"] for c in out.info["claims"]] == ["search_beats_encdec", "gap_grows_with_length"]
    assert set(out.artifacts["curves"]) == {"rnnsearch.seed0", "rnnencdec.seed0"}


@pytest.mark.parametrize("overall,short,long_,beats,grows", [
    (5.0, 2.0, 30.0, 1, 1),  # Fig. 2: RNNsearch ahead, far more on long sentences
    (5.0, 10.0, 3.0, 1, 0),  # ahead, but the gap shrinks with length
    (-1.0, 2.0, 30.0, 0, 1),  # behind overall
    (0.0, 1.0, 1.0, 0, 0),  # a tie is neither
])
def test_length_decision_holds_and_fails(overall, short, long_, beats, grows):
    d = A.length_decision([overall], [short], [long_])
    assert d == {"search_beats_encdec": [float(beats)], "gap_grows_with_length": [float(grows)],
                 "claim_held": [float(beats * grows)]}


@pytest.mark.parametrize("enc_short,enc_long,grows", [
    (40.0, 10.0, 1),  # RNNencdec falls by 75%: a dramatic drop, and the gap grows
    (40.0, 35.0, 0),  # the gap grows but RNNencdec falls by only 12.5%: not "dramatically"
    (40.0, 30.0, 1),  # exactly the 25% threshold
    (0.0, 0.0, 0),    # no BLEU on short sentences: nothing to drop from
])
def test_length_rule_needs_rnnencdec_to_drop_dramatically(enc_short, enc_long, grows):
    d = A.length_decision([5.0], [2.0], [30.0], [enc_short], [enc_long], 0.25)
    assert d["gap_grows_with_length"] == [float(grows)]


def test_length_rule_needs_rnnsearch_more_robust():
    # RNNencdec drops dramatically (40 -> 10) but RNNsearch drops more (gap 20 -> 5): not more robust
    d = A.length_decision([5.0], [20.0], [5.0], [40.0], [10.0], 0.25)
    assert d["gap_grows_with_length"] == [0.0]
