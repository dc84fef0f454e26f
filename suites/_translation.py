"""Shared translation machinery for the seq2seq, attention and transformer suites.

- A generated translation task (proxy scale, offline): numbers written as words, English -> German
  or French. German puts units before tens ("einundzwanzig" = one-and-twenty) and writes a number as
  one compound word, so a translator must reorder and carry information across the whole number;
  sentences are lists of numbers, so length (and the long-dependency difficulty) is controlled.
- Word-level vocabularies, padded batches, greedy and beam decoding over a small model protocol.
- BLEU always by sacrebleu on detokenized strings.
- Paper scale: a parallel-text loader (two aligned files, one sentence a line) and subword
  tokenisation by HuggingFace `tokenizers` BPE trained on the user's own text.

The model protocol used by the decoders: `encode(src, src_lens) -> state` (a dict of tensors, batch
first), `step(state, y_prev) -> (log_probs [B, V], state)`.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from milestones.harness.errors import UsageError
from milestones.harness.extras import require

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
JOIN = "@@"  # a piece ending in "@@" joins the next piece with no space (subword-nmt's convention)


# ------------------------------------------------------------------------------------- number words
_EN_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen").split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_DE_ONES = ("null eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn fünfzehn "
            "sechzehn siebzehn achtzehn neunzehn").split()
_DE_TENS = "_ _ zwanzig dreißig vierzig fünfzig sechzig siebzig achtzig neunzig".split()
_FR_ONES = ("zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze "
            "seize dix-sept dix-huit dix-neuf").split()
_FR_TENS = "_ _ vingt trente quarante cinquante soixante soixante quatre-vingt quatre-vingt".split()
MAX_NUMBER = 999_999


def _check_range(n: int) -> None:
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"number words are defined for 0..{MAX_NUMBER}, not {n}")


def english_pieces(n: int) -> list[str]:
    """English number words, e.g. 21 -> twenty one, 1005 -> one thousand five (no "and")."""
    _check_range(n)
    if n < 20:
        return [_EN_ONES[n]]
    if n < 100:
        return [_EN_TENS[n // 10]] + ([_EN_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_EN_ONES[n // 100], "hundred"] + (english_pieces(n % 100) if n % 100 else [])
    return english_pieces(n // 1000) + ["thousand"] + (english_pieces(n % 1000) if n % 1000 else [])


def german_pieces(n: int) -> list[str]:
    """German number words as morpheme pieces joined by "@@": 21 -> ein@@ und@@ zwanzig."""
    _check_range(n)

    def below_100(k: int, final: bool) -> list[str]:
        if k == 1:  # "eins" stands alone at the end; "ein" inside a compound (einhundert, einundzwanzig)
            return ["eins" if final else "ein"]
        if k < 20:
            return [_DE_ONES[k]]
        ones = k % 10
        tens = _DE_TENS[k // 10]
        return [tens] if not ones else [("ein" if ones == 1 else _DE_ONES[ones]), "und", tens]

    def below_1000(k: int, final: bool) -> list[str]:
        out = []
        if k >= 100:
            out += ["ein" if k // 100 == 1 else _DE_ONES[k // 100], "hundert"]
        if k % 100:
            out += below_100(k % 100, final)
        return out

    if n == 0:
        return ["null"]
    pieces = []
    if n >= 1000:
        pieces += below_1000(n // 1000, final=False) + ["tausend"]
    if n % 1000:
        pieces += below_1000(n % 1000, final=True)
    return [p + JOIN for p in pieces[:-1]] + [pieces[-1]]


def french_pieces(n: int) -> list[str]:
    """French number words (traditional spelling), hyphens kept as joined pieces: 97 ->
    quatre@@ -@@ vingt@@ -@@ dix@@ -@@ sept; 21 -> vingt et un; 80 -> quatre-vingts."""
    _check_range(n)

    def below_100(k: int, final: bool) -> str:
        if k < 17:
            return _FR_ONES[k]
        if k < 20:
            return _FR_ONES[k]
        t, u = divmod(k, 10)
        if t in (7, 9):  # 70-79 = soixante-dix.., 90-99 = quatre-vingt-dix..
            base, rest = _FR_TENS[t], 10 + u
            joiner = " et " if (t == 7 and u == 1) else "-"
            return base + joiner + _FR_ONES[rest]
        base = _FR_TENS[t]
        if u == 0:
            return base + ("s" if t == 8 and final else "")  # quatre-vingts, but quatre-vingt mille
        if u == 1 and t != 8:
            return base + " et un"
        return base + "-" + _FR_ONES[u]

    def below_1000(k: int, final: bool) -> str:
        h, r = divmod(k, 100)
        words = []
        if h:
            if h == 1:
                words.append("cent")
            else:  # "cents" only when it ends the number (deux cents, deux cent un, deux cent mille)
                words.append(_FR_ONES[h] + " " + ("cents" if r == 0 and final else "cent"))
        if r:
            words.append(below_100(r, final))
        return " ".join(words)

    if n == 0:
        text = "zéro"
    else:
        parts = []
        th, r = divmod(n, 1000)
        if th:
            parts.append("mille" if th == 1 else below_1000(th, final=False) + " mille")
        if r:
            parts.append(below_1000(r, final=True))
        text = " ".join(parts)
    pieces = []
    for word in text.split():
        sub = word.split("-")
        for i, s in enumerate(sub):
            if i < len(sub) - 1:
                pieces += [s + JOIN, "-" + JOIN]
            else:
                pieces.append(s)
    return pieces


LANGUAGES: dict[str, Callable[[int], list[str]]] = {"en": english_pieces, "de": german_pieces, "fr": french_pieces}


def detokenize(pieces: Sequence[str]) -> str:
    """Join pieces into the surface string: "@@ " glues a piece to the next one."""
    return " ".join(pieces).replace(JOIN + " ", "").replace(JOIN, "")


def number_words(n: int, lang: str) -> str:
    """The surface form: number_words(21, "de") == "einundzwanzig"."""
    try:
        return detokenize(LANGUAGES[lang](n))
    except KeyError:
        raise UsageError(f"unknown language {lang!r}; known: {', '.join(LANGUAGES)}") from None


def embedding(num: int, dim: int) -> nn.Embedding:
    """nn.Embedding that skips its normal_ init on the meta device (torch's first meta normal_ takes
    seconds; fidelity cases need only the shapes)."""
    w = torch.empty(num, dim)  # follows a surrounding `with torch.device(...)`
    return nn.Embedding(num, dim, _weight=w) if w.is_meta else nn.Embedding(num, dim)


# ------------------------------------------------------------------------------------ the task
@dataclass(frozen=True)
class NumberTask:
    """Sentences of `min_numbers..max_numbers` numbers separated by commas; a number has 1..max_digits
    digits, the digit count drawn uniformly so that short and long numbers are equally common."""

    src_lang: str = "en"
    tgt_lang: str = "de"
    min_numbers: int = 1
    max_numbers: int = 4
    max_digits: int = 6
    n_train: int = 20_000
    n_valid: int = 300
    n_test: int = 600
    seed: int = 1234  # fixes the splits, independently of the training seed


@dataclass
class Pair:
    src: list[str]
    tgt: list[str]

    @property
    def tgt_text(self) -> str:
        return detokenize(self.tgt)

    @property
    def src_len(self) -> int:  # in words of the detokenized source, what length buckets count
        return len(detokenize(self.src).split())


def sample_sentence(rng: random.Random, task: NumberTask) -> Pair:
    k = rng.randint(task.min_numbers, task.max_numbers)
    src: list[str] = []
    tgt: list[str] = []
    for i in range(k):
        d = rng.randint(1, task.max_digits)
        n = rng.randrange(0 if d == 1 else 10 ** (d - 1), 10**d)
        if i:
            src.append(",")
            tgt.append(",")
        src += LANGUAGES[task.src_lang](n)
        tgt += LANGUAGES[task.tgt_lang](n)
    return Pair(src, tgt)


def make_splits(task: NumberTask) -> dict[str, list[Pair]]:
    """Disjoint train/valid/test splits (by source sentence), fixed by `task.seed`."""
    for lang in (task.src_lang, task.tgt_lang):
        if lang not in LANGUAGES:
            raise UsageError(f"unknown language {lang!r}; known: {', '.join(LANGUAGES)}")
    rng = random.Random(task.seed)
    seen: set[str] = set()
    out: dict[str, list[Pair]] = {}
    for name, n in (("test", task.n_test), ("valid", task.n_valid), ("train", task.n_train)):
        pairs: list[Pair] = []
        tries = 0
        while len(pairs) < n:
            p = sample_sentence(rng, task)
            key = " ".join(p.src)
            tries += 1
            if key in seen:
                if tries > 50 * n:
                    raise UsageError(f"task too small to draw {n} distinct {name} sentences")
                continue
            seen.add(key)
            pairs.append(p)
        out[name] = pairs
    return out


# ------------------------------------------------------------------------------------- vocabulary
class Vocab:
    def __init__(self, tokens: Sequence[str]) -> None:
        self.itos = list(SPECIALS) + sorted(set(tokens) - set(SPECIALS))
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences: Sequence[Sequence[str]]) -> Vocab:
        return cls([t for s in sentences for t in s])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, UNK) for t in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.itos[i] for i in content_ids(ids)]


def content_ids(ids: Sequence[int]) -> list[int]:
    """The ids a decoder produced up to its first EOS, without padding or BOS."""
    out = []
    for i in ids:
        if i == EOS:
            break
        if i not in (PAD, BOS):
            out.append(int(i))
    return out


def pad_batch(seqs: Sequence[Sequence[int]], *, bos: bool = False, eos: bool = False,
              reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids [B, T] padded with PAD, lengths [B]). `reverse` reverses each sequence (Sutskever et al.)."""
    rows = []
    for s in seqs:
        s = list(s)[::-1] if reverse else list(s)
        rows.append(([BOS] if bos else []) + s + ([EOS] if eos else []))
    lens = torch.tensor([len(r) for r in rows])
    out = torch.full((len(rows), int(lens.max())), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out, lens


@dataclass
class EncodedData:
    """Id sequences of a split, with its references and source lengths for BLEU."""

    src: list[list[int]]
    tgt: list[list[int]]
    refs: list[str]
    src_lens: list[int]


def encode_pairs(pairs: Sequence[Pair], sv: Vocab, tv: Vocab) -> EncodedData:
    return EncodedData([sv.encode(p.src) for p in pairs], [tv.encode(p.tgt) for p in pairs],
                       [p.tgt_text for p in pairs], [p.src_len for p in pairs])


# ------------------------------------------------------------------------------------------ BLEU
def bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus BLEU by sacrebleu (13a tokenisation, detokenized input), in 0..100."""
    sacrebleu = require("sacrebleu")

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score)


def bleu_by_length(hyps: Sequence[str], refs: Sequence[str], src_lens: Sequence[int],
                   edges: Sequence[int]) -> tuple[list[str], list[float | None], list[int]]:
    """BLEU per source-length bucket [edges[i], edges[i+1]); the last bucket is open-ended.
    Returns (bucket labels, BLEU or None for an empty bucket, sentence counts)."""
    labels, scores, counts = [], [], []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        idx = [j for j, n in enumerate(src_lens) if n >= lo and (hi is None or n < hi)]
        labels.append(f"{lo}-{hi - 1}" if hi is not None else f"{lo}+")
        counts.append(len(idx))
        scores.append(bleu([hyps[j] for j in idx], [refs[j] for j in idx]) if idx else None)
    return labels, scores, counts


# -------------------------------------------------------------------------------------- decoding
def select_state(state: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v.index_select(0, idx) for k, v in state.items()}


@torch.no_grad()
def greedy_decode(model: nn.Module, src: torch.Tensor, src_lens: torch.Tensor, max_len: int,
                  stop_at_eos: bool = True) -> list[list[int]]:
    """Batched greedy decoding; stops a sentence at EOS (speed runs decode a fixed length instead)."""
    state = model.encode(src, src_lens)
    b = src.shape[0]
    y = torch.full((b,), BOS, dtype=torch.long, device=src.device)
    out = torch.full((b, max_len), PAD, dtype=torch.long, device=src.device)
    done = torch.zeros(b, dtype=torch.bool, device=src.device)
    for t in range(max_len):
        logp, state = model.step(state, y)
        y = logp.argmax(-1)
        y = torch.where(done, torch.full_like(y, PAD), y)
        out[:, t] = y
        done |= y == EOS
        if stop_at_eos and bool(done.all()):
            break
    return out.tolist()


@torch.no_grad()
def beam_decode(model: nn.Module, src: torch.Tensor, src_lens: torch.Tensor, max_len: int, beam: int = 4,
                alpha: float = 0.0) -> list[int]:
    """Beam search for one sentence (src [1, T]). Scores finished hypotheses by log-prob divided by
    the GNMT length penalty ((5 + len) / 6) ** alpha (alpha 0: plain log-prob; Vaswani et al. use 0.6)."""
    state = model.encode(src, src_lens)
    hyps: list[list[int]] = [[]]
    scores = torch.zeros(1, device=src.device)
    finished: list[tuple[float, list[int]]] = []
    y = torch.full((1,), BOS, dtype=torch.long, device=src.device)
    for _ in range(max_len):
        logp, state = model.step(state, y)
        v = logp.shape[-1]
        cand = (scores[:, None] + logp).reshape(-1)
        top, idx = cand.topk(min(2 * beam, cand.numel()))
        new_hyps, new_scores, keep = [], [], []
        for s, i in zip(top.tolist(), idx.tolist(), strict=True):
            h, tok = divmod(i, v)
            if tok == EOS:
                n = len(hyps[h]) + 1
                finished.append((s / (((5 + n) / 6) ** alpha), hyps[h]))
            elif len(new_hyps) < beam:
                new_hyps.append(hyps[h] + [tok])
                new_scores.append(s)
                keep.append(h)
        if not new_hyps:
            break
        if alpha == 0.0:  # exact stop: log-probs only fall as a hypothesis grows
            if finished and max(new_scores) < max(f[0] for f in finished):
                break
        elif len(finished) >= beam:  # with a length bonus, stop at `beam` finished hypotheses (GNMT)
            break
        hyps = new_hyps
        scores = torch.tensor(new_scores, device=src.device)
        state = select_state(state, torch.tensor(keep, device=src.device))
        y = torch.tensor([h[-1] for h in hyps], device=src.device)
    if not finished:
        n = len(hyps[0])
        finished = [(float(scores[i]) / (((5 + n) / 6) ** alpha), h) for i, h in enumerate(hyps)]
    return max(finished, key=lambda f: f[0])[1]


def translate(model: nn.Module, data: EncodedData, tv: Vocab, *, batch_size: int = 128, reverse: bool = False,
              max_extra: int = 10, device: torch.device | str = "cpu") -> list[str]:
    """Greedy translations of a split, detokenized."""
    model.eval()
    out: list[str] = []
    for i in range(0, len(data.src), batch_size):
        chunk = data.src[i: i + batch_size]
        src, lens = pad_batch(chunk, eos=True, reverse=reverse)
        ids = greedy_decode(model, src.to(device), lens.to(device), int(lens.max()) * 2 + max_extra)
        out += [detokenize(tv.decode(r)) for r in ids]
    model.train()
    return out


# ------------------------------------------------------------------------------------------ losses
def label_smoothed_nll(logits: torch.Tensor, target: torch.Tensor, eps: float, ignore_index: int = PAD) -> torch.Tensor:
    """Mean over non-ignored tokens of the cross-entropy against q = (1 - eps) * onehot + eps / V
    (Szegedy et al. 2016, used by Vaswani et al. with eps = 0.1)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    smooth = -logp.mean(-1)
    loss = (1 - eps) * nll + eps * smooth
    mask = target != ignore_index
    return loss[mask].sum() / mask.sum().clamp(min=1)


# ------------------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class TrainSettings:
    batch_size: int = 64
    lr: float = 2e-3
    max_steps: int = 1500
    max_seconds: float = 60.0
    eval_every: int = 100
    clip: float = 1.0
    label_smoothing: float = 0.0
    warmup: int = 0  # > 0: linear warm-up then inverse square-root decay (the Transformer schedule shape)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    optimizer: str = "adam"  # or "sgd" (plain, no momentum: Sutskever et al.) or "adadelta" (Bahdanau et al.)


@dataclass
class TrainResult:
    curve: dict[str, list[float]] = field(default_factory=dict)  # step, seconds, loss, valid_bleu
    steps: int = 0
    seconds: float = 0.0
    steps_to_target: int | None = None
    seconds_to_target: float | None = None


def train_model(model: nn.Module, train: EncodedData, valid: EncodedData | None, tv, s: TrainSettings, *,
                seed: int, reverse: bool = False, target_bleu: float | None = None,
                check: Callable[[int, float], Any] | None = None,
                device: torch.device | str = "cpu", progress: Callable[..., Any] | None = None) -> TrainResult:
    """Adam on teacher-forced cross-entropy until `max_steps` or `max_seconds` of training time
    (evaluation time excluded from the clock); valid BLEU every `eval_every` steps. Time to quality
    is the training time when valid BLEU first reaches `target_bleu`. Without `valid`, only the loss
    is logged. `progress` (e.g. ctx.progress) is called at each evaluation."""
    g = random.Random(seed)
    if s.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=s.lr)
    elif s.optimizer == "adadelta":  # Bahdanau et al.: rho 0.95, eps 1e-6
        opt = torch.optim.Adadelta(model.parameters(), lr=s.lr, rho=0.95, eps=1e-6)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=s.lr, betas=s.betas, eps=s.eps)
    sched = None
    if s.warmup:
        w = s.warmup
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min((k + 1) / w, math.sqrt(w / (k + 1))))
    res = TrainResult(curve={"step": [], "seconds": [], "loss": [], "valid_bleu": []})
    order = list(range(len(train.src)))
    pos, clock, step = len(order), 0.0, 0
    model.train()
    while step < s.max_steps and clock < s.max_seconds:
        t0 = time.perf_counter()
        if pos + s.batch_size > len(order):
            g.shuffle(order)
            pos = 0
        idx = order[pos: pos + s.batch_size]
        pos += s.batch_size
        src, lens = pad_batch([train.src[i] for i in idx], eos=True, reverse=reverse)
        tgt, _ = pad_batch([train.tgt[i] for i in idx], bos=True, eos=True)
        src, lens, tgt = src.to(device), lens.to(device), tgt.to(device)
        logits = model(src, lens, tgt[:, :-1])
        loss = label_smoothed_nll(logits, tgt[:, 1:], s.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s.clip:
            nn.utils.clip_grad_norm_(model.parameters(), s.clip)
        opt.step()
        if sched is not None:
            sched.step()
        step += 1
        value = loss.detach().item()
        clock += time.perf_counter() - t0
        if check is not None:
            check(step, value)
        if step % s.eval_every == 0 or step >= s.max_steps or clock >= s.max_seconds:
            b = None if valid is None else bleu(translate(model, valid, tv, reverse=reverse, device=device), valid.refs)
            c = res.curve
            c["step"].append(step), c["seconds"].append(clock), c["loss"].append(value), c["valid_bleu"].append(b)
            if progress is not None:
                progress(f"seed {seed} eval", step=step, loss=value, **({} if b is None else {"valid_bleu": b}))
            if target_bleu is not None and b is not None and res.steps_to_target is None and b >= target_bleu:
                res.steps_to_target, res.seconds_to_target = step, clock
    res.steps, res.seconds = step, clock
    return res


# --------------------------------------------------------------------------------- FLOPs of fused RNNs
def rnn_flops(module: nn.RNNBase, tokens: int, *, train: bool = True) -> int:
    """FLOPs of a fused nn.LSTM/nn.GRU over `tokens` time steps x batch rows. FlopCounterMode does not
    see inside the fused CPU/cuDNN kernels, so these are counted from the gate matrix shapes:
    2 FLOPs per multiply-add, gates x hidden x (input + hidden) per token and direction, and a
    backward pass of twice the forward (weights and inputs)."""
    gates = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}[module.mode]
    dirs = 2 if module.bidirectional else 1
    h, total = module.hidden_size, 0
    for layer in range(module.num_layers):
        inp = module.input_size if layer == 0 else h * dirs
        total += 2 * gates * h * (inp + h) * dirs
    return total * tokens * (3 if train else 1)


# --------------------------------------------------------------------------- paper scale: parallel text
def read_lines(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise UsageError(f"parallel text file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return [ln.rstrip("\n").rstrip("\r") for ln in f]
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_parallel(src_path: str, tgt_path: str, max_len: int | None = None) -> tuple[list[str], list[str]]:
    """Two aligned files, sentence i on line i of each. A line-count mismatch is a usage error; pairs
    with an empty side (and, given `max_len`, either side longer than that many words) are dropped."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise UsageError(f"misaligned parallel text: {src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}")
    pairs = [(s.strip(), t.strip()) for s, t in zip(src, tgt, strict=True) if s.strip() and t.strip()]
    if max_len is not None:
        pairs = [(s, t) for s, t in pairs if len(s.split()) <= max_len and len(t.split()) <= max_len]
    if not pairs:
        raise UsageError(f"no sentence pairs in {src_path} / {tgt_path}")
    return [s for s, _ in pairs], [t for _, t in pairs]


def wmt_paths(data: dict[str, str], src_lang: str, tgt_lang: str, key: str = "wmt14") -> dict[str, tuple[str, str]]:
    """Where the parallel text lives. `--data wmt14=DIR` with DIR/train.<lang> and DIR/test.<lang>
    (DIR/valid.<lang> optional; newstest2014 goes in test), or explicit prefixes
    `--data wmt14-train=PREFIX --data wmt14-test=PREFIX` (files PREFIX.<lang>)."""
    prefixes: dict[str, str] = {}
    if key in data:
        root = data[key]
        if not os.path.isdir(root):
            raise UsageError(f"--data {key}={root}: not a directory (expected train.{src_lang}, test.{src_lang}, ...)")
        for split in ("train", "valid", "test"):
            if split != "valid" or os.path.exists(os.path.join(root, f"valid.{src_lang}")):
                prefixes[split] = os.path.join(root, split)
    for split in ("train", "valid", "test"):
        if f"{key}-{split}" in data:
            prefixes[split] = data[f"{key}-{split}"]
    if not prefixes:
        raise KeyError(key)
    for split in ("train", "test"):
        if split not in prefixes:
            raise UsageError(f"--data {key}: no {split} split given (use --data {key}-{split}=PREFIX)")
    return {k: (f"{p}.{src_lang}", f"{p}.{tgt_lang}") for k, p in prefixes.items()}


def train_bpe(texts: Sequence[str], vocab_size: int):
    """A BPE tokenizer trained on the user's own text (HuggingFace `tokenizers`), with Metaspace
    pre-tokenisation so that decoding gives back the detokenized sentence for sacrebleu."""
    require("tokenizers")
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    for i, sp in enumerate(SPECIALS):  # the decoders rely on PAD/BOS/EOS/UNK being ids 0..3
        if tok.token_to_id(sp) != i:
            raise RuntimeError(f"tokenizer put {sp} at id {tok.token_to_id(sp)}")
    return tok


class BpeVocab:
    """Adapter so BPE tokenizers plug into the same encode/decode/len interface as Vocab."""

    def __init__(self, tok) -> None:
        self.tok = tok

    def __len__(self) -> int:
        return self.tok.get_vocab_size()

    def encode_text(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.tok.decode(content_ids(ids))]  # one "piece": the detokenized sentence


def encode_texts(src: Sequence[str], tgt: Sequence[str], sv: BpeVocab, tv: BpeVocab) -> EncodedData:
    return EncodedData([sv.encode_text(s) for s in src], [tv.encode_text(t) for t in tgt], list(tgt),
                       [len(s.split()) for s in src])


BLEU_NOTE = ("sacrebleu (13a tokenisation of detokenized output) is not the papers' tokenised BLEU "
             "(multi-bleu.perl on tokenised, and for Vaswani et al. compound-split, text); figures differ "
             "by up to a few points and are compared with the papers' only as a guide")


# ------------------------------------------------------------------------------------------- speed
def option_float(ctx, name: str, default: float) -> float:
    v = ctx.options.get(name, default)
    try:
        return float(v)
    except (TypeError, ValueError):
        raise UsageError(f"--option {name}={v!r}: not a number") from None


def synthetic_ids(batch: int, length: int, vocab: int, seed: int) -> torch.Tensor:
    """Random token ids (no specials): step time does not depend on which words are in a sentence."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, vocab, (batch, length), generator=g)


def translation_speed(ctx, model: nn.Module, *, src_vocab: int, tgt_vocab: int, src_len: int, tgt_len: int,
                      optimizer: torch.optim.Optimizer, label_smoothing: float = 0.0,
                      rnns: Sequence[tuple[nn.RNNBase, str]] = (), info: dict | None = None):
    """The speed plan: a train step (teacher-forced loss, backward, optimizer) and greedy decoding. Items
    are tokens: source + target tokens per train step, generated tokens per decoding step. `rnns` lists
    fused RNN modules with the side ("src"/"tgt") they run over, whose FLOPs are added from their shapes
    (FlopCounterMode cannot see them), so each step declares its FLOPs."""
    from milestones.harness.measure.flops import count_flops
    from milestones.harness.suite_api import SpeedPlan, Step

    b, dev = ctx.batch_size, ctx.torch_device
    src = synthetic_ids(b, src_len, src_vocab, 0).to(dev)
    lens = torch.full((b,), src_len, dtype=torch.long, device=dev)
    tgt = synthetic_ids(b, tgt_len + 1, tgt_vocab, 1).to(dev)
    model.to(dev)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=ctx.torch_dtype, enabled=ctx.case.dtype != "float32"):
            logits = model(src, lens, tgt[:, :-1])
        loss = label_smoothed_nll(logits, tgt[:, 1:], label_smoothing)
        loss.backward()
        optimizer.step()

    def decode_step() -> None:
        with torch.autocast(dev.type, dtype=ctx.torch_dtype, enabled=ctx.case.dtype != "float32"):
            greedy_decode(model, src, lens, tgt_len, stop_at_eos=False)

    def side(name: str) -> int:
        return b * (src_len if name == "src" else tgt_len)

    model.train()
    train_flops, train_ops = count_flops(train_step)
    rnn_train = sum(rnn_flops(m, side(s)) for m, s in rnns)
    model.eval()
    dec_flops, dec_ops = count_flops(decode_step)
    rnn_dec = sum(rnn_flops(m, side(s), train=False) for m, s in rnns)
    steps = (Step("train", train_step, b * (src_len + tgt_len), "tokens", flops=train_flops + rnn_train,
                  setup=model.train),
             Step("decode", decode_step, b * tgt_len, "tokens", flops=dec_flops + rnn_dec, setup=model.eval))
    info = {"src_len": src_len, "tgt_len": tgt_len, "tokens_per_train_step": b * (src_len + tgt_len),
            "rnn_flops_from_shapes": {"train": rnn_train, "decode": rnn_dec}, **(info or {})}
    return SpeedPlan(steps=steps, model=model, info=info,
                     artifacts={"train.flops_by_op": train_ops, "decode.flops_by_op": dec_ops})


# ------------------------------------------------------------------------------ paper-scale quality
def paper_quality(ctx, cfg, *, key: str, src_lang: str, tgt_lang: str, build: Callable[[int, int], nn.Module],
                  shared_vocab: bool, vocab: tuple[int, int], reverse: bool, settings: TrainSettings,
                  beam: int, alpha: float = 0.0, max_train_len: int = 80, paper_note: str = ""):
    """Train on the user's WMT'14 text for `settings.max_steps` steps, then beam-decode the test split
    and score it with sacrebleu. Without the data: SkipCase."""
    from milestones.harness.context import SkipCase
    from milestones.harness.records import CaseOutput
    from milestones.harness.suite_api import Metrics, curve_table

    try:
        paths = wmt_paths(ctx.data, src_lang, tgt_lang, key)
    except KeyError:
        raise SkipCase(f"needs WMT'14 {src_lang}-{tgt_lang} parallel text: --data {key}=DIR holding "
                       f"train.{src_lang}, train.{tgt_lang}, test.{src_lang}, test.{tgt_lang}") from None
    t0 = time.perf_counter()
    train_src, train_tgt = read_parallel(*paths["train"], max_len=max_train_len)
    test_src, test_tgt = read_parallel(*paths["test"])
    if shared_vocab:
        sv = tv = BpeVocab(train_bpe(train_src + train_tgt, vocab[0]))
    else:
        sv, tv = BpeVocab(train_bpe(train_src, vocab[0])), BpeVocab(train_bpe(train_tgt, vocab[1]))
    train = encode_texts(train_src, train_tgt, sv, tv)
    valid = encode_texts(*read_parallel(*paths["valid"]), sv, tv) if "valid" in paths else None
    test = encode_texts(test_src, test_tgt, sv, tv)
    torch.manual_seed(ctx.seed)
    model = build(len(sv), len(tv)).to(ctx.torch_device)
    tr = train_model(model, train, valid, tv, settings, seed=ctx.seed, reverse=reverse, check=ctx.check_finite,
                     device=ctx.torch_device, progress=ctx.progress)
    beam = int(ctx.options.get("beam", beam))
    model.eval()
    hyps = []
    for ids in test.src:
        src, lens = pad_batch([ids], eos=True, reverse=reverse)
        out = beam_decode(model, src.to(ctx.torch_device), lens.to(ctx.torch_device), len(ids) + 50, beam, alpha)
        hyps.append(tv.decode(out)[0])
    score = bleu(hyps, test.refs)
    ctx.seed_done(ctx.seed, {"bleu": score})
    metrics = Metrics()
    metrics.single("bleu", "BLEU", score, note=BLEU_NOTE)
    # More steps in the same budget is the faster run.
    metrics.single("train_steps", "steps", tr.steps, higher_is_better=True)
    metrics.single("train_seconds", "s", tr.seconds)
    info = {"data": {k: list(v) for k, v in paths.items()}, "train_pairs": len(train.src), "test_pairs": len(test.src),
            "vocab": {"src": len(sv), "tgt": len(tv), "shared": shared_vocab, "tokenizer": "tokenizers BPE, Metaspace"},
            "beam": beam, "length_penalty_alpha": alpha, "bleu_protocol": BLEU_NOTE, "seed": ctx.seed,
            "note": paper_note, "wall_seconds": time.perf_counter() - t0}
    return CaseOutput(metrics=metrics, info=info, artifacts={"curves": {"train": curve_table("train", ctx.seed, tr.curve)},
                                                             "test_hypotheses_head": hyps[:20]})
