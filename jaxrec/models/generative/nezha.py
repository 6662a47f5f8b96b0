"""NEZHA (spec section 1, from the released code): one backbone pass over the history and L
placeholder tokens, then a small multi-token-prediction head decodes the L codes.

    input  = [bos, history SID tokens, <sp_1> .. <sp_L>]            (target codes never an input)
    h_0    = h(last history token),  h_i = h(<sp_i>)                 one `GPT.hidden` forward
    r_0    = h_0
    logits_i = W_i (r_{i-1} + h_i)                W_i: D x K_i, no bias (level i's codes only)
    r_i    = tanh(A_i E_i[c_i] + B_i r_{i-1} + b_i)   E_i: K_i x D, an Elman cell per level
    loss   = sum_i CE(logits_i, c_i)              teacher forcing: c_i the true codes

Inference (`jaxrec.generate.nezha.nezha_beam_search`): `encode` once per request, then beam
search inside the head only (`level_logits`, `transition`), pruned by the hash-set verifier.

Batch: `tokens [B, P]` int32 prompts (left-padded with pad 0), `codes [B, L]` the target codes.
`__call__` returns the per-level logits `[B, L, K_max]`, levels with K_i < K_max padded with -inf
(`nezha_loss` ignores them).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.models.generative.sid import NUM_SPECIAL, PAD, SIDVocab
from jaxrec.models.generative.tiger import prompt_positions
from jaxrec.models.text.gpt import GPT
from jaxrec.nn.transformer import decode_mask


class MTPHead(nn.Module):
    """NEZHA's `MTP_HEAD` (module docstring): per level a bias-free logit layer, a code embedding
    and a tanh RNN cell. `codebook_sizes` = (K_1..K_L), `width` = D (the backbone's)."""

    codebook_sizes: tuple
    width: int

    def setup(self):
        self.logit_layers = [nn.Dense(k, use_bias=False, name=f"logits_{i}") for i, k in enumerate(self.codebook_sizes)]
        self.code_embeds = [nn.Embed(k, self.width, name=f"embed_{i}") for i, k in enumerate(self.codebook_sizes)]
        self.cells = [nn.SimpleCell(self.width, name=f"cell_{i}") for i in range(len(self.codebook_sizes))]

    def level_logits(self, level: int, r: jax.Array, h: jax.Array) -> jax.Array:
        """`W_level (r + h)`: `r, h [..., D]` -> `[..., K_level]` (float32). `level` is a Python int."""
        return self.logit_layers[level](r + h).astype(jnp.float32)

    def transition(self, level: int, r: jax.Array, codes: jax.Array) -> jax.Array:
        """`r_level = cell_level(E_level[codes], r)`: `r [..., D]`, `codes [...]` -> `[..., D]`."""
        return self.cells[level](r, self.code_embeds[level](codes))[0]

    def __call__(self, h0: jax.Array, h: jax.Array, codes: jax.Array) -> jax.Array:
        """Teacher forcing: `h0 [B, D]`, `h [B, L, D]`, true `codes [B, L]` -> logits `[B, L, K_max]` (-inf pads)."""
        k_max, r, out = max(self.codebook_sizes), h0, []
        for i, k in enumerate(self.codebook_sizes):
            logits = self.level_logits(i, r, h[:, i])
            out.append(jnp.pad(logits, ((0, 0), (0, k_max - k)), constant_values=-jnp.inf))
            if i + 1 < len(self.codebook_sizes):  # r_L is never used
                r = self.transition(i, r, codes[:, i])
        return jnp.stack(out, axis=1)


class NEZHA(nn.Module):
    """A `GPT` backbone over the `SIDVocab` tokens plus the `MTPHead`. `backbone` holds the GPT's
    config (its vocab_size = `SIDVocab.vocab_size`, max_len >= P + L); `codebook_sizes` the vocab's."""

    backbone: GPT
    codebook_sizes: tuple

    def setup(self):
        self.head = MTPHead(tuple(self.codebook_sizes), width=self.backbone.width)

    @property
    def placeholder_ids(self) -> tuple:
        return tuple(range(NUM_SPECIAL, NUM_SPECIAL + len(self.codebook_sizes)))

    def encode(self, tokens: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        """THE backbone forward: prompts `tokens [B, P]` -> (`h0 [B, D]` at the last prompt token,
        `h [B, L, D]` at the placeholders appended after it)."""
        b, p = tokens.shape
        seq = jnp.concatenate([tokens, jnp.broadcast_to(jnp.asarray(self.placeholder_ids, tokens.dtype),
                                                        (b, len(self.codebook_sizes)))], axis=1).astype(jnp.int32)
        valid = seq != PAD
        x, _ = self.backbone.hidden(seq, prompt_positions(valid), decode_mask(valid, 0, seq.shape[1]), train=train)
        x = x.astype(jnp.float32)
        return x[:, p - 1], x[:, p:]

    def level_logits(self, level: int, r: jax.Array, h: jax.Array) -> jax.Array:
        return self.head.level_logits(level, r, h)

    def transition(self, level: int, r: jax.Array, codes: jax.Array) -> jax.Array:
        return self.head.transition(level, r, codes)

    def __call__(self, batch, train: bool = False) -> jax.Array:
        """`batch['tokens'] [B, P]`, `batch['codes'] [B, L]` -> per-level logits `[B, L, K_max]` (teacher forcing)."""
        h0, h = self.encode(batch["tokens"], train=train)
        return self.head(h0, h, batch["codes"])


def nezha_loss(logits: jax.Array, codes: jax.Array) -> jax.Array:
    """Per-row loss `[B]`: sum over levels of the CE over that level's codes; `logits [B, L, K_max]`
    (-inf beyond K_i), `codes [B, L]`."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, codes[..., None].astype(jnp.int32), axis=-1)[..., 0].sum(-1)


def make_nezha(vocab: SIDVocab, max_history: int, **gpt_options) -> NEZHA:
    """A NEZHA sized for `vocab` and prompts of `max_history` items (backbone max_len >= 1 + (max_history + 1) L)."""
    max_len = 1 + (max_history + 1) * vocab.num_levels
    backbone = GPT(vocab_size=vocab.vocab_size, max_len=max(max_len, gpt_options.pop("max_len", 0)), **gpt_options)
    return NEZHA(backbone, vocab.codebook_sizes)
