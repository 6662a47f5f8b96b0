"""DCN-V2, stacked structure (Wang et al., WWW 2021, arXiv 2008.13535).

    x_0 = concat_f e_f
    x_{l+1} = x_0 * (W_l x_l + b_l) + x_l              (matrix cross layer, l < num_cross)
    y = sigmoid(w^T MLP(x_L) + b)                      (stacked: cross network, then MLP)

`structure='parallel'` runs the MLP on x_0 beside the cross network and concatenates
both outputs before the head (the paper's other variant).
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.data.features import Feature
from jaxrec.embedding import embedding_layer
from jaxrec.nn import MLP, CrossNetV2


class DCNv2(nn.Module):
    """`batch -> logits [B]`."""

    features: tuple[Feature, ...]
    embed_dim: int = 16
    hidden: Sequence[int] = (256, 128)
    num_cross: int = 2
    structure: Literal["stacked", "parallel"] = "stacked"
    dropout: float = 0.0
    embed_init_std: float = 1e-4
    tables: tuple = ()  # per-table (name, TableOptions): own optimizer / sharding (config `tables`)
    EMBEDDING_LAYERS = {"embedding": "embed_dim"}  # {layer name: width or its field} (jaxrec.embedding.plan)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        emb = embedding_layer(self, "embedding")(batch)
        x0 = emb.reshape(emb.shape[0], -1)
        cross = CrossNetV2(self.num_cross)(x0)
        mlp = MLP(self.hidden, dropout=self.dropout)
        if self.structure == "stacked":
            h = mlp(cross, train)
        elif self.structure == "parallel":
            h = jnp.concatenate([cross, mlp(x0, train)], axis=-1)
        else:
            raise ValueError(f"model.structure={self.structure!r}: expected 'stacked' or 'parallel'")
        return nn.Dense(1)(h)[:, 0]
