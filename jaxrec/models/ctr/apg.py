"""APG models: DNN and DCN-V2 with adaptive, per-instance generated layers
(`jaxrec.nn.apg`; Yan et al., NeurIPS 2022, arXiv 2203.16218).

    APG-DNN:    y = w^T APGMLP(x_0; z) + b
    APG-DCNv2:  x_{l+1} = x_0 * APGDense(x_l; z) + x_l   (the cross layers' W_l generated), then MLP

Condition z: `condition=()` is self-wise (every layer conditions on its own input); names of
fields (e.g. ('user_id',)) make it group-wise (one field) or mix-wise (several), z being their
embeddings concatenated (gradients flow into them unless `stop_condition_grad`, MMLRec's choice).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.data.features import Feature
from jaxrec.embedding import embedding_layer, field_names
from jaxrec.nn import MLP
from jaxrec.nn.apg import APGDense, APGMLP


def condition_of(model, fields: jax.Array) -> jax.Array | None:
    """z `[B, len(condition) * D]` of a model with `condition` / `stop_condition_grad`, or None (self-wise)."""
    if not model.condition:
        return None
    names = field_names(model.features)
    missing = [c for c in model.condition if c not in names]
    if missing:
        raise ValueError(f"model.condition names {missing}, which are not fields; fields: {names}")
    z = jnp.concatenate([fields[:, names.index(c)] for c in model.condition], -1)
    return jax.lax.stop_gradient(z) if model.stop_condition_grad else z


class APGDNN(nn.Module):
    """`batch -> logits [B]`: a DNN whose hidden layers are generated per instance."""

    features: tuple[Feature, ...]
    embed_dim: int = 16
    hidden: Sequence[int] = (256, 128)
    rank: int = 8
    overparam: int = 0
    hypernet_hidden: Sequence[int] = (64, 32)
    generate_bias: bool = True
    low_rank: bool = True
    condition: Sequence[str] = ()
    stop_condition_grad: bool = False
    embed_init_std: float = 1e-4
    tables: tuple = ()
    EMBEDDING_LAYERS = {"embedding": "embed_dim"}  # {layer name: width or its field} (jaxrec.embedding.plan)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        fields = embedding_layer(self, "embedding")(batch)
        x = fields.reshape(fields.shape[0], -1)
        mlp = APGMLP(self.hidden, self.rank, self.overparam, self.hypernet_hidden, self.generate_bias, self.low_rank, out_dim=1)
        return mlp(x, condition_of(self, fields))[:, 0]


class APGDCNv2(APGDNN):
    """`batch -> logits [B]`: DCN-V2 (stacked) whose cross matrices are generated per instance
    (the options of `APGDNN`, plus `num_cross`)."""

    num_cross: int = 2

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        fields = embedding_layer(self, "embedding")(batch)
        x0 = fields.reshape(fields.shape[0], -1)
        z = condition_of(self, fields)
        x = x0
        for i in range(self.num_cross):
            cross = APGDense(x0.shape[-1], self.rank, self.overparam, self.hypernet_hidden, self.generate_bias, self.low_rank,
                             name=f"cross_{i}")
            x = x0 * cross(x, x if z is None else z) + x
        return MLP(self.hidden, out_dim=1)(x, train)[:, 0]
