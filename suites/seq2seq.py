"""Seq2Seq: Sequence to Sequence Learning with Neural Networks (Sutskever, Vinyals, Le; arXiv 1409.3215, 2014).

Model, data, step and metric in one file; the paper's values are the defaults (Sec. 3.4):
- deep LSTMs with 4 layers, 1000 cells a layer, 1000-d word embeddings, an input vocabulary of
  160,000 and an output vocabulary of 80,000 words, a naive softmax; separate encoder and decoder
  LSTMs; the source sentence fed in reverse (Sec. 3.3);
- parameters uniform in [-0.08, 0.08]; SGD without momentum, learning rate 0.7, halved every half
  epoch after 5 epochs, 7.5 epochs; batches of 128; gradient norm clipped at 5.
The paper states 384M parameters, 64M of them recurrent (32M encoder + 32M decoder).

Proxy claim (Sec. 3.3: reversing the source raised test BLEU from 25.9 to 30.6): on the generated
English -> French number-words task, small LSTMs trained on reversed source sentences reach a higher
BLEU than the same LSTMs trained on forward ones, over several seeds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import torch
from torch import nn

from milestones.harness.context import CaseContext
from milestones.harness.measure.flops import count_params
from milestones.harness.records import CaseOutput
from milestones.harness.registry import register_suite
from milestones.harness.suite_api import WEAKER, Metrics, Params, SpeedPlan, claim_text, curve_table
from milestones.suites import _translation as T
from milestones.suites._fidelity import against_paper
from milestones.suites._speed import skip_float16_on_cpu

SUITE = register_suite("seq2seq", title="Sequence to Sequence Learning with Neural Networks", arxiv="1409.3215",
                       year=2014)


# ---------------------------------------------------------------------------------------------- model
class Seq2Seq(nn.Module):
    """Encoder LSTM reads the (reversed) source; its final (h, c) of every layer starts the decoder LSTM."""

    def __init__(self, src_vocab: int, tgt_vocab: int, emb: int, hidden: int, layers: int, dropout: float = 0.0,
                 init_range: float = 0.08) -> None:
        super().__init__()
        self.src_emb = T.embedding(src_vocab, emb)
        self.tgt_emb = T.embedding(tgt_vocab, emb)
        self.encoder = nn.LSTM(emb, hidden, layers, batch_first=True, dropout=dropout)
        self.decoder = nn.LSTM(emb, hidden, layers, batch_first=True, dropout=dropout)
        self.out = nn.Linear(hidden, tgt_vocab)
        if init_range and not any(p.is_meta for p in self.parameters()):
            for p in self.parameters():  # Sec. 3.4: uniform in [-0.08, 0.08]
                nn.init.uniform_(p, -init_range, init_range)

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> dict[str, torch.Tensor]:
        packed = nn.utils.rnn.pack_padded_sequence(self.src_emb(src), src_lens.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, (h, c) = self.encoder(packed)
        return {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}  # batch first, for beam reordering

    def _decode(self, state: dict[str, torch.Tensor], y: torch.Tensor):
        hc = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        out, (h, c) = self.decoder(self.tgt_emb(y), hc)
        return self.out(out), {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}

    def forward(self, src: torch.Tensor, src_lens: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        logits, _ = self._decode(self.encode(src, src_lens), tgt_in)
        return logits

    def step(self, state: dict[str, torch.Tensor], y: torch.Tensor):
        logits, state = self._decode(state, y[:, None])
        return torch.log_softmax(logits[:, 0].float(), -1), state


# --------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class Seq2SeqConfig(Params):
    src_vocab: int = 160_000
    tgt_vocab: int = 80_000
    emb: int = 1000
    hidden: int = 1000
    layers: int = 4
    reverse: bool = True
    src_len: int = 30  # speed runs: WMT'14 En-Fr sentences average ~30 words
    tgt_len: int = 30
    lr: float = 0.7
    clip: float = 5.0
    paper_params: float | None = 384e6
    paper_recurrent_params: float | None = 64e6
    tolerance: float = 0.01  # relative: the paper rounds to whole millions
    data_key: str = "wmt14"
    src_lang: str = "en"
    tgt_lang: str = "fr"
    paper_steps: int = 1000  # paper-scale runs on user data: steps of training (--option steps=N)


@dataclass(frozen=True)
class ReverseProxyConfig(Seq2SeqConfig):
    """Proxy quality (our own settings, not the paper's): small LSTMs, Adam, a fixed update budget."""

    task: T.NumberTask = T.NumberTask(tgt_lang="fr", max_numbers=3, max_digits=3)
    # Equal updates, not equal seconds: on a shared CPU the step rate drifts with other load, and a
    # time budget then hands one direction more updates than the other. max_seconds is only a cap.
    proxy_train: T.TrainSettings = T.TrainSettings(batch_size=32, lr=5e-3, max_steps=800, max_seconds=150.0,
                                                   eval_every=100, clip=5.0)
    target_bleu: float = 30.0  # our proxy target (not the paper's figure); see docs/translation-suites.md


def build(cfg: Seq2SeqConfig, src_vocab: int | None = None, tgt_vocab: int | None = None) -> Seq2Seq:
    return Seq2Seq(src_vocab or cfg.src_vocab, tgt_vocab or cfg.tgt_vocab, cfg.emb, cfg.hidden, cfg.layers)


# Batch 128; deviation: batch 4 on a CPU, where a step of the 384M model at batch 128 takes minutes.
PAPER = Seq2SeqConfig(batch_size=128, cpu_batch_size=4)
SMOKE = replace(PAPER, src_vocab=500, tgt_vocab=400, emb=32, hidden=32, layers=2, batch_size=8, cpu_batch_size=8,
                src_len=8, tgt_len=8, paper_params=None, paper_recurrent_params=None)
PROXY = ReverseProxyConfig(emb=64, hidden=128, layers=2, paper_params=None, paper_recurrent_params=None, batch_size=32,
                           cpu_batch_size=32, n_seeds=2)  # the proxy's training batch (--batch-size overrides it)
_ALL = ("smoke", "proxy", "paper")
SUITE.config("seq2seq-lstm", PAPER, scales=_ALL, kinds=("fidelity",),
             description="4x1000 LSTMs, 1000-d embeddings, 160k/80k vocabularies (Sec. 3.4)")
SUITE.config("seq2seq-paper", PAPER, scales=("paper",), kinds=("speed", "quality"),
             description="the paper's LSTM: train step and decoding; quality on user WMT'14 text (--data wmt14=DIR)")
SUITE.config("seq2seq-smoke", SMOKE, scales=("smoke",), kinds=("speed", "fidelity"),
             description="2x32 LSTMs, 500/400 vocabularies (deviation: tiny for CI)")
SUITE.config("seq2seq-reverse", PROXY, scales=("proxy",), kinds=("quality",),
             description="reversed vs forward source on generated En->Fr number words, 2x128 LSTMs, Adam")


# ------------------------------------------------------------------------------------------ fidelity
@SUITE.kind("fidelity",
            metrics=("params", "recurrent_params", "encoder_recurrent_params", "decoder_recurrent_params", "*_rel_error", "*_within_tolerance",))
def fidelity(cfg: Seq2SeqConfig, ctx: CaseContext) -> CaseOutput:
    with torch.device("meta"):
        model = build(cfg)
    params = count_params(model)
    enc, dec = count_params(model.encoder), count_params(model.decoder)
    m = Metrics()
    m.single("params", "count", params)
    m.single("recurrent_params", "count", enc + dec)
    m.single("encoder_recurrent_params", "count", enc)
    m.single("decoder_recurrent_params", "count", dec)
    info: dict = {"tolerance": cfg.tolerance}
    for name, value, paper in (("params", params, cfg.paper_params),
                               ("recurrent_params", enc + dec, cfg.paper_recurrent_params)):
        against_paper(m, info, name, value, paper, cfg.tolerance)
    return CaseOutput(metrics=m, info=info)


# --------------------------------------------------------------------------------------------- speed
@SUITE.kind("speed", metrics=("train.*", "infer.*",))
def speed(cfg: Seq2SeqConfig, ctx: CaseContext) -> SpeedPlan:
    skip_float16_on_cpu(ctx)
    model = build(cfg).to(ctx.torch_device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)  # Sec. 3.4: plain SGD, no momentum
    return T.translation_speed(
        ctx, model, src_vocab=cfg.src_vocab, tgt_vocab=cfg.tgt_vocab, src_len=cfg.src_len, tgt_len=cfg.tgt_len,
        optimizer=opt, rnns=((model.encoder, "src"), (model.decoder, "tgt")))


# ------------------------------------------------------------------------------------------- quality
SEC33 = claim_text(
    "seq2seq", "reversal_helps",
    "[...] we discovered that the LSTM learns much better when the source sentences are reversed (the target "
    "sentences are not reversed). By doing so, the LSTM's test perplexity dropped from 5.8 to 4.7, and the test "
    "BLEU scores of its decoded translations increased from 25.9 to 30.6.",
    "Sutskever et al. 2014, Sec. 3.3",
    "per seed: after {steps} updates each, the model trained on reversed sources scores a higher test BLEU "
    "(sacrebleu, greedy decoding) than the one trained on forward sources",
    strength=WEAKER, tests="only that test BLEU rises, not the perplexity drop or the size of the gain")


def reversal_decision(bleu_forward: list[float], bleu_reversed: list[float]) -> list[float]:
    """Per seed: held when the model trained on reversed sources scores a higher test BLEU."""
    return [float(b > a) for a, b in zip(bleu_forward, bleu_reversed, strict=True)]


@SUITE.kind("quality", params=ReverseProxyConfig,
            metrics=("bleu.forward", "bleu.reversed", "bleu.gain_from_reversal", "steps_to_target.*", "seconds_to_target.*", "claim_held",))
def reverse_proxy(cfg: ReverseProxyConfig, ctx: CaseContext) -> CaseOutput:
    seeds = ctx.quality_seeds(cfg.n_seeds)
    splits = T.make_splits(cfg.task)
    sv = T.Vocab.build([p.src for p in splits["train"]])
    tv = T.Vocab.build([p.tgt for p in splits["train"]])
    data = {k: T.encode_pairs(v, sv, tv) for k, v in splits.items()}
    settings = replace(cfg.proxy_train, batch_size=ctx.batch_size,
                       max_seconds=T.option_float(ctx, "budget", cfg.proxy_train.max_seconds))
    results: dict[str, dict[str, list]] = {}
    curves: dict = {}
    t_start = time.perf_counter()
    for reverse in (False, True):
        name = "reversed" if reverse else "forward"
        r = results[name] = {"bleu": [], "steps_to_target": [], "seconds_to_target": [], "train_seconds": [], "steps": []}
        for seed in seeds:
            torch.manual_seed(seed)
            model = build(cfg, len(sv), len(tv))
            tr = T.train_model(model, data["train"], data["valid"], tv, settings, seed=seed, reverse=reverse,
                               target_bleu=cfg.target_bleu, check=ctx.check_finite, progress=ctx.progress)
            hyps = T.translate(model, data["test"], tv, reverse=reverse)
            r["bleu"].append(T.bleu(hyps, data["test"].refs))
            ctx.seed_done(seed, {f"bleu.{name}": r["bleu"][-1]})
            r["steps_to_target"].append(tr.steps_to_target)
            r["seconds_to_target"].append(tr.seconds_to_target)
            r["train_seconds"].append(tr.seconds)
            r["steps"].append(tr.steps)
            curves[f"{name}.seed{seed}"] = curve_table(name, seed, tr.curve)
    m = Metrics()
    for name, r in results.items():
        m.add(f"bleu.{name}", "BLEU", r["bleu"])
        for key, unit in (("steps_to_target", "steps"), ("seconds_to_target", "s")):
            vals = [v for v in r[key] if v is not None]
            mn = f"{key}.{name}"
            if vals:
                note = None if len(vals) == len(seeds) else f"{len(seeds) - len(vals)} seed(s) never reached the target"
                m.add(mn, unit, vals, note=note)
            else:
                m.missing(mn, unit, f"valid BLEU never reached {cfg.target_bleu} in the budget")
    gains = [b - a for a, b in zip(results["forward"]["bleu"], results["reversed"]["bleu"], strict=True)]
    m.add("bleu.gain_from_reversal", "BLEU", gains)
    held = reversal_decision(results["forward"]["bleu"], results["reversed"]["bleu"])
    rule = SEC33.rule.format(steps=settings.max_steps)
    m.add("claim_held", "bool", held, note=rule)
    info = {"seeds": list(seeds), "claim": "reversing the source sentence improves BLEU (Sec. 3.3: 25.9 -> 30.6)",
            "claims": [SEC33.make(held, seeds, ctx.case.scale, steps=settings.max_steps)],
            "mean_gain_from_reversal": statistics.fmean(gains),
            "task": f"{cfg.task.src_lang}->{cfg.task.tgt_lang} number words", "target_bleu": cfg.target_bleu,
            "target_note": "our own proxy target, not a paper figure", "bleu": "sacrebleu corpus BLEU, test split",
            "vocab": {"src": len(sv), "tgt": len(tv)}, "wall_seconds": time.perf_counter() - t_start,
            "budget": f"{settings.max_steps} steps per model (capped at {settings.max_seconds} s of training)",
            "steps_trained": {k: v["steps"] for k, v in results.items()},
            "train_settings": settings.__dict__, "optimizer_deviation": "Adam instead of SGD lr 0.7: "
            "the paper's schedule needs epochs over 12M sentences; Adam reaches a stable BLEU in a CPU minute"}
    return CaseOutput(metrics=m, info=info, artifacts={"curves": curves})


@SUITE.kind("quality", params=Seq2SeqConfig, metrics=("bleu",))
def paper_quality(cfg: Seq2SeqConfig, ctx: CaseContext) -> CaseOutput:
    return T.paper_quality(ctx, cfg, key=cfg.data_key, src_lang=cfg.src_lang, tgt_lang=cfg.tgt_lang,
                           build=lambda vs, vt: build(cfg, vs, vt), shared_vocab=False,
                           vocab=(cfg.src_vocab, cfg.tgt_vocab), reverse=cfg.reverse,
                           settings=T.TrainSettings(batch_size=ctx.batch_size, lr=cfg.lr, clip=cfg.clip,
                                                    max_steps=int(ctx.options.get("steps", cfg.paper_steps)),
                                                    max_seconds=float("inf"), eval_every=10**9, optimizer="sgd"),
                           beam=12, paper_note="constant lr 0.7 (the paper halves it every half epoch after epoch 5); "
                                               "BPE instead of the paper's 160k/80k word vocabularies")
