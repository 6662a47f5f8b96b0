"""AMTL: Adaptively-Masked Twins-based Layer, a per-value embedding size learned from frequency.

Paper: "Learning Effective and Efficient Embedding via an Adaptively-Masked Twins-based Layer"
(CIKM 2021; notes shared/specs/recsys-methods.md §6). After the embedding lookup, a mask over
the D dimensions is generated per feature value from its frequency, by two twin branches, one
for frequent and one for rare values [V]; the specifics below are [I]:

    u_v = log(1 + count_v) / log(1 + max count)           frequency feature in [0, 1]
    l   = u_v MLP_h(u_v) + (1 - u_v) MLP_l(u_v)            twin logits over sizes 1..D (a_v = u_v)
    p   = softmax(l),  k_v = argmax p                      the value's size is k_v + 1
    m_j = 1[j <= k_v]  (forward),   straight-through:  m~ = m + P - sg(P),  P_j = sum_{i >= j} p_i
    e'  = e * m~

`P_j` is the probability that the size exceeds j, so gradients reach the size distribution.
`per_value_dims` exports the learned sizes (storage keeps the first k_v + 1 dims of each value).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.nn import MLP


def frequency_feature(counts: np.ndarray) -> np.ndarray:
    """u_v = log(1 + count) / log(1 + max count), `[V]` float32 in [0, 1]."""
    counts = np.asarray(counts, np.float64)
    return (np.log1p(counts) / max(np.log1p(counts.max()), 1e-12)).astype(np.float32)


def straight_through_mask(logits: jax.Array) -> jax.Array:
    """Prefix mask `[..., D]` of size argmax + 1 in the forward pass; gradients through the
    tail sums of softmax(logits) (module docstring)."""
    p = jax.nn.softmax(logits, axis=-1)
    tail = jnp.flip(jnp.cumsum(jnp.flip(p, -1), -1), -1)          # P_j = sum_{i >= j} p_i
    size = jnp.argmax(logits, axis=-1)[..., None]
    hard = (jnp.arange(logits.shape[-1]) <= size).astype(logits.dtype)
    return hard + (tail - jax.lax.stop_gradient(tail))  # exactly `hard` forward (the bracket is 0)


class AMTLMask(nn.Module):
    """frequency feature u `[...]` -> mask `[..., dim]` (module docstring)."""

    dim: int
    hidden: Sequence[int] = (32,)

    def setup(self):
        self.high = MLP(self.hidden, out_dim=self.dim)  # the twin for frequent values
        self.low = MLP(self.hidden, out_dim=self.dim)   # ... and for rare ones

    def logits(self, u: jax.Array) -> jax.Array:
        """Size logits `[..., dim]`: the twins mixed by frequency."""
        x = u[..., None]
        return x * self.high(x) + (1.0 - x) * self.low(x)

    def __call__(self, u: jax.Array) -> jax.Array:
        return straight_through_mask(self.logits(u))


def per_value_dims(module: AMTLMask, variables, u: np.ndarray) -> np.ndarray:
    """The learned size of every value, `[V]` ints in 1..dim (what storage keeps)."""
    logits = module.apply(variables, jnp.asarray(u), method=AMTLMask.logits)
    return np.asarray(jnp.argmax(logits, -1)) + 1


def masked_bytes(dims: np.ndarray, bytes_per_value: int = 4) -> int:
    """Embedding memory when each value stores only its first `dims[v]` dimensions."""
    return int(np.sum(dims)) * bytes_per_value
