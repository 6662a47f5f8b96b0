"""Teacher-forced log-probabilities of given continuations: what preference losses (DPO, WDPO)
and GFlowNet losses need, and what the decoders sample from.

A prompt `[B, P]` (left-padded, `valid [B, P]`, the layout of `decode.prepare_prompts`) followed
by a continuation `y [B, N]` of `lengths [B]` real tokens is run through the model in one pass;
the logits before token j are z_j = GPT(prompt, y_{<j})[last], and

    log pi(y_j | x, y_{<j}) = log softmax(g_j)[y_j],   g_j = processor(state_j, log_softmax(z_j))

(no processor: g_j = log_softmax(z_j), the model's own distribution). With a processor the
renormalised processed scores are the distribution `decode.generate` samples from: a mask
(`TrieConstraint`, `HashSetConstraint`) gives the model's distribution restricted to the valid
continuations and renormalised at every step (a GFlowNet's forward policy P_F over the trie);
`WeightedTrieConstraint` gives VALUE's re-weighted one. The processor's carry is advanced along y
exactly as in decoding. Positions after `lengths` score 0; everything is differentiable in the
parameters (dropout with `train=True` and an rng `{'dropout': key}`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrec.generate.constraints import DecodeState, as_processor
from jaxrec.models.text.gpt import GPT
from jaxrec.nn.transformer import decode_mask, valid_positions


def token_logprobs(model: GPT, variables: dict, prompts: jax.Array, valid: jax.Array, continuation: jax.Array,
                   lengths: jax.Array | None = None, processor: Any = None, train: bool = False,
                   rngs: dict | None = None) -> jax.Array:
    """Per-token log-probabilities `[B, N]` float32 of `continuation [B, N]` after `prompts [B, P]`.

    Args:
      model, variables: a `GPT` (or a subclass such as TIGER) and its variables.
      prompts, valid: left-padded prompts `[B, P]` int32 and their validity `[B, P]` bool.
      continuation: `[B, N]` int32 tokens; `lengths [B]` how many are real (None: all N).
      processor: None or a logits processor (module docstring): log-probabilities of the
        renormalised processed distribution; a token it forbids scores -inf.
      train, rngs: dropout on (`rngs={'dropout': key}`).
    Returns: `[B, N]`, 0 beyond each row's length.
    """
    b, p = prompts.shape
    n = continuation.shape[1]
    real = jnp.arange(n)[None, :] < (jnp.full((b,), n) if lengths is None else lengths)[:, None]
    tokens = jnp.concatenate([prompts, continuation], axis=1).astype(jnp.int32)[:, :-1]
    mask = jnp.concatenate([valid, real], axis=1)[:, :-1]
    positions = valid_positions(mask)
    logits = model.apply(variables, tokens, positions, decode_mask(mask, 0, tokens.shape[1]), train=train,
                         method=GPT.forward, rngs=rngs)[0][:, p - 1:]
    scores = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    if processor is not None:
        processor = as_processor(processor)

        def step(carry, j):
            state = DecodeState(continuation, j, carry)
            g = jnp.where(real[:, j, None], processor(state, scores[:, j]), 0.0)  # past the end: no NaN gradient
            return processor.advance(state, continuation[:, j].astype(jnp.int32)), jax.nn.log_softmax(g, axis=-1)

        _, processed = jax.lax.scan(step, processor.init(b), jnp.arange(n, dtype=jnp.int32))
        scores = jnp.moveaxis(processed, 0, 1)
    picked = jnp.take_along_axis(scores, continuation[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.where(real, picked, 0.0)


def sequence_logprob(model: GPT, variables: dict, prompts: jax.Array, valid: jax.Array, continuation: jax.Array,
                     lengths: jax.Array | None = None, processor: Any = None, train: bool = False,
                     rngs: dict | None = None) -> jax.Array:
    """`[B]`: log pi(y | x) = the sum over the real tokens of `token_logprobs` (same arguments)."""
    return token_logprobs(model, variables, prompts, valid, continuation, lengths, processor, train, rngs).sum(-1)
