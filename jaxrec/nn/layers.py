"""Reusable layers of the CTR models: MLP, Dice, factorization machine, DCNv2 cross network."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


AUX_LOSSES = "losses"  # collection of scalar terms a trainer adds to the loss (AMTL size penalty, MoE balance)


class Dice(nn.Module):
    """Dice, the data-adaptive activation of DIN (Zhou et al., KDD 2018, eq. 9), per channel d:

        p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps)),    f(s) = p(s) s + (1 - p(s)) alpha_d s

    `[..., d] -> [..., d]`; alpha `[d]` is learned (initialised 0, where Dice is a smooth ReLU-like
    gate centred on the mean). E and Var are over every axis but the last, of the batch at hand,
    in training and inference alike [I]: the paper keeps moving averages for inference, which
    needs a batch-statistics collection the train state does not carry; evaluation batches are
    large (they hold thousands of rows), so their statistics are close to the population's.
    """

    eps: float = 1e-8

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        alpha = self.param("alpha", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        var = jnp.var(x, axis=axes)
        p = jax.nn.sigmoid((x - mean) * jax.lax.rsqrt(var + self.eps))
        return p * x + (1 - p) * alpha.astype(x.dtype) * x


def activate(name: str, x: jnp.ndarray) -> jnp.ndarray:
    """`x` through the activation `name`: a `flax.linen` function ('relu', 'gelu', ...), 'prelu'
    (a learned slope per layer) or 'dice' (`Dice`); the learned ones are created in the caller's scope."""
    if name == "prelu":
        return nn.PReLU()(x)
    if name == "dice":
        return Dice()(x)
    if not callable(getattr(nn, name, None)):
        raise ValueError(f"activation={name!r}: expected 'prelu', 'dice' or a flax.linen function name ('relu', 'gelu', ...)")
    return getattr(nn, name)(x)


class MLP(nn.Module):
    """Dense -> activation (-> dropout) per hidden size; `[..., d_in] -> [..., hidden[-1]]`.

    With `out_dim` set, a final linear layer maps to `out_dim` (no activation). `activation`
    names a `flax.linen` function ('relu', 'gelu', ...), 'prelu' (a learned slope per layer) or
    'dice' (`Dice`, DIN's activation).
    """

    hidden: Sequence[int]
    activation: str = "relu"
    dropout: float = 0.0
    out_dim: int | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        for width in self.hidden:
            x = nn.Dense(width)(x)
            x = activate(self.activation, x)
            if self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        if self.out_dim is not None:
            x = nn.Dense(self.out_dim)(x)
        return x


def fm_interaction(emb: jnp.ndarray) -> jnp.ndarray:
    """Second-order FM term (Rendle 2010): sum_{i<j} <v_i, v_j> for field embeddings `[B, F, D]`.

    Uses 0.5 * sum_d ((sum_i v_id)^2 - sum_i v_id^2); returns `[B]`.
    """
    square_of_sum = jnp.square(jnp.sum(emb, axis=1))
    sum_of_square = jnp.sum(jnp.square(emb), axis=1)
    return 0.5 * jnp.sum(square_of_sum - sum_of_square, axis=-1)


class CrossNetV2(nn.Module):
    """DCN-V2 cross network, matrix form (Wang et al., WWW 2021, "DCN V2", eq. 1):

        x_{l+1} = x_0 * (W_l x_l + b_l) + x_l,   W_l in R^{d x d}

    `[B, d] -> [B, d]`.
    """

    num_layers: int = 2

    @nn.compact
    def __call__(self, x0: jnp.ndarray) -> jnp.ndarray:
        x = x0
        for i in range(self.num_layers):
            x = x0 * nn.Dense(x0.shape[-1], name=f"cross_{i}")(x) + x
        return x
