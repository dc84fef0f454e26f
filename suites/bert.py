"""BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding
(Devlin, Chang, Lee, Toutanova; arXiv 1810.04805, 2018).

Model, data, step and metric in one file; the paper's hyperparameters are the defaults and every
deviation is commented where it is made.

- BERT-base (L=12, H=768, A=12, 110M) and BERT-large (L=24, H=1024, A=16, 340M): 30522 WordPiece
  vocabulary, 512 learned positions, 2 token types, GELU, post-LN (LayerNorm after each residual add,
  as in the original Transformer), a masked-LM head whose output matrix is the word-embedding matrix
  (tied), a next-sentence head on the tanh pooler of [CLS], and a classification head for fine-tuning.
- Attention is `F.scaled_dot_product_attention` (fused kernels on a GPU, the math path on a CPU).
- Real pretrained weights: all-MiniLM-L6-v2 (a 6-layer, H=384 BERT) read by suites/_text.py with plain
  torch; its embeddings equal sentence-transformers' to 1e-5 (tests/test_text.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.errors import UsageError
from milestones.harness.measure.flops import count_flops, count_params
from milestones.harness.records import CaseOutput
from milestones.harness.registry import register_suite
from milestones.harness.suite_api import WEAKER, Metrics, Params, SpeedPlan, Step, claim_text, curve
from milestones.suites._fidelity import against_paper
from milestones.suites._speed import skip_float16_on_cpu

SUITE = register_suite("bert", title="BERT: Pre-training of Deep Bidirectional Transformers for Language "
                                     "Understanding", arxiv="1810.04805", year=2018)


# ---------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class BertArch:
    layers: int = 12
    hidden: int = 768
    heads: int = 12
    ffn: int = 3072  # 4H (Sec. 3: "feed-forward/filter size to be 4H")
    vocab_size: int = 30522  # WordPiece, 30,000-token vocabulary (Sec. 3) as released
    max_positions: int = 512
    type_vocab: int = 2
    dropout: float = 0.1  # App. A.2: dropout 0.1 on all layers
    ln_eps: float = 1e-12  # the released checkpoints' LayerNorm epsilon


class Embeddings(nn.Module):
    def __init__(self, a: BertArch) -> None:
        super().__init__()
        self.word = nn.Embedding(a.vocab_size, a.hidden)
        self.position = nn.Embedding(a.max_positions, a.hidden)
        self.token_type = nn.Embedding(a.type_vocab, a.hidden)
        self.norm = nn.LayerNorm(a.hidden, eps=a.ln_eps)
        self.drop = nn.Dropout(a.dropout)

    def forward(self, ids: torch.Tensor, token_type: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.drop(self.norm(self.word(ids) + self.position(pos)[None] + self.token_type(token_type)))


class SelfAttention(nn.Module):
    def __init__(self, a: BertArch) -> None:
        super().__init__()
        self.heads, self.p = a.heads, a.dropout
        self.q, self.k, self.v = (nn.Linear(a.hidden, a.hidden) for _ in range(3))
        self.out = nn.Linear(a.hidden, a.hidden)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        B, T, H = x.shape
        q, k, v = (f(x).view(B, T, self.heads, H // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        # keep: (B, 1, 1, T) booleans, True where the key is a real token (padding is never attended to)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.p if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, H))


class Layer(nn.Module):
    """Post-LN Transformer encoder layer: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, a: BertArch) -> None:
        super().__init__()
        self.attn = SelfAttention(a)
        self.attn_norm = nn.LayerNorm(a.hidden, eps=a.ln_eps)
        self.ffn_in, self.ffn_out = nn.Linear(a.hidden, a.ffn), nn.Linear(a.ffn, a.hidden)
        self.ffn_norm = nn.LayerNorm(a.hidden, eps=a.ln_eps)
        self.drop = nn.Dropout(a.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        x = self.attn_norm(x + self.drop(self.attn(x, keep)))
        # exact (erf) GELU, as BERT's reference code and the released checkpoints
        return self.ffn_norm(x + self.drop(self.ffn_out(F.gelu(self.ffn_in(x)))))


class MaskedLMHead(nn.Module):
    """dense + GELU + LayerNorm, then the tied word-embedding matrix and a per-token output bias."""

    def __init__(self, a: BertArch) -> None:
        super().__init__()
        self.dense = nn.Linear(a.hidden, a.hidden)
        self.norm = nn.LayerNorm(a.hidden, eps=a.ln_eps)
        self.bias = nn.Parameter(torch.zeros(a.vocab_size))

    def forward(self, h: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(F.gelu(self.dense(h))), word_embeddings, self.bias)


class Bert(nn.Module):
    def __init__(self, a: BertArch, *, pretraining_heads: bool = True, num_labels: int = 0,
                 pooling: str = "cls") -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', not {pooling!r}")
        self.arch, self.pooling = a, pooling
        self.embed = Embeddings(a)
        self.layers = nn.ModuleList(Layer(a) for _ in range(a.layers))
        self.pooler = nn.Linear(a.hidden, a.hidden)  # tanh(W h_[CLS] + b): the NSP / classification input
        self.mlm = MaskedLMHead(a) if pretraining_heads else None
        self.nsp = nn.Linear(a.hidden, 2) if pretraining_heads else None
        self.classifier = nn.Linear(a.hidden, num_labels) if num_labels else None
        self.drop = nn.Dropout(a.dropout)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        # truncated-normal(0.02) in the reference code; a plain normal(0.02) is what the checkpoints' configs name
        if isinstance(m, (nn.Linear, nn.Embedding)):
            if m.weight.device.type != "meta":
                nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)

    def encode(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        keep = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        x = self.embed(input_ids, token_type_ids)
        for layer in self.layers:
            x = layer(x, keep)
        return x

    def pooled(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.pooling == "mean":  # sentence-transformers' pooling (how MiniLM was tuned), no pooler
            from milestones.suites._text import mean_pool

            mask = attention_mask if attention_mask is not None else torch.ones(hidden.shape[:2], device=hidden.device)
            return mean_pool(hidden, mask, normalize=False)
        return torch.tanh(self.pooler(hidden[:, 0]))

    def classify(self, input_ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        if self.classifier is None:
            raise ValueError("model built without a classification head (num_labels=0)")
        h = self.encode(input_ids, token_type_ids, attention_mask)
        return self.classifier(self.drop(self.pooled(h, attention_mask)))

    def pretraining_logits(self, input_ids, token_type_ids=None, attention_mask=None):
        """(masked-LM logits over the vocabulary, next-sentence logits)."""
        h = self.encode(input_ids, token_type_ids, attention_mask)
        return self.mlm(h, self.embed.word.weight), self.nsp(torch.tanh(self.pooler(h[:, 0])))


# --------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class BertConfig(Params):
    arch: BertArch = BertArch()
    seq_len: int = 128  # App. A.2: 90% of pre-training steps at sequence length 128
    infer_batches: tuple[int, ...] = (1, 32)
    train: bool = True  # False: inference latency only (the real base model on a CPU)
    lr: float = 1e-4  # App. A.2: Adam, lr 1e-4, beta1 0.9, beta2 0.999, weight decay 0.01
    weight_decay: float = 0.01
    mask_prob: float = 0.15  # Sec. 3.1: 15% of WordPiece tokens are masked
    paper_params: float | None = None
    tolerance: float = 0.05  # relative: the paper rounds to 110M / 340M


BASE, LARGE = BertArch(), BertArch(layers=24, hidden=1024, heads=16, ffn=4096)
TINY = BertArch(layers=2, hidden=64, heads=4, ffn=256, max_positions=64)  # smoke only

_ALL = ("smoke", "proxy", "paper")
# App. A.2: 256 sequences per pre-training batch; deviation: 8 on a CPU, where a step at 256 x 128 takes minutes.
_CPU = dict(cpu_batch_size=8)
_BATCH = dict(batch_size=256, **_CPU)
SUITE.config("bert-base", BertConfig(BASE, paper_params=110e6, **_BATCH), scales=_ALL, kinds=("fidelity",),
             description="BERT-base: L=12, H=768, A=12 with masked-LM and NSP heads (Sec. 3)")
SUITE.config("bert-large", BertConfig(LARGE, paper_params=340e6, **_BATCH), scales=_ALL, kinds=("fidelity",),
             description="BERT-large: L=24, H=1024, A=16 with masked-LM and NSP heads (Sec. 3)")
SUITE.config("bert-base-paper", BertConfig(BASE, batch_size=32, **_CPU), scales=("paper",), kinds=("speed",),
             description="BERT-base pre-training step at 32 x 128 (the fine-tuning batch), inference b1/b32")
SUITE.config("bert-large-paper", BertConfig(LARGE, batch_size=32, **_CPU), scales=("paper",), kinds=("speed",),
             description="BERT-large pre-training step at 32 x 128, inference b1/b32")
# The real base model on a CPU: inference at batch 1, sequence 128 (~0.3 s a call on 2 cores); batch 32
# takes ~10 s a call there, so it runs in the GPU config above.
SUITE.config("bert-base-cpu", BertConfig(BASE, train=False, infer_batches=(1,), **_BATCH), scales=("proxy",),
             kinds=("speed",), description="BERT-base inference, batch 1 x 128 tokens (CPU-sized)")
SUITE.config("bert-smoke", BertConfig(TINY, seq_len=32, batch_size=8, cpu_batch_size=4, infer_batches=(1, 32)),
             scales=("smoke",), kinds=("speed",),
             description="2-layer H=64 BERT, pre-training step 4 x 32 and inference b1/b32 x 32 (deviation: tiny)")


# ------------------------------------------------------------------------------------------ fidelity
def architecture_figures(a: BertArch, seq_len: int = 128) -> dict[str, int]:
    """Parameters (with and without the pre-training heads) and forward FLOPs per sequence, on meta.

    FLOPs: the layers are identical, so a 0-layer and a 1-layer model are counted and the difference
    scaled by L (exact; meta-device dispatch costs milliseconds per operator, so a 24-layer graph is slow).
    """
    def flops(layers: int) -> tuple[int, int]:
        with torch.device("meta"):
            full, enc = Bert(replace(a, layers=layers)), Bert(replace(a, layers=layers), pretraining_heads=False)
            ids = torch.zeros(1, seq_len, dtype=torch.long)
        return count_flops(lambda: full.pretraining_logits(ids))[0], count_flops(lambda: enc.encode(ids))[0]

    (f0, e0), (f1, e1) = flops(0), flops(1)
    with torch.device("meta"):
        params, enc_params = count_params(Bert(a)), count_params(Bert(a, pretraining_heads=False))
    return {"params": params, "encoder_params": enc_params - a.hidden * a.hidden - a.hidden,
            "forward_flops": f0 + a.layers * (f1 - f0), "encoder_flops": e0 + a.layers * (e1 - e0)}


@SUITE.kind("fidelity",
            metrics=("params", "encoder_params", "forward_flops", "encoder_flops_per_token", "params_rel_error", "params_within_tolerance",))
def fidelity(cfg: BertConfig, ctx: CaseContext) -> CaseOutput:
    f = architecture_figures(cfg.arch, cfg.seq_len)
    m = Metrics()
    m.single("params", "count", f["params"], note="embeddings, encoder, pooler, masked-LM and NSP heads (decoder tied)")
    m.single("encoder_params", "count", f["encoder_params"], note="embeddings and encoder layers only")
    m.single("forward_flops", "FLOP/sequence", f["forward_flops"],
             note=f"FlopCounterMode, {cfg.seq_len} tokens, with the MLM head")
    m.single("encoder_flops_per_token", "FLOP/token", f["encoder_flops"] / cfg.seq_len, higher_is_better=False)
    info = {"seq_len": cfg.seq_len, "tolerance": cfg.tolerance}
    against_paper(m, info, "params", f["params"], cfg.paper_params, cfg.tolerance)
    return CaseOutput(metrics=m, info=info)


# --------------------------------------------------------------------------------------------- speed
def synthetic_pretraining_batch(a: BertArch, batch: int, seq_len: int, mask_prob: float, device):
    """Random token ids (speed does not depend on them), 15% of positions as masked-LM targets."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, a.vocab_size, (batch, seq_len), generator=g)
    tt = torch.cat([torch.zeros(batch, seq_len // 2, dtype=torch.long),
                    torch.ones(batch, seq_len - seq_len // 2, dtype=torch.long)], 1)
    labels = torch.where(torch.rand(batch, seq_len, generator=g) < mask_prob, ids, torch.full_like(ids, -100))
    nsp = torch.randint(0, 2, (batch,), generator=g)
    return [t.to(device) for t in (ids, tt, labels, nsp)]


@SUITE.kind("speed", metrics=("train.*", "infer.*",))
def speed(cfg: BertConfig, ctx: CaseContext) -> SpeedPlan:
    skip_float16_on_cpu(ctx)
    a = cfg.arch
    model = Bert(a).to(ctx.torch_device, ctx.torch_dtype)
    steps: list[Step] = []
    if cfg.train:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        ids, tt, labels, nsp = synthetic_pretraining_batch(a, ctx.batch_size, cfg.seq_len, cfg.mask_prob,
                                                           ctx.torch_device)

        # Measured after this function returns: bind this batch (the loop below rebinds ids and tt).
        def train_step(ids=ids, tt=tt, labels=labels, nsp=nsp) -> None:
            opt.zero_grad(set_to_none=True)
            mlm, ns = model.pretraining_logits(ids, tt)
            loss = F.cross_entropy(mlm.flatten(0, 1).float(), labels.flatten()) + F.cross_entropy(ns.float(), nsp)
            loss.backward()
            opt.step()

        steps.append(Step("train", train_step, ctx.batch_size * cfg.seq_len, "tokens", setup=model.train))
    for b in cfg.infer_batches:
        ids, tt, _, _ = synthetic_pretraining_batch(a, b, cfg.seq_len, cfg.mask_prob, ctx.torch_device)

        @torch.no_grad()
        def infer_step(ids=ids, tt=tt) -> None:
            model.encode(ids, tt)

        steps.append(Step(f"infer_b{b}", infer_step, b, "sequences", setup=model.eval))
    return SpeedPlan(steps=steps, model=model,
                     info={"seq_len": cfg.seq_len, "infer_batches": list(cfg.infer_batches),
                           "train_batch": ctx.batch_size if cfg.train else None})


# ------------------------------------------------------------------------------------ fine-tuning
@dataclass
class FinetuneResult:
    eval_scores: list[float]  # after each epoch
    eval_steps: list[int]
    eval_seconds: list[float]
    train_steps: list[int]
    train_loss: list[float]
    predictions: list[float]


def finetune(model: Bert, tok, train: tuple, evals: tuple, *, epochs: int, lr: float, batch_size: int,
             max_len: int, seed: int, regression: bool = False, warmup: float = 0.1, device="cpu",
             ctx: CaseContext | None = None, score=None, eval_every_epoch: bool = True) -> FinetuneResult:
    """Fine-tune all weights with AdamW (linear warm-up over 10% of steps, then linear decay, as BERT's
    run_classifier), evaluating after every epoch. `train`/`evals` are (texts_a, texts_b|None, labels);
    `score(labels, predictions)` gives the evaluation figure (default: accuracy)."""
    ta, tb, ty = train
    ea, eb, ey = evals
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(ta) / batch_size)
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / max(1, warmup * total), max(0.0, (total - s) / max(1, total * (1 - warmup)))))
    enc_train = tok.batch(ta, tb, max_length=max_len)
    enc_eval = tok.batch(ea, eb, max_length=max_len)
    y = torch.tensor(ty, dtype=torch.float32 if regression else torch.long)
    if score is None:
        def score(t, p):
            return float(sum(int(a == b) for a, b in zip(t, p, strict=True)) / len(t))
    res = FinetuneResult([], [], [], [], [], [])
    g = torch.Generator().manual_seed(seed)
    t0, step = time.perf_counter(), 0
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(ta), generator=g)
        for i in range(0, len(ta), batch_size):
            idx = perm[i:i + batch_size]
            batch = _trim_batch({k: v[idx] for k, v in enc_train.items()})
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model.classify(**batch)
            loss = F.mse_loss(out.squeeze(-1).float(), y[idx].to(device)) if regression else \
                F.cross_entropy(out.float(), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            lv = float(loss.detach())
            if ctx is not None:
                ctx.check_finite(step, lv)
            res.train_steps.append(step)
            res.train_loss.append(lv)
        if not eval_every_epoch and epoch < epochs - 1:
            continue
        preds = predict(model, enc_eval, batch_size=64, regression=regression, device=device)
        res.eval_scores.append(score(ey, preds))
        if ctx is not None:
            ctx.progress(f"seed {seed} epoch {epoch + 1}", step=step, eval_score=res.eval_scores[-1])
        res.eval_steps.append(step)
        res.eval_seconds.append(time.perf_counter() - t0)
        res.predictions = preds
    return res


def _trim_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cut the padding columns that no sequence of this batch uses (the batch was padded to the longest
    sequence of the whole split)."""
    width = int(batch["attention_mask"].sum(1).max())
    return {k: v[:, :width] for k, v in batch.items()}


@torch.no_grad()
def predict(model: Bert, enc: dict[str, torch.Tensor], batch_size: int, regression: bool, device="cpu") -> list:
    model.eval()
    out = []
    for i in range(0, enc["input_ids"].shape[0], batch_size):
        b = _trim_batch({k: v[i:i + batch_size] for k, v in enc.items()})
        logits = model.classify(**{k: v.to(device) for k, v in b.items()}).float()
        out += logits.squeeze(-1).tolist() if regression else logits.argmax(-1).tolist()
    return out


def load_pretrained(path_dir, *, num_labels: int, pooling: str = "cls", dropout: float | None = None):
    """(model, tokenizer, load report) from a folder with config.json, vocab.txt and model.safetensors."""
    from pathlib import Path

    from milestones.suites._text import WordPieceTokenizer, load_bert_state, read_bert_config

    d = Path(path_dir)
    if not d.is_dir():
        raise UsageError(f"BERT checkpoint folder not found: {d}")
    arch = BertArch(**read_bert_config(d / "config.json"))
    if dropout is not None:
        arch = replace(arch, dropout=dropout)
    model = Bert(arch, pretraining_heads=False, num_labels=num_labels, pooling=pooling)
    report = load_bert_state(model, d / "model.safetensors")
    return model, WordPieceTokenizer.from_file(d / "vocab.txt"), report


# ------------------------------------------------------------------------------------------ quality
@dataclass(frozen=True)
class TopicConfig(Params):
    """Proxy claim (Sec. 5 / Table 1's point): fine-tuning a pre-trained BERT beats training the same
    network from scratch on a small labelled set.

    Task: which group of Python standard-library modules (internet, files, concurrency, numbers) a
    docstring sentence comes from (suites/_text.DOCSTRING_GROUPS). The sentences are real English written
    by people, the labels are their sources, and the test sentences are held out (class-balanced random
    split per seed, sentences deduplicated across groups). The weights are all-MiniLM-L6-v2 (a 6-layer,
    H=384 BERT distilled from a BERT and tuned for sentence similarity), the only BERT-family weights that
    ship offline; the claim is about pre-training, not about BERT-base itself.
    """

    n_train_per_class: int = 16  # a small labelled set, where pre-training matters most
    n_test_per_class: int = 40
    max_len: int = 32  # docstring sentences are <= 200 characters; longer ones are cut (CPU time)
    epochs: int = 4  # the paper's grid is {2, 3, 4}, over >= 2.5k examples; we take its top for 64
    lr: float = 1e-4  # deviation: above the paper's grid top (5e-5), as there are only 32 steps
    # The randomly initialised model gets the best of this grid on the test split: an advantage to the
    # baseline, so the claim is only stronger when it holds.
    scratch_lrs: tuple[float, ...] = (1e-4, 1e-3)
    lr_choice_frac: float = 0.2  # of the training sentences, held out to choose the scratch lr on
    pooling: str = "mean"  # deviation: MiniLM was tuned with mean pooling; BERT's [CLS] pooler is untrained
    target_accuracy: float = 0.6  # our own proxy target for time-to-quality (chance 0.25), never the paper's


@dataclass(frozen=True)
class GlueConfig(Params):
    """Paper scale: fine-tune a user-supplied BERT checkpoint on a GLUE task, score its dev set."""

    task: str
    epochs: int = 3  # Sec. 4.1: batch 32, 3 epochs, lr best of {5e-5, 4e-5, 3e-5, 2e-5} on dev
    lr: float = 2e-5
    max_len: int = 128
    max_train: int | None = None  # None: the whole training file


# Deviation: batch 8 (the paper's grid is {16, 32}); 8 gives more steps on 64 examples.
SUITE.config("bert-minilm-topics", TopicConfig(batch_size=8, n_seeds=3), scales=("proxy",), kinds=("quality",),
             description="pre-trained MiniLM vs random init fine-tuned on stdlib docstring topics (4 classes)")
for _size in ("base", "large"):
    for _t in ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte"):
        SUITE.config(f"bert-{_size}-glue-{_t}", GlueConfig(task=_t, batch_size=32, cpu_batch_size=32), scales=("paper",), kinds=("quality",),
                     description=f"GLUE {_t} dev: fine-tune a BERT-{_size} checkpoint (--data bert=DIR) on "
                                 f"--data glue=DIR (Table 1 protocol)")


ABSTRACT = claim_text(
    "bert", "pretraining_helps",
    "As a result, the pre-trained BERT model can be fine-tuned with just one additional output layer to "
    "create state-of-the-art models for a wide range of tasks, such as question answering and language "
    "inference, without substantial task-specific architecture modifications.",
    "Devlin et al. 2018, Abstract (fine-tuning: Sec. 4, Table 1)",
    "per seed: after {epochs} epochs on {n} labelled sentences, the fine-tuned pre-trained model's test "
    "accuracy is higher than the same network's trained from scratch (its learning rate, of {lrs}, picked on "
    "{n_val} training sentences held out for validation, then retrained on all {n}; the test split is used "
    "once, for the final accuracy)",
    strength=WEAKER, tests="only that one output layer on the pre-trained model beats training from scratch, "
    "on one small topic task, not state of the art")


def split_for_lr_choice(n: int, frac: float, seed: int) -> tuple[list[int], list[int]]:
    """(fit, validation) indices of a training set of `n`: a seeded `frac` held out to choose a learning
    rate on, so the test split never picks one (at least one item each side when n >= 2)."""
    g = torch.Generator().manual_seed(seed + 7_877)
    perm = torch.randperm(n, generator=g).tolist()
    k = min(max(1, round(n * frac)), n - 1) if n >= 2 else 0
    return perm[k:], perm[:k]


def pretraining_decision(acc_pretrained: list[float], acc_scratch: list[float]) -> list[float]:
    """Per seed: held when the fine-tuned pre-trained model's test accuracy beats the best from-scratch one."""
    return [float(p > q) for p, q in zip(acc_pretrained, acc_scratch, strict=True)]


def _curve(name: str, seed: int, r: FinetuneResult) -> dict[str, dict]:
    """The training loss per step and the evaluation score per evaluation (two x axes)."""
    return {f"{name}.seed{seed}": curve(name, seed, r.eval_steps, accuracy=r.eval_scores),
            f"{name}.seed{seed}.loss": curve(name, seed, r.train_steps, loss=r.train_loss)}


@SUITE.kind("quality", params=TopicConfig)
def topic_quality(cfg: TopicConfig, ctx: CaseContext) -> CaseOutput:
    from milestones.suites._text import DOCSTRING_GROUPS, minilm_dir, topic_split

    try:
        mdir = minilm_dir()
    except FileNotFoundError as e:
        raise SkipCase(str(e)) from None
    seeds = ctx.quality_seeds(cfg.n_seeds)
    groups = tuple(DOCSTRING_GROUPS)
    curves: dict[str, dict] = {}
    acc_pre, acc_scratch, scratch_lr, steps_to, secs_to = [], [], [], [], []
    for s in seeds:
        tr_x, tr_y, te_x, te_y = topic_split(cfg.n_train_per_class, cfg.n_test_per_class, seed=s, groups=groups)
        torch.manual_seed(s)
        model, tok, _ = load_pretrained(mdir, num_labels=len(groups), pooling=cfg.pooling)
        r = finetune(model, tok, (tr_x, None, tr_y), (te_x, None, te_y), epochs=cfg.epochs, lr=cfg.lr,
                     batch_size=ctx.batch_size, max_len=cfg.max_len, seed=s, ctx=ctx)
        acc_pre.append(r.eval_scores[-1])
        curves.update(_curve("pretrained", s, r))
        hit = next((i for i, a in enumerate(r.eval_scores) if a >= cfg.target_accuracy), None)
        steps_to.append(None if hit is None else r.eval_steps[hit])
        secs_to.append(None if hit is None else r.eval_seconds[hit])
        fit, val = split_for_lr_choice(len(tr_x), cfg.lr_choice_frac, s)
        fit_data = ([tr_x[i] for i in fit], None, [tr_y[i] for i in fit])
        val_data = ([tr_x[i] for i in val], None, [tr_y[i] for i in val])
        best = None
        for lr in cfg.scratch_lrs:
            torch.manual_seed(s)
            scratch = Bert(model.arch, pretraining_heads=False, num_labels=len(groups), pooling=cfg.pooling)
            rv = finetune(scratch, tok, fit_data, val_data, epochs=cfg.epochs, lr=lr, batch_size=ctx.batch_size,
                          max_len=cfg.max_len, seed=s, ctx=ctx, eval_every_epoch=False)
            if best is None or rv.eval_scores[-1] > best[0]:
                best = (rv.eval_scores[-1], lr)
        torch.manual_seed(s)
        scratch = Bert(model.arch, pretraining_heads=False, num_labels=len(groups), pooling=cfg.pooling)
        rs = finetune(scratch, tok, (tr_x, None, tr_y), (te_x, None, te_y), epochs=cfg.epochs, lr=best[1],
                      batch_size=ctx.batch_size, max_len=cfg.max_len, seed=s, ctx=ctx, eval_every_epoch=False)
        curves.update(_curve(f"scratch.lr{best[1]:g}", s, rs))
        best = (rs.eval_scores[-1], best[1])
        acc_scratch.append(best[0])
        scratch_lr.append(best[1])
        ctx.seed_done(s, {"pretrained.test_accuracy": acc_pre[-1], "scratch.test_accuracy": acc_scratch[-1]})
    held = pretraining_decision(acc_pre, acc_scratch)
    chance = 1 / len(groups)
    n_train = cfg.n_train_per_class * len(groups)
    fields = dict(epochs=cfg.epochs, n=n_train, lrs=list(cfg.scratch_lrs),
                  n_val=len(split_for_lr_choice(n_train, cfg.lr_choice_frac, 0)[1]))
    rule = ABSTRACT.rule.format(**fields)
    m = Metrics()
    m.add("pretrained.test_accuracy", "fraction", acc_pre)
    m.add("scratch.test_accuracy", "fraction", acc_scratch, note="the scratch lr chosen on held-out training sentences, never on the test split")
    m.add("accuracy_gain", "fraction", [p - q for p, q in zip(acc_pre, acc_scratch, strict=True)])
    m.add("claim_held", "bool", held, note=rule)
    _maybe(m, "steps_to_target", "steps", steps_to, cfg.target_accuracy)
    _maybe(m, "seconds_to_target", "s", secs_to, cfg.target_accuracy)
    info = {"claims": [ABSTRACT.make(held, seeds, ctx.case.scale, **fields)], "seeds": list(seeds), "groups": list(groups), "chance_accuracy": chance, "scratch_lr": scratch_lr,
            "weights": str(mdir), "n_train": cfg.n_train_per_class * len(groups),
            "n_test": cfg.n_test_per_class * len(groups), "target_accuracy": cfg.target_accuracy}
    return CaseOutput(metrics=m, info=info, artifacts={"curves": curves})


def _maybe(m: Metrics, name: str, unit: str, values: list, target: float) -> None:
    got = [v for v in values if v is not None]
    if not got:
        m.missing(name, unit, f"no seed reached the target accuracy {target}")
        return
    m.add(name, unit, got, note=None if len(got) == len(values) else f"{len(values) - len(got)} seed(s) never reached {target}")


@SUITE.kind("quality", params=GlueConfig, metrics=("dev.*",))
def glue_quality(cfg: GlueConfig, ctx: CaseContext) -> CaseOutput:
    from milestones.suites._text import glue_metrics, glue_task, glue_task_dir, read_glue_tsv

    missing = [k for k in ("glue", "bert") if k not in ctx.data]
    if missing:
        raise SkipCase(f"needs user data: --data glue=DIR (the GLUE download) and --data bert=DIR "
                       f"(config.json, vocab.txt, model.safetensors); missing {missing}")
    task = glue_task(cfg.task)
    tdir = glue_task_dir(ctx.data["glue"], task)
    train = read_glue_tsv(tdir / "train.tsv", task)
    n = len(train.labels) if cfg.max_train is None else min(cfg.max_train, len(train.labels))
    regression = task.labels is None
    seeds = ctx.quality_seeds(cfg.n_seeds)
    m = Metrics()
    curves: dict[str, dict] = {}
    per_file: dict[str, list[dict]] = {}
    devs = {f: read_glue_tsv(tdir / f, task) for f in task.dev_files}
    first = devs[task.dev_files[0]]

    def score(t, p):
        return glue_metrics(task, t, p)[task.metric] / 100

    for s in seeds:
        torch.manual_seed(s)
        model, tok, report = load_pretrained(ctx.data["bert"], num_labels=1 if regression else len(task.labels))
        model.to(ctx.torch_device)
        r = finetune(model, tok, (train.text_a[:n], None if train.text_b is None else train.text_b[:n],
                                  train.labels[:n]), (first.text_a, first.text_b, first.labels),
                     epochs=cfg.epochs, lr=cfg.lr, batch_size=ctx.batch_size, max_len=cfg.max_len, seed=s,
                     regression=regression, device=ctx.torch_device, ctx=ctx, score=score)
        curves[f"bert.seed{s}"] = curve("bert", s, r.train_steps, loss=r.train_loss)
        for f, dev in devs.items():  # MNLI: the same fine-tuned model on matched and mismatched dev
            preds = r.predictions if dev is first else predict(
                model, tok.batch(dev.text_a, dev.text_b, max_length=cfg.max_len), 64, regression, ctx.torch_device)
            per_file.setdefault(f, []).append(glue_metrics(task, dev.labels, preds))
        ctx.seed_done(s, {f"dev.{task.metric}": per_file[task.dev_files[0]][-1][task.metric]})
    for dev_file, rows in per_file.items():
        tag = "" if len(task.dev_files) == 1 else ("_m" if "mismatched" not in dev_file else "_mm")
        for k in rows[0]:
            # Every GLUE dev figure is a score; MNLI's _m/_mm tags hide the name from the direction table.
            m.add(f"dev.{k}{tag}", "%", [r[k] for r in rows], higher_is_better=True)
    return CaseOutput(metrics=m, artifacts={"curves": curves},
                      info={"task": task.name, "headline_metric": task.metric, "seeds": list(seeds),
                            "n_train": n, "lr": cfg.lr, "epochs": cfg.epochs, "batch_size": ctx.batch_size,
                            "loaded_weights": len(report["loaded"]), "fresh_weights": report["fresh"],
                            "note": "GLUE dev scores; Table 1 reports the test server's scores"})
