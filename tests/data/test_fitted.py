"""Issue 18, item 9: the fitted state (vocabularies) is exposed, saved, loaded and reused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxrec.data.criteo import load_criteo
from jaxrec.data.fitted import Fitted, apply_fitted, load_fitted, save_fitted
from jaxrec.data.features import Categorical
from jaxrec.data.movielens import load_movielens_100k
from jaxrec.data.tabular import load_tabular
from jaxrec.errors import DataError
from tests.data import test_criteo as criteo_tests
from tests.data.test_tabular import FEATURES, make_rows, write_csv


def _load(train, test, **kw):
    return load_tabular(train, label="click", features=kw.pop("features", FEATURES), valid_path=test, test_path=test, **kw)


def test_a_changed_train_file_does_not_change_eval_ids_with_the_saved_state(tmp_path):
    rows = make_rows(200)
    train, test = write_csv(tmp_path / "train.csv", rows), write_csv(tmp_path / "test.csv", make_rows(50, seed=1))
    first = _load(train, test)
    assert set(first.fitted.vocabs) == {"item", "genres"} and first.fitted.features == first.features
    save_fitted(first.fitted, tmp_path / "fitted.json")
    # The train file changes after training (items dropped): a refit shifts the ids ...
    write_csv(tmp_path / "train.csv", [r for r in rows if r["item"] not in ("i3", "i7")])
    refit = _load(train, test)
    assert not np.array_equal(refit.splits["test"]["item"], first.splits["test"]["item"])
    # ... the saved state does not.
    again = _load(train, test, fitted=load_fitted(tmp_path / "fitted.json"))
    assert again.features == first.features
    for k, v in first.splits["test"].items():
        np.testing.assert_array_equal(again.splits["test"][k], v, err_msg=k)
    assert again.fitted.features == first.fitted.features


def test_state_must_match_the_features(tmp_path):
    rows = make_rows(100)
    path = write_csv(tmp_path / "d.csv", rows)
    state = _load(path, path).fitted
    changed = [dict(f, min_count=3) if f["name"] == "item" else f for f in FEATURES]
    with pytest.raises(DataError, match=r"feature 'item' has min_count=3 now, 1 when fitted"):
        _load(path, path, features=changed, fitted=state)
    with pytest.raises(DataError, match=r"has feature\(s\) \['age'\] that the dataset does not"):
        _load(path, path, features=FEATURES[:-1], fitted=state)
    with pytest.raises(DataError, match=r"no feature 'extra'"):
        _load(path, path, features=FEATURES + [{"name": "extra", "column": "item"}], fitted=state)
    with pytest.raises(DataError, match=r"feature 'price' is categorical now, numeric when fitted"):
        _load(path, path, features=FEATURES[:3] + [{"name": "price"}] + FEATURES[4:], fitted=state)


def test_file_format_long_values_and_versions(tmp_path):
    vocab = np.empty(3, dtype=object)
    vocab[:] = ["a", "é" * 100_000, "😀"]
    state = Fitted((Categorical("c", vocab_size=4), Categorical("n", vocab_size=3), Categorical("h", encoding="hash", hash_buckets=9, vocab_size=9)),
                   {"c": vocab, "n": np.array([-5, 7])})
    save_fitted(state, tmp_path / "f.json")
    back = load_fitted(tmp_path / "f.json")
    assert back.features == state.features and back.vocabs["c"].tolist() == vocab.tolist()
    assert back.vocabs["n"].dtype == np.int64 and back.vocabs["n"].tolist() == [-5, 7]
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["format"] == "jaxrec.fitted" and doc["version"] == 1
    doc["version"] = 2
    (tmp_path / "f.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"f\.json: fitted-state format version 2; this jaxrec reads version 1"):
        load_fitted(tmp_path / "f.json")
    doc["version"] = 1
    doc["vocabs"]["c"]["values"] = ["b", "a", "c"]
    (tmp_path / "f.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"feature 'c': the vocabulary is not sorted"):
        load_fitted(tmp_path / "f.json")
    (tmp_path / "f.json").write_text("{")
    with pytest.raises(DataError, match=r"f\.json: not a readable fitted-state file"):
        load_fitted(tmp_path / "f.json")
    with pytest.raises(DataError, match=r"no such fitted-state file"):
        load_fitted(tmp_path / "nope.json")
    specs, vocabs = apply_fitted(state, (Categorical("h", encoding="hash", hash_buckets=9), Categorical("n"), Categorical("c")))
    assert [f.name for f in specs] == ["h", "n", "c"] and specs[2].vocab_size == 4 and set(vocabs) == {"c", "n"}


def test_movielens_state_round_trip(tmp_path, movielens, ml100k_dir):
    save_fitted(movielens.fitted, tmp_path / "ml.json")
    again = load_movielens_100k(str(ml100k_dir), fitted=load_fitted(tmp_path / "ml.json"))
    assert again.features == movielens.features
    for s in movielens.splits:
        for k, v in movielens.splits[s].items():
            np.testing.assert_array_equal(again.splits[s][k], v, err_msg=f"{s}/{k}")
    with pytest.raises(DataError, match=r"no feature 'genres'"):
        load_movielens_100k(str(ml100k_dir), variant="genres", fitted=movielens.fitted)


@pytest.mark.parametrize("encoding", ["vocab", "hash"])
def test_criteo_state(tmp_path, encoding):
    a_path = criteo_tests.write(tmp_path / "a.tsv", criteo_tests.make_rows(200))
    a = load_criteo(a_path, encoding=encoding, min_count=2)
    criteo_tests.assert_same(load_criteo(a_path, encoding=encoding, min_count=2, fitted=a.fitted), a)
    b_path = criteo_tests.write(tmp_path / "b.tsv", criteo_tests.make_rows(200, seed=5))
    b = load_criteo(b_path, encoding=encoding, min_count=2, fitted=a.fitted)
    assert b.features == a.features
    if encoding == "vocab":
        assert set(a.fitted.vocabs) == {f"C{i}" for i in range(1, 27)}
        vocab = a.fitted.vocabs["C1"]
        raw = np.array([r[14] for r in criteo_tests.make_rows(200, seed=5)], dtype=object)
        ids = np.concatenate([b.splits[s]["C1"] for s in ("train", "valid", "test")])
        assert ids.max() <= len(vocab) and set(ids.tolist()) <= set(range(len(vocab) + 1))
        assert all(v in set(raw.tolist()) for v in vocab[ids[ids > 0] - 1].tolist())
    with pytest.raises(DataError, match=r"feature 'C1' has hash_buckets=" if encoding == "hash" else r"feature 'C1' has min_count=3"):
        load_criteo(b_path, encoding=encoding, min_count=3, hash_buckets=1000, fitted=a.fitted)
