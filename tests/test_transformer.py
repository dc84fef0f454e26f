"""Transformer suite: Table 3 parameter counts, agreement with nn.Transformer, the warm-up schedule."""

import math

import pytest
import torch
from torch import nn

from milestones.harness.context import CaseContext
from milestones.harness.launch.inprocess import run_kind
from milestones.harness.records import Case
from milestones.suites import transformer as TR
from tests.quick_timing import quick

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def _ctx(config, kind, batch=None):
    return CaseContext.for_case(Case("transformer", config, kind, "smoke", "cpu", "float32", batch))


@pytest.mark.parametrize("cfg, paper", [(TR.BASE, 65e6), (TR.BIG, 213e6)])
def test_table3_parameter_counts(cfg, paper):
    out = TR.fidelity(cfg, _ctx("transformer-base", "fidelity"))
    d, f, V = cfg.d_model, cfg.d_ff, cfg.vocab
    attn = 4 * (d * d + d)
    ffn = d * f + f + f * d + d
    want = V * d + 6 * (attn + ffn + 2 * 2 * d) + 6 * (2 * attn + ffn + 3 * 2 * d)  # one shared embedding matrix
    assert out.metrics["params"].value == want
    assert abs(want / paper - 1) < 0.05 and out.metrics["params_within_tolerance"].value == 1.0


def _copy_attn(mine, ref: nn.MultiheadAttention):
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mine.q.weight, mine.k.weight, mine.v.weight]))
        ref.in_proj_bias.copy_(torch.cat([mine.q.bias, mine.k.bias, mine.v.bias]))
        ref.out_proj.weight.copy_(mine.o.weight)
        ref.out_proj.bias.copy_(mine.o.bias)


def _copy_common(mine, ref):
    with torch.no_grad():
        for a, b in ((mine.ff.ff1, ref.linear1), (mine.ff.ff2, ref.linear2), (mine.ln1, ref.norm1), (mine.ln2, ref.norm2)):
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)


def test_layers_agree_with_nn_transformer():
    torch.manual_seed(0)
    d, h, f, n, V = 16, 4, 32, 2, 30
    model = TR.Transformer(V, V, d, f, h, n, dropout=0.0).eval()
    kw = dict(d_model=d, nhead=h, dim_feedforward=f, dropout=0.0, activation="relu", batch_first=True, norm_first=False)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(**kw), n, norm=None, enable_nested_tensor=False)
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(**kw), n, norm=None)
    ref = nn.Transformer(d, h, n, n, f, 0.0, batch_first=True, custom_encoder=enc, custom_decoder=dec).eval()
    for mine, theirs in zip(model.encoder, ref.encoder.layers, strict=True):
        _copy_attn(mine.self_attn, theirs.self_attn)
        _copy_common(mine, theirs)
    for mine, theirs in zip(model.decoder, ref.decoder.layers, strict=True):
        _copy_attn(mine.self_attn, theirs.self_attn)
        _copy_attn(mine.cross_attn, theirs.multihead_attn)
        _copy_common(mine, theirs)
        with torch.no_grad():
            theirs.norm3.weight.copy_(mine.ln3.weight)
            theirs.norm3.bias.copy_(mine.ln3.bias)
    src = torch.randint(4, V, (3, 7))
    lens = torch.tensor([7, 5, 2])
    tgt = torch.randint(4, V, (3, 6))
    ours = model(src, lens, tgt)
    x = model.src_emb(src) * math.sqrt(d) + TR.sinusoids(7, d)
    y = model.tgt_emb(tgt) * math.sqrt(d) + TR.sinusoids(6, d)
    pad = torch.arange(7)[None, :] >= lens[:, None]  # True = ignore, nn.Transformer's convention
    out = ref(x, y, tgt_mask=nn.Transformer.generate_square_subsequent_mask(6), src_key_padding_mask=pad,
              memory_key_padding_mask=pad)
    assert torch.allclose(ours, model.out(out), atol=1e-4)
    # and the comparison can fail: a different LayerNorm breaks agreement
    with torch.no_grad():
        model.decoder[0].ln3.weight.mul_(2)
    assert not torch.allclose(model(src, lens, tgt), model.out(out), atol=1e-3)


def test_incremental_step_matches_forward():
    torch.manual_seed(1)
    model = TR.Transformer(20, 20, 16, 32, 4, 2, dropout=0.0).eval()
    src, lens = torch.randint(4, 20, (2, 5)), torch.tensor([5, 3])
    tgt = torch.randint(4, 20, (2, 4))
    full = torch.log_softmax(model(src, lens, tgt), -1)
    st = model.encode(src, lens)
    for i in range(4):
        logp, st = model.step(st, tgt[:, i])
        assert torch.allclose(logp, full[:, i], atol=1e-5)


def test_warmup_schedule_values():
    d, w = 512, 4000
    assert TR.noam_lr(1, d, w) == pytest.approx(512**-0.5 * 4000**-1.5)
    assert TR.noam_lr(w, d, w) == pytest.approx(512**-0.5 * 4000**-0.5)  # the peak, ~7.0e-4
    assert TR.noam_lr(w, d, w) == pytest.approx(6.9877e-4, rel=1e-4)
    assert TR.noam_lr(16000, d, w) == pytest.approx(TR.noam_lr(w, d, w) / 2)  # step^-0.5 decay
    assert TR.noam_lr(2000, d, w) == pytest.approx(TR.noam_lr(w, d, w) / 2)  # linear warm-up


def test_training_schedule_follows_noam(tmp_path):
    # The LambdaLR used in training with peak lr = d^-0.5 * w^-0.5 reproduces noam_lr step by step.
    from milestones.suites import _translation as T

    d, w = 32, 10
    model = nn.Linear(2, 2)
    s = T.TrainSettings(lr=d**-0.5 * w**-0.5, warmup=w)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min((k + 1) / w, math.sqrt(w / (k + 1))))
    for step in range(1, 30):
        assert opt.param_groups[0]["lr"] == pytest.approx(TR.noam_lr(step, d, w))
        opt.step()
        sched.step()


@pytest.mark.slow
def test_smoke_speed_case():
    out = run_kind(TR.speed, TR.SMOKE, quick(_ctx("transformer-smoke", "speed", batch=4)))
    m = out.metrics
    assert m["train.flops"].value > 0 and m["train.throughput"].value > 0 and m["decode.throughput"].value > 0
    assert out.info["attention"] == "F.scaled_dot_product_attention"


def test_proxy_claim_plumbing_on_a_tiny_task():
    # Not the proxy run: 2 steps per model on 60 sentences, to check the time-to-quality metrics.
    from dataclasses import replace

    from milestones.suites import _translation as T

    cfg = replace(TR.PROXY, task=T.NumberTask(tgt_lang="fr", max_numbers=2, max_digits=2, n_train=60, n_valid=10, n_test=10),
                  proxy_train=replace(TR.PROXY.proxy_train, max_steps=2, eval_every=1))
    ctx = CaseContext.for_case(Case("transformer", "transformer-vs-rnn", "quality", "proxy", "cpu", "float32", 8),
                               options={"n_seeds": "1", "budget": "20"})
    out = _quality(cfg, ctx)
    m = out.metrics
    assert len(m["bleu.transformer"].samples) == len(m["bleu.rnnsearch"].samples) == 1
    tf = [st.samples[0] if (st := m["seconds_to_target.transformer"]).samples else None]
    assert m["claim_held"].samples == tuple(TR.time_to_quality_decision(tf, list(m["seconds_to_best.rnnsearch"].samples)))
    assert out.info["claims"][0]["id"] == "less_time_to_train" and out.info["claims"][0]["seeds"] == [0]
    # either a time was measured or the metric says why not; never a made-up figure
    st = m["seconds_to_target.transformer"]
    assert st.samples or st.note
    for name in ("rnnsearch", "transformer"):
        ct = m[f"seconds_to_common_target.{name}"]
        assert ct.samples or "never reached" in ct.note


def _quality(cfg, ctx):
    return TR.SUITE.kind_fn("quality", cfg)(cfg, ctx)


def test_time_to_quality_decision_holds_and_fails():
    assert TR.time_to_quality_decision([10.0, 30.0, None], [20.0, 20.0, 20.0]) == [1.0, 0.0, 0.0]
