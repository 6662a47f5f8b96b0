"""The plain losses every jaxrec loss and task builds on (their one definition).

    bce(s, y) = y l+(s) + (1 - y) l-(s),   l+(s) = -log sigmoid(s) = softplus(-s),
                                           l-(s) = -log(1 - sigmoid(s)) = softplus(s)

elementwise on logits s, with soft labels y in [0, 1] allowed (it is
`optax.sigmoid_binary_cross_entropy`); `bce_loss` is its mean (the CTR training loss),
`squared_error` the mean of (x - y)^2 (regression tasks).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax


def bce(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Elementwise sigmoid cross-entropy of `logits` against (soft) `labels`, same shape."""
    return optax.sigmoid_binary_cross_entropy(logits, labels)


def bce_loss(logits: jnp.ndarray, labels: jnp.ndarray, axis: int | None = None) -> jnp.ndarray:
    """Mean `bce` of logits against labels (same shape): over all elements (a scalar; logits
    `[B]` -> the CTR loss), or over `axis` (`axis=0` of `[B, T]` -> per-task losses `[T]`)."""
    return jnp.mean(bce(logits, labels), axis=axis)


def squared_error(outputs: jnp.ndarray, targets: jnp.ndarray, axis: int | None = None) -> jnp.ndarray:
    """Mean squared error, over all elements or over `axis` (as `bce_loss`)."""
    return jnp.mean(jnp.square(outputs - targets), axis=axis)
