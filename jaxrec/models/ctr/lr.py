"""Logistic regression over one-hot fields: logit = b + sum_f w_f[id_f].

The weights are a width-1 embedding table per field (the shared embedding layer), so LR
trains, shards and checkpoints like every other model.
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.data.features import Feature
from jaxrec.embedding import embedding_layer


class LR(nn.Module):
    """`batch -> logits [B]`."""

    features: tuple[Feature, ...]
    embed_init_std: float = 1e-4
    tables: tuple = ()  # per-table (name, TableOptions): own optimizer / sharding (config `tables`)
    EMBEDDING_LAYERS = {"linear": 1}  # {layer name: width or its field} (jaxrec.embedding.plan)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        w = embedding_layer(self, "linear")(batch)
        return jnp.sum(w, axis=(1, 2)) + self.param("bias", nn.initializers.zeros, ())
