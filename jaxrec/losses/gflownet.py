"""GFlowNet objectives for generation on a tree (GFlowGR, arXiv 2506.16114, spec section 2).

Generating an item's L semantic-ID tokens is a trajectory s_0 -> s_1 -> ... -> s_L through the
prefix tree (s_k = the user context and the first k tokens); every state has one parent, so the
backward policy is P_B = 1 and a terminal state x is reached by exactly one trajectory. A forward
policy P_F (the generator's softmax over the valid children, `generate.scoring.token_logprobs`
with a trie/hash-set processor) samples x with probability prod_k P_F(s_k | s_{k-1}); the goal
is P(x) = R(x) / Z with Z = sum_x R(x).

Trajectory balance (TB, Malkin et al. 2022), with a learned log Z (per user context in GFlowGR):

    L_TB = (log Z + sum_{k=1..L} log P_F(s_k | s_{k-1}) - log R(x))^2

Sub-trajectory balance (SubTB, Madan et al. 2023) adds a learned state flow log F(s_k) (log F(s_0)
= log Z, log F(s_L) = log R(x)) and balances every sub-trajectory i < j:

    r_ij = log F(s_i) + sum_{k=i+1..j} log P_F(s_k | s_{k-1}) - log F(s_j)
    L_SubTB = sum_{i<j} lambda^(j-i) r_ij^2 / sum_{i<j} lambda^(j-i)

(j = i + 1 only: detailed balance; lambda -> inf: TB.) The GFlowGR paper names a GFlowNet loss
with token-level supervision; that it is TB or SubTB is our reading [I], both are here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def trajectory_balance(log_z: jax.Array, log_pf: jax.Array, log_reward: jax.Array) -> jax.Array:
    """Per-trajectory TB loss `[B]` from `log_z [B]`, `log_pf [B, L]` (the step log-probabilities),
    `log_reward [B]`."""
    return jnp.square(log_z + log_pf.sum(-1) - log_reward)


def subtrajectory_balance(log_flows: jax.Array, log_pf: jax.Array, log_reward: jax.Array,
                          lam: float = 1.0) -> jax.Array:
    """Per-trajectory SubTB loss `[B]` (module docstring).

    Args:
      log_flows: `[B, L]` log F(s_0) .. log F(s_{L-1}) (log F(s_0) is log Z); log F(s_L) is
        replaced by `log_reward [B]`.
      log_pf: `[B, L]` log P_F(s_k | s_{k-1}), k = 1..L.
      lam: lambda > 0, the weight of a sub-trajectory of length j - i is lambda^(j - i).
    """
    flows = jnp.concatenate([log_flows, log_reward[:, None]], axis=1)                    # [B, L+1]
    cum = jnp.concatenate([jnp.zeros_like(log_pf[:, :1]), jnp.cumsum(log_pf, axis=1)], 1)  # [B, L+1]
    r = (flows + (-cum))[:, :, None] + (cum - flows)[:, None, :]                        # r[b, i, j]
    length = jnp.arange(flows.shape[1])
    span = length[None, :] - length[:, None]                                           # j - i
    weight = jnp.where(span > 0, jnp.power(float(lam), span.astype(jnp.float32)), 0.0)
    return (weight * jnp.square(r)).sum((1, 2)) / weight.sum()
