"""Transformer layers over field tokens: the FAT building blocks and their vanilla forms.

FAT ("From Scaling to Structured Expressivity: Rethinking Transformers for CTR Prediction",
arXiv 2511.12081; notes in shared/specs/recsys-methods.md §2). Token i is field f_i's
embedding h_i in R^d. Each switch below turns one field-aware part into its vanilla form:

    per_field    q_i = h_i W_Q^{(f_i)}, k_j = h_j W_K^{(f_j)}, v_j = h_j W_V^{(f_j)}    §3.2
                 ("decomposed content alignment"; off: one W_Q, W_K, W_V for all fields)
    modulation   s_ij = (q_i . k_j / sqrt(d_h)) * w[f_i, f_j], w in R^{F x F} learnable  §3.2
                 ("cross-field modulation"; off: w = 1)
    field FFN    FFN(z_i) = SiLU(z_i W_1^{(f_i)}) W_2^{(f_i)}                              §3.3
    hypernet     W_Phi^{(f)} = sum_{m in topK(g_Phi(phi_f))} alpha_m B_{m,Phi},            §3.4 (v2)
                 alpha = softmax over the top-K router logits g_Phi(phi_f) = phi_f R_Phi + c_Phi

Parameters: O(F d^2 + F^2) per layer (per-field maps and w), not O(F^2 d^2) as field-pair
maps would need.

What is inferred ([T] third-party reimplementation, [I] ours; all configurable):
  [T] w ~ N(0, 0.01^2) at init (§5.1.3 as cited); asymmetric.
  [T] block Z' = Z + FFN(LN(Attn(LN(Z)))) (one residual, `residual='single'`); the standard
      two-residual pre-LN block is `residual='double'`.
  [T] heads split d after the per-field projection; no output projection in FAT.
  [I] hypernet: one set of M bases, router and top-K per (layer, parameter type); the field
      meta-embeddings phi_f are shared by every layer; per-field biases stay per field.
  [I] the composed weights are built once per forward pass (a training step), outside any
      per-example work; `compose_field_weights` bakes them into plain per-field kernels for
      serving (the same outputs at no per-step cost).
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from pallas_kernels.field_attention import field_attention

ATTENTION_IMPLS = ("auto", "xla", "pallas", "interpret")


def compose_basis_weights(bases: jax.Array, router_logits: jax.Array, top_k: int) -> jax.Array:
    """Per-field weights from shared bases (FAT v2, §3.4).

    Args:
      bases: `[M, d_in, d_out]` shared bases.
      router_logits: `[F, M]` router scores g(phi_f).
      top_k: K, bases mixed per field; the gradient reaches only the selected logits.
    Returns: `[F, d_in, d_out]`, W^{(f)} = sum_{m in topK} softmax(topK logits)_m B_m.
    """
    top, idx = jax.lax.top_k(router_logits, top_k)           # [F, K]
    alpha = jax.nn.softmax(top, axis=-1)
    return jnp.einsum("fk,fkio->fio", alpha, bases[idx])


class FieldLinear(nn.Module):
    """Linear map of field tokens, `[B, F, d_in] -> [B, F, d_out]`.

    `per_field`: one kernel per field, `[F, d_in, d_out]`, else one shared `[d_in, d_out]`.
    Called with `meta` (field meta-embeddings `[F, k]`), the per-field kernels are composed
    from `num_bases` shared bases by a top-`top_k` router (`compose_basis_weights`).
    """

    features: int
    per_field: bool = True
    use_bias: bool = False
    num_bases: int = 64
    top_k: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, meta: jax.Array | None = None) -> jax.Array:
        num_fields, d_in = x.shape[-2:]
        if not self.per_field:
            y = x @ self.param("kernel", nn.initializers.lecun_normal(), (d_in, self.features))
            bias_shape = (self.features,)
        else:
            if meta is None:
                kernel = self.param("kernel", nn.initializers.lecun_normal(batch_axis=(0,)), (num_fields, d_in, self.features))
            else:
                if self.top_k > self.num_bases:
                    raise ValueError(f"hypernet top_k={self.top_k} exceeds num_bases={self.num_bases}")
                bases = self.param("bases", nn.initializers.lecun_normal(batch_axis=(0,)), (self.num_bases, d_in, self.features))
                logits = nn.Dense(self.num_bases, name="router")(meta)
                kernel = compose_basis_weights(bases, logits, self.top_k)
            # field-major batched matmul: on XLA:CPU ~5x faster (fwd+bwd) than einsum('bfi,fio->bfo'),
            # whose dot has its batch axis in the middle (B=1024, F=10, 16 -> 64)
            y = jnp.matmul(jnp.swapaxes(x, 0, 1), kernel).swapaxes(0, 1)
            bias_shape = (num_fields, self.features)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, bias_shape)
        return y


def compose_field_weights(params: Mapping[str, Any], top_k: int) -> dict:
    """Bakes a hypernet model's composed per-field kernels into plain ones (serving cache).

    Every `FieldLinear` holding `bases` + `router` becomes `{'kernel': [F, d_in, d_out]}` (its
    bias kept), and the top-level `field_meta` `[F, k]` is dropped: the result is the parameter
    tree of the same model with `hypernet=False`, which computes the same outputs.
    """
    meta = params["field_meta"]

    def bake(tree):
        if not isinstance(tree, Mapping):
            return tree
        if "bases" in tree:
            logits = meta @ tree["router"]["kernel"] + tree["router"]["bias"]
            out = {"kernel": compose_basis_weights(tree["bases"], logits, top_k)}
            return out | ({"bias": tree["bias"]} if "bias" in tree else {})
        return {k: bake(v) for k, v in tree.items() if k != "field_meta"}

    return bake(params)


def _attention_kwargs(attention: str) -> dict:
    if attention not in ATTENTION_IMPLS:
        raise ValueError(f"attention={attention!r}: expected one of {ATTENTION_IMPLS}")
    return {"auto": {}, "xla": dict(implementation="xla"), "pallas": dict(implementation="pallas"),
            "interpret": dict(implementation="pallas", interpret=True)}[attention]


class FieldAttention(nn.Module):
    """Multi-head attention among F field tokens, `[B, F, d] -> [B, F, d]` (module docstring).

    Attributes:
      num_heads: H; d must divide by H (d_h = d / H).
      per_field: per-field W_Q, W_K, W_V (FAT) or shared (vanilla).
      modulation: learnable F x F field-pair scale of the scores (FAT) or none.
      modulation_init_std: std of w's normal initializer (mean `modulation_init_mean`).
      output_projection: a final d x d map W_O (vanilla transformer; FAT has none [T]).
      attention: 'auto' (Pallas kernel on GPU/TPU, XLA on CPU) | 'xla' | 'pallas' | 'interpret'.
    """

    num_heads: int = 2
    per_field: bool = True
    modulation: bool = True
    modulation_init_mean: float = 0.0
    modulation_init_std: float = 0.01
    output_projection: bool = False
    num_bases: int = 64
    top_k: int = 3
    attention: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, meta: jax.Array | None = None) -> jax.Array:
        b, f, d = x.shape
        if d % self.num_heads:
            raise ValueError(f"width d={d} is not divisible by num_heads={self.num_heads}")
        linear = lambda name: FieldLinear(d, self.per_field, num_bases=self.num_bases, top_k=self.top_k, name=name)
        heads = lambda t: t.reshape(b, f, self.num_heads, d // self.num_heads).transpose(0, 2, 1, 3)
        q, k, v = (heads(linear(n)(x, meta)) for n in ("query", "key", "value"))
        w = None
        if self.modulation:
            mean, std = self.modulation_init_mean, self.modulation_init_std
            w = self.param("field_pair", lambda key, s: mean + std * jax.random.normal(key, s), (f, f))
        o = field_attention(q, k, v, w, **_attention_kwargs(self.attention))
        o = o.transpose(0, 2, 1, 3).reshape(b, f, d)
        if self.output_projection:
            o = FieldLinear(d, per_field=False, use_bias=True, name="out")(o)
        return o


class FieldFFN(nn.Module):
    """`[B, F, d] -> [B, F, d]`: SiLU(z W_1 + b_1) W_2 + b_2, per field (FAT §3.3) or shared."""

    hidden: int
    per_field: bool = True
    num_bases: int = 64
    top_k: int = 3
    dropout: float = 0.0

    @nn.compact
    def __call__(self, z: jax.Array, meta: jax.Array | None = None, train: bool = False) -> jax.Array:
        kw = dict(per_field=self.per_field, use_bias=True, num_bases=self.num_bases, top_k=self.top_k)
        h = nn.silu(FieldLinear(self.hidden, name="up", **kw)(z, meta))
        if self.dropout > 0:
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return FieldLinear(z.shape[-1], name="down", **kw)(h, meta)


class FieldTransformerBlock(nn.Module):
    """One block, `[B, F, d] -> [B, F, d]`.

    residual='single' [T]:  Z + FFN(LN(Attn(LN(Z))))
    residual='double':      Z' = Z + Attn(LN(Z));  Z' + FFN(LN(Z'))     (standard pre-LN)
    """

    num_heads: int = 2
    ffn_hidden: int = 64
    per_field: bool = True
    modulation: bool = True
    field_ffn: bool = True
    residual: str = "single"
    output_projection: bool = False
    modulation_init_mean: float = 0.0
    modulation_init_std: float = 0.01
    num_bases: int = 64
    top_k: int = 3
    dropout: float = 0.0
    attention: str = "auto"

    @nn.compact
    def __call__(self, z: jax.Array, meta: jax.Array | None = None, train: bool = False) -> jax.Array:
        attn = FieldAttention(self.num_heads, self.per_field, self.modulation, self.modulation_init_mean,
                              self.modulation_init_std, self.output_projection, self.num_bases, self.top_k,
                              self.attention, name="attention")
        ffn = FieldFFN(self.ffn_hidden, self.field_ffn, self.num_bases, self.top_k, self.dropout, name="ffn")
        drop = (lambda t: nn.Dropout(self.dropout, deterministic=not train)(t)) if self.dropout > 0 else (lambda t: t)
        if self.residual == "single":
            a = attn(nn.LayerNorm(name="ln_attention")(z), meta)
            return z + drop(ffn(nn.LayerNorm(name="ln_ffn")(a), meta, train))
        if self.residual == "double":
            z = z + drop(attn(nn.LayerNorm(name="ln_attention")(z), meta))
            return z + drop(ffn(nn.LayerNorm(name="ln_ffn")(z), meta, train))
        raise ValueError(f"residual={self.residual!r}: expected 'single' or 'double'")
