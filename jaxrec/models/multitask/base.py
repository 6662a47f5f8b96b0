"""What every multi-task model shares: its options, its input (the flattened field embeddings)
and its output end (one tower per task, named `tower_<t>`)."""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.data.features import Feature
from jaxrec.embedding import embedding_layer
from jaxrec.nn import MLP


class MultiTaskModel(nn.Module):
    """Base of the multi-task models; subclasses call `inputs` and `towers` from their compact
    `__call__(batch, train) -> outputs [B, T]`."""

    features: tuple[Feature, ...]
    num_tasks: int = 2
    embed_dim: int = 16
    tower: Sequence[int] = (32,)
    dropout: float = 0.0
    embed_init_std: float = 1e-4
    tables: tuple = ()  # per-table (name, TableOptions), as for the CTR models
    EMBEDDING_LAYERS = {"embedding": "embed_dim"}  # {layer name: width or its field} (jaxrec.embedding.plan)

    def inputs(self, batch: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
        """The field embeddings flattened, `[B, F * D]`."""
        emb = embedding_layer(self, "embedding")(batch)
        return emb.reshape(emb.shape[0], -1)

    def towers(self, per_task: Sequence[jnp.ndarray], train: bool) -> jnp.ndarray:
        """Task t's representation `[B, H]` through its tower MLP -> outputs `[B, T]`."""
        return jnp.stack([MLP(self.tower, dropout=self.dropout, out_dim=1, name=f"tower_{t}")(h, train)[:, 0]
                          for t, h in enumerate(per_task)], axis=-1)
