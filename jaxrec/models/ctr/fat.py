"""FAT, the Field-Aware Transformer for CTR, and the vanilla transformer over field tokens.

FAT: "From Scaling to Structured Expressivity: Rethinking Transformers for CTR Prediction"
(arXiv 2511.12081; v2 adds the basis-composed hypernetwork). CTR features are a set of
fields, not a sequence, so FAT puts field structure into attention:

    Z^0_f  = e_f + b_f                                  one token per field (multi-valued pooled)
    s_ij   = (h_i W_Q^{(f_i)} . h_j W_K^{(f_j)} / sqrt(d_h)) * w[f_i, f_j]
    Attn_i = sum_j softmax_j(s_ij) h_j W_V^{(f_j)}
    FFN_i  = SiLU(z_i W_1^{(f_i)}) W_2^{(f_i)}
    Z^{l+1} = Z^l + FFN(LN(Attn(LN(Z^l))))               (L blocks)
    logit  = Dense(MLP(sum_f LN(Z^L)_f))

Layers, equations and what is inferred: `jaxrec.nn.field_transformer`. Here, inferred [I]:
a final LayerNorm before pooling (pre-LN convention; `final_norm`); the token width d equals
the embedding width `embed_dim`; the optional `head_hidden` MLP sits between pooling and the
output layer.

Variants (off by default; the AutoInt+ / FAT-paper forms, chosen on validation by the
benchmarks): `field_norm` normalises each input token over d and scales and shifts it by its
own field's gain and bias, `Z^0_f <- gamma_f * (Z^0_f - mean) / std + beta_f`;
`parallel_dnn` adds a DNN over the flattened input embeddings beside the blocks,
`logit = head(blocks(Z^0)) + DNN(concat_f Z^0_f)` (AutoInt+, Song et al. 2019).

Ablation switches: `modulation=False` (w = 1), `per_field=False` (shared W_Q/W_K/W_V),
`field_ffn=False` (shared FFN), `hypernet=False` (per-field weights learned directly; the v1
model, the default). With `hypernet=True` the per-field weights of every layer are composed
from `num_bases` shared bases through field meta-embeddings of width `meta_dim` and a top-
`top_k` router, once per forward pass; `cache_composed_weights` turns such a model's
variables into those of the plain model for serving.

`Transformer` is the AutoInt-style baseline with the same embedding layer, tokens and head:
every field-aware part off, two-residual pre-LN blocks and an output projection.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.data.features import Feature
from jaxrec.embedding import embedding_layer
from jaxrec.nn import MLP
from jaxrec.nn.field_transformer import FieldTransformerBlock, compose_field_weights

BLOCK_OPTIONS = tuple(f.name for f in dataclasses.fields(FieldTransformerBlock)
                      if f.init and f.name not in ("ffn_hidden", "parent", "name"))


class FAT(nn.Module):
    """`batch -> logits [B]`; embeddings `[B, F, d]` -> L blocks -> pooled `[B, d]` -> head.

    Attributes (beyond the shared `features`, `tables`, `embed_init_std`):
      embed_dim: d, the token width.
      num_layers, num_heads: L and H (d divisible by H).
      ffn_mult: FFN hidden width = ffn_mult * d.
      per_field, modulation, field_ffn, hypernet: the field-aware parts (module docstring).
      residual: 'single' (FAT [T]) or 'double' (standard pre-LN).
      output_projection: W_O after attention (vanilla transformers have it).
      field_bias: the learnable per-field token bias b_f.
      final_norm: LayerNorm of the tokens before pooling [I].
      pooling: 'sum' over fields [T] or 'flatten' (concatenate the F tokens).
      head_hidden: MLP widths between pooling and the output layer (() = linear head).
      num_bases, meta_dim, top_k: hypernet M, k, K.
      modulation_init_mean, modulation_init_std: w's normal initializer.
      attention: 'auto' | 'xla' | 'pallas' | 'interpret' (pallas_kernels.field_attention).
      field_norm: per-field LayerNorm of the input tokens (gain and bias per field) [variant].
      parallel_dnn: hidden widths of a DNN over the flattened input tokens whose logit is
        added (AutoInt+); () = none [variant].
    """

    features: tuple[Feature, ...]
    embed_dim: int = 16
    num_layers: int = 2
    num_heads: int = 2
    ffn_mult: int = 4
    per_field: bool = True
    modulation: bool = True
    field_ffn: bool = True
    hypernet: bool = False
    residual: str = "single"
    output_projection: bool = False
    field_bias: bool = True
    final_norm: bool = True
    pooling: str = "sum"
    head_hidden: Sequence[int] = ()
    num_bases: int = 64
    meta_dim: int = 64
    top_k: int = 3
    modulation_init_mean: float = 0.0
    modulation_init_std: float = 0.01
    dropout: float = 0.0
    attention: str = "auto"
    field_norm: bool = False
    parallel_dnn: Sequence[int] = ()
    embed_init_std: float = 1e-4
    tables: tuple = ()  # per-table (name, TableOptions): own optimizer / sharding (config `tables`)
    EMBEDDING_LAYERS = {"embedding": "embed_dim"}  # {layer name: width or its field} (jaxrec.embedding.plan)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        z = embedding_layer(self, "embedding")(batch)
        num_fields = z.shape[1]
        if self.field_bias:
            z = z + self.param("field_bias", nn.initializers.zeros, (num_fields, self.embed_dim))
        if self.field_norm:  # [B, F, d]: normalised over d, then gamma_f * . + beta_f per field
            z = nn.LayerNorm(use_scale=False, use_bias=False, name="field_norm")(z)
            z = z * self.param("field_norm_scale", nn.initializers.ones, (num_fields, self.embed_dim)) \
                + self.param("field_norm_bias", nn.initializers.zeros, (num_fields, self.embed_dim))
        tokens = z
        meta = None
        if self.hypernet:
            meta = self.param("field_meta", nn.initializers.normal(1.0), (num_fields, self.meta_dim))
        # the block's options are this model's fields of the same names
        block_options = {f: getattr(self, f) for f in BLOCK_OPTIONS}
        for layer in range(self.num_layers):
            z = FieldTransformerBlock(ffn_hidden=self.ffn_mult * self.embed_dim, **block_options,
                                      name=f"block_{layer}")(z, meta, train)
        if self.final_norm:
            z = nn.LayerNorm(name="ln_final")(z)
        if self.pooling == "sum":
            pooled = jnp.sum(z, axis=1)
        elif self.pooling == "flatten":
            pooled = z.reshape(z.shape[0], -1)
        else:
            raise ValueError(f"model.pooling={self.pooling!r}: expected 'sum' or 'flatten'")
        logit = MLP(tuple(self.head_hidden), dropout=self.dropout, out_dim=1)(pooled, train)[:, 0]
        if self.parallel_dnn:  # AutoInt+: a DNN over the flattened input tokens beside the blocks
            flat = tokens.reshape(tokens.shape[0], -1)
            logit = logit + MLP(tuple(self.parallel_dnn), dropout=self.dropout, out_dim=1, name="parallel_dnn")(flat, train)[:, 0]
        return logit


class Transformer(FAT):
    """Vanilla transformer over field tokens (AutoInt-style baseline; Song et al., CIKM 2019,
    arXiv 1810.11921, with pre-LN blocks and an FFN): FAT with every field-aware part off."""

    per_field: bool = False
    modulation: bool = False
    field_ffn: bool = False
    hypernet: bool = False
    residual: str = "double"
    output_projection: bool = True


def cache_composed_weights(model: FAT, variables: Mapping) -> tuple[FAT, dict]:
    """Serving form of a hypernet FAT: `(model', variables')` with the per-field weights composed
    once and stored, `model'` the same model with `hypernet=False`; identical outputs."""
    if not model.hypernet:
        return model, dict(variables)
    params = compose_field_weights(variables["params"], model.top_k)
    return model.clone(hypernet=False), {**variables, "params": params}
