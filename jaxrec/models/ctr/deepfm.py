"""DeepFM (Guo et al., IJCAI 2017, arXiv 1703.04247).

    y = sigmoid(y_linear + y_FM + y_DNN)
    y_linear = b + sum_f w_f[id_f]                     (width-1 embeddings)
    y_FM     = sum_{i<j} <e_i, e_j>                    (factorization machine, 2nd order)
    y_DNN    = MLP(concat_f e_f)

The FM and the DNN share the field embeddings e_f (the paper's key point: no feature
engineering, one embedding for both parts).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.data.features import Feature
from jaxrec.embedding import embedding_layer
from jaxrec.nn import MLP, fm_interaction


class DeepFM(nn.Module):
    """`batch -> logits [B]`."""

    features: tuple[Feature, ...]
    embed_dim: int = 16
    hidden: Sequence[int] = (256, 128)
    dropout: float = 0.0
    embed_init_std: float = 1e-4
    tables: tuple = ()  # per-table (name, TableOptions): own optimizer / sharding (config `tables`)
    EMBEDDING_LAYERS = {"embedding": "embed_dim", "linear": 1}  # {layer name: width or its field} (jaxrec.embedding.plan)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        emb = embedding_layer(self, "embedding")(batch)
        linear = embedding_layer(self, "linear")(batch)
        y_linear = jnp.sum(linear, axis=(1, 2)) + self.param("bias", nn.initializers.zeros, ())
        y_dnn = MLP(self.hidden, dropout=self.dropout, out_dim=1)(
            emb.reshape(emb.shape[0], -1), train)[:, 0]
        return y_linear + fm_interaction(emb) + y_dnn
