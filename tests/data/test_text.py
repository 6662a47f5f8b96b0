"""The text loader: corpus, BPE fitted on train only, stride-T windows, fitted-state reuse, errors."""

import math
import re

import numpy as np
import pytest

from jaxrec.data import DATASETS
from jaxrec.data.dataset import LABELS
from jaxrec.data.fitted import load_fitted, save_fitted
from jaxrec.data.text import EOT, KJV_SHA256, TOKENS, load_text, read_corpus, unigram_perplexity, windows
from jaxrec.errors import ConfigError, DataError

WORDS = "the lord said unto moses and aaron in the land of egypt this month shall be unto you".split()


def _corpus(tmp_path, docs=12, seed=0):
    rng = np.random.default_rng(seed)
    text = "\n\n".join(" ".join(rng.choice(WORDS, 40)) + f" doc{i}" for i in range(docs))
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    return path


def test_windows_are_stride_t_with_one_token_overlap():
    w = windows(np.arange(11, dtype=np.int32), 3)
    # (11 - 1) // 3 = 3 windows of T + 1 = 4; the last token (10) is a target only of a 4th window, dropped
    np.testing.assert_array_equal(w, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])
    with pytest.raises(DataError, match=r"dataset.context=11 is longer than the valid split \(11 tokens\)"):
        windows(np.arange(11), 11, "valid split")


def test_unigram_perplexity_hand_worked():
    # train counts over V=4: [2, 1, 0, 1] (+1 each) / (4 + 4) -> p = [3/8, 2/8, 1/8, 2/8]
    ppl = unigram_perplexity(np.array([0, 0, 1, 3]), np.array([[0, 2]]), 4)
    assert ppl == pytest.approx(math.exp(-(math.log(3 / 8) + math.log(1 / 8)) / 2))


def test_file_corpus_splits_by_document_and_fits_the_tokenizer_on_train_only(tmp_path):
    path = _corpus(tmp_path)
    d = load_text(corpus="file", path=str(path), vocab_size=300, context=8, split=(0.5, 0.25, 0.25), split_seed=1)
    spec = d.feature(TOKENS)
    assert spec.vocab_size <= 300 and spec.max_len == 9 and spec.encoding == "identity"
    from jaxrec.data.text import load_tokenizer

    tok = load_tokenizer(d.fitted.extra["tokenizer"])
    texts = {s: tok.decode(d.splits[s][TOKENS][:, :-1].reshape(-1).tolist() + [int(d.splits[s][TOKENS][-1, -1])],
                           skip_special_tokens=False) for s in d.splits}
    seen = {s: {int(i) for i in re.findall(r"doc(\d+)" + re.escape(EOT), t)} for s, t in texts.items()}  # whole documents
    assert not (seen["train"] & seen["valid"]) and not (seen["train"] & seen["test"]) and not (seen["valid"] & seen["test"])
    assert len(seen["train"]) >= 5  # 6 documents; the tail shorter than a window is dropped
    # labels are the next tokens; each window starts where the previous one's last target was
    for cols in d.splits.values():
        np.testing.assert_array_equal(cols[LABELS], cols[TOKENS][:, 1:])
        np.testing.assert_array_equal(cols[TOKENS][1:, 0], cols[TOKENS][:-1, -1])
        assert cols[TOKENS].dtype == np.int32 and cols[TOKENS].max() < spec.vocab_size
    # the tokenizer has only the train documents' merges: 'doc<i>' of a valid document is no train token
    vocab = tok.get_vocab()
    for i in seen["valid"] - seen["train"]:
        assert f"doc{i}" not in vocab and f"Ġdoc{i}" not in vocab
    assert d.side["token_bytes"][tok.token_to_id(EOT)] == 1
    assert d.side["token_bytes"][tok.token_to_id("Ġthe")] == 4  # ' the'


def test_fitted_state_round_trips_and_is_reused(tmp_path):
    path = _corpus(tmp_path)
    d = load_text(corpus="file", path=str(path), vocab_size=300, context=8)
    save_fitted(d.fitted, tmp_path / "fitted.json")
    fitted = load_fitted(tmp_path / "fitted.json")
    assert fitted.extra == d.fitted.extra
    again = DATASETS["text"](corpus="file", path=str(path), vocab_size=300, context=8, fitted=fitted)
    for s in d.splits:
        np.testing.assert_array_equal(again.splits[s][TOKENS], d.splits[s][TOKENS])
    # another corpus, another context or vocab_size with this fitted state: refused
    other = _corpus(tmp_path / "..", docs=13)
    with pytest.raises(DataError, match="another corpus"):
        load_text(corpus="file", path=str(other), vocab_size=300, context=8, fitted=fitted)
    with pytest.raises(DataError, match="max_len=17 now, 9 when fitted"):
        load_text(corpus="file", path=str(path), vocab_size=300, context=16, fitted=fitted)
    with pytest.raises(DataError, match="vocab_size=500, but the tokenizer was fitted with 300"):
        load_text(corpus="file", path=str(path), vocab_size=500, context=8, fitted=fitted)


def test_kjv_corpus_is_the_pinned_package_file():
    docs, digest, where = read_corpus("kjv")
    assert digest == KJV_SHA256 and where.endswith("kjv.jsonl")
    assert len(docs) == 1189 and docs[0].startswith("In the beginning God created the heaven and the earth.\n")
    d = load_text(vocab_size=512, context=32, max_documents=20)
    assert d.name == "text/kjv" and d.fitted.extra["corpus_sha256"] == KJV_SHA256


def test_token_file(tmp_path):
    ids = np.arange(1000) % 50
    np.save(tmp_path / "ids.npy", ids)
    d = load_text(token_file=str(tmp_path / "ids.npy"), vocab_size=50, context=10)
    assert [d.num_rows(s) for s in ("train", "valid", "test")] == [79, 9, 9]  # (800-1)//10, (100-1)//10
    np.testing.assert_array_equal(d.splits["valid"][TOKENS][0], ids[800:811])
    assert "token_bytes" not in d.side
    with pytest.raises(DataError, match=r"ids.npy: token id 40 at position 40 is outside \[0, 40\) \(dataset.vocab_size=40\); 200 ids are"):
        load_text(token_file=str(tmp_path / "ids.npy"), vocab_size=40, context=10)


def test_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(DataError, match="dataset.path='.*nope.txt': no such file"):
        load_text(corpus="file", path=str(tmp_path / "nope.txt"))
    with pytest.raises(ConfigError, match="needs dataset.path"):
        load_text(corpus="file")
    with pytest.raises(ConfigError, match="dataset.vocab_size=100: a byte-level BPE has at least 257 ids"):
        load_text(vocab_size=100)
    with pytest.raises(ConfigError, match="dataset.corpus='wiki'"):
        load_text(corpus="wiki")
    path = _corpus(tmp_path, docs=6)
    with pytest.raises(DataError, match=r"dataset.context=4000 is longer than the train split"):
        load_text(corpus="file", path=str(path), vocab_size=300, context=4000)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: expected a JSON object with a \"text\" string"):
        load_text(corpus="file", path=str(bad))
    with pytest.raises(DataError, match="not a .npy"):
        load_text(token_file=str(path), vocab_size=10)
