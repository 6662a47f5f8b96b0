"""APG: Adaptive Parameter Generation (Yan et al., NeurIPS 2022, arXiv 2203.16218; notes
shared/specs/recsys-methods.md §7).

A layer whose weights are generated per instance from a condition z_i:

    full (the naive form):   y = x W(z) + b,           W(z) = reshape(G(z)) in R^{N x M}
    low rank (APG):          y = ((x U) S(z)) V + b,   S(z) = reshape(G(z)) in R^{K x K}

U (N x K) and V (K x M) are shared by all instances (parameter sharing), only the K x K core
is generated (low-rank parameterisation, decomposed feed-forward: O(NK + K^2 + KM) per
instance instead of O(NM) and an N x M generator head). Over-parameterisation: U = U_l U_r
(N x P, P x K) and V = V_l V_r (K x P, P x M), P >= K, trained as products and merged for
inference (`merge_overparam`), so serving cost is unchanged. b is generated from z too
(`generate_bias`) or shared. Condition z: the layer's own input (self-wise) or chosen field
embeddings (group-wise / mix-wise), as the model decides.

[I]: G is an MLP (hidden `hypernet_hidden`, ReLU) from z; the generated core gets no
activation; initialisation is Flax's default (FuxiCTR's reading).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.nn.layers import MLP


class APGDense(nn.Module):
    """x `[B, N]`, condition z `[B, C]` -> `[B, features]` (module docstring)."""

    features: int
    rank: int = 8
    overparam: int = 0               # P; 0 = no over-parameterisation
    hypernet_hidden: Sequence[int] = (64, 32)
    generate_bias: bool = True
    low_rank: bool = True            # False: the naive full-weight generator (the paper's baseline)

    def factor(self, name: str, rows: int, cols: int) -> jax.Array:
        """A shared factor `[rows, cols]`, a product of two when over-parameterised."""
        if self.overparam:
            return self.param(f"{name}_l", nn.initializers.lecun_normal(), (rows, self.overparam)) @ \
                self.param(f"{name}_r", nn.initializers.lecun_normal(), (self.overparam, cols))
        return self.param(name, nn.initializers.lecun_normal(), (rows, cols))

    @nn.compact
    def __call__(self, x: jax.Array, z: jax.Array) -> jax.Array:
        n, m, k = x.shape[-1], self.features, self.rank
        core = (k * k) if self.low_rank else (n * m)
        g = MLP(self.hypernet_hidden, out_dim=core + (m if self.generate_bias else 0), name="hypernet")(z)
        if self.low_rank:
            s = g[:, :core].reshape(-1, k, k) / jnp.sqrt(k)  # [I] keeps the scale of x U through the K-sum
            y = jnp.einsum("bk,bkj->bj", x @ self.factor("U", n, k), s) @ self.factor("V", k, m)
        else:
            y = jnp.einsum("bn,bnm->bm", x, g[:, :core].reshape(-1, n, m) / jnp.sqrt(n))
        bias = g[:, core:] if self.generate_bias else self.param("bias", nn.initializers.zeros, (m,))
        return y + bias


def merge_overparam(params: dict) -> dict:
    """Inference form of an over-parameterised `APGDense`'s params: `U = U_l U_r`, `V = V_l V_r`
    (the result applies with `overparam=0`). Other params pass through."""
    out = {k: v for k, v in params.items() if not k.endswith(("_l", "_r"))}
    for name in ("U", "V"):
        if f"{name}_l" in params:
            out[name] = params[f"{name}_l"] @ params[f"{name}_r"]
    return out


class APGMLP(nn.Module):
    """An MLP whose hidden layers are `APGDense`: x `[B, N]`, z `[B, C]` or None (self-wise: each
    layer conditions on its own input) -> `[B, out_dim or hidden[-1]]`."""

    hidden: Sequence[int]
    rank: int = 8
    overparam: int = 0
    hypernet_hidden: Sequence[int] = (64, 32)
    generate_bias: bool = True
    low_rank: bool = True
    activation: str = "relu"
    out_dim: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, z: jax.Array | None = None) -> jax.Array:
        for width in self.hidden:
            x = APGDense(width, self.rank, self.overparam, self.hypernet_hidden, self.generate_bias, self.low_rank)(
                x, x if z is None else z)
            x = getattr(nn, self.activation)(x)
        return x if self.out_dim is None else nn.Dense(self.out_dim)(x)
