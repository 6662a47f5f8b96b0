"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018): a causal
transformer over a user's item history that scores every item as the next one.

    x_0   = LN(E[h] + P[0..L-1])  (post-norm, RecBole)   or   E[h] + P[0..L-1]  (pre-norm, the paper)
    x_l   = Block_l(x_{l-1})       causal self-attention, keys restricted to real items, FFN
    u     = x_L[len - 1]           (pre-norm: LN(x_L)[len - 1]) the state after the last real item
    s_v   = u . E_v                scores of every item id v in 0..V-1 (tied output; 0 is padding)

Batch: `history [B, L]` int32 item ids, right-padded with 0 (positions 0 .. len-1 hold the items,
oldest first; `jaxrec.data.sequential`), `history_length [B]`; output scores `[B, V]` float32,
V = the `history` feature's vocab_size (N items + padding). The task (`next_item`) ignores
column 0.

Defaults are RecBole 1.2.1's SASRec (`recbole/properties/model/SASRec.yaml`,
`recbole/model/sequential_recommender/sasrec.py`, `recbole/model/layers.py`), option by option:

    n_layers 2, n_heads 2, hidden_size 64, inner_size 256   depth, num_heads, width, mlp_width
    hidden_dropout_prob 0.5 (input embeddings, residuals)   dropout
    attn_dropout_prob 0.5 (attention probabilities)         attention_dropout
    hidden_act gelu (erf), layer_norm_eps 1e-12             activation, norm_eps
    initializer_range 0.02: N(0, 0.02^2) for every           init_scale (tables), dense_init='normal'
      Embedding and Linear, zero biases, LayerNorm (1, 0)      (Dense kernels N(0, init_scale^2))
    TransformerEncoder post-norm (BERT): LN(x + drop(f(x)))  pre_norm=False
    input LN + dropout on E[h] + P, tied output, CE loss     (fixed)

`dense_init='lecun'` gives Flax's lecun_normal kernels instead (what this model used before).
Remaining differences, outside the model: RecBole's CE runs over all V logits including the
padding id 0 (jaxrec's `next_item` task drops column 0), and RecBole keeps the last partial batch
of an epoch (jaxrec's batching drops it).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.data.features import lengths_key
from jaxrec.errors import ConfigError
from jaxrec.nn.transformer import ACTIVATIONS, TransformerBlock, causal_mask, padding_mask

DENSE_INITS = ("normal", "lecun")


class SASRec(nn.Module):
    """SASRec (module docstring). Config keys are the attributes below (`model.<name>`).

    Attributes:
      width: D (RecBole hidden_size).  depth: blocks (n_layers).  num_heads: H (n_heads).
      mlp_width: the FFN's hidden width (inner_size).  dropout: embeddings and residual branches
      (hidden_dropout_prob).  attention_dropout: attention probabilities (attn_dropout_prob).
      max_len: the learned positions' table size (>= the history feature's max_len).
      pre_norm: pre-norm blocks + a final LayerNorm (the paper) instead of post-norm (RecBole).
      activation: FFN activation.  norm_eps: LayerNorm epsilon.  init_scale: normal init std
      (initializer_range) of the item and position tables and, with dense_init='normal', of the
      blocks' Dense kernels.  dense_init: 'normal' (RecBole) or 'lecun' (Flax's lecun_normal).
      history_field: the batch key of the history.
    """

    features: tuple = ()
    width: int = 64
    depth: int = 2
    num_heads: int = 2
    mlp_width: int = 256
    dropout: float = 0.5
    attention_dropout: float = 0.5
    max_len: int = 50
    pre_norm: bool = False
    activation: str = "gelu"
    norm_eps: float = 1e-12
    init_scale: float = 0.02
    dense_init: str = "normal"
    history_field: str = "history"

    EMBEDDING_LAYERS = None  # no sparse tables: the item table is a dense parameter (it is also the output layer)

    def __post_init__(self):
        if self.width % self.num_heads:
            raise ConfigError(f"model.width={self.width} is not divisible by model.num_heads={self.num_heads}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"model.activation={self.activation!r}: expected one of {list(ACTIVATIONS)}")
        for key in ("width", "depth", "num_heads", "mlp_width", "max_len"):
            if int(getattr(self, key)) <= 0:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be positive")
        for key in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be in [0, 1)")
        if self.dense_init not in DENSE_INITS:
            raise ConfigError(f"model.dense_init={self.dense_init!r}: expected one of {list(DENSE_INITS)}")
        if not self.init_scale > 0:
            raise ConfigError(f"model.init_scale={self.init_scale} must be positive")
        spec = next((f for f in self.features if f.name == self.history_field), None)
        if spec is not None and spec.max_len > self.max_len:
            raise ConfigError(f"model.max_len={self.max_len} is shorter than the histories ({spec.max_len}, dataset.max_history)")
        super().__post_init__()

    @property
    def num_ids(self) -> int:
        """V: item ids 0..V-1 (0 = padding), the history feature's vocab_size (checked when the model is set up)."""
        spec = next((f for f in self.features if f.name == self.history_field), None)
        if spec is None or not spec.vocab_size:
            raise ConfigError(f"model 'sasrec' reads the item history {self.history_field!r} (model.history_field) with a "
                              f"resolved vocab_size, which the dataset lacks (features {[f.name for f in self.features]}); "
                              f"use dataset.name='sequential'")
        return int(spec.vocab_size)

    def setup(self):
        init = nn.initializers.normal(self.init_scale)
        self.item_embed = nn.Embed(self.num_ids, self.width, name="item_embed",
                                   embedding_init=nn.with_logical_partitioning(init, ("vocab", "embed")))
        self.pos_embed = nn.Embed(self.max_len, self.width, name="pos_embed",
                                  embedding_init=nn.with_logical_partitioning(init, ("position", "embed")))
        init_std = self.init_scale if self.dense_init == "normal" else None
        self.blocks = [TransformerBlock(self.num_heads, self.mlp_width, activation=self.activation, norm="layernorm",
                                        norm_eps=self.norm_eps, pre_norm=self.pre_norm, dropout=self.dropout,
                                        attention_dropout=self.attention_dropout, init_std=init_std,
                                        name=f"block_{i}") for i in range(self.depth)]
        self.norm = nn.LayerNorm(epsilon=self.norm_eps, name="norm")  # the input LN (post-norm) or the final one (pre-norm)
        self.drop = nn.Dropout(self.dropout)

    def encode(self, history: jax.Array, train: bool = False) -> jax.Array:
        """Hidden states `[B, L, D]` of right-padded `history [B, L]`; position t sees items 0..t only."""
        length = history.shape[1]
        x = self.item_embed(history) + self.pos_embed(jnp.arange(length))[None]
        if not self.pre_norm:
            x = self.norm(x)
        x = self.drop(x, deterministic=not train)
        mask = causal_mask(length) & padding_mask(history > 0)
        for block in self.blocks:
            x, _ = block(x, mask, train=train)
        return self.norm(x) if self.pre_norm else x

    def user_state(self, batch, train: bool = False) -> jax.Array:
        """`[B, D]`: the hidden state at the last real item, `history_length - 1`."""
        history = batch[self.history_field].astype(jnp.int32)
        last = jnp.clip(batch[lengths_key(self.history_field)].astype(jnp.int32) - 1, 0, history.shape[1] - 1)
        h = self.encode(history, train=train)
        return jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0]

    def __call__(self, batch, train: bool = False) -> jax.Array:
        """Scores `[B, V]` float32 of every item id as the next item (tied output `u E^T`)."""
        return self.item_embed.attend(self.user_state(batch, train=train)).astype(jnp.float32)


__all__ = ["SASRec"]
