"""Tests for the synthetic CTR generator: determinism, id distribution, planted structure."""

import dataclasses
import inspect
import math
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from jaxrec.data.dataset import LABELS
from jaxrec.data.features import Categorical
from jaxrec.data.synthetic import (
    SyntheticSpec,
    _permute,
    bayes_prob,
    generate,
    load_synthetic,
    planted_tuples,
    true_logit,
)


def _onehot(columns: list[np.ndarray], sizes: list[int]) -> sp.csr_matrix:
    """One-hot of several int columns `[N]` side by side -> sparse `[N, sum(sizes)]`."""
    n = len(columns[0])
    offsets = np.cumsum([0] + sizes[:-1])
    cols = np.stack([c.astype(np.int64) + o for c, o in zip(columns, offsets)], 1)
    rows = np.repeat(np.arange(n), cols.shape[1])
    return sp.csr_matrix((np.ones(cols.size), (rows, cols.ravel())), shape=(n, sum(sizes)))


def _lr_auc(columns: list[np.ndarray], sizes: list[int], y: np.ndarray, train_frac: float = 0.8) -> float:
    """Held-out AUC of a logistic regression on one-hot columns (first rows train, rest test)."""
    x = _onehot(columns, sizes)
    a = int(train_frac * len(y))
    lr = LogisticRegression(C=1.0, solver="liblinear").fit(x[:a], y[:a])
    return roc_auc_score(y[a:], lr.predict_proba(x[a:])[:, 1])


def _lr_vs_oracle(spec: SyntheticSpec) -> tuple[float, float]:
    ids, y, p = generate(spec)
    sizes = list(spec.field_vocab_sizes)
    a = int(0.8 * spec.rows)
    return _lr_auc([ids[f"f{i}"] for i in range(spec.num_fields)], sizes, y), roc_auc_score(y[a:], p[a:])


def test_deterministic_and_chunk_invariant():
    spec = SyntheticSpec(rows=5000, num_fields=4, vocab_sizes=(10, 500, 10**6, 2), num_interactions=3)
    ids, y, p = generate(spec)
    runs = [generate(spec, chunk_rows=777), generate(spec, chunk_rows=4999), generate(spec)]
    runs.append(generate(dataclasses.replace(spec, rows=50), chunk_rows=1))  # row i depends on i only
    for ids2, y2, p2 in runs:
        n = len(y2)
        for k in ids:
            np.testing.assert_array_equal(ids[k][:n], ids2[k])
        np.testing.assert_array_equal(y[:n], y2)
        np.testing.assert_array_equal(p[:n], p2)
    ids3, y3, p3 = generate(dataclasses.replace(spec, seed=1))
    assert np.mean(ids3["f1"] == ids["f1"]) < 0.5
    assert not np.array_equal(p3, p)
    assert ids["f0"].dtype == np.int32 and y.dtype == np.float32 and p.dtype == np.float32
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_ids_in_range():
    vocabs = (2, 3, 17, 1000, 4097, 10**7)
    ids, _, _ = generate(SyntheticSpec(rows=20_000, num_fields=6, vocab_sizes=vocabs, num_interactions=4))
    for i, v in enumerate(vocabs):
        assert ids[f"f{i}"].min() >= 1 and ids[f"f{i}"].max() < v, (i, v)
    assert np.all(ids["f0"] == 1)
    assert len(np.unique(ids["f2"])) == 16  # every id of a small vocabulary shows up


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 4097, 65536])
def test_permutation_is_a_bijection(n):
    out = _permute(np.arange(n), n, np.uint64(12345))
    np.testing.assert_array_equal(np.sort(out), np.arange(n))


def test_popularity_is_not_correlated_with_id_value():
    n = 10_000
    ids = _permute(np.arange(n), n, np.uint64(7))
    assert abs(np.corrcoef(np.arange(n), ids)[0, 1]) < 0.05
    assert ids[0] != 0


def test_huge_vocab_is_cheap():
    spec = SyntheticSpec(rows=10_000, vocab_sizes=10**7)
    generate(dataclasses.replace(spec, rows=10))  # warm caches
    tracemalloc.start()
    try:
        ids, _, _ = generate(spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16e6, f"peak {peak / 1e6:.1f} MB; one vocab-sized float64 array alone is 80 MB"
    assert ids["f0"].max() > 10**6  # the long tail reaches deep into the vocabulary
    assert len(np.unique(ids["f0"])) > 2000


def test_zipf_popularity():
    def counts(s):
        ids, _, _ = generate(SyntheticSpec(rows=100_000, num_fields=1, vocab_sizes=1000, zipf_exponent=s, interaction_order=1, num_interactions=1))
        return np.bincount(ids["f0"], minlength=1000)[1:]

    skewed, flat = counts(1.1), counts(0.0)
    assert skewed.max() > 100 * np.median(skewed)
    assert flat.max() < 1.5 * np.median(flat)
    assert flat.min() > 0.5 * np.median(flat)


def test_planted_tuples():
    spec = SyntheticSpec(num_fields=6, interaction_order=3, num_interactions=5, seed=3)
    tuples = planted_tuples(spec)
    assert len(tuples) == 5 and len(set(tuples)) == 5
    assert all(len(t) == 3 and list(t) == sorted(set(t)) and 0 <= t[0] and t[-1] < 6 for t in tuples)
    assert planted_tuples(dataclasses.replace(spec, rows=7)) == tuples
    assert planted_tuples(dataclasses.replace(spec, seed=4)) != tuples
    all_pairs = planted_tuples(SyntheticSpec(num_fields=4, num_interactions=6))
    assert sorted(all_pairs) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    many = planted_tuples(SyntheticSpec(num_fields=200, interaction_order=3, num_interactions=50))
    assert len(set(many)) == 50  # more tuples than are enumerated: rejection sampling
    assert planted_tuples(SyntheticSpec(num_interactions=0)) == ()


def test_true_prob_is_calibrated_and_matches_true_logit():
    spec = SyntheticSpec(rows=50_000)
    ids, y, p = generate(spec)
    np.testing.assert_allclose(p, bayes_prob(true_logit(spec, ids), spec.noise).astype(np.float32), rtol=1e-6)
    with pytest.raises(ValueError, match="f3"):
        true_logit(spec, {**ids, "f3": np.full(3, 1000)})
    assert abs(y.mean() - p.mean()) < 0.01
    bins = np.digitize(p, np.quantile(p, np.linspace(0.1, 0.9, 9)))
    for b in range(10):
        assert abs(y[bins == b].mean() - p[bins == b].mean()) < 0.03, b


def test_planted_interactions_beat_one_hot_lr():
    lr, oracle = _lr_vs_oracle(SyntheticSpec(rows=40_000))
    assert oracle > 0.70
    assert oracle - lr > 0.08, (oracle, lr)


def test_no_signal_without_terms():
    spec = SyntheticSpec(rows=20_000, first_order_scale=0.0, interaction_scale=0.0)
    _, y, p = generate(spec)
    assert np.ptp(p) == 0.0  # true_prob is a constant, the labels are pure noise
    assert abs(roc_auc_score(y, p) - 0.5) < 0.02


def test_first_order_only_is_learned_by_lr():
    spec = SyntheticSpec(rows=40_000, num_fields=5, vocab_sizes=50, first_order_scale=1.0, interaction_scale=0.0)
    lr, oracle = _lr_vs_oracle(spec)
    assert oracle > 0.68
    assert lr > oracle - 0.02, (oracle, lr)
    lr_i, oracle_i = _lr_vs_oracle(dataclasses.replace(spec, interaction_scale=1.5))
    assert oracle_i - lr_i > 0.08, (oracle_i, lr_i)


def test_interaction_lives_on_the_planted_pair():
    spec = SyntheticSpec(rows=30_000, num_fields=5, vocab_sizes=16, zipf_exponent=0.0, num_interactions=1,
                         first_order_scale=0.0, interaction_scale=2.0)  # fmt: skip
    (a, b), = planted_tuples(spec)
    other = next((i, j) for i in range(5) for j in range(i + 1, 5) if {i, j}.isdisjoint({a, b}))
    ids, y, p = generate(spec)

    def cross_auc(i, j):
        return _lr_auc([ids[f"f{i}"].astype(np.int64) * 16 + ids[f"f{j}"]], [256], y)

    singles = _lr_auc([ids[f"f{a}"], ids[f"f{b}"]], [16, 16], y)
    assert roc_auc_score(y, p) > 0.75
    assert cross_auc(a, b) > roc_auc_score(y[24_000:], p[24_000:]) - 0.03
    assert abs(cross_auc(*other) - 0.5) < 0.04
    assert singles < cross_auc(a, b) - 0.15  # the effect is mostly not additive in the two ids


def test_positive_rate_follows_bias():
    rates = [generate(SyntheticSpec(rows=20_000, bias=b))[1].mean() for b in (-3.0, 0.0, 3.0)]
    assert rates[0] < 0.15 and 0.4 < rates[1] < 0.6 and rates[2] > 0.85


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rows": 0}, "rows"),
        ({"num_fields": 0}, "num_fields"),
        ({"vocab_sizes": 1}, "vocab_sizes"),
        ({"vocab_sizes": 2**31}, "vocab_sizes"),
        ({"num_fields": 2, "vocab_sizes": (10, 1)}, r"vocab_sizes\[1\]"),
        ({"num_fields": 2, "vocab_sizes": (10, 10, 10)}, "vocab_sizes"),
        ({"interaction_order": 11}, "interaction_order"),
        ({"interaction_order": 0}, "interaction_order"),
        ({"num_fields": 4, "num_interactions": 7}, "num_interactions"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"zipf_exponent": -1.0}, "zipf_exponent"),
        ({"noise": float("nan")}, "noise"),
        ({"first_order_scale": -0.1}, "first_order_scale"),
        ({"bias": float("inf")}, "bias"),
        ({"seed": -1}, "seed"),
        ({"rows": 1.5}, "rows"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticSpec(**kwargs)
    with pytest.raises(ValueError, match=match):
        load_synthetic(**kwargs)


def test_bad_chunk_and_split():
    with pytest.raises(ValueError, match="chunk_rows"):
        generate(SyntheticSpec(rows=10), chunk_rows=0)
    with pytest.raises(ValueError, match="split"):
        load_synthetic(rows=10, split=(0.5, 0.1, 0.1))


def test_load_synthetic():
    ds = load_synthetic(rows=2000, num_fields=3, vocab_sizes=(5, 100, 10**7), num_interactions=2, seed=5)
    assert ds.name == "synthetic" and ds.group_key is None
    assert ds.features == tuple(Categorical(f"f{i}", encoding="identity", vocab_size=v) for i, v in enumerate((5, 100, 10**7)))
    assert {s: ds.num_rows(s) for s in ds.splits} == {"train": 1600, "valid": 200, "test": 200}
    spec = SyntheticSpec(rows=2000, num_fields=3, vocab_sizes=(5, 100, 10**7), num_interactions=2, seed=5)
    _, y, p = generate(spec)
    for cols in ds.splits.values():
        assert set(cols) == {"f0", "f1", "f2", LABELS, "true_prob"}
        assert cols[LABELS].dtype == np.float32 and cols["true_prob"].dtype == np.float32
        assert cols["f2"].dtype == np.int32
    got = np.concatenate([ds.splits[s]["true_prob"] for s in ds.splits])
    np.testing.assert_array_equal(np.sort(got), np.sort(p))


def test_load_synthetic_defaults_match_spec():
    params = inspect.signature(load_synthetic).parameters
    for field in dataclasses.fields(SyntheticSpec):
        assert params[field.name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[field.name].default == field.default, field.name
    assert math.isclose(sum(params["split"].default), 1.0)
