"""Transformer blocks, GPT and LoRA against references written out by hand (numpy / plain jnp)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec.errors import ConfigError
from jaxrec.mesh import LOGICAL_RULES, logical_spec, make_mesh
from jaxrec.models import build_model
from jaxrec.models.text import GPT, init_cache
from jaxrec.nn import lora
from jaxrec.nn.transformer import (Attention, MoEFeedForward, TransformerBlock, causal_mask, load_balance_loss,
                                   padding_mask, rope, softmax_attention)


def _attention_reference(x, p, h, kv, mask):
    """softmax(q k^T / sqrt(d_h) + mask) v per head, key/value head h // (H / K), in numpy float64."""
    x = np.asarray(x, np.float64)
    proj = lambda name: np.einsum("btd,dhk->bthk", x, np.asarray(p[name]["base"]["kernel"], np.float64)) + np.asarray(p[name]["base"]["bias"])
    q, k, v = proj("query"), proj("key"), proj("value")
    b, t, _, dh = q.shape
    out = np.zeros_like(q)
    for i in range(h):
        j = i // (h // kv)
        s = np.einsum("bqd,bkd->bqk", q[:, :, i], k[:, :, j]) / np.sqrt(dh)
        s = np.where(np.broadcast_to(np.asarray(mask)[:, 0], s.shape), s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        out[:, :, i] = np.einsum("bqk,bkd->bqd", w / w.sum(-1, keepdims=True), v[:, :, j])
    return np.einsum("bthk,hkd->btd", out, np.asarray(p["out"]["base"]["kernel"], np.float64)) + np.asarray(p["out"]["base"]["bias"])


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1)])
def test_attention_matches_per_head_reference(heads, kv_heads):
    x = jax.random.normal(jax.random.key(0), (2, 6, 16))
    valid = jnp.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], bool)
    mask = causal_mask(6) & padding_mask(valid)
    mask = mask | jnp.eye(6, dtype=bool)[None, None]  # every query attends to something (pads to themselves)
    module = Attention(heads, kv_heads)
    params = nn.unbox(module.init(jax.random.key(1), x, mask))["params"]
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape), params)  # nonzero biases
    got, _ = module.apply({"params": params}, x, mask)
    np.testing.assert_allclose(got, _attention_reference(x, params, heads, kv_heads, mask), atol=2e-5)


def test_rope_scores_depend_on_relative_position_only():
    q, k = jax.random.normal(jax.random.key(0), (2, 1, 1, 1, 8))
    at = lambda x, p: rope(x, jnp.array([[p]]))
    score = lambda m, n: float(jnp.sum(at(q, m) * at(k, n)))
    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)
    np.testing.assert_allclose(rope(q, jnp.zeros((1, 1), int)), q)              # position 0: identity
    np.testing.assert_allclose(jnp.linalg.norm(at(q, 7)), jnp.linalg.norm(q), rtol=1e-6)  # a rotation


def test_moe_matches_per_token_loop_and_balance_loss():
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    module = MoEFeedForward(num_experts=4, top_k=2, hidden=16, activation="relu")
    variables = nn.unbox(jax.jit(module.init)(jax.random.key(1), x))  # jitted: not op-by-op dispatch
    p = jax.tree.map(lambda a: a + 0.05, variables["params"])
    got, sown = jax.jit(functools.partial(module.apply, mutable=["losses"]))({"params": p}, x)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)  # the reference loop below in numpy float64
    flat = np.asarray(x.reshape(-1, 8), np.float64)
    z = flat @ p["router"]["base"]["kernel"]
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)                      # the router's softmax
    want = np.zeros_like(flat)
    for n in range(len(flat)):
        top = np.argsort(-probs[n])[:2]
        for e in top:
            hid = np.maximum(flat[n] @ p["wi"][e] + p["bi"][e], 0)
            want[n] += probs[n, e] / probs[n, top].sum() * (hid @ p["wo"][e] + p["bo"][e])
    np.testing.assert_allclose(got.reshape(-1, 8), want, atol=1e-4)
    assert float(sown["losses"]["moe_balance"][0]) > 0
    uniform = jnp.full((8, 4), 0.25)
    assert float(load_balance_loss(uniform, jnp.array([[0, 1], [2, 3]] * 4), 4)) == pytest.approx(1.0)
    assert float(load_balance_loss(jnp.tile(jnp.array([[0.7, 0.1, 0.1, 0.1]]), (8, 1)), jnp.zeros((8, 1), int), 4)) == pytest.approx(2.8)


def test_post_norm_block_is_bert_order():
    """post-norm: y = N2(z + FFN(z)), z = N1(x + Attn(x)); checked against the modules applied one by one."""
    x = jax.random.normal(jax.random.key(0), (1, 4, 8))
    block = TransformerBlock(num_heads=2, mlp_width=16, pre_norm=False, norm_eps=1e-12)
    params = nn.unbox(block.init(jax.random.key(1), x))["params"]
    got, _ = block.apply({"params": params}, x)
    a, _ = Attention(2).apply({"params": params["attention"]}, x)
    ln = lambda v, p: (v - v.mean(-1, keepdims=True)) / jnp.sqrt(v.var(-1, keepdims=True) + 1e-12) * p["scale"] + p["bias"]
    z = ln(x + a, params["norm1"])
    ffn = params["ffn"]
    h = jax.nn.gelu(z @ ffn["wi"]["base"]["kernel"] + ffn["wi"]["base"]["bias"], approximate=False)
    want = ln(z + h @ ffn["wo"]["base"]["kernel"] + ffn["wo"]["base"]["bias"], params["norm2"])
    np.testing.assert_allclose(got, want, atol=1e-5)


def _gpt(**kw):
    return GPT(**{"vocab_size": 50, "width": 32, "depth": 2, "num_heads": 4, "max_len": 24, **kw})


@pytest.mark.parametrize("kw", [{}, {"position": "learned", "num_kv_heads": 2, "activation": "swiglu", "norm": "rmsnorm"},
                                {"num_experts": 3, "tie_embeddings": False}])
def test_gpt_is_causal_and_cache_decoding_equals_full_forward(kw):
    model = _gpt(**kw)
    # jitted (one compilation per shape, not op-by-op dispatch): the full forward, the prefill, the one-token step
    apply, decode = jax.jit(model.apply), jax.jit(functools.partial(model.apply, method=GPT.decode))
    tokens = jax.random.randint(jax.random.key(0), (2, 13), 0, 50)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(1), {"tokens": tokens}))
    full = apply(params, {"tokens": tokens})                                           # [2, 12, V]
    changed = apply(params, {"tokens": tokens.at[:, 9].set(7)})
    np.testing.assert_array_equal(full[:, :9], changed[:, :9])                          # no peeking ahead
    cache, valid = init_cache(model, 2, 16), jnp.zeros((2, 16), bool).at[:, :5].set(True)
    pos = jnp.broadcast_to(jnp.arange(5), (2, 5))
    logits, cache = decode(params, tokens[:, :5], pos, valid, cache, jnp.int32(0))
    steps = [logits]
    for t in range(5, 12):
        valid = valid.at[:, t].set(True)
        logits, cache = decode(params, tokens[:, t:t + 1], jnp.full((2, 1), t), valid, cache, jnp.int32(t))
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=1e-5)


def test_gpt_config_errors():
    with pytest.raises(ConfigError, match="num_heads=5 does not divide the width"):
        _gpt(num_heads=5)
    with pytest.raises(ConfigError, match="num_kv_heads=3 does not divide"):
        _gpt(num_kv_heads=3)
    with pytest.raises(ConfigError, match="model.position='alibi'"):
        _gpt(position="alibi")
    with pytest.raises(ConfigError, match="unknown config key"):
        build_model("gpt", (), width=32, heads=4)
    model = _gpt()
    with pytest.raises(ValueError, match="exceed the model's context model.max_len=24"):
        model.init(jax.random.key(0), {"tokens": jnp.zeros((1, 26), int)})


def test_logical_rules_place_heads_and_mlp_on_model_axis():
    mesh = make_mesh((1, 1))
    assert dict(LOGICAL_RULES)["heads"] == "model" and dict(LOGICAL_RULES)["embed"] is None
    big = jax.sharding.Mesh(np.array(jax.devices() * 1).reshape(1, 1), ("data", "model"))
    assert logical_spec(("embed", "heads", "head_dim"), (32, 4, 8), big) == jax.sharding.PartitionSpec(None, "model", None)
    assert logical_spec(("batch", "length"), (8, 3), mesh) == jax.sharding.PartitionSpec("data", None)


class _FakeMesh:
    shape = {"data": 1, "model": 8}


def test_logical_spec_replicates_what_does_not_divide():
    fake = _FakeMesh()
    assert logical_spec(("embed", "kv_heads", "head_dim"), (32, 3, 8), fake) == jax.sharding.PartitionSpec(None, None, None)
    assert logical_spec(("vocab", "embed"), (30522, 384), fake) == jax.sharding.PartitionSpec(None, None)
    assert logical_spec(("vocab", "embed"), (2048, 384), fake) == jax.sharding.PartitionSpec("model", None)
    assert logical_spec(("heads", "mlp"), (8, 16), fake) == jax.sharding.PartitionSpec("model", None)  # model axis used once


def test_lora_merged_equals_unmerged_and_only_adapters_train():
    model, base = _gpt(lora_rank=4, lora_alpha=8.0), _gpt()
    tokens = jax.random.randint(jax.random.key(0), (4, 9), 0, 50)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(1), {"tokens": tokens}))["params"]  # jitted: one compile, not
    labels = lora.trainable_labels(params)                                                  # op-by-op dispatch
    # nonzero B so the adapters change the function
    params = jax.tree.map(lambda p, l: p + 0.05 * jax.random.normal(jax.random.key(3), p.shape) if l == "adapter" else p,
                          params, labels)
    merged = lora.merge(params, 8.0 / 4)
    assert jax.tree.structure(merged) == jax.tree.structure(nn.unbox(jax.eval_shape(base.init, jax.random.key(1), {"tokens": tokens}))["params"])
    apply, base_apply = jax.jit(model.apply), jax.jit(base.apply)
    with_adapters = apply({"params": params}, {"tokens": tokens})
    np.testing.assert_allclose(base_apply({"params": merged}, {"tokens": tokens}), with_adapters, atol=1e-6)
    assert not np.allclose(base_apply({"params": lora.merge(jax.tree.map(lambda p, l: p * 0 if l == "adapter" else p, params, labels), 2.0)},
                                      {"tokens": tokens}), with_adapters, atol=1e-3)
    # per block: q, k, v, out 32x4 + 4x32 each; ffn wi 32x4 + 4x128, wo 128x4 + 4x32
    assert lora.count_adapters(params) == 2 * (4 * 256 + 2 * 640)

    tx = lora.lora_optimizer(optax.adam(1e-2))
    opt = tx.init(params)

    @jax.jit
    def loss(p):
        logits = model.apply({"params": p}, {"tokens": tokens})
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    @jax.jit
    def step(p, opt):
        updates, opt = tx.update(jax.grad(loss)(p), opt, p)
        return optax.apply_updates(p, updates), opt

    new = params
    for _ in range(3):
        new, opt = step(new, opt)
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params, new)
    for m, l in zip(jax.tree.leaves(moved), jax.tree.leaves(labels)):
        assert m == (l == "adapter")
    assert float(loss(new)) < float(loss(params))


def test_trainer_step_with_trainable_adapters_moves_only_adapters():
    """`optimizer.trainable='adapters'` through the trainer's own step (jaxrec.train.state)."""
    from jaxrec.train import optimizers, state as state_lib

    model = _gpt(lora_rank=2)
    tokens = jax.random.randint(jax.random.key(0), (4, 9), 0, 50)
    tx = optimizers.make_optimizer({"name": "adamw", "lr": 1e-2, "weight_decay": 0.1, "trainable": "adapters"}, 10)
    opts = state_lib.Optimizers(dense=tx, sparse=optax.sgd(0.0))
    lm_loss = lambda logits, labels: optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    batch = {"tokens": tokens, "labels": tokens[:, 1:]}
    state = state_lib.init_state(model, opts, batch, seed=0)
    step = jax.jit(state_lib.make_train_step(model, opts, lm_loss))
    new = state
    for _ in range(2):
        new, _ = step(new, batch)
    labels = lora.trainable_labels(state.params["dense"])
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params["dense"], new.params["dense"])
    assert sorted(set(zip(jax.tree.leaves(labels), jax.tree.leaves(moved)))) == [("adapter", True), ("frozen", False)]
    with pytest.raises(ConfigError, match="optimizer.trainable='everything'"):
        optimizers.make_optimizer({"trainable": "everything"}, 10)


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1)])
def test_softmax_attention_without_dropout_equals_fused(heads, kv_heads):
    q = jax.random.normal(jax.random.key(0), (2, 6, heads, 8))
    k, v = jax.random.normal(jax.random.key(1), (2, 2, 6, kv_heads, 8))
    valid = jnp.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    mask = causal_mask(6) & padding_mask(valid)  # pad queries of row 0 see keys 0..3; none sees nothing
    got = softmax_attention(q, k, v, mask)
    np.testing.assert_allclose(got, jax.nn.dot_product_attention(q, k, v, mask=mask), atol=1e-5)
    np.testing.assert_allclose(softmax_attention(q, k, v), jax.nn.dot_product_attention(q, k, v), atol=1e-5)


def test_attention_dropout_only_in_training_and_unbiased():
    x = jax.random.normal(jax.random.key(0), (2, 5, 16))
    mask = causal_mask(5)
    plain, dropped = Attention(2), Attention(2, attention_dropout=0.5)
    params = plain.init(jax.random.key(1), x, mask)
    assert jax.tree.structure(params) == jax.tree.structure(dropped.init(jax.random.key(1), x, mask))
    ref, _ = plain.apply(params, x, mask)
    # evaluation (train=False, no rng needed) and p = 0 in training take the fused path: the same output
    np.testing.assert_array_equal(dropped.apply(params, x, mask)[0], ref)
    np.testing.assert_array_equal(plain.apply(params, x, mask, train=True)[0], ref)
    run = lambda key: dropped.apply(params, x, mask, train=True, rngs={"dropout": key})[0]
    a, b = run(jax.random.key(2)), run(jax.random.key(3))
    assert np.abs(np.asarray(a - ref)).max() > 1e-2 and np.abs(np.asarray(a - b)).max() > 1e-2
    np.testing.assert_array_equal(run(jax.random.key(2)), a)  # a function of the rng
    # the output is affine in the probabilities and E[drop(P)] = P: the mean over masks is the evaluation output
    n = 4000
    samples = np.asarray(jax.vmap(run)(jax.random.split(jax.random.key(4), n)), np.float64)
    z = (samples.mean(0) - np.asarray(ref)) / (samples.std(0) / np.sqrt(n) + 1e-9)
    assert np.abs(z).max() < 5.0, np.abs(z).max()  # 160 outputs, each within 5 standard errors
    with pytest.raises(ValueError, match="attention_dropout=1.0 must be in"):
        Attention(2, attention_dropout=1.0).init(jax.random.key(1), x, mask)


def test_block_init_std_honoured_and_default_lecun():
    x = jnp.zeros((1, 3, 64))
    kernels = lambda params: {"/".join(str(getattr(k, "key", k)) for k in path): a for path, a in
                              jax.tree_util.tree_flatten_with_path(nn.unbox(params))[0] if path[-1].key == "kernel"}
    normal = kernels(TransformerBlock(2, 256, pre_norm=False, init_std=0.02).init(jax.random.key(0), x))
    lecun = kernels(TransformerBlock(2, 256, pre_norm=False).init(jax.random.key(0), x))
    assert len(normal) == len(lecun) == 6  # query, key, value, out, wi, wo
    for name, w in normal.items():
        assert float(jnp.std(w)) == pytest.approx(0.02, rel=0.1), name
        fan_in = w.shape[0] if "out" not in name else w.shape[0] * w.shape[1]
        # lecun_normal: std 1/sqrt(fan_in) (64 -> 0.125; 256 -> 0.0625), not 0.02
        assert float(jnp.std(lecun[name])) == pytest.approx(fan_in ** -0.5, rel=0.1), name
    params = nn.unbox(TransformerBlock(2, 256, pre_norm=False, init_std=0.02).init(jax.random.key(0), x))["params"]
    biases = [a for path, a in jax.tree_util.tree_flatten_with_path(params)[0] if path[-1].key == "bias"]
    assert len(biases) == 8 and all(float(jnp.abs(b).max()) == 0.0 for b in biases)  # 6 Dense + 2 LayerNorm
    with pytest.raises(ValueError, match="init_std=0.0 must be positive"):
        TransformerBlock(2, 256, init_std=0.0).init(jax.random.key(0), x)
