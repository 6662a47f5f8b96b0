"""AMTL masks: prefix shape, the straight-through gradient, the twins' roles, and learned sizes that
follow frequency when larger sizes pay off only for frequent values."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec.embedding.amtl import AMTLMask, frequency_feature, masked_bytes, per_value_dims, straight_through_mask


def test_mask_is_a_prefix_with_the_tail_probability_gradient():
    logits = jnp.array([[0.1, 2.0, -1.0, 0.3], [3.0, 0.0, 0.0, 0.0]])
    m = straight_through_mask(logits)
    np.testing.assert_array_equal(m, [[1, 1, 0, 0], [1, 0, 0, 0]])
    w = jnp.array([0.5, -1.0, 2.0, 3.0])
    got = jax.grad(lambda z: jnp.sum(straight_through_mask(z) * w))(logits)
    want = jax.grad(lambda z: jnp.sum(jnp.flip(jnp.cumsum(jnp.flip(jax.nn.softmax(z, -1), -1), -1), -1) * w))(logits)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_frequency_feature_and_twins():
    u = frequency_feature(np.array([0, 9, 99, 999]))
    np.testing.assert_allclose(u, np.log1p([0, 9, 99, 999]) / np.log1p(999), rtol=1e-6)
    module = AMTLMask(dim=6)
    v = module.init(jax.random.PRNGKey(0), jnp.asarray(u))
    bumped = jax.tree_util.tree_map_with_path(lambda p, x: x + 1.0 if "low" in jax.tree_util.keystr(p) else x, v)
    logits = lambda vv, x: module.apply(vv, jnp.asarray(x), method=AMTLMask.logits)  # noqa: E731
    np.testing.assert_allclose(logits(v, [1.0]), logits(bumped, [1.0]))   # the most frequent value: high twin only
    assert not np.allclose(logits(v, [0.0]), logits(bumped, [0.0]))       # the rarest: low twin only


def test_learned_sizes_follow_frequency():
    """Dimension j is worth (frequency - 0.3) per unit, minus a size cost: frequent values should
    keep many dimensions, rare ones few; the sizes exported match the forward masks."""
    counts = np.concatenate([np.full(50, 1000), np.full(50, 1)])
    u = jnp.asarray(frequency_feature(counts))
    module = AMTLMask(dim=8)
    v = module.init(jax.random.PRNGKey(0), u)
    tx = optax.adam(0.05)
    opt = tx.init(v)

    def loss(vv):
        mask = module.apply(vv, u)
        return -jnp.mean(jnp.sum(mask * (u[:, None] - 0.3), -1))

    for _ in range(200):
        g = jax.grad(loss)(v)
        updates, opt = tx.update(g, opt, v)
        v = optax.apply_updates(v, updates)
    dims = per_value_dims(module, v, np.asarray(u))
    assert dims[:50].min() > dims[50:].max(), (dims[:50], dims[50:])
    np.testing.assert_array_equal(dims, np.asarray(module.apply(v, u)).sum(-1))
    assert masked_bytes(dims) < 100 * 8 * 4


def test_frequency_columns_by_hand():
    """Train counts over every feature reading the table (a sequence's tokens within its length);
    values unseen in train get u = 0 in every split."""
    from jaxrec.data.dataset import LABELS, Dataset
    from jaxrec.data.features import Categorical, Sequence
    from jaxrec.embedding.amtl import add_frequency_columns, frequency_key, table_counts

    feats = (Categorical("item", vocab_size=5), Sequence("hist", group="item", max_len=3, vocab_size=5))
    train = {"item": np.array([1, 1, 2]), "hist": np.array([[1, 3, 4], [2, 0, 0], [0, 0, 0]]),
             "hist_length": np.array([2, 1, 0]), LABELS: np.zeros(3, np.float32)}
    test = {"item": np.array([4, 3]), "hist": np.array([[4, 1, 0], [0, 0, 0]]), "hist_length": np.array([2, 0]),
            LABELS: np.zeros(2, np.float32)}
    data = Dataset("toy", feats, {"train": train, "test": test})
    counts = table_counts(data, "item")
    np.testing.assert_array_equal(counts, [0, 3, 2, 1, 0])  # item 4 is only in padding beyond the length
    out = add_frequency_columns(data, ["item"])
    u = np.log1p(counts) / np.log1p(3)
    assert out.inputs == ("item_freq", "hist_freq") and "item_freq" in out.columns("test")
    np.testing.assert_allclose(out.splits["test"][frequency_key("item")], [0.0, u[3]], rtol=1e-6)
    np.testing.assert_allclose(out.splits["train"][frequency_key("hist")], u[train["hist"]], rtol=1e-6)


def test_amtl_by_config_trains_exports_and_warm_starts(small_config, tmp_path):
    """`tables.<t>.amtl` masks that table in every model: the mask starts full (the layer equals
    the plain one), the size penalty joins the loss, train.py exports per-value sizes, and a run
    warm-started from a plain model's workdir starts from its parameters (same predictions)."""
    from jaxrec.train import experiment
    from jaxrec.train import loop
    from jaxrec.train import state as state_lib
    from jaxrec.train.state import variables

    plain = tmp_path / "plain"
    small_config.train.num_epochs = 1
    loop.train_and_evaluate(small_config, plain)

    cfg = small_config.copy_and_resolve_references()
    cfg.tables = {"item_id": {"amtl": {"size_penalty": 0.5}}, "user_id": {"amtl": {}}}
    cfg.train.init_from = str(plain)
    exp = experiment.build(cfg)
    assert exp.amtl["item_id"].size_penalty == 0.5 and exp.amtl["user_id"].size_penalty == 1e-2
    state = exp.init_state()
    warm = experiment.warm_start(exp, state.params, plain)
    ref = experiment.build(small_config)
    ref_params, _ = ref.checkpointer(plain / "best", keep=1).restore(ref.init_state().params)
    batch = {k: v[:64] for k, v in exp.dataset.columns("test").items()}
    np.testing.assert_allclose(exp.model.apply(variables(warm), batch), ref.model.apply(variables(ref_params), batch),
                               rtol=1e-5, atol=1e-6)  # start='full': the masks are the identity

    step = jax.jit(state_lib.make_train_step(exp.model, exp.optimizers))
    _, metrics = step(state.replace(params=warm), {k: v[:256] for k, v in exp.dataset.columns("train").items()})
    assert 0.0 < float(metrics["aux_loss"]) <= 0.5 + 1e-2  # E[size] / D <= 1 per table, times lambda

    cfg.train.num_epochs = 2
    result = loop.train_and_evaluate(cfg, tmp_path / "amtl")
    sizes = np.load(tmp_path / "amtl" / "amtl_dims.npz")
    assert sorted(sizes.files) == ["embedding/item_id", "embedding/user_id"]  # the width-1 linear tables are not masked
    item = result["amtl"]["embedding/item_id"]
    assert item["values"] == 1651 and item["full_bytes"] == 1651 * 8 * 4 and item["bytes"] == sizes["embedding/item_id"].sum() * 4
    assert sizes["embedding/item_id"].mean() < 8  # a strong penalty shrank the item table
    assert np.all((sizes["embedding/user_id"] >= 1) & (sizes["embedding/user_id"] <= 8))


def test_bad_amtl_options_name_the_key(small_config, tmp_path):
    from jaxrec.errors import ConfigError
    from jaxrec.train import experiment, loop

    small_config.tables = {"item_id": {"amtl": {"penalty": 0.1}}}
    with pytest.raises(ConfigError, match=r"tables.item_id: unknown amtl option\(s\) \['penalty'\]"):
        experiment.build(small_config)
    small_config.train.init_from = "/nonexistent"
    small_config.tables = {"item_id": {"amtl": {}}}
    with pytest.raises(ConfigError, match="train.init_from='/nonexistent'"):
        loop.train_and_evaluate(small_config, tmp_path / "run")
    assert not (tmp_path / "run" / "config.json").exists()  # refused before the workdir was claimed
