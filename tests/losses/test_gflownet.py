"""GFlowNet objectives (jaxrec.losses.gflownet): worked by hand on a 2-level toy, and trained:
a small GPT sampling 2-token items under a trie, fine-tuned with trajectory balance from its
own samples, must sample every item with probability R(x) / Z (total variation <= 0.05)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec.generate import TrieConstraint, generate
from jaxrec.generate.decode import prepare_prompts
from jaxrec.generate.scoring import sequence_logprob
from jaxrec.losses.gflownet import subtrajectory_balance, trajectory_balance
from jaxrec.models.text.gpt import GPT


def test_trajectory_balance_by_hand_on_a_two_level_tree():
    # root -> {a, b}, a -> {a1, a2}: P_F(a) = 0.6, P_F(a2 | a) = 0.25, R(a2) = 0.3, log Z = log 2
    log_pf = jnp.log(jnp.array([[0.6, 0.25]]))
    loss = trajectory_balance(jnp.log(jnp.array([2.0])), log_pf, jnp.log(jnp.array([0.3])))
    np.testing.assert_allclose(loss, [np.log(2 * 0.6 * 0.25 / 0.3) ** 2], rtol=1e-6)  # (log 1)^2 = 0
    loss = trajectory_balance(jnp.log(jnp.array([4.0])), log_pf, jnp.log(jnp.array([0.3])))
    np.testing.assert_allclose(loss, [np.log(2.0) ** 2], rtol=1e-6)


def test_subtrajectory_balance_by_hand_and_its_limits():
    log_z, log_fa, log_r = np.log(2.0), np.log(0.5), np.log(0.3)
    log_pf = np.log([[0.6, 0.25]])
    flows = jnp.asarray([[log_z, log_fa]])
    r01 = log_z + log_pf[0, 0] - log_fa
    r12 = log_fa + log_pf[0, 1] - log_r
    r02 = log_z + log_pf[0].sum() - log_r
    got = subtrajectory_balance(flows, jnp.asarray(log_pf), jnp.asarray([log_r]), lam=2.0)
    np.testing.assert_allclose(got, [(2 * r01 ** 2 + 2 * r12 ** 2 + 4 * r02 ** 2) / 8], rtol=1e-5)
    # lambda -> infinity: the whole trajectory dominates, SubTB -> TB
    flows = jnp.asarray([[np.log(3.0), log_fa]])  # unbalanced: TB = (log 1.5)^2
    big = subtrajectory_balance(flows, jnp.asarray(log_pf), jnp.asarray([log_r]), lam=1e6)
    tb = trajectory_balance(flows[:, 0], jnp.asarray(log_pf), jnp.asarray([log_r]))
    np.testing.assert_allclose(tb, [np.log(1.5) ** 2], rtol=1e-5)
    np.testing.assert_allclose(big, tb, rtol=1e-4)


def test_trajectory_balance_trains_a_sampler_to_reward_over_z():
    items = [(a, b) for a in (3, 4, 5) for b in (6, 7, 8, 9)][:10]              # 10 items, 3 first tokens
    reward = np.random.default_rng(0).uniform(0.2, 3.0, len(items)).astype(np.float32)
    reward_of = {it: r for it, r in zip(items, reward)}
    model = GPT(vocab_size=12, width=16, depth=1, num_heads=2, max_len=8, dropout=0.0)
    params = nn.unbox(model.init(jax.random.key(0), {"tokens": jnp.zeros((1, 4), jnp.int32)}))["params"]
    trie = TrieConstraint.build(items, model.vocab_size)
    tokens, valid = map(jnp.asarray, prepare_prompts(model, [[1, 2]] * 64, 2))
    state = {"net": params, "log_z": jnp.zeros(())}
    opt = optax.adam(0.02)
    opt_state = opt.init(state)
    table = np.zeros((12, 12), np.float32)
    for (a, b), r in reward_of.items():
        table[a, b] = np.log(r)
    log_r_table = jnp.asarray(table)

    @jax.jit
    def step(state, opt_state, samples):
        def loss(s):
            log_pf = sequence_logprob(model, {"params": s["net"]}, tokens, valid, samples, processor=trie)
            log_r = log_r_table[samples[:, 0], samples[:, 1]]
            return trajectory_balance(jnp.broadcast_to(s["log_z"], log_r.shape), log_pf[:, None], log_r).mean()

        value, grads = jax.value_and_grad(loss)(state)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(state, updates), opt_state, value

    for i in range(300):  # on-policy: sample from the current policy (temperature 1, under the trie)
        samples = generate(model, {"params": state["net"]}, [[1, 2]] * 64, 2, key=jax.random.key(i), temperature=1.0,
                           logits_processor=trie).tokens
        state, opt_state, _ = step(state, opt_state, samples)
    seqs = jnp.asarray(items, jnp.int32)
    p = np.exp(np.asarray(sequence_logprob(model, {"params": state["net"]}, tokens[:len(items)], valid[:len(items)],
                                           seqs, processor=trie)))
    target = reward / reward.sum()
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-4)
    assert 0.5 * np.abs(p - target).sum() <= 0.05, (p, target)
    np.testing.assert_allclose(float(state["log_z"]), np.log(reward.sum()), atol=0.1)
