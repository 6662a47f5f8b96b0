"""MMoE: Multi-gate Mixture-of-Experts (Ma et al., "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD 2018).

    f_e = expert_e(x), e = 1..E                  (shared experts, MLPs)
    g_t = softmax(W_t x)                          (one gate per task, [E])
    y_t = tower_t(sum_e g_t,e f_e)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.data.features import Feature
from jaxrec.embedding import EmbeddingLayer
from jaxrec.nn import MLP


class MMoE(nn.Module):
    """`batch -> outputs [B, T]`: E shared experts, a softmax gate and a tower per task."""

    features: tuple[Feature, ...]
    num_tasks: int = 2
    embed_dim: int = 16
    num_experts: int = 4
    expert: Sequence[int] = (64,)
    tower: Sequence[int] = (32,)
    dropout: float = 0.0
    embed_init_std: float = 1e-4
    tables: tuple = ()

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        emb = EmbeddingLayer(self.features, self.embed_dim, self.embed_init_std, tables=self.tables, name="embedding")(batch)
        x = emb.reshape(emb.shape[0], -1)
        experts = jnp.stack([MLP(self.expert, dropout=self.dropout, name=f"expert_{e}")(x, train)
                             for e in range(self.num_experts)], axis=1)                    # [B, E, H]
        outs = []
        for t in range(self.num_tasks):
            gate = nn.softmax(nn.Dense(self.num_experts, name=f"task_{t}_gate")(x))          # [B, E]
            mixed = jnp.einsum("be,beh->bh", gate, experts)
            outs.append(MLP(self.tower, dropout=self.dropout, out_dim=1, name=f"tower_{t}")(mixed, train)[:, 0])
        return jnp.stack(outs, axis=-1)
