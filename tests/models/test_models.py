"""The CTR models compute their papers' equations; the shared embedding layer looks up and pools."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.features import Categorical, Numeric, Sequence
from jaxrec.embedding import EMBEDDING, EmbeddingLayer, StackLayout, pool
from jaxrec.errors import ConfigError
from jaxrec.models import MODELS, build_model, model_options
from jaxrec.nn import CrossNetV2, fm_interaction

FEATURES = (Categorical("a", vocab_size=5), Categorical("b", vocab_size=7), Categorical("c", vocab_size=3))


def batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    b = {f.name: jnp.asarray(rng.integers(0, f.vocab_size, n), jnp.int32) for f in FEATURES}
    b["labels"] = jnp.asarray(rng.integers(0, 2, n), jnp.float32)
    return b


# Models over feature fields (the text models, which declare no embedding layers, read token windows:
# tests/test_transformer.py).
FIELD_MODELS = sorted(n for n in MODELS if getattr(MODELS[n], "EMBEDDING_LAYERS", None) is not None)


@pytest.mark.parametrize("name", [n for n in FIELD_MODELS if "history" not in model_options(n)])
def test_every_model_maps_a_batch_to_logits(name):
    """(Behaviour models need a history: tests/models/test_behaviour_models.py and test_zoo_configs.py.)"""
    m = build_model(name, FEATURES)
    v = m.init(jax.random.PRNGKey(0), batch())
    out = m.apply(v, batch(seed=1))
    want = (6, m.num_tasks) if hasattr(m, "num_tasks") else (6,)  # multi-task models: an output per task
    assert out.shape == want and out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    assert EMBEDDING in v  # tables live apart from dense params


def test_embedding_layer_gathers_the_right_rows_with_stacking():
    layer = EmbeddingLayer(FEATURES, dim=4)
    b = batch()
    v = layer.init(jax.random.PRNGKey(0), b)
    out = layer.apply(v, b)
    tables = StackLayout.from_features(FEATURES).unstack(v[EMBEDDING]["stacked"])
    assert {k: t.shape for k, t in tables.items()} == {"a": (5, 4), "b": (7, 4), "c": (3, 4)}
    for i, f in enumerate(FEATURES):
        np.testing.assert_array_equal(out[:, i], tables[f.name][b[f.name]])
    layout = StackLayout.from_features(FEATURES)
    np.testing.assert_array_equal(layout.stack(tables), v[EMBEDDING]["stacked"])


def test_shared_table_sequences_and_numeric_fields():
    feats = (Categorical("item", vocab_size=6), Sequence("hist", max_len=3, vocab_size=6, group="item", combiner="mean"),
             Sequence("tags", max_len=2, vocab_size=4, combiner="sum"), Numeric("price"))
    b = {"item": jnp.array([1, 5]), "hist": jnp.array([[1, 2, 0], [3, 0, 0]]), "hist_length": jnp.array([2, 1]),
         "tags": jnp.array([[1, 3], [0, 0]]), "tags_length": jnp.array([2, 0]), "price": jnp.array([2.0, -1.0])}
    layer = EmbeddingLayer(feats, dim=3)
    v = layer.init(jax.random.PRNGKey(1), b)
    out = layer.apply(v, b)
    t = StackLayout.from_features(feats).unstack(v[EMBEDDING]["stacked"])
    assert set(t) == {"item", "tags"}  # hist shares the item table
    np.testing.assert_allclose(out[0, 1], (t["item"][1] + t["item"][2]) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[1, 1], t["item"][3], rtol=1e-6)
    np.testing.assert_allclose(out[0, 2], t["tags"][1] + t["tags"][3], rtol=1e-6)
    np.testing.assert_allclose(out[1, 2], 0.0)  # empty list pools to zeros
    np.testing.assert_allclose(out[:, 3], b["price"][:, None] * v["params"]["numeric_price"][None], rtol=1e-6)


def test_pool_mean_and_sum():
    e = jnp.arange(12.0).reshape(1, 4, 3)
    np.testing.assert_allclose(pool(e, jnp.array([2]), "sum"), [[3.0, 5.0, 7.0]])
    np.testing.assert_allclose(pool(e, jnp.array([2]), "mean"), [[1.5, 2.5, 3.5]])


def test_fm_interaction_equals_pairwise_sum():
    e = jax.random.normal(jax.random.PRNGKey(0), (4, 5, 3))
    brute = sum(jnp.sum(e[:, i] * e[:, j], -1) for i in range(5) for j in range(i + 1, 5))
    np.testing.assert_allclose(fm_interaction(e), brute, rtol=1e-5, atol=1e-6)


def test_cross_net_v2_equation():
    x0 = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    net = CrossNetV2(num_layers=2)
    v = net.init(jax.random.PRNGKey(1), x0)
    x = x0
    for i in range(2):
        p = v["params"][f"cross_{i}"]
        x = x0 * (x @ p["kernel"] + p["bias"]) + x
    np.testing.assert_allclose(net.apply(v, x0), x, rtol=1e-5)


def test_lr_and_deepfm_decompose_as_in_the_paper():
    b = batch()
    lr = build_model("lr", FEATURES)
    v = lr.init(jax.random.PRNGKey(0), b)
    w = StackLayout.from_features(FEATURES).unstack(v[EMBEDDING]["linear"]["stacked"])
    expected = sum(w[f.name][b[f.name], 0] for f in FEATURES) + v["params"]["bias"]
    np.testing.assert_allclose(lr.apply(v, b), expected, rtol=1e-5)

    dfm = build_model("deepfm", FEATURES, embed_dim=4, hidden=(8,))
    v = dfm.init(jax.random.PRNGKey(0), b)
    emb = EmbeddingLayer(FEATURES, 4).apply({EMBEDDING: v[EMBEDDING]["embedding"]}, b)
    lin = EmbeddingLayer(FEATURES, 1).apply({EMBEDDING: v[EMBEDDING]["linear"]}, b)
    from jaxrec.nn import MLP

    deep = MLP((8,), out_dim=1).apply({"params": v["params"]["MLP_0"]}, emb.reshape(6, -1))[:, 0]
    expected = lin.sum((1, 2)) + v["params"]["bias"] + fm_interaction(emb) + deep
    np.testing.assert_allclose(dfm.apply(v, b), expected, rtol=1e-5, atol=1e-7)


def test_gradients_touch_only_looked_up_rows():
    m = build_model("dnn", FEATURES, embed_dim=4, hidden=(8,))
    b = {**batch(), "a": jnp.array([1, 1, 2, 2, 1, 2])}
    v = m.init(jax.random.PRNGKey(0), b)
    g = jax.grad(lambda t: m.apply({**v, EMBEDDING: t}, b).sum())(v[EMBEDDING])
    ga = StackLayout.from_features(FEATURES).unstack(g["embedding"]["stacked"])["a"]
    assert bool(jnp.all(ga[jnp.array([0, 3, 4])] == 0)) and bool(jnp.any(ga[1] != 0))


def test_unknown_model_and_option_are_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'deepfm'"):
        build_model("deepfn", FEATURES)
    with pytest.raises(ConfigError, match=r"model\.hiden"):
        build_model("dnn", FEATURES, hiden=(3,))


def test_specs_derived_from_features_keep_tables_and_features_apart():
    from jaxrec.embedding.specs import TableSpec, specs_from_features

    feats = (Categorical("item", vocab_size=6), Sequence("hist", max_len=3, vocab_size=9, group="item", combiner="sum",
                                                          batch_capacity=10), Categorical("u", vocab_size=4))
    tables, fspecs = specs_from_features(feats, dim=8)
    assert [(t.name, t.rows, t.dim) for t in tables] == [("item", 9, 8), ("u", 4, 8)]  # shared table: largest vocab
    assert [(f.name, f.table, f.max_len, f.pooled, f.batch_capacity) for f in fspecs] == [
        ("item", "item", 1, True, None), ("hist", "item", 3, True, 10), ("u", "u", 1, True, None)]
    assert StackLayout.from_features(feats) == StackLayout(("item", "u"), (9, 4))
    with pytest.raises(ValueError, match="rows=0"):
        TableSpec("t", 0, 4)


def test_per_table_initializers():
    from jaxrec.embedding.layer import init_stacked
    from jaxrec.embedding.specs import TableSpec

    t = init_stacked(jax.random.PRNGKey(0), (TableSpec("a", 1000, 4, "zeros"), TableSpec("b", 1000, 4, "uniform", 0.5),
                                             TableSpec("c", 1000, 4, "normal", 2.0)))
    a, b, c = np.asarray(t[:1000]), np.asarray(t[1000:2000]), np.asarray(t[2000:])
    assert np.all(a == 0) and b.min() >= -0.5 and b.max() < 0.5 and abs(b.mean()) < 0.05
    assert 1.8 < c.std() < 2.2
