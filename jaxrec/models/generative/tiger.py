"""TIGER-style generative recommender: the history as SID tokens -> the next item's L code tokens.

A decoder-only variant (TIGER itself is an encoder-decoder T5): the `jaxrec.models.text.GPT`
over the `SIDVocab` tokens reads `prompt = [bos, history SID tokens]` (left-padded) followed by
the target's tokens t_1..t_L, and is trained with teacher forcing and cross-entropy on the L
target tokens only (over the full vocabulary):

    logits_i = GPT(prompt, t_1..t_{i-1})[last],   loss = sum_{i=1..L} -log softmax(logits_i)[t_i]

Pads are masked out of attention and do not count as positions (`decode_mask`, positions =
number of real tokens before), exactly as `jaxrec.generate` decodes left-padded prompts, so
training and decoding see the same inputs. Decoding: `jaxrec.generate.beam_search` over the KV
cache, L steps, constrained to valid SIDs (`TrieConstraint` / `HashSetConstraint`); see
`jaxrec.generate.nezha.tiger_beam_search`. Cost: one prefill over the prompt, then L single-
token steps over B x W hypotheses (the L-th step's forward is computed and discarded by the loop).

Batch: `tokens [B, P]` int32 prompts (pad 0 on the left), `codes [B, L]` the target item's codes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxrec.models.generative.sid import PAD, SIDVocab
from jaxrec.models.text.gpt import GPT
from jaxrec.nn.transformer import decode_mask, valid_positions


prompt_positions = valid_positions  # the positions of a left-padded SID prompt (`jaxrec.nn.transformer`)


class TIGER(GPT):
    """A `GPT` (all its config keys) whose `__call__` takes a SID batch (module docstring) and
    returns the target-token logits `[B, L, V]`; `offsets` = `SIDVocab.offsets` (token of code 0
    at each level). `beam_search` / `decode` work on it unchanged (it is a GPT)."""

    offsets: tuple = ()

    def __call__(self, batch, train: bool = False) -> jax.Array:
        """`batch['tokens'] [B, P]`, `batch['codes'] [B, L]` -> logits `[B, L, V]` predicting the target tokens."""
        prompt, codes = batch["tokens"], batch["codes"]
        if codes.shape[1] != len(self.offsets):
            raise ValueError(f"TIGER: codes have {codes.shape[1]} levels, model.offsets has {len(self.offsets)}")
        target = codes + jnp.asarray(self.offsets, codes.dtype)
        tokens = jnp.concatenate([prompt, target[:, :-1]], axis=1).astype(jnp.int32)
        valid = tokens != PAD
        x, _ = self.forward(tokens, prompt_positions(valid), decode_mask(valid, 0, tokens.shape[1]), train=train)
        return x[:, prompt.shape[1] - 1:]


def tiger_loss(logits: jax.Array, codes: jax.Array, offsets) -> jax.Array:
    """Per-row loss `[B]`: sum over levels of the CE of `logits [B, L, V]` at the target tokens `offsets + codes`."""
    target = codes + jnp.asarray(offsets, codes.dtype)
    return optax.softmax_cross_entropy_with_integer_labels(logits, target).sum(-1)


def make_tiger(vocab: SIDVocab, max_history: int, **gpt_options) -> TIGER:
    """A TIGER sized for `vocab` and prompts of `max_history` items (max_len = 1 + (max_history + 1) L)."""
    max_len = 1 + (max_history + 1) * vocab.num_levels
    return TIGER(vocab_size=vocab.vocab_size, max_len=max(max_len, gpt_options.pop("max_len", 0)),
                 offsets=vocab.offsets, **gpt_options)
