"""suites/gpt.py: GPT-3 Table 2.1 parameter counts and training compute, KV-cache decoding against
full recomputation, the smoke speed case, the scaling pipeline at toy size and checkpoint evaluation."""

from __future__ import annotations

import math

import pytest
import torch

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.errors import UsageError
from milestones.harness.launch.inprocess import run_kind
from milestones.harness.records import Case
from milestones.suites import gpt
from milestones.suites.gpt import GPT, TABLE_2_1, GPTArch
from tests.quick_timing import quick


def _ctx(config: str, kind: str, scale: str = "smoke", batch: int | None = None, **kw) -> CaseContext:
    return CaseContext.for_case(Case("gpt", config, kind, scale, "cpu", "float32", batch), **kw)


@pytest.mark.slow
def test_table_2_1_parameter_counts_within_3_percent():
    for name, (paper, layers, d, heads, _bt, _lr) in TABLE_2_1.items():
        a = GPTArch(layers, d, heads)
        n = gpt.count_params_meta(a)
        assert n == gpt.param_formula(a), name
        assert abs(n / paper - 1) < 0.03, (name, n)
    # the two ends of the table are reproduced closely by tied embeddings + learned positions
    assert gpt.count_params_meta(GPTArch(12, 768, 12)) == 125_226_240
    assert abs(gpt.count_params_meta(GPTArch(96, 12288, 96)) / 175.0e9 - 1) < 0.003


def test_training_compute_of_175b_and_the_extrapolated_flop_count():
    out = gpt.fidelity(gpt.SUITE.configs["gpt3-175b"].params, _ctx("gpt3-175b", "fidelity"))
    m = out.metrics
    assert m["train_compute.6nd_rel_error"].value < 0.002  # 6 N D with D = 300B vs Table D.1's 3.14e23
    counted = m["train_compute.counted"].value
    assert 1.02 < counted / 3.14e23 < 1.04  # + attention at n_ctx 2048 (causal counted as full square)
    a = GPTArch(96, 12288, 96)
    assert m["attention_flops_fraction"].value == pytest.approx(
        12 * a.layers * a.n_ctx * a.d_model / m["train_flops_per_token.counted"].value, rel=1e-6)
    # the short-sequence extrapolation equals a direct count at the target length
    small = GPTArch(2, 32, 4, vocab_size=64, n_ctx=192)
    c = gpt.training_compute(small, tokens=1.0, short=16)
    assert c["counted_per_token_at_n_ctx"] == pytest.approx(gpt.flops_per_token(small, 192), rel=1e-12)


def _tiny(seed=0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTArch(**{"layers": 2, "d_model": 32, "heads": 4, "vocab_size": 61, "n_ctx": 24, **kw})).eval()


@pytest.mark.slow
def test_kv_cache_decoding_equals_full_recomputation():
    m = _tiny()
    seq = torch.randint(0, 61, (2, 20))
    with torch.no_grad():
        full, _ = m(seq)
        logits, cache = m(seq[:, :8])  # prefill
        assert torch.allclose(logits, full[:, :8], atol=1e-5, rtol=0)
        for t in range(8, 14):  # one token at a time
            step, cache = m(seq[:, t:t + 1], cache)
            assert torch.allclose(step[:, 0], full[:, t], atol=1e-5, rtol=0), t
        step, cache = m(seq[:, 14:20], cache)  # several tokens after a cache: the masked path
        assert torch.allclose(step, full[:, 14:20], atol=1e-5, rtol=0)
        assert cache[0][0].shape == (2, 4, 20, 8)
        # greedy generate() with the cache equals greedy decoding by full recomputation
        out = m.generate(seq[:, :5], 6)
        ref = seq[:, :5]
        for _ in range(6):
            ref = torch.cat([ref, m(ref)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ref)
    with pytest.raises(ValueError, match="exceeds the context window"):
        m(torch.zeros(1, 25, dtype=torch.long))


@pytest.mark.slow
def test_smoke_speed_case_measures_training_and_generation():
    entry = gpt.SUITE.configs["gpt-smoke"]
    out = run_kind(gpt.speed, entry.params, quick(_ctx("gpt-smoke", "speed", batch=entry.params.cpu_batch_size)))
    m = out.metrics
    for k in ("train.step_time", "train.throughput", "prefill.step_time", "decode.step_time", "decode.throughput",
              "generate.step_time"):
        assert m[k].samples and all(x > 0 and math.isfinite(x) for x in m[k].samples), k
    assert m["train.throughput"].unit == "tokens/s" and m["train.flops"].value > 0


@pytest.mark.slow
def test_scaling_pipeline_at_toy_size():
    cfg = gpt.ScalingConfig(sizes=((1, 16, 2), (1, 32, 2)), n_ctx=32, batch_size=4, tokens=4 * 32 * 12,
                            eval_windows=8, eval_every=4, target_loss=100.0, n_seeds=1)
    out = _quality(cfg, _ctx("gpt-scaling", "quality", "proxy", batch=4))
    sc = out.artifacts["scaling"]
    assert len(sc["params"]) == len(sc["loss"]) == 2 and sc["params"][0] < sc["params"][1]
    assert sc["params"][0] == gpt.count_params_meta(GPTArch(1, 16, 2, vocab_size=256, n_ctx=32))
    # held-out loss per byte of a barely trained model sits near the uniform log(256) = 5.55 nats
    assert all(0 < x < 6.5 for x in sc["loss"])
    per_size = [out.metrics[f"heldout_loss.size{i}"].samples[0] for i in range(2)]
    params = [out.metrics[f"params.size{i}"].value for i in range(2)]
    assert out.metrics["claim_held"].samples == tuple(gpt.scaling_decision([per_size], params, cfg.min_r2))
    assert out.metrics["steps_to_target"].value == 4
    assert out.info["claims"][0]["held"] == [int(v) for v in out.metrics["claim_held"].samples]
    assert out.artifacts["curves"]["L1.d32.seed0.loss"]["step"] == [float(x) for x in range(1, 13)]
    assert out.artifacts["curves"]["L1.d32.seed0"]["step"] == [4.0, 8.0, 12.0]


def _quality(cfg, ctx):
    return gpt.SUITE.kind_fn("quality", cfg)(cfg, ctx)


def test_scaling_claim_rule_holds_and_fails():
    assert gpt.scaling_decision([[3.0, 2.8, 2.5], [3.0, 2.5, 2.6], [3.0, 3.0, 2.5]]) == [1.0, 0.0, 0.0]


def test_scaling_rule_tests_the_power_law_not_only_a_decrease():
    params = [1e4, 1e5, 1e6, 1e7]
    power = [10 * p ** -0.1 for p in params]  # an exact power law: R^2 = 1
    assert gpt.power_law_fit(params, power) == pytest.approx((0.1, 1.0))
    # falls at every size, but in one cliff and a flat tail: monotone, not a power law (R^2 about 0.6)
    cliff = [5.0, 2.0, 1.99, 1.98]
    assert gpt.power_law_fit(params, cliff)[1] < 0.9
    assert gpt.scaling_decision([power, cliff], params, 0.9) == [1.0, 0.0]
    assert gpt.scaling_decision([cliff]) == [1.0]  # without the sizes only monotonicity is tested
    assert gpt.power_law_fit([1e4, 1e4], [2.0, 2.0]) == (0.0, 0.0)


@pytest.mark.slow
def test_lm_eval_of_a_uniform_checkpoint_gives_known_figures(tmp_path):
    from safetensors.torch import save_file

    m = _tiny(vocab_size=256, n_ctx=16)
    for p in m.parameters():  # zero weights: every next-byte distribution is uniform over 256
        torch.nn.init.zeros_(p)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / "m.safetensors"))
    torch.save(m.state_dict(), tmp_path / "m.pt")
    (tmp_path / "t.txt").write_text("the quick brown fox jumps over the lazy dog " * 3)
    (tmp_path / "l.txt").write_text("he saw the cat\nshe drank the water\n")
    for ck in ("m.safetensors", "m.pt"):
        ctx = _ctx("gpt-lm-eval", "quality", "paper", data={"gpt": str(tmp_path / ck), "text": str(tmp_path / "t.txt"),
                                                           "lambada": str(tmp_path / "l.txt")}, options={"heads": "4"})
        out = _quality(gpt.LMEvalConfig(), ctx)
        assert out.metrics["byte_perplexity"].value == pytest.approx(256.0, rel=1e-5)
        assert out.metrics["bits_per_byte"].value == pytest.approx(8.0, rel=1e-5)
        assert out.metrics["lambada.zero_shot.accuracy"].value == 0.0  # argmax of a uniform row is byte 0
    with pytest.raises(SkipCase, match="--data gpt=CHECKPOINT"):
        _quality(gpt.LMEvalConfig(), _ctx("gpt-lm-eval", "quality", "paper"))
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(UsageError, match="cannot read GPT checkpoint"):
        gpt.load_gpt_checkpoint(tmp_path / "bad.pt")
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UsageError, match="not a state dict"):
        gpt.load_gpt_checkpoint(tmp_path / "other.pt")


def test_last_word_accuracy_counts_a_word_the_model_predicts():
    class Echo(torch.nn.Module):
        """Predicts byte t+1 = the byte of a fixed string at t+1: a model that has memorised one passage."""

        def __init__(self, text: bytes) -> None:
            super().__init__()
            self.arch, self.text = GPTArch(1, 8, 1, vocab_size=256, n_ctx=64), text

        def forward(self, idx, cache=None):
            n = idx.shape[1]
            target = torch.tensor(list(self.text[1:n + 1]))
            return torch.nn.functional.one_hot(target, 256).float()[None], None

    acc, hits = gpt.last_word_accuracy(Echo(b"he saw the cat"), [("he saw the", "cat"), ("he saw the", "dog")])
    assert hits == [True, False] and acc == 0.5
