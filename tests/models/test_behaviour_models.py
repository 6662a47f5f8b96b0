"""Behaviour models' defining mechanisms: DIN's target attention by hand, padding ignored, the
interest depends on the target."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.errors import ConfigError
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


def test_cooccurrence_graph_by_hand():
    from jaxrec.data.graph import cooccurrence_graph

    users = np.array([1, 1, 1, 2, 2, 1])
    ts = np.array([1, 2, 3, 1, 2, 4])
    items = np.array([5, 6, 7, 5, 6, 5])  # user 1: 5 6 7 5; user 2: 5 6
    g = cooccurrence_graph(users, ts, items, num_items=8, window=2, top_n=2)
    # window 2 over user 1: (5,6) (6,7) (7,5) and (5,7) (6,5); user 2: (5,6) -> 5-6: 3, 6-7: 1, 5-7: 2
    assert g.neighbours(5) == {6: 3.0, 7: 2.0} and g.neighbours(6) == {5: 3.0, 7: 1.0}
    assert g.neighbours(7) == {5: 2.0, 6: 1.0}
    assert cooccurrence_graph(users, ts, items, 8, window=2, top_n=1).neighbours(7) == {5: 2.0}  # the heaviest kept


def test_diffusion_reaches_two_hops():
    """Path graph 1 - 2 - 3: after one layer node 1 depends on node 2 only; after two, on node 3."""
    from jaxrec.nn.graph import AttentionAggregation

    senders, receivers = jnp.array([1, 2, 2, 3]), jnp.array([2, 1, 3, 2])
    w = jnp.ones(4)
    h0 = jax.random.normal(jax.random.PRNGKey(0), (4, 6))
    layers = [AttentionAggregation((8,)) for _ in range(2)]
    vs = [layer.init(jax.random.PRNGKey(i), h0, senders, receivers, w) for i, layer in enumerate(layers)]

    def node1(h, hops):
        for layer, v in list(zip(layers, vs))[:hops]:
            h = layer.apply(v, h, senders, receivers, w)
        return h[1].sum()

    one, two = (np.abs(np.asarray(jax.grad(node1)(h0, k))).sum(1) for k in (1, 2))
    assert one[2] > 0 and one[3] == 0 and one[0] == 0
    assert two[3] > 0 and two[0] == 0


def test_gin_graph_comes_from_the_train_split_only(history):
    from jaxrec.data.dataset import Dataset
    from jaxrec.models import build_model
    from jaxrec.models.ctr.gin import GIN

    def split(users, ts, items):
        return {"user_id": np.array(users), "timestamp": np.array(ts), "item_id": np.array(items)}

    toy = Dataset("toy", history.features, {"train": split([1, 1, 2], [1, 2, 1], [1, 2, 3]),
                                            "test": split([1, 1], [3, 4], [3, 4])})
    senders, receivers, weights = GIN.from_dataset(toy, {})["graph"].value
    assert sorted(zip(senders.tolist(), receivers.tolist())) == [(1, 2), (2, 1)]  # test's 3-4 and 2-3 are not edges

    model = build_model("gin", history.features, dataset=history, embed_dim=4, hidden=(8,))
    batch = {k: v[:16] for k, v in history.columns("train").items()}
    assert model.apply(model.init(jax.random.PRNGKey(0), batch), batch).shape == (16,)
    with pytest.raises(ConfigError, match="derives constants from its training data"):
        build_model("gin", history.features)


def test_info_nce_by_hand():
    from jaxrec.pretrain.content_encoder import info_nce

    q = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    k = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    pos = jnp.array([[True, False, False], [False, True, True]])
    logits = np.array([[1.0, 0.6, 0.0], [0.0, 0.8, 1.0]]) / 0.5
    want = -np.mean([logits[0, 0] - np.log(np.exp(logits[0]).sum()),
                     np.log(np.exp(logits[1, 1:]).sum()) - np.log(np.exp(logits[1]).sum())])
    np.testing.assert_allclose(info_nce(q, k, pos, 0.5), want, rtol=1e-5)


def test_content_fine_tuning_and_frozen_content(history):
    """C-SFT on behaviour pairs ranks each item's next item higher than the aligned-only encoder
    does; CiUBM reads the frozen vectors (not parameters) and its logits follow them."""
    import dataclasses

    from jaxrec.models import build_model
    from jaxrec.pretrain.content_encoder import ContentOptions, behaviour_pairs, train_content_encoder
    from jaxrec.models.frozen import Frozen

    train = history.splits["train"]
    pairs = behaviour_pairs(train["user_id"], train["timestamp"], train["item_id"])
    pop = np.bincount(train["item_id"], minlength=history.side["item_title"].shape[0]) + 1.0
    opts = ContentOptions(align_steps=50, sft_steps=150)
    held = pairs[np.random.default_rng(0).choice(len(pairs), 2000, replace=False)]

    def next_item_rank(vectors):
        scores = vectors[held[:, 0]] @ vectors[1:].T
        return np.mean(np.sum(scores > np.sum(vectors[held[:, 0]] * vectors[held[:, 1]], 1)[:, None], 1))

    aligned, _ = train_content_encoder(history.side, pairs, pop, dataclasses.replace(opts, sft_steps=0))
    tuned, report = train_content_encoder(history.side, pairs, pop, opts)
    assert next_item_rank(tuned) < 0.7 * next_item_rank(aligned), (next_item_rank(tuned), next_item_rank(aligned))
    assert np.all(tuned[0] == 0) and np.allclose(np.linalg.norm(tuned[1:], axis=1), 1, atol=1e-4)

    model = build_model("ciubm", history.features, embed_dim=4, hidden=(8,), attention_hidden=(4,), content_dim=32,
                        content=Frozen(tuned))
    batch = {k: v[:32] for k, v in history.columns("train").items()}
    v = model.init(jax.random.PRNGKey(0), batch)
    assert all(x.shape != tuned.shape for x in jax.tree.leaves(v))  # the content table is not a parameter
    other = dataclasses.replace(model, content=Frozen(np.roll(tuned, 1, axis=0)))
    assert float(jnp.abs(other.apply(v, batch) - model.apply(v, batch)).max()) > 1e-5


def test_dice_by_hand():
    """Dice (DIN eq. 9) on one channel holding -1 and 1 (batch mean 0, variance 1): p = sigmoid(+-1),
    f(s) = p s + (1 - p) alpha s; at alpha = 0 (its initial value) f(-1) = -0.26894, f(1) = 0.73106;
    at alpha = 0.5, f(-1) = -0.26894 - 0.5 * 0.73106 = -0.63447. A second channel is normalised by its
    own statistics: [10, 30] (mean 20, std 10) gives the same gates."""
    from jaxrec.nn.layers import MLP, Dice

    x = jnp.array([[-1.0, 10.0], [1.0, 30.0]])
    dice = Dice(eps=0.0)
    v = dice.init(jax.random.PRNGKey(0), x)
    np.testing.assert_allclose(v["params"]["alpha"], [0.0, 0.0])
    s = 1 / (1 + np.exp(-1.0))  # sigmoid(1) = 0.7310586
    np.testing.assert_allclose(dice.apply(v, x), [[-(1 - s), 10 * (1 - s)], [s, 30 * s]], rtol=1e-6)
    out = dice.apply({"params": {"alpha": jnp.array([0.5, 0.0])}}, x)
    np.testing.assert_allclose(out[0, 0], -0.63447, atol=1e-5)
    mlp = MLP((3,), activation="dice", out_dim=1)
    assert "Dice_0" in mlp.init(jax.random.PRNGKey(0), jnp.ones((4, 2)))["params"]
    with pytest.raises(ValueError, match="activation='bogus'"):
        MLP((3,), activation="bogus").init(jax.random.PRNGKey(0), jnp.ones((4, 2)))
