"""The shared translation machinery: number words, splits, BLEU, decoding, label smoothing, the WMT loader."""

import math

import pytest
import torch
import torch.nn.functional as F

from milestones.harness.errors import UsageError
from milestones.suites import _translation as T


@pytest.mark.parametrize("n, en, de, fr", [
    (21, "twenty one", "einundzwanzig", "vingt et un"),
    (1, "one", "eins", "un"),
    (17, "seventeen", "siebzehn", "dix-sept"),
    (71, "seventy one", "einundsiebzig", "soixante et onze"),
    (80, "eighty", "achtzig", "quatre-vingts"),
    (97, "ninety seven", "siebenundneunzig", "quatre-vingt-dix-sept"),
    (101, "one hundred one", "einhunderteins", "cent un"),
    (200, "two hundred", "zweihundert", "deux cents"),
    (201, "two hundred one", "zweihunderteins", "deux cent un"),
    (80_000, "eighty thousand", "achtzigtausend", "quatre-vingt mille"),
    (345_678, "three hundred forty five thousand six hundred seventy eight",
     "dreihundertfünfundvierzigtausendsechshundertachtundsiebzig",
     "trois cent quarante-cinq mille six cent soixante-dix-huit"),
])
def test_number_words(n, en, de, fr):
    assert (T.number_words(n, "en"), T.number_words(n, "de"), T.number_words(n, "fr")) == (en, de, fr)


def test_german_pieces_put_units_before_tens():
    assert T.german_pieces(21) == ["ein@@", "und@@", "zwanzig"]
    assert T.detokenize(T.french_pieces(97)) == "quatre-vingt-dix-sept"


def test_number_words_range_and_language_errors():
    with pytest.raises(ValueError):
        T.english_pieces(1_000_000)
    with pytest.raises(UsageError):
        T.number_words(3, "xx")


def test_splits_are_fixed_by_seed_and_disjoint():
    task = T.NumberTask(n_train=300, n_valid=40, n_test=40, seed=7)
    a, b = T.make_splits(task), T.make_splits(task)
    assert [p.src for p in a["train"]] == [p.src for p in b["train"]]
    keys = {name: {" ".join(p.src) for p in ps} for name, ps in a.items()}
    assert not (keys["train"] & keys["test"]) and not (keys["train"] & keys["valid"]) and not (keys["valid"] & keys["test"])
    c = T.make_splits(T.NumberTask(n_train=300, n_valid=40, n_test=40, seed=8))
    assert [p.src for p in a["test"]] != [p.src for p in c["test"]]
    # each target is the number-by-number translation of its source
    p = a["test"][0]
    src_nums = " ".join(p.src).split(" , ")
    assert len(src_nums) == len(p.tgt_text.split(" , "))


def test_sacrebleu_known_pairs():
    assert T.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    # 4/5 unigrams, 2/4 bigrams, 0/3 trigrams, 0/2 4-grams; equal lengths (no brevity penalty).
    # sacrebleu's default "exp" smoothing turns the k-th zero count into 1 / (2^k * total).
    hyp, ref = "a b c d e", "a b x d e"
    p = [4 / 5, 2 / 4, 1 / (2 * 3), 1 / (4 * 2)]
    assert T.bleu([hyp], [ref]) == pytest.approx(100 * math.exp(sum(math.log(x) for x in p) / 4), rel=1e-6)


def test_bleu_by_length_buckets():
    hyps, refs = ["a b c d", "x y z w v u", "p q r s t"], ["a b c d", "x y z w v u", "p q r s k"]
    labels, scores, counts = T.bleu_by_length(hyps, refs, [3, 12, 25], (1, 10, 20))
    assert labels == ["1-9", "10-19", "20+"] and counts == [1, 1, 1]
    assert scores[0] == pytest.approx(100) and scores[1] == pytest.approx(100) and scores[2] < 100
    _, scores, counts = T.bleu_by_length(hyps, refs, [3, 4, 5], (1, 10))
    assert counts == [3, 0] and scores[1] is None


def test_label_smoothing_against_hand_computation():
    logits = torch.tensor([[[2.0, 0.0, 1.0, -1.0], [0.5, 0.5, 0.0, 3.0]]])
    target = torch.tensor([[2, 0]])  # the second is PAD (0): ignored
    eps = 0.1
    lp = [v - math.log(sum(math.exp(u) for u in [2.0, 0.0, 1.0, -1.0])) for v in [2.0, 0.0, 1.0, -1.0]]
    want = (1 - eps) * -lp[2] + eps * -sum(lp) / 4
    got = T.label_smoothed_nll(logits, target, eps)
    assert got.item() == pytest.approx(want, rel=1e-6)
    # same as torch's own label smoothing (uniform mass over all classes)
    ref = F.cross_entropy(logits.view(-1, 4), target.view(-1), label_smoothing=eps, ignore_index=0)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    assert T.label_smoothed_nll(logits, target, 0.0).item() == pytest.approx(-lp[2], rel=1e-6)


def test_pad_batch_reverses_before_eos():
    ids, lens = T.pad_batch([[5, 6, 7], [8]], eos=True, reverse=True)
    assert ids.tolist() == [[7, 6, 5, T.EOS], [8, T.EOS, T.PAD, T.PAD]] and lens.tolist() == [4, 2]
    ids, _ = T.pad_batch([[5]], bos=True, eos=True)
    assert ids.tolist() == [[T.BOS, 5, T.EOS]]


class _Table(torch.nn.Module):
    """A decoder whose next-token log-probs depend only on the previous token: a known search space."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.log(torch.tensor(table))

    def encode(self, src, lens):
        return {"dummy": torch.zeros(src.shape[0], 1)}

    def step(self, state, y):
        return self.table[y], state


def test_greedy_and_beam_on_a_known_table():
    # vocab: 0 pad, 1 bos, 2 eos, 3 unk, 4 "a", 5 "b"
    eps = 1e-6
    table = [[eps] * 6 for _ in range(6)]
    table[T.BOS][4], table[T.BOS][5] = 0.6, 0.4   # greedy takes "a" ...
    table[4][T.EOS], table[4][5] = 0.3, 0.7       # ... then "a b" ...
    table[5][T.EOS] = 0.999                       # "b" then ends
    model = _Table(table)
    src = torch.tensor([[4]])
    lens = torch.tensor([1])
    assert T.greedy_decode(model, src, lens, 5)[0][:3] == [4, 5, T.EOS]
    # beam search finds "b" </s> (0.4 * 0.999) over "a b </s>" (0.6 * 0.7 * 0.999 = 0.42 ...) -> still a b
    assert T.beam_decode(model, src, lens, 5, beam=2) == [4, 5]
    table[4][5] = 0.5
    table[4][T.EOS] = 0.5
    model = _Table(table)
    # now "a </s>" = 0.3, "a b </s>" = 0.3, "b </s>" = 0.4: beam finds "b", greedy does not
    assert T.greedy_decode(model, src, lens, 5)[0][0] == 4
    assert T.beam_decode(model, src, lens, 5, beam=2) == [5]


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_parallel_loader_fixtures(tmp_path):
    _write(tmp_path / "train.en", ["hello world", "", "good morning"])
    _write(tmp_path / "train.de", ["hallo welt", "leer", "guten morgen"])
    _write(tmp_path / "test.en", ["hello"])
    _write(tmp_path / "test.de", ["hallo"])
    paths = T.wmt_paths({"wmt14": str(tmp_path)}, "en", "de")
    assert set(paths) == {"train", "test"}
    src, tgt = T.read_parallel(*paths["train"])
    assert src == ["hello world", "good morning"] and tgt == ["hallo welt", "guten morgen"]  # empty side dropped
    explicit = T.wmt_paths({"wmt14-train": str(tmp_path / "train"), "wmt14-test": str(tmp_path / "test")}, "en", "de")
    assert explicit["test"] == (str(tmp_path / "test.en"), str(tmp_path / "test.de"))
    with pytest.raises(KeyError):
        T.wmt_paths({}, "en", "de")


def test_parallel_loader_errors_are_one_line(tmp_path):
    _write(tmp_path / "a.en", ["one", "two"])
    _write(tmp_path / "a.de", ["eins"])
    with pytest.raises(UsageError, match="misaligned") as e:
        T.read_parallel(str(tmp_path / "a.en"), str(tmp_path / "a.de"))
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="not found"):
        T.read_parallel(str(tmp_path / "missing.en"), str(tmp_path / "a.de"))
    with pytest.raises(UsageError, match="not a directory"):
        T.wmt_paths({"wmt14": str(tmp_path / "nope")}, "en", "de")
    with pytest.raises(UsageError, match="no test split"):
        T.wmt_paths({"wmt14-train": str(tmp_path / "a")}, "en", "de")
    (tmp_path / "bin.en").write_bytes(b"\xff\xfe\x00bad\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        T.read_lines(str(tmp_path / "bin.en"))


def test_bpe_round_trip_gives_detokenized_text():
    texts = ["the house is small", "the house is big", "a small house", "das haus ist klein"] * 5
    v = T.BpeVocab(T.train_bpe(texts, 60))
    ids = v.encode_text("the small house")
    assert ids and all(i > T.UNK for i in ids)
    assert v.decode(ids + [T.EOS, 9]) == ["the small house"]


def test_rnn_flops_from_shapes():
    lstm = torch.nn.LSTM(10, 20, 2)
    per_token = 2 * 4 * 20 * (10 + 20) + 2 * 4 * 20 * (20 + 20)
    assert T.rnn_flops(lstm, 7, train=False) == 7 * per_token
    assert T.rnn_flops(lstm, 7) == 3 * 7 * per_token
    gru = torch.nn.GRU(10, 20, bidirectional=True)
    assert T.rnn_flops(gru, 1, train=False) == 2 * 2 * 3 * 20 * 30
