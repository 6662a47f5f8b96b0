"""DIN: Deep Interest Network (Zhou et al., KDD 2018, arXiv 1706.06978), the behaviour baseline.

    v_U = sum_j a(e_j, v_A) e_j        target attention over the user's behaviours
                                        (`jaxrec.nn.behaviour.TargetAttention`)
    y   = MLP([e_1, ..., e_F, v_U])    the other fields' embeddings beside the interest

The behaviours share the target's embedding table (the dataset's `group`). `activation` is
'prelu' (default) or the paper's 'dice' (`jaxrec.nn.layers.Dice`, with the statistics of the
batch at hand also at inference, [I]); configs/din_movielens.py says which was chosen on valid.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.data.features import Feature, lengths_key
from jaxrec.embedding import embedding_layer, field_names
from jaxrec.nn import MLP
from jaxrec.nn.behaviour import TargetAttention


def target_and_history(model, batch, fields: jnp.ndarray, sequences: dict):
    """(target embedding `[B, D]`, history tokens `[B, L, D]`, lengths `[B]`) of a behaviour model
    with `target` and `history` attributes; errors name the missing feature."""
    names = field_names(model.features)
    if model.target not in names:
        raise ValueError(f"model.target={model.target!r} is not a field; fields: {names}")
    if model.history not in sequences:
        raise ValueError(f"model.history={model.history!r} is not an unpooled sequence feature (combiner=None) of the "
                         f"dataset; sequences: {sorted(sequences)} (MovieLens: dataset.variant='history')")
    return fields[:, names.index(model.target)], sequences[model.history], batch[lengths_key(model.history)]


class DIN(nn.Module):
    """`batch -> logits [B]`."""

    features: tuple[Feature, ...]
    embed_dim: int = 16
    hidden: Sequence[int] = (256, 128)
    attention_hidden: Sequence[int] = (80, 40)
    activation: str = "prelu"
    normalize: str = "none"
    target: str = "item_id"
    history: str = "hist_item"
    dropout: float = 0.0
    embed_init_std: float = 1e-4
    tables: tuple = ()
    EMBEDDING_LAYERS = {"embedding": "embed_dim"}  # {layer name: width or its field} (jaxrec.embedding.plan)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        fields, sequences = embedding_layer(self, "embedding", return_sequences=True)(batch)
        target, history, lengths = target_and_history(self, batch, fields, sequences)
        interest = TargetAttention(self.attention_hidden, self.activation, self.normalize)(target, history, lengths)
        x = jnp.concatenate([fields.reshape(fields.shape[0], -1), interest], -1)
        return MLP(self.hidden, activation=self.activation, dropout=self.dropout, out_dim=1)(x, train)[:, 0]
