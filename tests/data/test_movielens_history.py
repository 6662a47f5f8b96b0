"""MovieLens behaviours: each row's history is exactly the user's strictly earlier events (any
split), oldest first, the 50 most recent kept, as ids of the item vocabulary; item side tables."""

import numpy as np
import pytest

from jaxrec.data import encoding
from jaxrec.data.dataset import random_split
from jaxrec.data.features import Categorical
from jaxrec.data.movielens import MAX_HISTORY, load_movielens_100k, read_raw, user_histories


@pytest.fixture(scope="module")
def history(ml100k_dir):
    return load_movielens_100k(str(ml100k_dir), variant="history")


def test_user_histories_by_hand():
    users = np.array([1, 1, 2, 1, 1, 2])
    ts = np.array([30, 10, 5, 20, 20, 5])
    items = np.array([7, 3, 9, 4, 5, 8])
    hist, lengths = user_histories(users, ts, items, max_len=2)
    # user 1 by time: 10 -> 3, 20 -> 4 and 5 (a tie: neither sees the other), 30 -> 7
    np.testing.assert_array_equal(lengths, [2, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(hist, [[4, 5], [0, 0], [0, 0], [3, 0], [3, 0], [0, 0]])


def test_histories_are_leakage_free(history, ml100k_dir):
    raw = read_raw(str(ml100k_dir))
    idx = random_split(100_000, (0.8, 0.1, 0.1), 2024)
    spec, vocab = encoding.fit((Categorical("item_id"),), {"item_id": raw["item_id"][idx["train"]]})
    items = encoding.encode(spec, vocab, raw)["item_id"]  # every event's item, in the train vocabulary
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k in rng.choice(len(idx[split]), 40, replace=False):
            row = idx[split][k]
            u, t = raw["user_id"][row], raw["timestamp"][row]
            earlier = np.flatnonzero((raw["user_id"] == u) & (raw["timestamp"] < t))
            earlier = earlier[np.lexsort((earlier, raw["timestamp"][earlier]))][-MAX_HISTORY:]  # by time, then file order
            n = history.splits[split]["hist_item_length"][k]
            assert n == len(earlier)
            np.testing.assert_array_equal(history.splits[split]["hist_item"][k, :n], items[earlier])
            assert not history.splits[split]["hist_item"][k, n:].any()


def test_item_side_tables(history, ml100k_dir):
    raw = read_raw(str(ml100k_dir))
    train = history.splits["train"]
    row = 0
    item = train["item_id"][row]
    np.testing.assert_array_equal(history.side["item_title"][item], train["title"][row])
    np.testing.assert_array_equal(history.side["item_genres"][item], train["genres"][row])
    assert history.side["item_year"][item] == train["release_year"][row]
    assert not history.side["item_title"][0].any() and history.side["item_title_length"][0] == 0
    assert "toy" in raw["title"][np.flatnonzero(raw["item_id"] == 1)[0]]  # "Toy Story (1995)": words, no year
