"""A GPT-style decoder-only language model (causal LM) over `jaxrec.nn.transformer` blocks.

    x_0 = E[tokens] (+ P[positions] with learned positions; RoPE inside attention otherwise)
    x_l = Block_l(x_{l-1})               pre-norm, causal self-attention (GQA when K < H), FFN or MoE
    logits = N(x_L) E^T                  tied embeddings (or a separate head)

Training (`__call__`, the `jaxrec.models` contract): `batch['tokens']` int32 `[B, T+1]`;
`logits [B, T, V]` predict `tokens[:, 1:]` from `tokens[:, :-1]`. Generation (`decode`): the
same weights over a KV cache (`init_cache`), prefill and single steps alike, with per-row
positions and a validity mask so left-padded ragged prompts decode exactly as unpadded ones
(`jaxrec.generate`).

Every parameter has logical axis names (`vocab`, `embed`, `heads`, `mlp`, ...):
`jaxrec.mesh.LOGICAL_RULES` places them for tensor parallelism. LoRA adapters on every
projection with `lora_rank > 0` (`jaxrec.nn.lora`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.errors import ConfigError
from jaxrec.nn.lora import Dense
from jaxrec.nn.transformer import ACTIVATIONS, NORMS, TransformerBlock, causal_mask, check_heads, decode_mask, make_norm

POSITIONS = ("rope", "learned")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class GPT(nn.Module):
    """Causal LM (module docstring). Config keys are the attributes below (`model.<name>`).

    Attributes:
      vocab_size: V.  width: D.  depth: number of blocks.  num_heads: H.
      num_kv_heads: K for grouped-query attention (0 = H).  mlp_width: FFN hidden (0 = 4 D).
      max_len: the longest context (learned positions' table size; prompts + generation).
      position: 'rope' | 'learned'.  rope_theta: RoPE base.
      activation: 'gelu' | 'gelu_tanh' | 'relu' | 'silu' | 'swiglu'.  norm: 'layernorm' | 'rmsnorm'.
      dropout: on embeddings and residual branches when training.
      num_experts: > 0 makes every FFN a top-`experts_top_k` MoE (`moe_balance_weight` aux loss).
      lora_rank / lora_alpha: LoRA adapters on every projection (0 = none).
      tie_embeddings: logits through E^T (else a separate `head`).  use_bias: biases in projections.
      dtype: compute dtype, 'float32' | 'bfloat16' (parameters stay float32).
      tokens_field: the batch key holding `[B, T+1]` token ids.
    """

    features: tuple = ()
    vocab_size: int = 2048
    width: int = 256
    depth: int = 4
    num_heads: int = 4
    num_kv_heads: int = 0
    mlp_width: int = 0
    max_len: int = 256
    position: str = "rope"
    rope_theta: float = 10000.0
    activation: str = "gelu"
    norm: str = "layernorm"
    dropout: float = 0.0
    num_experts: int = 0
    experts_top_k: int = 2
    moe_balance_weight: float = 0.01
    lora_rank: int = 0
    lora_alpha: float = 16.0
    tie_embeddings: bool = True
    use_bias: bool = True
    dtype: str = "float32"
    tokens_field: str = "tokens"

    EMBEDDING_LAYERS = None  # no sparse tables: the token embedding is a dense parameter

    def __post_init__(self):
        try:
            check_heads(self.width, self.num_heads, self.num_kv_heads or self.num_heads)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        for key, value, valid in (("position", self.position, POSITIONS), ("activation", self.activation, ACTIVATIONS),
                                  ("norm", self.norm, NORMS), ("dtype", self.dtype, tuple(DTYPES))):
            if value not in valid:
                raise ConfigError(f"model.{key}={value!r}: expected one of {list(valid)}")
        if self.position == "rope" and (self.width // self.num_heads) % 2:
            raise ConfigError(f"model.position='rope' needs an even head width; width / num_heads = "
                              f"{self.width}/{self.num_heads} is odd")
        for key in ("vocab_size", "width", "depth", "max_len"):
            if int(getattr(self, key)) <= 0:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be positive")
        super().__post_init__()

    def setup(self):
        init = nn.initializers.normal(0.02)
        self.embed = nn.Embed(self.vocab_size, self.width, embedding_init=nn.with_logical_partitioning(init, ("vocab", "embed")),
                              name="embed")
        if self.position == "learned":
            self.pos_embed = nn.Embed(self.max_len, self.width, name="pos_embed",
                                      embedding_init=nn.with_logical_partitioning(init, ("position", "embed")))
        self.blocks = [TransformerBlock(
            self.num_heads, self.mlp_width or 4 * self.width, num_kv_heads=self.num_kv_heads or None,
            activation=self.activation, norm=self.norm, pre_norm=True, use_bias=self.use_bias,
            rope_theta=self.rope_theta if self.position == "rope" else None, dropout=self.dropout,
            num_experts=self.num_experts, experts_top_k=self.experts_top_k, moe_balance_weight=self.moe_balance_weight,
            lora_rank=self.lora_rank, lora_alpha=self.lora_alpha, dtype=DTYPES[self.dtype], name=f"block_{i}")
            for i in range(self.depth)]
        self.final_norm = make_norm(self.norm, 1e-5, "final_norm", DTYPES[self.dtype])
        if not self.tie_embeddings:
            self.head = Dense((self.vocab_size,), ("embed", "vocab"), use_bias=False, name="head")
        self.drop = nn.Dropout(self.dropout)

    def __call__(self, batch, train: bool = False) -> jax.Array:
        """`batch[tokens_field] [B, T+1]` -> next-token logits `[B, T, V]` (float32)."""
        tokens = batch[self.tokens_field][:, :-1]
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        return self.forward(tokens, positions, causal_mask(tokens.shape[1]), train=train)[0]

    def forward(self, tokens: jax.Array, positions: jax.Array, mask: jax.Array, cache: tuple | None = None,
                cache_index: jax.Array | None = None, train: bool = False) -> tuple[jax.Array, tuple | None]:
        """`tokens [B, T]` at `positions [B, T]` under `mask [B|1, 1, T, S]` -> (logits `[B, T, V]`, cache)."""
        x, new = self.hidden(tokens, positions, mask, cache, cache_index, train)
        logits = self.embed.attend(x) if self.tie_embeddings else self.head(x)
        return logits.astype(jnp.float32), new

    def hidden(self, tokens: jax.Array, positions: jax.Array, mask: jax.Array, cache: tuple | None = None,
               cache_index: jax.Array | None = None, train: bool = False) -> tuple[jax.Array, tuple | None]:
        """`forward` without the LM head: the final-norm hidden states `x [B, T, D]` (compute dtype), cache."""
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"{tokens.shape[1]} tokens exceed the model's context model.max_len={self.max_len}")
        x = self.embed(tokens).astype(DTYPES[self.dtype])
        if self.position == "learned":
            x = x + self.pos_embed(positions).astype(x.dtype)
        x = self.drop(x, deterministic=not train)
        new = []
        for i, block in enumerate(self.blocks):
            x, c = block(x, mask, positions, None if cache is None else cache[i], cache_index, train=train)
            new.append(c)
        return self.final_norm(x), (tuple(new) if cache is not None else None)

    def decode(self, tokens: jax.Array, positions: jax.Array, valid: jax.Array, cache: tuple,
               cache_index: jax.Array) -> tuple[jax.Array, tuple]:
        """One prefill or decode call over the KV cache.

        Args:
          tokens: `[B, T]` written at cache slots `cache_index .. cache_index + T - 1`.
          positions: `[B, T]` their positions in their own sequences (pads excluded).
          valid: `[B, S]` which cache slots hold real tokens (including this call's).
          cache: `init_cache(...)` or the previous call's.
          cache_index: int32 scalar, the first slot written.
        Returns: (logits `[B, T, V]`, the updated cache).
        """
        return self.forward(tokens, positions, decode_mask(valid, cache_index, tokens.shape[1]), cache, cache_index)


def init_cache(model: GPT, batch: int, length: int | None = None, dtype: Any = jnp.float32) -> tuple:
    """An empty KV cache: per block `{'k', 'v'}` of zeros `[batch, length, K, d_h]` (length default max_len)."""
    length = length or model.max_len
    if length > model.max_len:
        raise ValueError(f"a cache of {length} slots exceeds model.max_len={model.max_len}")
    kv, dh = model.num_kv_heads or model.num_heads, model.width // model.num_heads
    zeros = lambda: jnp.zeros((batch, length, kv, dh), dtype)
    return tuple({"k": zeros(), "v": zeros()} for _ in range(model.depth))
