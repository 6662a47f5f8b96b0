"""Transformer blocks: attention (multi-head / grouped-query, RoPE, KV cache), norms, FFNs, MoE.

Shapes: B batch, T query length, S key length (= T, or the cache length when decoding), D width,
H query heads, K key/value heads (H % K == 0; K = H is multi-head, K = 1 multi-query), d_h head width.

Attention, for each head h reading key/value head h // (H / K):

    softmax(q_h k_h^T / sqrt(d_h) + mask) v_h,     q = x W_Q [B, T, H, d_h],  k, v = x W_K, x W_V [B, S, K, d_h]

computed by `jax.nn.dot_product_attention` (cuDNN flash attention on GPU when eligible, XLA
elsewhere; `implementation` chooses), then `o W_O` over (H, d_h). Masks are boolean `[B, 1, T, S]`
(True = attend): `causal_mask`, `padding_mask`, and `decode_mask` for a cache.

RoPE (Su et al.) rotates each (i, i + d_h/2) pair of q and k by angle `pos * theta^(-2i/d_h)`
(the "rotate half" layout of GPT-NeoX / LLaMA), so q_m . k_n depends on m - n only.

KV cache: per layer `{'k': [B, S_max, K, d_h], 'v': ...}`; a call with `cache` and `cache_index`
(a scalar: the slot of its first token, shared by the batch; ragged prompts are left-padded and
the pads masked out) writes its keys and values at `cache_index` and attends over the whole
cache under the caller's mask. Prefill is a call with T = prompt length, a step one with T = 1.

FFN: `act(x W_1) W_2` ('gelu' exact, 'gelu_tanh', 'relu', 'silu') or SwiGLU
`(silu(x W_gate) * x W_1) W_2`. `MoEFeedForward`: E expert FFNs, a router `softmax(x W_r)`, each
token sent to its top-k experts with their router probabilities (renormalised over the k, an
option) as weights; the Switch-Transformer load-balancing loss `E * sum_e f_e P_e` (f_e = share of
top-k slots given to e, P_e = mean router probability of e; 1 when balanced) times
`balance_weight` is sown into `AUX_LOSSES`, which the trainer adds to the loss. Experts run
densely (every expert on every token, then gated): exact and simple; fine for the small E here.

`TransformerBlock`: pre-norm `x + Attn(N(x)); x + FFN(N(x))` (GPT, LLaMA) or post-norm
`N(x + Attn(x)); N(x + FFN(x))` (BERT). Every parameter names its dimensions (`embed`, `heads`,
`kv_heads`, `head_dim`, `mlp`, `expert`); `jaxrec.mesh.LOGICAL_RULES` maps them to the mesh.
`dropout` applies to the residual branches. `attention_dropout` p > 0 also drops attention
probabilities while training (BERT, RecBole's SASRec): then, and only then, attention takes the
explicit path `softmax_attention` (`dropout(softmax(q k^T / sqrt(d_h) + mask)) v`, the
probabilities rescaled by 1 / (1 - p)), which the fused kernel cannot do; otherwise (p = 0, or
evaluation) it is `jax.nn.dot_product_attention`, whose result the explicit path equals at p = 0.

Initialisation: every `Dense` kernel is Flax's `lecun_normal` (N(0, 1/fan_in), truncated) unless
`init_std` is set, then N(0, init_std^2) (BERT / RecBole `initializer_range`); biases are 0 and
LayerNorm scale 1, bias 0 either way.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.nn.layers import AUX_LOSSES
from jaxrec.nn.lora import Dense

ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu", "swiglu")
NORMS = ("layernorm", "rmsnorm")
Cache = dict  # {'k': [B, S, K, d_h], 'v': [B, S, K, d_h]}


def causal_mask(length: int) -> jax.Array:
    """`[1, 1, T, T]`: position i attends to j <= i."""
    return jnp.tril(jnp.ones((length, length), bool))[None, None]


def padding_mask(valid: jax.Array) -> jax.Array:
    """`valid [B, S]` (True = a real token) -> `[B, 1, 1, S]`: attend only to real keys."""
    return valid[:, None, None, :].astype(bool)


def decode_mask(valid: jax.Array, cache_index: jax.Array, length: int) -> jax.Array:
    """The mask of T = `length` queries at cache slots `cache_index + t` over a cache whose slots
    hold real tokens where `valid [B, S]`: causal by slot, pads masked. `[B, 1, T, S]`."""
    slots = jnp.arange(valid.shape[1])
    queries = cache_index + jnp.arange(length)
    return (slots[None, :] <= queries[:, None])[None, None] & padding_mask(valid)



def valid_positions(valid: jax.Array) -> jax.Array:
    """`valid [B, T]` -> positions `[B, T]` int32: the number of real tokens before each (pads: 0),
    so a left-padded row has the positions it would have alone (what `decode_mask` pairs with)."""
    return jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)

def rope(x: jax.Array, positions: jax.Array, theta: float = 10000.0) -> jax.Array:
    """Rotary position embedding of `x [B, T, N, d_h]` at integer `positions [B, T]` (d_h even)."""
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"rope: head width {d} must be even")
    inv = theta ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)              # [d/2]
    angle = positions.astype(jnp.float32)[..., None, None] * inv              # [B, T, 1, d/2]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def dense_init(std: float | None) -> Any:
    """The kernel initializer of std `std`: None = Flax's `lecun_normal`, else N(0, std^2)."""
    if std is None:
        return nn.initializers.lecun_normal()
    if not std > 0:
        raise ValueError(f"init_std={std} must be positive (or None for lecun_normal)")
    return nn.initializers.normal(std)


def softmax_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                      dropout_rate: float = 0.0, dropout_rng: jax.Array | None = None) -> jax.Array:
    """`q [B, T, H, d_h]`, `k, v [B, S, K, d_h]` (H % K == 0), boolean `mask` broadcastable to
    `[B, H, T, S]` -> `[B, T, H, d_h]`:

        P = softmax(q_h k_h^T / sqrt(d_h) + mask) (float32; masked logits -0.7 * max float, as
        `jax.nn.dot_product_attention`),   out_h = drop(P) v_{h // (H / K)}

    `drop` zeroes each probability with `dropout_rate` and scales the rest by 1 / (1 - rate)
    (needs `dropout_rng`); rate 0 is exactly the fused `jax.nn.dot_product_attention`'s math."""
    h, kv, dh = q.shape[2], k.shape[2], q.shape[3]
    if h % kv:
        raise ValueError(f"softmax_attention: {kv} key/value heads do not divide {h} query heads")
    if kv != h:
        k, v = jnp.repeat(k, h // kv, axis=2), jnp.repeat(v, h // kv, axis=2)
    logits = jnp.einsum("bthd,bshd->bhts", q, k, preferred_element_type=jnp.float32) / jnp.sqrt(jnp.float32(dh))
    if mask is not None:
        logits = jnp.where(mask, logits, -0.7 * jnp.finfo(jnp.float32).max)
    probs = jax.nn.softmax(logits, axis=-1)
    if dropout_rate > 0:
        if dropout_rng is None:
            raise ValueError("softmax_attention with dropout_rate > 0 needs dropout_rng")
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
    return jnp.einsum("bhts,bshd->bthd", probs.astype(v.dtype), v)


def make_norm(kind: str, eps: float, name: str, dtype: Any = None) -> nn.Module:
    """'layernorm' (scale and bias) or 'rmsnorm' (scale), its parameters named `('embed',)`."""
    if kind not in NORMS:
        raise ValueError(f"norm={kind!r}: expected one of {NORMS}")
    scale = nn.with_logical_partitioning(nn.initializers.ones, ("embed",))
    if kind == "layernorm":
        return nn.LayerNorm(eps, dtype=dtype, scale_init=scale,
                            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), name=name)
    return nn.RMSNorm(eps, dtype=dtype, scale_init=scale, name=name)


def check_heads(width: int, num_heads: int, num_kv_heads: int, head_dim: int | None = None, where: str = "model") -> None:
    """Raises ValueError unless the heads fit: H % K == 0 and, without an explicit head width, D % H == 0."""
    if num_heads <= 0 or num_kv_heads <= 0:
        raise ValueError(f"{where}.num_heads={num_heads}, {where}.num_kv_heads={num_kv_heads}: must be positive")
    if head_dim is None and width % num_heads:
        raise ValueError(f"{where}.num_heads={num_heads} does not divide the width {where}.width={width} "
                         f"(head width = width / num_heads)")
    if num_heads % num_kv_heads:
        raise ValueError(f"{where}.num_kv_heads={num_kv_heads} does not divide {where}.num_heads={num_heads} "
                         f"(grouped-query attention shares each key/value head among num_heads / num_kv_heads heads)")


class Attention(nn.Module):
    """Multi-head / grouped-query attention, `x [B, T, D] -> [B, T, D]` (module docstring).

    Attributes:
      num_heads: H.  num_kv_heads: K (None = H).  head_dim: d_h (None = D / H).
      use_bias: biases on the four projections (BERT) or none (LLaMA).
      rope_theta: apply RoPE with this base to q and k (needs `positions`); None = no RoPE.
      lora_rank / lora_alpha: LoRA adapters on the four projections (`jaxrec.nn.lora`).
      implementation: `jax.nn.dot_product_attention`'s (None = best for the backend, 'xla', 'cudnn').
      attention_dropout: p of attention-probability dropout in training (`softmax_attention`); 0 = none, fused.
      init_std: the projections' kernel init std (None = lecun_normal; module docstring).
    """

    num_heads: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    use_bias: bool = True
    rope_theta: float | None = None
    lora_rank: int = 0
    lora_alpha: float = 16.0
    implementation: str | None = None
    dtype: Any = None
    attention_dropout: float = 0.0
    init_std: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, positions: jax.Array | None = None,
                 cache: Cache | None = None, cache_index: jax.Array | None = None,
                 train: bool = False) -> tuple[jax.Array, Cache | None]:
        """`x [B, T, D]`, `mask` broadcastable to `[B, H, T, S]` -> (`[B, T, D]`, updated cache or None).
        `train` with `attention_dropout > 0` drops attention probabilities (needs a 'dropout' rng)."""
        if not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"attention_dropout={self.attention_dropout} must be in [0, 1)")
        d = x.shape[-1]
        h, kv = self.num_heads, self.num_kv_heads or self.num_heads
        check_heads(d, h, kv, self.head_dim, "attention")
        dh = self.head_dim or d // h
        init = dense_init(self.init_std)
        proj = lambda n, heads, name: Dense((n, dh), ("embed", heads, "head_dim"), use_bias=self.use_bias,
                                             lora_rank=self.lora_rank, lora_alpha=self.lora_alpha, kernel_init=init,
                                             dtype=self.dtype, name=name)
        q, k, v = proj(h, "heads", "query")(x), proj(kv, "kv_heads", "key")(x), proj(kv, "kv_heads", "value")(x)
        if self.rope_theta is not None:
            if positions is None:
                raise ValueError("attention with RoPE needs positions [B, T]")
            q, k = rope(q, positions, self.rope_theta), rope(k, positions, self.rope_theta)
        if cache is not None:
            start = (0, cache_index, 0, 0)
            cache = {"k": jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), start),
                     "v": jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), start)}
            k, v = cache["k"].astype(q.dtype), cache["v"].astype(q.dtype)
        if train and self.attention_dropout > 0:
            o = softmax_attention(q, k, v, mask, self.attention_dropout, self.make_rng("dropout"))
        else:
            o = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=self.implementation)
        out = Dense((d,), ("heads", "head_dim", "embed"), contract=2, use_bias=self.use_bias, lora_rank=self.lora_rank,
                    lora_alpha=self.lora_alpha, kernel_init=init, dtype=self.dtype, name="out")(o)
        return out, cache


class FeedForward(nn.Module):
    """`[B, T, D] -> [B, T, D]`: `act(x W_1) W_2`, or SwiGLU with activation='swiglu'; kernels
    initialised with std `init_std` (None = lecun_normal)."""

    hidden: int
    activation: str = "gelu"
    use_bias: bool = True
    lora_rank: int = 0
    lora_alpha: float = 16.0
    dtype: Any = None
    init_std: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r}: expected one of {ACTIVATIONS}")
        init = dense_init(self.init_std)
        dense = lambda n, axes, name: Dense((n,), axes, use_bias=self.use_bias, lora_rank=self.lora_rank,
                                            lora_alpha=self.lora_alpha, kernel_init=init, dtype=self.dtype, name=name)
        up = dense(self.hidden, ("embed", "mlp"), "wi")(x)
        if self.activation == "swiglu":
            h = nn.silu(dense(self.hidden, ("embed", "mlp"), "wi_gate")(x)) * up
        else:
            h = {"gelu": lambda z: nn.gelu(z, approximate=False), "gelu_tanh": nn.gelu,
                 "relu": nn.relu, "silu": nn.silu}[self.activation](up)
        return dense(x.shape[-1], ("mlp", "embed"), "wo")(h)


def load_balance_loss(router_probs: jax.Array, chosen: jax.Array, num_experts: int) -> jax.Array:
    """Switch-Transformer auxiliary loss `E * sum_e f_e P_e` of router probabilities `[N, E]` and
    the chosen experts `[N, k]`; 1.0 when both are uniform."""
    f = jnp.mean(jax.nn.one_hot(chosen, num_experts).sum(-2), axis=0) / chosen.shape[-1]
    return num_experts * jnp.sum(f * jnp.mean(router_probs, axis=0))


class MoEFeedForward(nn.Module):
    """A mixture of E FFN experts with a top-k router, `[B, T, D] -> [B, T, D]` (module docstring)."""

    num_experts: int
    top_k: int = 2
    hidden: int = 256
    activation: str = "gelu"
    renormalize: bool = True
    balance_weight: float = 0.01
    use_bias: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if not 0 < self.top_k <= self.num_experts:
            raise ValueError(f"moe top_k={self.top_k} must be in [1, num_experts={self.num_experts}]")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r}: expected one of {ACTIVATIONS}")
        e, d = self.num_experts, x.shape[-1]
        flat = x.reshape(-1, d)                                                  # [N, D]
        logits = Dense((e,), ("embed", "expert"), use_bias=False, dtype=jnp.float32, name="router")(flat)
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)              # [N, E]
        top_p, top_i = jax.lax.top_k(probs, self.top_k)                          # [N, k]
        if self.renormalize:
            top_p = top_p / jnp.sum(top_p, axis=-1, keepdims=True)
        gates = jnp.sum(jax.nn.one_hot(top_i, e) * top_p[..., None], axis=-2)    # [N, E]
        param = lambda name, shape, axes: self.param(name, nn.with_logical_partitioning(nn.initializers.lecun_normal(batch_axis=(0,)), axes), shape)
        w1 = param("wi", (e, d, self.hidden), ("expert", "embed", "mlp"))
        w2 = param("wo", (e, self.hidden, d), ("expert", "mlp", "embed"))
        up = jnp.einsum("nd,edh->neh", flat, w1)
        if self.use_bias:
            up = up + self.param("bi", nn.with_logical_partitioning(nn.initializers.zeros, ("expert", "mlp")), (e, self.hidden))
        if self.activation == "swiglu":
            gate = param("wi_gate", (e, d, self.hidden), ("expert", "embed", "mlp"))
            h = nn.silu(jnp.einsum("nd,edh->neh", flat, gate)) * up
        else:
            h = {"gelu": lambda z: nn.gelu(z, approximate=False), "gelu_tanh": nn.gelu,
                 "relu": nn.relu, "silu": nn.silu}[self.activation](up)
        y = jnp.einsum("neh,ehd->ned", h, w2)
        if self.use_bias:
            y = y + self.param("bo", nn.with_logical_partitioning(nn.initializers.zeros, ("expert", "embed")), (e, d))
        out = jnp.einsum("ne,ned->nd", gates.astype(y.dtype), y)
        if self.balance_weight:
            self.sow(AUX_LOSSES, "moe_balance", self.balance_weight * load_balance_loss(probs, top_i, e))
        return out.reshape(x.shape).astype(x.dtype)


class TransformerBlock(nn.Module):
    """One attention + FFN block, `[B, T, D] -> [B, T, D]` (module docstring).

    Attributes: heads as in `Attention`; `mlp_width` the FFN's hidden width; `activation`;
    `norm` ('layernorm' | 'rmsnorm') and `norm_eps`; `pre_norm` (GPT) or post-norm (BERT);
    `num_experts > 0` swaps the FFN for `MoEFeedForward` (`experts_top_k`, `moe_balance_weight`);
    `dropout` on the residual branches and `attention_dropout` on the attention probabilities
    (both need a 'dropout' rng when training); `init_std` the Dense kernels' init std (None =
    lecun_normal; not applied to MoE experts).
    """

    num_heads: int
    mlp_width: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    activation: str = "gelu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    pre_norm: bool = True
    use_bias: bool = True
    rope_theta: float | None = None
    dropout: float = 0.0
    num_experts: int = 0
    experts_top_k: int = 2
    moe_balance_weight: float = 0.01
    lora_rank: int = 0
    lora_alpha: float = 16.0
    implementation: str | None = None
    dtype: Any = None
    attention_dropout: float = 0.0
    init_std: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, positions: jax.Array | None = None,
                 cache: Cache | None = None, cache_index: jax.Array | None = None,
                 train: bool = False) -> tuple[jax.Array, Cache | None]:
        """`x [B, T, D]` -> (`[B, T, D]`, updated cache or None)."""
        attention = Attention(self.num_heads, self.num_kv_heads, self.head_dim, self.use_bias, self.rope_theta,
                              self.lora_rank, self.lora_alpha, self.implementation, self.dtype,
                              attention_dropout=self.attention_dropout, init_std=self.init_std, name="attention")
        if self.num_experts:
            ffn = MoEFeedForward(self.num_experts, self.experts_top_k, self.mlp_width, self.activation,
                                 balance_weight=self.moe_balance_weight, use_bias=self.use_bias, dtype=self.dtype, name="moe")
        else:
            ffn = FeedForward(self.mlp_width, self.activation, self.use_bias, self.lora_rank, self.lora_alpha,
                              self.dtype, init_std=self.init_std, name="ffn")
        drop = nn.Dropout(self.dropout, deterministic=not train)
        norm1, norm2 = (make_norm(self.norm, self.norm_eps, n, self.dtype) for n in ("norm1", "norm2"))
        if self.pre_norm:
            a, cache = attention(norm1(x), mask, positions, cache, cache_index, train=train)
            x = x + drop(a)
            return x + drop(ffn(norm2(x))), cache
        a, cache = attention(x, mask, positions, cache, cache_index, train=train)
        x = norm1(x + drop(a))
        return norm2(x + drop(ffn(x))), cache
