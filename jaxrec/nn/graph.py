"""Message passing over an edge list with `jax.ops.segment_sum` (no graph library).

`AttentionAggregation` is GIN's layer (Li et al., "Graph Intention Network for Click-through
Rate Prediction in Sponsored Search", SIGIR 2019, arXiv 2103.16164; notes §9, the equations [I]):

    a_vu = softmax_{u in N(v)} MLP([h_v, h_u, h_v * h_u, log(1 + w_vu)])
    h_v' = relu(W [h_v || sum_u a_vu h_u])
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.nn.layers import MLP


def segment_softmax(scores: jax.Array, segments: jax.Array, num_segments: int) -> jax.Array:
    """Softmax of `scores [E]` within each segment (edges into one node) -> `[E]`."""
    top = jax.ops.segment_max(scores, segments, num_segments)
    e = jnp.exp(scores - jax.lax.stop_gradient(top)[segments])
    return e / jnp.maximum(jax.ops.segment_sum(e, segments, num_segments)[segments], 1e-12)


class AttentionAggregation(nn.Module):
    """h `[V, D]`, senders / receivers / weights `[E]` -> h' `[V, D]` (module docstring); a node with
    no in-edges aggregates zeros."""

    hidden: Sequence[int] = (32,)

    @nn.compact
    def __call__(self, h: jax.Array, senders: jax.Array, receivers: jax.Array, weights: jax.Array) -> jax.Array:
        hv, hu = h[receivers], h[senders]
        feats = jnp.concatenate([hv, hu, hv * hu, jnp.log1p(weights)[:, None]], -1)
        a = segment_softmax(MLP(self.hidden, out_dim=1)(feats)[:, 0], receivers, h.shape[0])
        agg = jax.ops.segment_sum(a[:, None] * hu, receivers, h.shape[0])
        return nn.relu(nn.Dense(h.shape[-1])(jnp.concatenate([h, agg], -1)))
