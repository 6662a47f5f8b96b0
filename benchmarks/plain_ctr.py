"""Plain JAX/Flax DeepFM and DCNv2: the peers `train_throughput.py` measures jaxrec against.

No jaxrec import: what someone would write by hand for MovieLens-100K's 10 categorical
fields. One concatenated table per embedding width (ids offset per field), MLP 256-128,
one optax Adam (1e-3) over all parameters (tables included, dense updates), BCE, and one
jitted `lax.scan` over a whole epoch's batches on the device.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


class Embed(nn.Module):
    """ids `[B, F]` -> `[B, F, dim]` from one table of `sum(vocab_sizes)` rows."""
    vocab_sizes: tuple[int, ...]
    dim: int

    @nn.compact
    def __call__(self, ids):
        table = self.param("table", nn.initializers.normal(1e-4), (sum(self.vocab_sizes), self.dim))
        offsets = np.concatenate([[0], np.cumsum(self.vocab_sizes)[:-1]]).astype(np.int32)
        return jnp.take(table, ids + offsets, axis=0)


def mlp(x, hidden):
    for width in hidden:
        x = nn.relu(nn.Dense(width)(x))
    return x


class DeepFM(nn.Module):
    vocab_sizes: tuple[int, ...]
    dim: int = 16
    hidden: tuple[int, ...] = (256, 128)

    @nn.compact
    def __call__(self, ids):
        e = Embed(self.vocab_sizes, self.dim)(ids)
        linear = Embed(self.vocab_sizes, 1)(ids).sum((1, 2)) + self.param("bias", nn.initializers.zeros, ())
        fm = 0.5 * (jnp.square(e.sum(1)) - jnp.square(e).sum(1)).sum(-1)
        return linear + fm + nn.Dense(1)(mlp(e.reshape(e.shape[0], -1), self.hidden))[:, 0]


class DCNv2(nn.Module):
    """Stacked: cross network (x_{l+1} = x0 * (W_l x_l + b_l) + x_l), then the MLP, then a logit."""
    vocab_sizes: tuple[int, ...]
    dim: int = 16
    hidden: tuple[int, ...] = (256, 128)
    num_cross: int = 2

    @nn.compact
    def __call__(self, ids):
        x0 = Embed(self.vocab_sizes, self.dim)(ids).reshape(ids.shape[0], -1)
        x = x0
        for _ in range(self.num_cross):
            x = x0 * nn.Dense(x0.shape[-1])(x) + x
        return nn.Dense(1)(mlp(x, self.hidden))[:, 0]


def trainer(model: nn.Module, num_fields: int, lr: float = 1e-3, seed: int = 0):
    """(params, opt_state), `epoch(carry, ids [S, B, F], labels [S, B]) -> (carry, losses [S])`
    (jitted, carry donated) and `predict(params, ids [N, F]) -> logits [N]`."""
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((2, num_fields), jnp.int32))
    tx = optax.adam(lr)

    def loss_fn(p, ids, y):
        return optax.sigmoid_binary_cross_entropy(model.apply(p, ids), y).mean()

    @partial(jax.jit, donate_argnums=0)
    def epoch(carry, ids, labels):
        def step(carry, batch):
            p, s = carry
            loss, g = jax.value_and_grad(loss_fn)(p, *batch)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss
        return jax.lax.scan(step, carry, (ids, labels))

    return (params, tx.init(params)), epoch, jax.jit(model.apply)


def num_params(params) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(params)))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties averaged)."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties averaged
    y = labels > 0.5
    pos = y.sum()
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))
