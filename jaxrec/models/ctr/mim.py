"""MIM / CiUBM: content-interest-aware user behaviour modelling (Multi-modal Content Interest
Modeling, arXiv 2502.00321; notes shared/specs/recsys-methods.md §11).

MIM's stages 1 (modal alignment) and 2 (C-SFT) train a content encoder; they are pre-training
and live in `jaxrec.pretrain.content_encoder`, which the experiment builder runs to fill
`content`. Stage 3, CiUBM, is this model: the encoder's vectors c_i are frozen (the
"representation center") and read by a content-interest branch beside the ID branch:

    content interest  softmax_j(<W_q c_target, W_k c_j> / sqrt(d)) applied to W_v c_j
    ID interest       DIN target attention over the behaviours' ID embeddings
    y = MLP([e_1, ..., e_F, ID interest, content interest, c_target])

`content_dim` and `content_steps` configure the pre-training stages (`content_vectors`).
"""

from __future__ import annotations

from typing import ClassVar, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.data.features import Feature
from jaxrec.embedding import embedding_layer
from jaxrec.models.ctr.din import target_and_history
from jaxrec.models.frozen import Frozen
from jaxrec.nn import MLP
from jaxrec.nn.behaviour import TargetAttention, length_mask, masked_softmax


class CiUBM(nn.Module):
    """`batch -> logits [B]` (module docstring)."""

    DATA_FIELDS: ClassVar[tuple[str, ...]] = ("content",)  # filled by jaxrec.pretrain.content_encoder.content_vectors

    features: tuple[Feature, ...]
    embed_dim: int = 16
    hidden: Sequence[int] = (256, 128)
    attention_hidden: Sequence[int] = (80, 40)
    activation: str = "prelu"
    normalize: str = "softmax"
    content_dim: int = 32
    content_steps: tuple[int, int] = (200, 400)  # (alignment, C-SFT) steps; (200, 0): the ablation without C-SFT
    use_content: bool = True   # False: the ID branch alone
    target: str = "item_id"
    history: str = "hist_item"
    embed_init_std: float = 1e-4
    tables: tuple = ()
    EMBEDDING_LAYERS = {"embedding": "embed_dim"}  # {layer name: width or its field} (jaxrec.embedding.plan)
    content: Frozen | None = None  # [V_item, content_dim] frozen content vectors (jaxrec.pretrain.content_encoder)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        fields, sequences = embedding_layer(self, "embedding", return_sequences=True)(batch)
        target, history, lengths = target_and_history(self, batch, fields, sequences)
        id_interest = TargetAttention(self.attention_hidden, self.activation, self.normalize)(target, history, lengths)
        parts = [fields.reshape(fields.shape[0], -1), id_interest]
        if self.use_content:
            table = jnp.asarray(self.content.value)  # frozen: a constant, never a parameter
            c_target, c_hist = table[batch[self.target]], table[batch[self.history]]
            q = nn.Dense(self.content_dim, name="content_q")(c_target)
            k, v = nn.Dense(self.content_dim, name="content_k")(c_hist), nn.Dense(self.content_dim, name="content_v")(c_hist)
            scores = jnp.einsum("bd,bld->bl", q, k) / jnp.sqrt(self.content_dim)
            w = masked_softmax(scores, length_mask(lengths, c_hist.shape[1]))
            parts += [jnp.einsum("bl,bld->bd", w, v), c_target]
        return MLP(self.hidden, activation=self.activation, out_dim=1)(jnp.concatenate(parts, -1), train)[:, 0]
