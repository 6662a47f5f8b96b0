"""The plain losses every task builds on.

    binary_cross_entropy(z, y) = mean( softplus(z) - y z )      (sigmoid cross-entropy of logits z)
    squared_error(x, y)        = mean( (x - y)^2 )
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def binary_cross_entropy(logits: jax.Array, labels: jax.Array, axis: int | None = None) -> jax.Array:
    """Mean sigmoid cross-entropy of logits against labels in [0, 1] (same shape); over all
    elements (a scalar), or over `axis` (e.g. `axis=0` of `[B, T]` -> per-task `[T]`)."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels), axis=axis)


def squared_error(outputs: jax.Array, targets: jax.Array, axis: int | None = None) -> jax.Array:
    """Mean squared error, over all elements or over `axis` (as `binary_cross_entropy`)."""
    return jnp.mean(jnp.square(outputs - targets), axis=axis)
