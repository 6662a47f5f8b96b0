"""APG: the low-rank generated layer by hand, weights that change with the condition, the
over-parameterised factors merging exactly for inference, and the models by config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.nn.apg import APGDense, merge_overparam


def effective_weight(layer, v, z):
    """W(z) `[B, N, M]` and b(z) `[B, M]` of a layer that is linear in x for a fixed z."""
    n = 6  # the layers' input width
    eye = jnp.eye(n)
    y = jax.vmap(lambda zi: layer.apply(v, eye, jnp.broadcast_to(zi, (n, zi.shape[0]))))(z)  # rows: e_i W + b
    b = jax.vmap(lambda zi: layer.apply(v, jnp.zeros((1, n)), zi[None])[0])(z)
    return y - b[:, None, :], b


def test_low_rank_layer_by_hand():
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=(3, 6)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    layer = APGDense(5, rank=2, hypernet_hidden=(7,))
    v = layer.init(jax.random.PRNGKey(0), x, z)
    p = v["params"]
    h = np.maximum(z @ p["hypernet"]["Dense_0"]["kernel"] + p["hypernet"]["Dense_0"]["bias"], 0)
    g = h @ p["hypernet"]["Dense_1"]["kernel"] + p["hypernet"]["Dense_1"]["bias"]
    s, b = g[:, :4].reshape(3, 2, 2) / np.sqrt(2), g[:, 4:]
    want = np.einsum("bk,bkj->bj", x @ p["U"], s) @ p["V"] + b
    np.testing.assert_allclose(layer.apply(v, x, z), want, rtol=1e-5, atol=1e-6)
    assert g.shape[1] == 2 * 2 + 5  # the generator emits only the K x K core and the bias, not N x M


def test_generated_weights_change_with_the_condition():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 4)).astype(np.float32)
    for low_rank in (True, False):
        layer = APGDense(5, rank=3, hypernet_hidden=(8,), low_rank=low_rank)
        v = layer.init(jax.random.PRNGKey(0), jnp.ones((1, 6)), z[:1])
        w, b = effective_weight(layer, v, z)
        assert float(jnp.abs(w[0] - w[1]).max()) > 1e-3 and float(jnp.abs(b[0] - b[1]).max()) > 1e-3
        if low_rank:  # W(z) = U S(z) V has rank <= K
            assert int(np.linalg.matrix_rank(np.asarray(w[0]), tol=1e-5)) <= 3
        x = rng.normal(size=(2, 6)).astype(np.float32)  # and the layer is x W(z) + b(z)
        np.testing.assert_allclose(layer.apply(v, x, z), jnp.einsum("bn,bnm->bm", x, w) + b, rtol=1e-4, atol=1e-5)


def test_overparameterisation_merges_exactly():
    rng = np.random.default_rng(2)
    x, z = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    wide = APGDense(5, rank=2, overparam=16)
    v = wide.init(jax.random.PRNGKey(0), x, z)
    assert v["params"]["U_l"].shape == (6, 16) and v["params"]["V_r"].shape == (16, 5)
    merged = {"params": merge_overparam(v["params"])}
    assert merged["params"]["U"].shape == (6, 2)
    np.testing.assert_allclose(APGDense(5, rank=2).apply(merged, x, z), wide.apply(v, x, z), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["apg_dnn", "apg_dcnv2"])
def test_apg_models_by_config(name, movielens):
    from jaxrec.models import build_model

    batch = {k: v[:32] for k, v in movielens.columns("train").items()}
    model = build_model(name, movielens.features, embed_dim=4, hidden=(8,), rank=2, condition=("user_id",))
    v = model.init(jax.random.PRNGKey(0), batch)
    assert model.apply(v, batch).shape == (32,)
    with pytest.raises(ValueError, match="model.condition names \\['nope'\\]"):
        build_model(name, movielens.features, condition=("nope",)).init(jax.random.PRNGKey(0), batch)
