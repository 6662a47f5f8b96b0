"""Attention over user-behaviour sequences, shared by the behaviour models (DIN, GIN, CiUBM).

DIN's activation unit (Zhou et al., "Deep Interest Network for Click-Through Rate
Prediction", KDD 2018, arXiv 1706.06978): for a target item embedding v_A and behaviour
embeddings e_1..e_L,

    a_j = FFN([e_j, v_A, e_j - v_A, e_j * v_A])       (a scalar per behaviour)
    v_U = sum_{j <= length} a_j e_j                   (no softmax: the paper keeps the intensity of interest)

The feature set [e, v, e - v, e * v] is the authors' released code's (the paper draws an out
product); `normalize='softmax'` gives the softmax variant over the valid positions.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.nn.layers import MLP


def length_mask(lengths: jax.Array, max_len: int) -> jax.Array:
    """`[B]` lengths -> `[B, max_len]` bool, True on the valid positions."""
    return jnp.arange(max_len)[None, :] < lengths[:, None]


def masked_softmax(scores: jax.Array, valid: jax.Array) -> jax.Array:
    """Softmax of `scores [B, L]` over the valid positions `[B, L]`; all-invalid rows give zeros."""
    return jax.nn.softmax(jnp.where(valid, scores, -1e9), axis=-1) * valid


class TargetAttention(nn.Module):
    """DIN activation unit: query `[B, D]`, keys `[B, L, D]`, lengths `[B]` -> interest `[B, D]`
    (values = keys unless given, `[B, L, Dv]` -> `[B, Dv]`)."""

    hidden: Sequence[int] = (80, 40)
    activation: str = "prelu"
    normalize: str = "none"  # 'none' (DIN) | 'softmax'

    @nn.compact
    def __call__(self, query: jax.Array, keys: jax.Array, lengths: jax.Array, values: jax.Array | None = None) -> jax.Array:
        q = jnp.broadcast_to(query[:, None, :], keys.shape)
        scores = MLP(self.hidden, activation=self.activation, out_dim=1)(jnp.concatenate([keys, q, keys - q, keys * q], -1))[..., 0]
        valid = length_mask(lengths, keys.shape[1])
        if self.normalize == "softmax":
            weights = masked_softmax(scores, valid)
        elif self.normalize == "none":
            weights = scores * valid
        else:
            raise ValueError(f"normalize={self.normalize!r}: expected 'none' or 'softmax'")
        return jnp.einsum("bl,bld->bd", weights, keys if values is None else values)
