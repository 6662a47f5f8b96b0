"""PCF-GNN: pair statistics by hand, out-of-fold train features (a row's own label never reaches
its feature), and a pre-trained GNN that predicts the statistic of pairs it never saw."""

import dataclasses

import numpy as np
import pytest

from jaxrec.data.dataset import LABELS, Dataset
from jaxrec.data.features import Categorical
from jaxrec.errors import ConfigError
from jaxrec.pretrain.cross_features import CrossOptions, add_cross_features, node_offsets, pair_stats, pretrain


def toy(labels, a, b, test_a, test_b):
    feats = (Categorical("a", encoding="identity", vocab_size=40), Categorical("b", encoding="identity", vocab_size=40))
    return Dataset("toy", feats, {"train": {"a": np.array(a), "b": np.array(b), LABELS: np.array(labels, np.float32)},
                                  "test": {"a": np.array(test_a), "b": np.array(test_b), LABELS: np.zeros(len(test_a), np.float32)}})


def test_pair_stats_by_hand():
    data = toy([1, 0, 1, 1], [1, 1, 2, 1], [3, 3, 3, 4], [1], [3])
    offsets = node_offsets(data, (("a", "b"),))
    s = pair_stats(data.splits["train"], (("a", "b"),), offsets)
    got = {(int(x), int(y) - 40): (float(i), float(c)) for x, y, i, c in zip(s.a, s.b, s.impressions, s.clicks)}
    assert got == {(1, 3): (2.0, 1.0), (1, 4): (1.0, 1.0), (2, 3): (1.0, 1.0)}
    np.testing.assert_allclose(s.smoothed(0.5, 2.0)[:1], [(1 + 1) / (2 + 2)])
    assert s.table_bytes() == 3 * 12


def test_train_features_are_out_of_fold():
    rng = np.random.default_rng(0)
    a, b = rng.integers(1, 5, 400), rng.integers(1, 5, 400)
    labels = rng.integers(0, 2, 400)
    opts = CrossOptions(method="explicit", pairs=(("a", "b"),), folds=2)
    base, _ = add_cross_features(toy(labels, a, b, [1], [1]), opts)
    flipped_labels = labels.copy()
    flipped_labels[7] = 1 - labels[7]
    flipped, _ = add_cross_features(toy(flipped_labels, a, b, [a[7]], [b[7]]), opts)
    col = "cross_a_b"
    assert flipped.splits["train"][col][7] == base.splits["train"][col][7]       # its own label is out of its fold
    assert not np.array_equal(flipped.splits["train"][col], base.splits["train"][col])  # the other fold sees it
    assert flipped.features[-1].name == col
    with pytest.raises(ConfigError, match="not features"):
        add_cross_features(toy(labels, a, b, [1], [1]), dataclasses.replace(opts, pairs=(("a", "c"),)))
    with pytest.raises(ConfigError, match="cross_features.bogus"):
        CrossOptions.from_config({"bogus": 1})


def test_gnn_predicts_unseen_pairs():
    """CTR(a, b) = sigmoid(2 u_a v_b) with rank-1 u, v: the GNN, trained on 70% of the pairs,
    ranks the 30% it never saw far better than chance."""
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=40), rng.normal(size=40)
    pairs = np.array([(i, j) for i in range(1, 31) for j in range(1, 31)])
    seen = rng.random(len(pairs)) < 0.7
    rows = np.repeat(pairs[seen], 40, axis=0)
    p = 1 / (1 + np.exp(-2 * u[rows[:, 0]] * v[rows[:, 1]]))
    data = toy((rng.random(len(rows)) < p).astype(np.float32), rows[:, 0], rows[:, 1], [1], [1])
    opts = CrossOptions(pairs=(("a", "b"),), dim=8, steps=300, lr=0.02)
    offsets = node_offsets(data, opts.pairs)
    score, loss, n_params = pretrain(pair_stats(data.splits["train"], opts.pairs, offsets), offsets, opts, 0.5)
    held = pairs[~seen]
    pred = score(held[:, 0] + offsets["a"], held[:, 1] + offsets["b"])
    truth = u[held[:, 0]] * v[held[:, 1]]
    assert np.corrcoef(pred, truth)[0, 1] > 0.6 and n_params > 0
