"""Jitted decoding over `GPT.decode`'s KV cache: greedy, sampling, beam search.

Prompts are ragged lists of token ids, checked on the host (`prepare_prompts`: ids in the
vocabulary, prompt + generation within `model.max_len`) and left-padded to `[B, P]` with a
validity mask, so every row's last prompt token sits at slot P - 1. The cache has S = P + N
slots (N = `max_new_tokens`); the position of a token is the number of real tokens before it in
its own row, so a padded row decodes exactly as it would alone.

    prefill:  logits, cache = decode(prompts [B, P], positions, valid, cache, slot 0)
    step i:   score_i = processor(state, log_softmax(logits))     -> choose token t_i
              logits, cache = decode(t_i [B, 1], position, valid, cache, slot P + i)

The steps run in one `lax.while_loop` (static shapes; it stops early once every row is done).
A row is done after `eos_id`; later tokens are `pad_id`. With `eos_id=None` every row gets
exactly N tokens (fixed-length mode, e.g. L-token semantic IDs).

Choosing: greedy `argmax score`; sampling `categorical(top_p(top_k(score / temperature)))`
(`sample_logits`; temperature 0 is greedy), the key of step i `fold_in(key, i)`.

Beam search (width W): B x W hypotheses with cumulated scores s (the sum of the processed
log-probabilities: exact model log-probabilities under a mask constraint). Step i expands every
live hypothesis by every token, a finished one only by `pad_id` at +0 (EOS keeps its score), and
keeps the best W of the W x V candidates per row by `s / len^length_penalty` (len = tokens up to
and including EOS; among live candidates, which share a length, this is the order of s). The cache
and the processor carry are reordered by gathering the parent beam's rows. The first step expands
only beam 0 (the others start at -inf). Returned hypotheses are sorted best first; a hypothesis
scored -inf is a filler (fewer than W sequences were allowed): all `pad_id`, length 0.

`recompute=True` (in `generate`) is the reference without a cache: each step re-runs the whole
`[B, P + N]` buffer (static shape, future slots masked) and reads the logits at the last real
token; same loop, same jit discipline (the benchmark's baseline, the tests' oracle).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.errors import DataError
from jaxrec.generate.constraints import NEG_INF, DecodeState, LogitsProcessor, as_processor
from jaxrec.models.text.gpt import DTYPES, GPT, init_cache
from jaxrec.nn.transformer import decode_mask, valid_positions


class Generation(NamedTuple):
    """`tokens [B, N]` (pad after EOS), `lengths [B]` (generated tokens, EOS included),
    `logits [B, N, V]` the model's logits before each choice (with `return_logits`, else None)."""

    tokens: jax.Array
    lengths: jax.Array
    logits: jax.Array | None = None


class Beams(NamedTuple):
    """`sequences [B, W, N]`, `scores [B, W]` (length-penalised, best first; -inf = filler),
    `lengths [B, W]` (tokens up to and including EOS)."""

    sequences: jax.Array
    scores: jax.Array
    lengths: jax.Array


# ---- host-side checks ---------------------------------------------------------------------------

def prepare_prompts(model: GPT, prompts: Sequence[Sequence[int]] | np.ndarray, max_new_tokens: int,
                    pad_id: int = 0, pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Checks ragged prompts and left-pads them: (tokens `[B, P]` int32, valid `[B, P]` bool).

    P = the longest prompt, or `pad_to` (a fixed P avoids recompiling for every prompt length).
    Raises DataError (a ValueError) naming the row and the offending id, or the lengths against model.max_len.
    """
    if isinstance(prompts, np.ndarray) and prompts.ndim != 2:
        raise DataError(f"prompts: expected [B, T] token ids or a list of lists, got shape {prompts.shape}")
    rows = [np.asarray(p).reshape(-1) for p in prompts]
    if not rows:
        raise DataError("prompts: empty batch")
    if int(max_new_tokens) <= 0:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be positive")
    v = model.vocab_size
    for name, t in (("pad_id", pad_id),):
        if not 0 <= t < v:
            raise ValueError(f"{name}={t} outside the vocabulary [0, model.vocab_size={v})")
    for i, r in enumerate(rows):
        if r.size == 0:
            raise DataError(f"prompt row {i} is empty (a prompt needs at least one token, e.g. BOS)")
        if not np.issubdtype(r.dtype, np.integer):
            raise DataError(f"prompt row {i}: token ids must be integers, got dtype {r.dtype}")
        bad = np.flatnonzero((r < 0) | (r >= v))
        if bad.size:
            raise DataError(f"prompt row {i} has unknown token id {int(r[bad[0]])} at position {int(bad[0])}: "
                             f"ids must lie in [0, model.vocab_size={v})")
    lengths = [len(r) for r in rows]
    longest = int(np.argmax(lengths))
    width = max(lengths) if pad_to is None else int(pad_to)
    if width < max(lengths):
        raise ValueError(f"pad_to={pad_to} is shorter than prompt row {longest} ({lengths[longest]} tokens)")
    if width + max_new_tokens > model.max_len:
        padded = f" (padded to {width})" if width > lengths[longest] else ""
        raise DataError(f"prompt row {longest} has {lengths[longest]} tokens{padded}; with "
                         f"max_new_tokens={max_new_tokens} that needs {width + max_new_tokens} positions, "
                         f"more than the context model.max_len={model.max_len}")
    tokens = np.full((len(rows), width), pad_id, np.int32)
    valid = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        tokens[i, width - len(r):] = r
        valid[i, width - len(r):] = True
    return tokens, valid


def _check_token(model: GPT, name: str, t: int | None) -> None:
    if t is not None and not 0 <= int(t) < model.vocab_size:
        raise ValueError(f"{name}={t} outside the vocabulary [0, model.vocab_size={model.vocab_size})")


# ---- pure choosing functions --------------------------------------------------------------------

def top_k_mask(logits: jax.Array, k: int) -> jax.Array:
    """Keeps the k largest logits per row (ties at the k-th value kept too), -inf elsewhere. `[..., V]`."""
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return jnp.where(logits >= kth, logits, NEG_INF)


def top_p_mask(logits: jax.Array, p: float | jax.Array) -> jax.Array:
    """Nucleus: keeps the smallest set of most likely tokens whose probability sums to >= p
    (token j of the descending order is kept iff the mass before it is < p; the top one always). `[..., V]`."""
    desc = -jnp.sort(-logits, axis=-1)
    probs = jax.nn.softmax(desc, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs
    keep = (before < p).at[..., 0].set(True)
    threshold = jnp.min(jnp.where(keep, desc, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits >= threshold, logits, NEG_INF)


def sample_logits(key: jax.Array, logits: jax.Array, temperature: float | jax.Array = 1.0, top_k: int = 0,
                  top_p: float | jax.Array = 1.0) -> jax.Array:
    """One token per row of `logits [N, V]`: `categorical(top_p(top_k(logits / temperature)))`;
    temperature 0 is `argmax` (greedy). `top_k` is static (0 = off); top_p 1 = off. -> `[N]` int32."""
    t = jnp.asarray(temperature, jnp.float32)
    scaled = logits / jnp.where(t > 0, t, 1.0)
    if top_k:
        scaled = top_k_mask(scaled, top_k)
    scaled = jnp.where(jnp.asarray(top_p) < 1.0, top_p_mask(scaled, top_p), scaled)
    drawn = jax.random.categorical(key, scaled, axis=-1)
    return jnp.where(t > 0, drawn, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


# ---- the loops ----------------------------------------------------------------------------------

def _apply(model, variables, method, *args):
    return model.apply(variables, *args, method=method)


def _prefill(model: GPT, variables, tokens, valid_prompt, cache_len: int):
    """-> (logits at the last prompt slot [B, V], cache, valid [B, S], next positions [B])."""
    b, p = tokens.shape
    cache = init_cache(model, b, cache_len, DTYPES[model.dtype])
    valid = jnp.zeros((b, cache_len), bool).at[:, :p].set(valid_prompt)
    positions = valid_positions(valid_prompt)
    logits, cache = _apply(model, variables, GPT.decode, tokens, positions, valid, cache, jnp.int32(0))
    return logits[:, -1], cache, valid, valid_prompt.sum(1).astype(jnp.int32)


def _step(model: GPT, variables, tok, pos, valid, cache, slot):
    """Feeds `tok [R]` at cache `slot`, position `pos [R]` -> (logits [R, V], cache, valid)."""
    valid = valid.at[:, slot].set(True)
    logits, cache = _apply(model, variables, GPT.decode, tok[:, None], pos[:, None], valid, cache, slot)
    return logits[:, 0], cache, valid


def _full(model: GPT, variables, buffer, valid):
    """The whole buffer `[B, S]` without a cache -> logits `[B, S, V]`."""
    positions = valid_positions(valid)
    return _apply(model, variables, GPT.forward, buffer, positions, decode_mask(valid, 0, buffer.shape[1]))[0]


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "eos_id", "pad_id", "top_k", "greedy",
                                             "return_logits", "recompute"))
def _generate(model: GPT, variables, tokens, valid_prompt, key, temperature, top_p, processor: LogitsProcessor, *,
              max_new_tokens: int, eos_id: int | None, pad_id: int, top_k: int, greedy: bool, return_logits: bool,
              recompute: bool):
    b, p = tokens.shape
    n, s = max_new_tokens, p + max_new_tokens
    if recompute:
        buffer = jnp.zeros((b, s), jnp.int32).at[:, :p].set(tokens)
        valid = jnp.zeros((b, s), bool).at[:, :p].set(valid_prompt)
        logits, cache, pos = _full(model, variables, buffer, valid)[:, p - 1], buffer, None
    else:
        logits, cache, valid, pos = _prefill(model, variables, tokens, valid_prompt, s)
    vocab = logits.shape[-1]
    carry = dict(i=jnp.int32(0), logits=logits, cache=cache, valid=valid, pos=pos,
                 out=jnp.full((b, n), pad_id, jnp.int32), done=jnp.zeros((b,), bool),
                 lengths=jnp.zeros((b,), jnp.int32), proc=processor.init(b),
                 seen=jnp.zeros((b, n, vocab) if return_logits else (0,), jnp.float32))

    def body(c):
        i = c["i"]
        state = DecodeState(c["out"], i, c["proc"])
        scores = processor(state, jax.nn.log_softmax(c["logits"], axis=-1))
        tok = jnp.argmax(scores, axis=-1).astype(jnp.int32) if greedy else sample_logits(
            jax.random.fold_in(key, i), scores, temperature, top_k, top_p)
        tok = jnp.where(c["done"], pad_id, tok)
        new = dict(c, i=i + 1, out=c["out"].at[:, i].set(tok), lengths=c["lengths"] + (~c["done"]),
                   proc=processor.advance(state, tok),
                   done=c["done"] | (tok == eos_id) if eos_id is not None else c["done"])
        if return_logits:
            new["seen"] = c["seen"].at[:, i].set(c["logits"])
        if recompute:
            buffer = c["cache"].at[:, p + i].set(tok)
            valid = c["valid"].at[:, p + i].set(True)
            full = _full(model, variables, buffer, valid)
            new.update(logits=jax.lax.dynamic_index_in_dim(full, p + i, axis=1, keepdims=False), cache=buffer, valid=valid)
        else:
            logits, cache, valid = _step(model, variables, tok, c["pos"], c["valid"], c["cache"], p + i)
            new.update(logits=logits, cache=cache, valid=valid, pos=c["pos"] + 1)
        return new

    c = jax.lax.while_loop(lambda c: (c["i"] < n) & ~jnp.all(c["done"]), body, carry)
    return Generation(c["out"], c["lengths"], c["seen"] if return_logits else None)


def generate(model: GPT, variables: dict, prompts: Sequence[Sequence[int]] | np.ndarray, max_new_tokens: int, *,
             key: jax.Array | None = None, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
             eos_id: int | None = None, pad_id: int = 0, logits_processor: Any = None, pad_to: int | None = None,
             return_logits: bool = False, recompute: bool = False) -> Generation:
    """Greedy (temperature 0, the default) or sampled continuation of every prompt.

    Args:
      model, variables: a `GPT` and its variables (`{'params': ...}`).
      prompts: B lists of token ids (ragged; left-padded here) or a `[B, T]` array.
      max_new_tokens: N, static. key: a PRNG key (needed when temperature > 0).
      temperature, top_k (static, 0 = off), top_p (1 = off): `sample_logits`.
      eos_id: ends a row (None: exactly N tokens). pad_id: fills prompts' left and rows after EOS.
      logits_processor: a `LogitsProcessor`, a function `(state, scores) -> scores`, a list, or None.
      pad_to: a fixed prompt width P.  return_logits: also the model's logits at every step.
      recompute: no KV cache, the whole prefix re-run each step (the reference).
    Returns: `Generation(tokens [B, N], lengths [B], logits [B, N, V] | None)`.
    """
    tokens, valid = prepare_prompts(model, prompts, max_new_tokens, pad_id, pad_to)
    _check_token(model, "eos_id", eos_id)
    greedy = isinstance(temperature, (int, float)) and temperature == 0
    if not greedy and key is None:
        raise ValueError(f"temperature={temperature} samples: pass a PRNG key (key=jax.random.key(0))")
    if not 0 <= int(top_k) <= model.vocab_size:
        raise ValueError(f"top_k={top_k} must lie in [0, model.vocab_size={model.vocab_size}]")
    if not 0 < float(top_p) <= 1:
        raise ValueError(f"top_p={top_p} must lie in (0, 1]")
    return _generate(model, variables, jnp.asarray(tokens), jnp.asarray(valid),
                     jax.random.key(0) if key is None else key, jnp.float32(temperature), jnp.float32(top_p),
                     as_processor(logits_processor), max_new_tokens=int(max_new_tokens),
                     eos_id=None if eos_id is None else int(eos_id), pad_id=int(pad_id), top_k=int(top_k),
                     greedy=greedy, return_logits=bool(return_logits), recompute=bool(recompute))


def _penalty(lengths, length_penalty):
    return jnp.maximum(lengths, 1).astype(jnp.float32) ** length_penalty


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "beam_width", "eos_id", "pad_id"))
def _beam_search(model: GPT, variables, tokens, valid_prompt, length_penalty, processor: LogitsProcessor, *,
                 max_new_tokens: int, beam_width: int, eos_id: int | None, pad_id: int):
    b, p = tokens.shape
    w, n = beam_width, max_new_tokens
    logits, cache, valid, pos = _prefill(model, variables, tokens, valid_prompt, p + n)
    rep = lambda x: jnp.repeat(x, w, axis=0)
    vocab = logits.shape[-1]
    only_pad = jnp.where(jnp.arange(vocab) == pad_id, 0.0, NEG_INF)
    carry = dict(i=jnp.int32(0), logits=rep(logits), cache=jax.tree.map(rep, cache), valid=rep(valid), pos=rep(pos),
                 seqs=jnp.full((b * w, n), pad_id, jnp.int32), done=jnp.zeros((b * w,), bool),
                 lengths=jnp.zeros((b * w,), jnp.int32), proc=processor.init(b * w),
                 scores=jnp.tile(jnp.where(jnp.arange(w) == 0, 0.0, NEG_INF), (b, 1)))

    def body(c):
        i = c["i"]
        state = DecodeState(c["seqs"], i, c["proc"])
        logp = processor(state, jax.nn.log_softmax(c["logits"], axis=-1))
        logp = jnp.where(c["done"][:, None], only_pad, logp)                           # [BW, V]
        cand = (c["scores"].reshape(b * w, 1) + logp).reshape(b, w * vocab)
        new_len = jnp.repeat((c["lengths"] + (~c["done"])).reshape(b, w), vocab, axis=1)
        _, idx = jax.lax.top_k(cand / _penalty(new_len, length_penalty), w)          # [B, W]
        parent = (idx // vocab + jnp.arange(b)[:, None] * w).reshape(-1)                # rows of [BW]
        tok = (idx % vocab).reshape(-1).astype(jnp.int32)
        gather = lambda x: x[parent]
        was_done = c["done"][parent]
        seqs = c["seqs"][parent]
        proc = jax.tree.map(gather, c["proc"])
        moved = DecodeState(seqs, i, proc)
        logits, cache, valid = _step(model, variables, tok, c["pos"][parent], c["valid"][parent],
                                     jax.tree.map(gather, c["cache"]), p + i)
        return dict(i=i + 1, logits=logits, cache=cache, valid=valid, pos=c["pos"][parent] + 1,
                    seqs=seqs.at[:, i].set(tok), lengths=c["lengths"][parent] + (~was_done),
                    done=was_done | (tok == eos_id) if eos_id is not None else was_done,
                    proc=processor.advance(moved, tok), scores=jnp.take_along_axis(cand, idx, axis=1))

    c = jax.lax.while_loop(lambda c: (c["i"] < n) & ~jnp.all(c["done"]), body, carry)
    lengths = c["lengths"].reshape(b, w)
    ranked = c["scores"] / _penalty(lengths, length_penalty)
    order = jnp.argsort(-ranked, axis=1)
    take = lambda x: jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), axis=1)
    ranked, seqs = take(ranked), take(c["seqs"].reshape(b, w, n))
    filler = ranked == NEG_INF
    return Beams(jnp.where(filler[..., None], pad_id, seqs), ranked, jnp.where(filler, 0, take(lengths)))


def beam_search(model: GPT, variables: dict, prompts: Sequence[Sequence[int]] | np.ndarray, max_new_tokens: int,
                beam_width: int, *, eos_id: int | None = None, pad_id: int = 0, length_penalty: float = 0.0,
                logits_processor: Any = None, pad_to: int | None = None) -> Beams:
    """Beam search (module docstring) of width W over every prompt.

    Args as `generate`; `beam_width` W (static); `length_penalty` the exponent of len in the
    ranking `score / len^length_penalty` (0 = sum of log-probabilities). With `eos_id=None` every
    hypothesis has exactly `max_new_tokens` tokens (fixed-length mode: semantic IDs).
    Returns: `Beams(sequences [B, W, N], scores [B, W], lengths [B, W])`, best first.
    """
    tokens, valid = prepare_prompts(model, prompts, max_new_tokens, pad_id, pad_to)
    _check_token(model, "eos_id", eos_id)
    if int(beam_width) <= 0:
        raise ValueError(f"beam_width={beam_width} must be positive")
    return _beam_search(model, variables, jnp.asarray(tokens), jnp.asarray(valid), jnp.float32(length_penalty),
                        as_processor(logits_processor), max_new_tokens=int(max_new_tokens),
                        beam_width=int(beam_width), eos_id=None if eos_id is None else int(eos_id), pad_id=int(pad_id))
