"""A BERT encoder in Flax Linen, and sentence embeddings as sentence-transformers makes them.

    h_0 = LayerNorm(E_word[ids] + E_pos[0..T-1] + E_type[type_ids])
    h_l = Block_l(h_{l-1})                   post-norm: x = LN(x + Attn(x)); x = LN(x + FFN(x)),
                                             FFN(x) = W_2 gelu_erf(W_1 x + b_1) + b_2
    e   = sum_t m_t h_L[t] / max(sum_t m_t, 1e-9)          mean pooling over the attention mask m
    s   = e / max(||e||_2, 1e-12)                          L2 normalisation

(sentence-transformers' `Transformer` -> `Pooling(mean)` -> `Normalize` modules, as
`all-MiniLM-L6-v2`'s `modules.json` lists them.) Weights come from a Hugging Face folder through
`jaxrec.models.text.hf`; `sentence_embedding(params, ids, mask, config=...)` is the pure function
to use inside a jitted program of one's own.

Every parameter carries logical axis names (`('vocab', 'embed')`, `('position', 'embed')`, ...);
`jaxrec.mesh`'s rules table maps them to mesh axes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.errors import ConfigError
from jaxrec.nn.transformer import TransformerBlock, make_norm, padding_mask


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face BERT `config.json` this encoder reads."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"BertConfig: num_attention_heads={self.num_attention_heads} does not divide "
                              f"hidden_size={self.hidden_size}")
        if self.hidden_act != "gelu":
            raise ConfigError(f"BertConfig: hidden_act={self.hidden_act!r} is not supported (only 'gelu', exact erf)")

    @classmethod
    def from_json(cls, path: str | Path) -> "BertConfig":
        """Reads a Hugging Face `config.json` (a file, or the folder holding it); other keys are ignored.
        A BERT with relative positions, or a non-BERT model type, is refused with the file named."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file (a Hugging Face BERT folder holds config.json)") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if raw.get("model_type", "bert") != "bert":
            raise ConfigError(f"{path}: model_type={raw['model_type']!r}, expected 'bert'")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(f"{path}: position_embedding_type={raw['position_embedding_type']!r}; only 'absolute' is supported")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def _param_init(names: tuple[str, ...], init=nn.initializers.normal(0.02)):
    return nn.with_logical_partitioning(init, names)


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm: [B, T] ids -> [B, T, D]."""

    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array | None = None) -> jax.Array:
        c = self.config
        t = input_ids.shape[1]
        if t > c.max_position_embeddings:
            raise ValueError(f"BertEmbeddings: sequence length {t} > max_position_embeddings={c.max_position_embeddings}; "
                             "truncate the tokens (SentenceEncoder does)")
        word = self.param("word_embeddings", _param_init(("vocab", "embed")), (c.vocab_size, c.hidden_size))
        pos = self.param("position_embeddings", _param_init(("position", "embed")), (c.max_position_embeddings, c.hidden_size))
        typ = self.param("token_type_embeddings", _param_init(("token_type", "embed")), (c.type_vocab_size, c.hidden_size))
        x = jnp.take(word, input_ids, axis=0) + pos[None, :t]
        x = x + (typ[0] if token_type_ids is None else jnp.take(typ, token_type_ids, axis=0))
        x = make_norm("layernorm", c.layer_norm_eps, "LayerNorm")(x)
        return x.astype(self.dtype)


class BertEncoder(nn.Module):
    """BERT: embeddings then `num_hidden_layers` post-norm `jaxrec.nn.transformer.TransformerBlock`s
    (LayerNorm, exact-erf GELU, biases; keys masked where attention_mask is 0).
    `__call__(input_ids [B, T], attention_mask [B, T], token_type_ids [B, T] | None) -> hidden [B, T, D]`.
    `implementation`: `jax.nn.dot_product_attention`'s (None: the backend's best)."""

    config: BertConfig
    dtype: jnp.dtype = jnp.float32
    implementation: str | None = None

    @nn.compact
    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, token_type_ids: jax.Array | None = None) -> jax.Array:
        c = self.config
        x = BertEmbeddings(c, self.dtype, name="embeddings")(input_ids, token_type_ids)
        mask = padding_mask(attention_mask)
        for i in range(c.num_hidden_layers):
            x, _ = TransformerBlock(c.num_attention_heads, c.intermediate_size, activation="gelu", norm="layernorm",
                                    norm_eps=c.layer_norm_eps, pre_norm=False, implementation=self.implementation,
                                    dtype=self.dtype, name=f"layer_{i}")(x, mask)
        return x


def mean_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """sum_t m_t h[t] / max(sum_t m_t, 1e-9): [B, T, D], [B, T] -> [B, D] (sentence-transformers' mean pooling)."""
    m = attention_mask.astype(hidden.dtype)[..., None]
    return (hidden * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1e-9)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x / max(||x||_2, eps) over the last axis (torch.nn.functional.normalize)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def sentence_embedding(params, input_ids: jax.Array, attention_mask: jax.Array, token_type_ids: jax.Array | None = None,
                       *, config: BertConfig, normalize: bool = True, precision: str | None = "highest") -> jax.Array:
    """Pure function (jit-able, differentiable): params (the `'params'` tree), ids and mask [B, T] ->
    sentence embeddings [B, D]: the encoder, mean pooling over the mask, then L2 normalisation.

    `precision`: the matmul precision while tracing (`jax.default_matmul_precision`); 'highest' keeps
    float32 matmuls in float32 on every backend (GPUs otherwise may use TF32), as the PyTorch
    reference computes them; None leaves the backend's default."""
    def run():
        hidden = BertEncoder(config).apply({"params": params}, input_ids, attention_mask, token_type_ids)
        e = mean_pool(hidden, attention_mask)
        return l2_normalize(e) if normalize else e

    if precision is None:
        return run()
    with jax.default_matmul_precision(precision):
        return run()
