"""Shared-bottom multi-task model (Caruana, "Multitask Learning", Machine Learning 1997):
h = MLP_bottom(concat_f e_f); y_t = tower_t(h) for each task t."""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.data.features import Feature
from jaxrec.embedding import EmbeddingLayer
from jaxrec.nn import MLP


class SharedBottom(nn.Module):
    """`batch -> outputs [B, T]`: one shared bottom MLP, one tower MLP per task."""

    features: tuple[Feature, ...]
    num_tasks: int = 2
    embed_dim: int = 16
    bottom: Sequence[int] = (128, 64)
    tower: Sequence[int] = (32,)
    dropout: float = 0.0
    embed_init_std: float = 1e-4
    tables: tuple = ()

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        emb = EmbeddingLayer(self.features, self.embed_dim, self.embed_init_std, tables=self.tables, name="embedding")(batch)
        h = MLP(self.bottom, dropout=self.dropout, name="bottom")(emb.reshape(emb.shape[0], -1), train)
        return jnp.stack([MLP(self.tower, dropout=self.dropout, out_dim=1, name=f"tower_{t}")(h, train)[:, 0]
                          for t in range(self.num_tasks)], axis=-1)
