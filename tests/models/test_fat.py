"""FAT layers compute the paper's equations; switches, hypernet cache and kernel path agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.features import Categorical
from jaxrec.models import build_model
from jaxrec.models.ctr.fat import FAT, Transformer, cache_composed_weights
from jaxrec.nn import FieldAttention, FieldLinear, compose_basis_weights

FEATURES = tuple(Categorical(n, vocab_size=v) for n, v in (("a", 5), ("b", 7), ("c", 3), ("d", 4)))
F, D = len(FEATURES), 8


def batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {f.name: jnp.asarray(rng.integers(0, f.vocab_size, n), jnp.int32) for f in FEATURES}


def tokens(b=5, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(b, F, D)), jnp.float32)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_field_linear_uses_each_fields_own_kernel():
    x = tokens()
    layer = FieldLinear(3, per_field=True, use_bias=True)
    v = layer.init(jax.random.PRNGKey(0), x)
    kernel, bias = np.asarray(v["params"]["kernel"]), np.asarray(v["params"]["bias"])
    assert kernel.shape == (F, D, 3) and bias.shape == (F, 3)
    want = np.stack([np.asarray(x[:, f]) @ kernel[f] + bias[f] for f in range(F)], axis=1)
    np.testing.assert_allclose(layer.apply(v, x), want, rtol=1e-5, atol=1e-6)
    shared = FieldLinear(3, per_field=False)
    assert shared.init(jax.random.PRNGKey(0), x)["params"]["kernel"].shape == (D, 3)


def test_field_attention_by_hand():
    """One head: s_ij = (q_i . k_j / sqrt(d)) * w[i, j], softmax over j, values summed."""
    x = tokens(b=2)
    layer = FieldAttention(num_heads=1, per_field=True, modulation=True)
    v = layer.init(jax.random.PRNGKey(1), x)
    p = jax.tree_util.tree_map(np.asarray, v["params"])
    w = np.random.default_rng(2).normal(size=(F, F)).astype(np.float32)  # asymmetric
    v = {"params": {**v["params"], "field_pair": jnp.asarray(w)}}
    xn = np.asarray(x)
    q, k, val = (np.einsum("bfi,fio->bfo", xn, p[n]["kernel"]) for n in ("query", "key", "value"))
    s = np.einsum("bid,bjd->bij", q, k) / np.sqrt(D) * w
    want = np.einsum("bij,bjd->bid", softmax(s), val)
    np.testing.assert_allclose(layer.apply(v, x), want, rtol=1e-5, atol=1e-5)


def test_zero_modulation_is_uniform_attention_and_unit_modulation_is_plain():
    x = tokens(b=3)
    mod = FieldAttention(num_heads=2, modulation=True)
    v = mod.init(jax.random.PRNGKey(0), x)
    plain = FieldAttention(num_heads=2, modulation=False)
    without_w = {"params": {k: t for k, t in v["params"].items() if k != "field_pair"}}
    ones = {"params": {**v["params"], "field_pair": jnp.ones((F, F))}}
    np.testing.assert_allclose(mod.apply(ones, x), plain.apply(without_w, x), rtol=1e-6, atol=1e-6)
    zeros = {"params": {**v["params"], "field_pair": jnp.zeros((F, F))}}
    values = np.einsum("bfi,fio->bfo", np.asarray(x), np.asarray(v["params"]["value"]["kernel"]))
    np.testing.assert_allclose(mod.apply(zeros, x), np.broadcast_to(values.mean(1, keepdims=True), x.shape), rtol=1e-5, atol=1e-6)


def test_compose_basis_weights_mixes_the_top_k_bases():
    bases = jnp.asarray(np.random.default_rng(0).normal(size=(4, 2, 3)), jnp.float32)
    logits = jnp.array([[0.0, 2.0, 1.0, -1.0], [3.0, -2.0, -2.0, 0.5]])
    got = compose_basis_weights(bases, logits, top_k=2)
    a0, a1 = softmax(np.array([2.0, 1.0])), softmax(np.array([3.0, 0.5]))
    np.testing.assert_allclose(got[0], a0[0] * bases[1] + a0[1] * bases[2], rtol=1e-6)
    np.testing.assert_allclose(got[1], a1[0] * bases[0] + a1[1] * bases[3], rtol=1e-6)
    g = jax.grad(lambda l: jnp.sum(compose_basis_weights(bases, l, 2) ** 2))(logits)
    np.testing.assert_array_equal(np.asarray(g)[[0, 0, 1, 1], [0, 3, 1, 2]], 0.0)  # unselected: no gradient
    assert np.all(np.asarray(g)[[0, 0, 1, 1], [1, 2, 0, 3]] != 0.0)


def test_hypernet_cache_gives_identical_predictions_with_plain_parameters():
    model = build_model("fat", FEATURES, embed_dim=D, hypernet=True, num_bases=5, meta_dim=6, top_k=2)
    v = model.init(jax.random.PRNGKey(0), batch())
    assert v["params"]["block_0"]["attention"]["query"]["bases"].shape == (5, D, D)
    served, sv = cache_composed_weights(model, v)
    assert not served.hypernet and "field_meta" not in sv["params"]
    assert sv["params"]["block_1"]["ffn"]["up"]["kernel"].shape == (F, D, 4 * D)
    plain = build_model("fat", FEATURES, embed_dim=D).init(jax.random.PRNGKey(0), batch())
    assert jax.tree_util.tree_structure(sv["params"]) == jax.tree_util.tree_structure(plain["params"])
    b = batch(seed=3)
    np.testing.assert_allclose(served.apply(sv, b), model.apply(v, b), rtol=1e-6, atol=1e-6)


def n_params(tree):
    return sum(x.size for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("switch,gone", [("per_field", None), ("modulation", "field_pair"), ("field_ffn", None)])
def test_ablation_switches_remove_their_parameters(switch, gone):
    full = FAT(FEATURES, embed_dim=D).init(jax.random.PRNGKey(0), batch())["params"]
    ablated = FAT(FEATURES, embed_dim=D, **{switch: False}).init(jax.random.PRNGKey(0), batch())["params"]
    assert n_params(ablated) < n_params(full)
    if gone:
        assert gone in full["block_0"]["attention"] and gone not in ablated["block_0"]["attention"]


def test_vanilla_transformer_is_fat_with_field_parts_off():
    p = Transformer(FEATURES, embed_dim=D).init(jax.random.PRNGKey(0), batch())["params"]["block_0"]
    assert p["attention"]["query"]["kernel"].shape == (D, D) and "field_pair" not in p["attention"]
    assert p["ffn"]["up"]["kernel"].shape == (D, 4 * D) and "out" in p["attention"]


def test_pallas_kernel_path_matches_xla_in_the_model():
    b = batch(n=10, seed=4)
    xla = FAT(FEATURES, embed_dim=D, embed_init_std=0.1, attention="xla")
    v = xla.init(jax.random.PRNGKey(0), b)
    kern = xla.clone(attention="interpret")
    np.testing.assert_allclose(kern.apply(v, b), xla.apply(v, b), rtol=1e-5, atol=1e-5)
    loss = lambda m: lambda p: jnp.sum(jnp.tanh(m.apply({**v, "params": p}, b)))
    g_x, g_k = jax.grad(loss(xla))(v["params"]), jax.grad(loss(kern))(v["params"])
    for a, k in zip(jax.tree_util.tree_leaves(g_x), jax.tree_util.tree_leaves(g_k)):
        np.testing.assert_allclose(k, a, rtol=1e-4, atol=1e-5)


def test_parallel_dnn_adds_its_logit_to_the_blocks_logit():
    """AutoInt+ variant: logit = FAT logit + DNN(flattened input tokens); the rest is the plain model."""
    b = batch()
    model = FAT(FEATURES, embed_dim=D, parallel_dnn=(5,))
    v = model.init(jax.random.PRNGKey(0), b)
    p = v["params"]
    plain = {**v, "params": {k: t for k, t in p.items() if k != "parallel_dnn"}}
    base = FAT(FEATURES, embed_dim=D).apply(plain, b)
    dnn = jax.tree_util.tree_map(np.asarray, p["parallel_dnn"])
    # the DNN's logit by hand from the input tokens e_f + b_f
    _, state = model.apply(v, b, capture_intermediates=True)
    first = np.asarray(state["intermediates"]["embedding"]["__call__"][0]) + np.asarray(p["field_bias"])  # [B, F, D]
    h = np.maximum(first.reshape(len(first), -1) @ dnn["Dense_0"]["kernel"] + dnn["Dense_0"]["bias"], 0)
    want = np.asarray(base) + (h @ dnn["Dense_1"]["kernel"] + dnn["Dense_1"]["bias"])[:, 0]
    np.testing.assert_allclose(model.apply(v, b), want, rtol=1e-5, atol=1e-6)


def test_field_norm_normalises_each_token_with_its_fields_gain_and_bias():
    """Zero gains leave each token its field's bias: every example then gets the same logit; unit
    gains make the model blind to the scale of the embeddings (a LayerNorm per token)."""
    b = batch()
    model = FAT(FEATURES, embed_dim=D, field_norm=True)
    v = model.init(jax.random.PRNGKey(0), b)
    p = v["params"]
    scaled = lambda c: {**v, "embedding": jax.tree_util.tree_map(lambda t: t * c, v["embedding"])}
    out1, out3 = model.apply(scaled(1e4), b), model.apply(scaled(3e4), b)  # embeddings of std ~1 and ~3
    np.testing.assert_allclose(out1, out3, rtol=1e-4, atol=1e-5)
    bias = jnp.asarray(np.random.default_rng(0).normal(size=(F, D)), jnp.float32)
    const = model.apply({**scaled(1e4), "params": {**p, "field_norm_scale": jnp.zeros((F, D)), "field_norm_bias": bias}}, b)
    np.testing.assert_allclose(const, np.full(len(const), float(const[0])), rtol=1e-5)
    assert not np.allclose(out1, out1[0])


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="num_heads"):
        FAT(FEATURES, embed_dim=6, num_heads=4).init(jax.random.PRNGKey(0), batch())
    with pytest.raises(ValueError, match="pooling"):
        FAT(FEATURES, embed_dim=D, pooling="max").init(jax.random.PRNGKey(0), batch())
    with pytest.raises(ValueError, match="top_k"):
        FAT(FEATURES, embed_dim=D, hypernet=True, num_bases=2, top_k=3).init(jax.random.PRNGKey(0), batch())


def test_every_config_file_validates_and_builds():
    """Each config in configs/ passes validation, and its model section builds the model it names
    with exactly the options it sets (on stand-in features; the datasets are not loaded)."""
    from tests.conftest import ROOT
    from jaxrec.models import MODELS
    from jaxrec.models.frozen import Frozen
    from jaxrec.train.cli import load_config_file
    from jaxrec.train.config import validate

    paths = sorted((ROOT / "configs").glob("*.py"))
    assert {"fat_movielens.py", "transformer_movielens.py", "fat_synthetic.py", "transformer_synthetic.py"} <= {p.name for p in paths}
    for path in paths:
        c = load_config_file(str(path))
        validate(c)
        if c.task.name == "delayed_feedback":  # the stream builds its methods' networks (jaxrec.train.delayed_feedback)
            from jaxrec.models import MultiHeadDNN
            from jaxrec.train.delayed_feedback import METHODS

            assert c.model.name == "multi_head_dnn" and c.task.method in METHODS, path.name
            assert MultiHeadDNN(FEATURES, embed_dim=c.model.embed_dim).embed_dim == c.model.embed_dim
            continue
        options = {k: v for k, v in c.model.to_dict().items() if k != "name"}
        stand_ins = {f: Frozen(np.zeros(1)) for f in getattr(MODELS[c.model.name], "DATA_FIELDS", ())}  # e.g. GIN's graph
        model = build_model(c.model.name, FEATURES, **options, **stand_ins)
        assert type(model) is MODELS[c.model.name], path.name
        for k, v in options.items():
            assert getattr(model, k) == (tuple(v) if isinstance(v, list) else v), (path.name, k)


def test_fat_learns_planted_pairs_that_logistic_regression_cannot(tmp_path):
    """Labels from planted field pairs only: LR sees just the pairs' marginal effects (small
    vocabularies leave some); FAT, which models the pairs, must do far better."""
    from tests.conftest import ROOT
    from jaxrec.train.cli import load_config_file
    from jaxrec.train.loop import train_and_evaluate

    aucs = {}
    for model in ("lr", "fat"):
        c = load_config_file(str(ROOT / "configs" / "fat_synthetic.py"))
        c.dataset.update(dict(rows=30_000, num_fields=4, vocab_sizes=(20, 20, 20, 20), num_interactions=2,
                              first_order_scale=0.0, interaction_scale=3.0))
        c.model = type(c.model)({"name": model, "embed_init_std": 0.01})
        if model == "fat":
            c.model.update(dict(embed_dim=8, num_layers=1))
        c.train.update(dict(num_epochs=3, progress_bar=False))
        aucs[model] = train_and_evaluate(c, tmp_path / model)["test"]["auc"]
    assert aucs["fat"] > 0.72 and aucs["fat"] - aucs["lr"] > 0.08, aucs  # seen: 0.770 vs 0.644
