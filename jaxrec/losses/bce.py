"""Binary cross-entropy on logits: the one definition every jaxrec loss builds on.

    bce(s, y) = y l+(s) + (1 - y) l-(s),   l+(s) = -log sigmoid(s) = softplus(-s),
                                           l-(s) = -log(1 - sigmoid(s)) = softplus(s)

elementwise, with soft labels y in [0, 1] allowed (it is `optax.sigmoid_binary_cross_entropy`).
`bce_loss` is its mean: the CTR models' training loss (`jaxrec.train.state`).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax


def bce(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Elementwise sigmoid cross-entropy of `logits` against (soft) `labels`, same shape."""
    return optax.sigmoid_binary_cross_entropy(logits, labels)


def bce_loss(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Mean sigmoid cross-entropy of logits `[B]` against labels `[B]`."""
    return jnp.mean(bce(logits, labels))
