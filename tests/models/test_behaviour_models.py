"""Behaviour models' defining mechanisms: DIN's target attention by hand, padding ignored, the
interest depends on the target."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.nn.behaviour import TargetAttention


def test_target_attention_by_hand():
    """With the unit's MLP replaced by its parameters' own arithmetic: a_j = FFN([e, v, e - v, e * v]),
    v_U = sum_{j < length} a_j e_j (no softmax); 'softmax' normalises over the valid positions."""
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=(2, 5, 4)).astype(np.float32)
    lengths = np.array([3, 0])
    unit = TargetAttention(hidden=(6,), activation="relu")
    v = unit.init(jax.random.PRNGKey(0), q, k, lengths)
    p = v["params"]["MLP_0"]
    feats = np.concatenate([k, np.broadcast_to(q[:, None], k.shape), k - q[:, None], k * q[:, None]], -1)
    h = np.maximum(feats @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0)
    a = (h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"])[..., 0]
    a = a * (np.arange(5)[None] < lengths[:, None])
    np.testing.assert_allclose(unit.apply(v, q, k, lengths), np.einsum("bl,bld->bd", a, k), rtol=1e-5, atol=1e-6)
    soft = TargetAttention(hidden=(6,), activation="relu", normalize="softmax").apply(v, q, k, lengths)
    w = np.exp(a[0, :3] - a[0, :3].max())
    np.testing.assert_allclose(soft[0], (w / w.sum()) @ k[0, :3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(soft[1], 0.0)  # an empty history has no interest


@pytest.fixture(scope="module")
def history(ml100k_dir):
    from jaxrec.data.movielens import load_movielens_100k

    return load_movielens_100k(str(ml100k_dir), variant="history")


def test_din_ignores_padding_and_reads_the_target(history):
    from jaxrec.models import build_model

    model = build_model("din", history.features, embed_dim=8, hidden=(16,), attention_hidden=(8,), embed_init_std=0.1)
    batch = {k: v[:64] for k, v in history.columns("train").items()}
    v = model.init(jax.random.PRNGKey(0), batch)
    logits = model.apply(v, batch)
    padded = dict(batch, hist_item=np.where(np.arange(50)[None] < batch["hist_item_length"][:, None], batch["hist_item"], 7))
    np.testing.assert_allclose(model.apply(v, padded), logits, rtol=1e-6)  # ids beyond the length change nothing
    other = dict(batch, item_id=np.roll(batch["item_id"], 1))
    interest = lambda b: model.apply(v, b, capture_intermediates=lambda m, _: isinstance(m, TargetAttention))[1]  # noqa: E731
    a, b = (interest(x)["intermediates"]["TargetAttention_0"]["__call__"][0] for x in (batch, other))
    assert float(jnp.abs(a - b).max()) > 1e-4  # same history, another target: another interest
    with pytest.raises(ValueError, match="model.history='hist'"):
        build_model("din", history.features, history="hist").init(jax.random.PRNGKey(0), batch)
