"""AMTL masks: prefix shape, the straight-through gradient, the twins' roles, and learned sizes that
follow frequency when larger sizes pay off only for frequent values."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

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
