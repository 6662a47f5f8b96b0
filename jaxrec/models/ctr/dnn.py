"""DNN (a.k.a. Embedding + MLP, YouTube DNN style CTR baseline): logit = MLP(concat_f e_f)."""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.data.features import Feature
from jaxrec.embedding import embedding_layer
from jaxrec.nn import MLP


class DNN(nn.Module):
    """`batch -> logits [B]`; embeddings `[B, F, D]` flattened to `[B, F*D]` into the MLP."""

    features: tuple[Feature, ...]
    embed_dim: int = 16
    hidden: Sequence[int] = (256, 128)
    dropout: float = 0.0
    embed_init_std: float = 1e-4
    tables: tuple = ()  # per-table (name, TableOptions): own optimizer / sharding (config `tables`)
    EMBEDDING_LAYERS = {"embedding": "embed_dim"}  # {layer name: width or its field} (jaxrec.embedding.plan)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        emb = embedding_layer(self, "embedding")(batch)
        x = emb.reshape(emb.shape[0], -1)
        return MLP(self.hidden, dropout=self.dropout, out_dim=1)(x, train)[:, 0]
