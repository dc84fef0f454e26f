"""Seq2seq suite: the paper's parameter counts, the reversed-source batches, smoke cases, paper-scale pipeline."""

from dataclasses import replace

import pytest
import torch

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.launch.inprocess import run_kind
from milestones.harness.records import Case
from milestones.suites import _translation as T
from milestones.suites import seq2seq as S
from tests.quick_timing import quick

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def _ctx(config, kind, scale="smoke", batch=None, **kw):
    return CaseContext.for_case(Case("seq2seq", config, kind, scale, "cpu", "float32", batch), **kw)


def test_paper_parameter_counts():
    out = S.fidelity(S.PAPER, _ctx("seq2seq-lstm", "fidelity"))
    m = {k: v.value for k, v in out.metrics.items()}
    # Sec. 3.4: 384M parameters, 64M recurrent: 32M per 4x1000 LSTM (two bias vectors per gate in torch)
    assert m["encoder_recurrent_params"] == m["decoder_recurrent_params"] == 4 * (4 * 1000 * 2000 + 8000)
    assert m["params"] == 160_000 * 1000 + 80_000 * 1000 + 1000 * 80_000 + 80_000 + 2 * m["encoder_recurrent_params"]
    assert abs(m["params"] / 384e6 - 1) < 0.01 and abs(m["recurrent_params"] / 64e6 - 1) < 0.01
    assert m["params_within_tolerance"] == 1.0 and m["recurrent_params_within_tolerance"] == 1.0


def test_fidelity_flags_a_wrong_size():
    out = S.fidelity(replace(S.PAPER, hidden=800), _ctx("seq2seq-lstm", "fidelity"))
    assert out.metrics["params_within_tolerance"].value == 0.0


def test_decoder_starts_from_encoder_state_and_step_matches_forward():
    torch.manual_seed(0)
    model = S.Seq2Seq(20, 15, 8, 12, 2).eval()
    src, lens = T.pad_batch([[5, 6, 7], [8, 9]], eos=True, reverse=True)
    tgt, _ = T.pad_batch([[4, 5, 6], [7, 8, 9]], bos=True)
    full = torch.log_softmax(model(src, lens, tgt), -1)
    state = model.encode(src, lens)
    for i in range(tgt.shape[1]):
        logp, state = model.step(state, tgt[:, i])
        assert torch.allclose(logp, full[:, i], atol=1e-5)
    # padding does not leak into the encoder's final state (packed sequences)
    alone = model.encode(*T.pad_batch([[8, 9]], eos=True, reverse=True))
    assert torch.allclose(alone["h"][0], model.encode(src, lens)["h"][1], atol=1e-6)


def test_smoke_speed_case():
    out = run_kind(S.speed, S.SMOKE, quick(_ctx("seq2seq-smoke", "speed", batch=4)))
    m = out.metrics
    assert m["train.throughput"].value > 0 and m["train.throughput"].value == pytest.approx(
        4 * (S.SMOKE.src_len + S.SMOKE.tgt_len) / m["train.step_time"].value, rel=0.5)
    # FLOPs include the fused LSTMs, counted from their shapes (FlopCounterMode cannot see them)
    assert m["train.flops"].value >= out.info["rnn_flops_from_shapes"]["train"] > 0
    assert m["params"].value > 0


def test_paper_quality_skips_without_data():
    with pytest.raises(SkipCase, match="wmt14"):
        _quality(S.PAPER, _ctx("seq2seq-paper", "quality", scale="paper", batch=2))


def test_paper_quality_pipeline_on_a_tiny_fixture(tmp_path):
    pairs = [(f"the number {T.number_words(n, 'en')}", f"le nombre {T.number_words(n, 'fr')}") for n in range(40)]
    for split, rows in (("train", pairs[:32]), ("test", pairs[32:])):
        (tmp_path / f"{split}.en").write_text("".join(s + "\n" for s, _ in rows), encoding="utf-8")
        (tmp_path / f"{split}.fr").write_text("".join(t + "\n" for _, t in rows), encoding="utf-8")
    cfg = replace(S.PAPER, src_vocab=80, tgt_vocab=80, emb=8, hidden=8, layers=1)
    ctx = _ctx("seq2seq-paper", "quality", scale="paper", batch=4, data={"wmt14": str(tmp_path)},
               options={"steps": "3", "beam": "2"})
    out = _quality(cfg, ctx)
    assert out.metrics["train_steps"].value == 3 and 0 <= out.metrics["bleu"].value <= 100
    assert out.info["test_pairs"] == 8 and "multi-bleu" in out.info["bleu_protocol"]
    # the output must survive strict JSON (records refuse NaN): no valid split means no valid BLEU, not NaN
    import json

    json.dumps({"m": {k: v.to_dict() for k, v in out.metrics.items()}, "a": out.artifacts, "i": out.info},
               allow_nan=False, default=str)
    assert "valid_bleu" not in out.artifacts["curves"]["train"]["series"]  # no valid split: no series


def test_proxy_claim_plumbing_on_a_tiny_task():
    # Not the proxy run: 3 steps on 60 sentences, to check the claim's metrics are all written.
    cfg = replace(S.PROXY, task=T.NumberTask(tgt_lang="fr", max_numbers=2, max_digits=2, n_train=60, n_valid=10, n_test=10),
                  proxy_train=replace(S.PROXY.proxy_train, max_steps=3, eval_every=3))
    out = _quality(cfg, _ctx("seq2seq-reverse", "quality", scale="proxy", batch=8, options={"n_seeds": "2"}))
    m = out.metrics
    assert len(m["bleu.forward"].samples) == len(m["bleu.reversed"].samples) == 2
    assert m["bleu.gain_from_reversal"].samples == tuple(
        b - a for a, b in zip(m["bleu.forward"].samples, m["bleu.reversed"].samples, strict=True))
    assert m["claim_held"].samples == tuple(S.reversal_decision(m["bleu.forward"].samples, m["bleu.reversed"].samples))
    assert out.info["seeds"] == [0, 1] and out.info["claims"][0]["seeds"] == [0, 1]
    assert set(out.artifacts["curves"]) == {"forward.seed0", "forward.seed1", "reversed.seed0", "reversed.seed1"}


def _quality(cfg, ctx):
    return S.SUITE.kind_fn("quality", cfg)(cfg, ctx)


def test_reversal_decision_holds_and_fails():
    assert S.reversal_decision([25.9, 30.0], [30.6, 29.0]) == [1.0, 0.0]
    assert S.reversal_decision([20.0], [20.0]) == [0.0]  # a tie is no improvement
