"""Embedding + MLP with named logit heads: the base network of the delayed-feedback methods.

DEFUSE's released code (`models.py`, [V code]) uses one trunk for all of them: 8-d
embeddings, Dense 256-256-128 with leaky ReLU and BatchNorm, and a linear head per output
(the CVR logit; ES-DFM / DEFUSE's auxiliary [tn, dp]; DFM's [logit, delay rate]). For
Bi-DEFUSE the in- and out-window heads branch after the second layer, each through its own
Dense 128. Departures [I]: no BatchNorm (the train step keeps no batch statistics) and the
released Bi-DEFUSE mixing of each branch with the shared 128-d layer by learned weights is
not reproduced (its two branches share one layer there, a bug).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.data.features import Feature
from jaxrec.embedding import embedding_layer
from jaxrec.nn import MLP


class MultiHeadDNN(nn.Module):
    """`batch -> {head: logits [B]}`: embeddings `[B, F*D]` -> shared MLP `hidden` -> per head
    an MLP `tower` (may be empty) and a linear output."""

    features: tuple[Feature, ...]
    heads: tuple[str, ...] = ("cvr",)
    embed_dim: int = 8
    hidden: Sequence[int] = (256, 256, 128)
    tower: Sequence[int] = ()
    activation: str = "leaky_relu"
    embed_init_std: float = 1e-2
    tables: tuple = ()
    EMBEDDING_LAYERS = {"embedding": "embed_dim"}  # {layer name: width or its field} (jaxrec.embedding.plan)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> dict[str, jnp.ndarray]:
        emb = embedding_layer(self, "embedding")(batch)
        x = MLP(self.hidden, activation=self.activation, name="trunk")(emb.reshape(emb.shape[0], -1), train)
        return {h: MLP(self.tower, activation=self.activation, out_dim=1, name=f"head_{h}")(x, train)[:, 0] for h in self.heads}
