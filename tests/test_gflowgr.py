"""GFlowGR (jaxrec.generate.gflowgr): the reward and the weights by hand, the sampler's mix counts
and slots, the item lookup, one step of every objective lowers its loss, and TB fine-tuning with
the module's own sampler and reward on a toy catalogue samples items with probability R / Z."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec.errors import ConfigError
from jaxrec.generate import TrieConstraint
from jaxrec.generate import gflowgr as g
from jaxrec.generate.scoring import sequence_logprob
from jaxrec.models.text.gpt import GPT

OFFSETS = jnp.asarray([3, 6], jnp.int32)                       # level 1 codes 0..2 -> tokens 3..5, level 2 0..3 -> 6..9
CODES = np.array([[0, 0]] + [[a, b] for a in range(3) for b in range(4)][:10], np.int32)   # row 0 padding; items 1..10


def test_reward_by_hand():
    pos = jnp.array([[True, False, False]])
    ctr = jnp.array([[0.0, np.log(3.0), -np.log(3.0)]])         # sigmoid: 0.5, 0.75, 0.25
    got = g.reward(pos, ctr, eps=0.1, r_pos=2.0, lam=0.4)
    np.testing.assert_allclose(got, [[0.1 + 2.0 + 0.2, 0.1 + 0.3, 0.1 + 0.1]], rtol=1e-6)


def test_trajectory_weights_by_hand():
    r = jnp.array([[0.3, 0.1, 0.2], [1.0, 3.0, 2.0]])
    w = g.trajectory_weights(r, "rank", gamma=1.0)              # ranks [2, 0, 1], [0, 2, 1] -> 1 + r / 2
    raw = np.array([[2.0, 1.0, 1.5], [1.0, 2.0, 1.5]])
    np.testing.assert_allclose(w, raw / raw.mean(), rtol=1e-6)
    np.testing.assert_allclose(g.trajectory_weights(r, "none"), np.ones((2, 3)))
    np.testing.assert_allclose(g.trajectory_weights(r, "reward"), np.asarray(r) / np.asarray(r).mean(), rtol=1e-6)
    with pytest.raises(ConfigError, match="weighting"):
        g.trajectory_weights(r, "softmax")


def test_sampler_mix_counts_follow_the_schedule_and_the_confidence():
    cfg = g.GFlowGRConfig(num_samples=8, cf_start=0.5, cf_end=0.0, total_steps=100, schedule="linear")
    # 7 non-positive slots: 0.5 * 7 = 3.5 -> 4 (round half to even), 0.25 * 7 = 1.75 -> 2, 0
    assert [int(g.mix_counts(s, 1, cfg)[0]) for s in (0, 50, 100, 500)] == [4, 2, 0, 0]
    const = dataclasses.replace(cfg, schedule="constant", cf_start=2 / 7)
    assert int(g.mix_counts(80, 1, const)[0]) == 2
    conf = dataclasses.replace(cfg, schedule="confidence", cf_start=1.0, cf_end=1.0)
    np.testing.assert_array_equal(g.mix_counts(0, 3, conf, jnp.array([1.0, 0.5, 0.0])), [7, 4, 0])  # 3.5 -> 4
    with pytest.raises(ConfigError, match="confidence"):
        g.mix_counts(0, 3, conf)
    src = g.slot_sources(jnp.array([2, 0]), dataclasses.replace(cfg, num_samples=5))
    np.testing.assert_array_equal(src, [[g.POSITIVE, g.CF, g.CF, g.POLICY, g.POLICY],
                                        [g.POSITIVE, g.POLICY, g.POLICY, g.POLICY, g.POLICY]])
    nopos = dataclasses.replace(cfg, num_samples=3, include_positive=False)
    np.testing.assert_array_equal(g.slot_sources(jnp.array([1]), nopos), [[g.CF, g.POLICY, g.POLICY]])
    with pytest.raises(ConfigError, match="schedule"):
        g.GFlowGRConfig(schedule="cosine")


def test_assemble_takes_positive_cf_in_order_and_policy():
    src = jnp.array([[g.POSITIVE, g.CF, g.CF, g.POLICY]])
    pos = jnp.array([[1, 1]])
    cf = jnp.array([[[2, 2], [3, 3], [4, 4]]])
    policy = jnp.array([[[5, 5], [6, 6], [7, 7], [8, 8]]])
    np.testing.assert_array_equal(g.assemble(src, pos, cf, policy), [[[1, 1], [2, 2], [3, 3], [8, 8]]])


def test_item_index_lookup():
    index = g.ItemIndex(CODES)
    q = jnp.asarray([[0, 0], [2, 1], [1, 3], [2, 3], [-1, 0]])
    # (0, 0) is item 1, not the padding row 0; (2, 3) is no item (only 10 of 12 pairs), -1 is no code
    np.testing.assert_array_equal(index.lookup(q), [1, 10, 8, -1, -1])


def _toy(seed=0):
    model = GPT(vocab_size=12, width=16, depth=1, num_heads=2, max_len=8, dropout=0.0)
    params = nn.unbox(model.init(jax.random.key(seed), {"tokens": jnp.zeros((1, 4), jnp.int32)}))["params"]
    trie = TrieConstraint.build((CODES[1:] + np.asarray(OFFSETS)).tolist(), model.vocab_size)
    return model, params, trie


@pytest.mark.parametrize("objective", g.OBJECTIVES)
def test_one_step_lowers_every_objective_on_its_batch(objective):
    model, net_params, trie = _toy()
    cfg = g.GFlowGRConfig(objective=objective, num_samples=4, total_steps=10, head_width=8)
    params = {"net": net_params, **g.init_heads(jax.random.key(1), model.width, cfg)}
    ref = jax.tree.map(jnp.copy, params)
    prompts = jnp.asarray([[0, 1, 2], [1, 2, 3], [1, 4, 5]], jnp.int32)
    ctr = jnp.linspace(-2.0, 2.0, len(CODES))
    batch = g.make_batch(params, model, trie, g.ItemIndex(CODES), OFFSETS, prompts, jnp.arange(3),
                         jnp.array([1, 5, 9]), jnp.array([[2, 3, 4]] * 3), lambda u, i: ctr[i], 0,
                         jax.random.key(2), cfg, jnp.asarray(CODES))
    assert (batch["items"] >= 1).all()                          # every trajectory is an item (the trie)
    if objective != "reinforce":
        np.testing.assert_array_equal(batch["items"][:, 0], [1, 5, 9])       # slot 0: the positive
        np.testing.assert_array_equal(batch["items"][:, 1:3], [[2, 3]] * 3)  # round(0.5 * 3) = 2 CF slots
    opt = optax.sgd(0.05)
    opt_state = opt.init(params)
    before, _ = g.trajectory_loss(params, model, trie, batch, cfg, ref)
    for _ in range(3):
        params, opt_state, _, _ = g.update(params, opt_state, batch, trie, ref, net=model, optimizer=opt, cfg=cfg)
    after, _ = g.trajectory_loss(params, model, trie, batch, cfg, ref)
    assert np.isfinite(float(before)) and float(after) < float(before), (objective, before, after)


@pytest.mark.parametrize("objective", ["tb", "subtb"])
def test_gflownet_fine_tuning_with_the_sampler_reaches_reward_over_z(objective):
    """On-policy TB / SubTB (no positive, no CF slots), reward eps + lam sigmoid(s) with a known s per
    item: the constrained policy's item distribution must match R / Z (TV <= 0.05), log Z(u) -> log Z."""
    model, net_params, trie = _toy()
    cfg = g.GFlowGRConfig(objective=objective, num_samples=32, include_positive=False, cf_start=0.0, cf_end=0.0,
                          schedule="constant", r_pos=0.0, eps=0.05, lam=2.0, weighting="none", sft_weight=0.0,
                          total_steps=1, head_width=8)
    params = {"net": net_params, **g.init_heads(jax.random.key(1), model.width, cfg)}
    s = jnp.asarray(np.random.default_rng(0).normal(0, 2, len(CODES)), jnp.float32)
    ctr_logit = lambda u, i: s[i]
    index, codes = g.ItemIndex(CODES), jnp.asarray(CODES)
    prompts = jnp.asarray([[1, 2]] * 2, jnp.int32)
    opt = optax.adam(0.02)
    opt_state = opt.init(params)
    for i in range(250):
        batch = g.make_batch(params, model, trie, index, OFFSETS, prompts, jnp.zeros(2, jnp.int32),
                             jnp.zeros(2, jnp.int32), jnp.ones((2, 1), jnp.int32), ctr_logit, i, jax.random.key(i),
                             cfg, codes)
        params, opt_state, _, _ = g.update(params, opt_state, batch, trie, None, net=model, optimizer=opt, cfg=cfg)
    r = np.asarray(g.reward(jnp.zeros(10, bool), s[1:], cfg.eps, cfg.r_pos, cfg.lam))
    seqs = jnp.asarray(CODES[1:] + np.asarray(OFFSETS))
    p = np.exp(np.asarray(sequence_logprob(model, {"params": params["net"]}, jnp.repeat(prompts[:1], 10, 0),
                                           jnp.ones((10, 2), bool), seqs, processor=trie)))
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-4)
    assert 0.5 * np.abs(p - r / r.sum()).sum() <= 0.05, (p, r / r.sum())
    lz = g.log_z(params, model, prompts[:1], jnp.ones((1, 2), bool), cfg)
    np.testing.assert_allclose(float(lz[0]), np.log(r.sum()), atol=0.1)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="gflowgr.objective"):
        g.GFlowGRConfig(objective="ppo")
    with pytest.raises(ConfigError, match="gflowgr.eps"):
        g.GFlowGRConfig(eps=0.0)
    with pytest.raises(ConfigError, match="gflowgr.cf_start"):
        g.GFlowGRConfig(cf_start=1.5)
