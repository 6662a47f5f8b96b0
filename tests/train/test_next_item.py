"""Next-item recommendation: ranking metrics by hand (pessimistic ties), the 'next_item' task's
loss and on-device rank against numpy, SASRec's masking (padding and the future are invisible),
and SASRec trained through train_and_evaluate beating popularity on valid NDCG@10."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.sequential import HISTORY, ITEM_COUNT, TARGET, load_sequential
from jaxrec.errors import ConfigError
from jaxrec.models import build_model
from jaxrec.train import metrics as M
from jaxrec.train.config import default_config
from jaxrec.train.loop import train_and_evaluate
from jaxrec.train.tasks import NextItemTask, make_task


def test_target_rank_and_metrics_by_hand():
    # ids 0..4 (0 padding, its score ignored even when highest)
    scores = np.array([[9.0, 0.1, 0.5, 0.3, 0.2],     # target 2: best -> rank 1
                       [9.0, 0.4, 0.4, 0.4, 0.1],     # target 1 tied with 2, 3: pessimistic rank 3
                       [0.0, 0.9, 0.8, 0.7, 0.6]])    # target 4: last -> rank 4
    ranks = M.target_rank(scores, np.array([2, 1, 4]))
    np.testing.assert_array_equal(ranks, [1, 3, 4])
    m = M.ranking_metrics(ranks, hr_ks=(1, 3), ndcg_ks=(3,))
    assert m["hr@1"] == pytest.approx(1 / 3) and m["hr@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / 3)  # rank 1: 1, rank 3: 1/2, rank 4: 0
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 4) / 3) and m["count"] == 3
    assert set(M.ranking_metrics(ranks)) == set(M.RANKING_METRICS) | {"count"}
    with pytest.raises(ValueError, match="1-based"):
        M.ranking_metrics(np.array([0, 1]))


def test_task_loss_and_eval_outputs_match_numpy():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 9)).astype(np.float32)
    scores[1, 3] = scores[1, 5]  # a tie
    target = np.array([1, 3, 8, 2, 5, 5], np.int32)
    task = NextItemTask()
    ranks = np.asarray(jax.jit(task.eval_outputs)(jnp.asarray(scores), {TARGET: jnp.asarray(target)}))
    np.testing.assert_array_equal(ranks, M.target_rank(scores, target))
    z = scores[:, 1:].astype(np.float64)
    logp = z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    ref = -logp[np.arange(6), target - 1].mean()
    assert float(task.loss(jnp.asarray(scores), jnp.asarray(target))) == pytest.approx(ref, rel=1e-5)


@pytest.fixture(scope="module")
def small(ml100k_dir):
    return load_sequential(data_dir=str(ml100k_dir), max_history=8, max_users=80)


def _config(ml100k_dir):  # the small slice: 80 users, histories of 8
    c = default_config()
    c.dataset = {"name": "sequential", "data_dir": str(ml100k_dir), "max_history": 8, "max_users": 80}
    c.model = {"name": "sasrec", "width": 32, "depth": 1, "num_heads": 2, "mlp_width": 64, "max_len": 8, "dropout": 0.2}
    c.task.name = "next_item"
    c.optimizer.lr = 3e-3
    c.train.batch_size, c.train.num_epochs, c.train.eval_batch_size, c.train.eval_steps_per_call = 256, 2, 128, 1
    c.train.progress_bar = False
    c.early_stopping.metric, c.early_stopping.mode, c.early_stopping.patience = "ndcg@10", "max", 0
    return c


def test_sasrec_masks_padding_and_future(small):
    model = build_model("sasrec", small.features, width=16, depth=2, num_heads=2, mlp_width=32, max_len=8, dropout=0.0)
    cols = small.splits["test"]
    batch = {HISTORY: jnp.asarray(cols[HISTORY][:8]), "history_length": jnp.asarray(cols["history_length"][:8])}
    batch["history_length"] = batch["history_length"].at[:4].set(3)  # rows 0-3 read only their first 3 of 8 items
    params = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
    apply = jax.jit(model.apply)
    out = apply(params, batch)
    assert out.shape == (8, small.feature(HISTORY).vocab_size) and out.dtype == jnp.float32
    # items after position 2 of rows 0-3 (the future of the state read) and pads change nothing there
    changed = dict(batch, **{HISTORY: batch[HISTORY].at[:4, 3:].set(7)})
    np.testing.assert_allclose(np.asarray(apply(params, changed))[:4], np.asarray(out)[:4], rtol=1e-5, atol=1e-5)
    # an earlier item does change the state
    earlier = dict(batch, **{HISTORY: batch[HISTORY].at[:4, 0].set(7)})
    assert np.abs(np.asarray(apply(params, earlier))[:4] - np.asarray(out)[:4]).max() > 1e-4
    with pytest.raises(ConfigError, match="model.max_len=5 is shorter than the histories"):
        build_model("sasrec", small.features, max_len=5)


def test_sasrec_recbole_init_and_attention_dropout(small):
    batch = {HISTORY: jnp.asarray(small.splits["test"][HISTORY][:8]),
             "history_length": jnp.asarray(small.splits["test"]["history_length"][:8])}
    kernels = lambda params: [a for path, a in jax.tree_util.tree_flatten_with_path(nn.unbox(params))[0]
                              if "block_0" in str(path) and path[-1].key == "kernel"]
    model = build_model("sasrec", small.features, max_len=8)  # RecBole's defaults: N(0, 0.02) Dense kernels, attn dropout 0.5
    params = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
    assert len(kernels(params)) == 6 and all(float(jnp.std(w)) == pytest.approx(0.02, rel=0.1) for w in kernels(params))
    lecun = build_model("sasrec", small.features, max_len=8, dense_init="lecun").init(jax.random.PRNGKey(0), batch)
    assert all(float(jnp.std(w)) > 0.05 for w in kernels(lecun))  # lecun_normal over fan-in 64 / 256: 0.125 / 0.0625
    # residual dropout off, attention dropout on: training outputs depend on the dropout rng, evaluation ones do not
    only_attn = build_model("sasrec", small.features, max_len=8, dropout=0.0, attention_dropout=0.5)
    train = lambda key: only_attn.apply(params, batch, train=True, rngs={"dropout": key})
    assert np.abs(np.asarray(train(jax.random.PRNGKey(1)) - train(jax.random.PRNGKey(2)))).max() > 1e-3
    no_attn = build_model("sasrec", small.features, max_len=8, dropout=0.0, attention_dropout=0.0)
    np.testing.assert_allclose(only_attn.apply(params, batch), no_attn.apply(params, batch, train=True,
                               rngs={"dropout": jax.random.PRNGKey(1)}), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="model.attention_dropout=1.0 must be in"):
        build_model("sasrec", small.features, max_len=8, attention_dropout=1.0)
    with pytest.raises(ConfigError, match="model.dense_init='xavier'"):
        build_model("sasrec", small.features, max_len=8, dense_init="xavier")


def test_next_item_task_refuses_other_data(movielens, ml100k_dir):
    c = _config(ml100k_dir)
    with pytest.raises(ConfigError, match="task.name='next_item' reads int item ids"):
        make_task(c, movielens)


@pytest.mark.slow  # ~40 s on 2 busy cores, mostly compilation
def test_sasrec_trains_and_beats_popularity(ml100k_dir, tmp_path):
    # 200 users, histories of 20, 3 epochs: measured valid NDCG@10 0.047 against popularity's 0.012
    data = load_sequential(data_dir=str(ml100k_dir), max_history=20, max_users=200)
    c = _config(ml100k_dir)
    c.dataset.max_history, c.dataset.max_users, c.model.max_len, c.train.num_epochs = 20, 200, 20, 3
    result = train_and_evaluate(c, tmp_path, dataset=data)
    valid = data.splits["valid"]
    counts = data.side[ITEM_COUNT].astype(np.float64)
    popularity = M.ranking_metrics(M.target_rank(np.tile(counts, (len(valid[TARGET]), 1)), valid[TARGET]))
    assert result["valid"]["count"] == 200 and result["test"]["count"] == 200
    assert result["valid"]["ndcg@10"] > popularity["ndcg@10"] + 0.01, (result["valid"], popularity)
