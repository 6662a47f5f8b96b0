"""Ragged features with a static per-batch capacity: overflow ids are dropped and counted."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.data import batching
from jaxrec.data.dataset import LABELS, Dataset
from jaxrec.data.features import Categorical, Sequence
from jaxrec.embedding import EMBEDDING, EmbeddingLayer, StackLayout, apply_capacity


def test_apply_capacity_hand_case():
    kept, dropped = apply_capacity(jnp.array([3, 0, 4, 2]), 5)
    np.testing.assert_array_equal(kept, [3, 0, 2, 0])  # bags keep ids in row order until 5 are used
    assert int(dropped) == 4


def test_layer_pools_only_kept_ids():
    feats = (Sequence("s", max_len=3, vocab_size=5, combiner="sum", batch_capacity=4),)
    b = {"s": jnp.array([[1, 2, 3], [4, 1, 0]]), "s_length": jnp.array([3, 2])}
    layer = EmbeddingLayer(feats, dim=2)
    v = layer.init(jax.random.PRNGKey(0), b)
    out, sown = layer.apply(v, b, mutable=["counters"])
    t = StackLayout.from_features(feats).unstack(v[EMBEDDING]["stacked"])["s"]
    np.testing.assert_allclose(out[1, 0], t[4], rtol=1e-6)  # the second bag kept 1 of its 2 ids
    assert int(sum(sown["counters"]["overflow_ids/s"])) == 1


def test_training_reports_overflow_counts(small_config, tmp_path):
    from jaxrec.train.loop import train_and_evaluate

    rng = np.random.default_rng(0)
    n, L, cap, bs = 4096, 4, 500, 256
    lengths = rng.integers(0, L + 1, n).astype(np.int32)
    ids = np.where(np.arange(L)[None] < lengths[:, None], rng.integers(1, 20, (n, L)), 0).astype(np.int32)
    cols = {"u": rng.integers(1, 30, n).astype(np.int32), "tags": ids, "tags_length": lengths,
            LABELS: (rng.random(n) < 0.5).astype(np.float32)}
    feats = (Categorical("u", encoding="identity", vocab_size=30),
             Sequence("tags", max_len=L, encoding="identity", vocab_size=20, batch_capacity=cap))
    ds = Dataset("capacity", feats, {"train": cols, "valid": cols, "test": cols})
    small_config.train.batch_size = bs
    small_config.train.eval_batch_size = 1024
    result = train_and_evaluate(small_config, tmp_path, dataset=ds)
    expected = sum(max(int(c["tags_length"].sum()) - cap, 0)
                   for epoch in range(2) for _, c in batching.train_chunks(cols, bs, 1, 0, epoch))
    assert expected > 0
    assert result["train_counters"] == {"overflow_ids/tags": expected}
    assert sum(h["counters"]["overflow_ids/tags"] for h in result["history"]) == expected
