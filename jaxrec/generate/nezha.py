"""Decoding semantic IDs: TIGER's constrained beam search over the KV cache, and NEZHA's beam
search inside the MTP head, both pruned to valid items by the hash-set verifier.

Verifier (`HashSetConstraint`, spec section 1): item codes `code = sum_i c_i K^(i-1)` with
K = max_i K_i; prefix sets `P_i = {code mod K^i}`; a partial code after level i is kept iff it is
in P_i. `sid_verifier` builds it in token space (TIGER: token of level i code c = offset_i + c);
`code_verifier` is the same constraint with zero offsets, i.e. over code indices (NEZHA's head:
its level-i scores are over the K_i codes). Both are checked at every level.

NEZHA head beam search (width W, top-k per beam), after ONE backbone call `encode`:

    r_0 = h_0 (beam 0 live, others -inf);  for level i = 1..L:
      s(b, c) = score(b) + log_softmax(W_i (r_{i-1}(b) + h_i))[c],  -inf unless partial(b) + K^(i-1) c in P_i
      keep each beam's top-k codes, then the best W of the W x k candidates (per request)
      r_i(b') = cell_i(E_i[c], r_{i-1}(parent(b')))

Outputs are ranked by the total log-probability sum_i log p_i(c_i); a -inf score is a filler
(fewer than W valid items reachable), its codes -1. The released code takes each beam's top-k
before the verifier; here the verifier masks first (a valid code is never crowded out by invalid
ones), which is the same search when k = K_i (the paper's setting, beam = top-k = K).

Token-forwards per request (the cost model the benchmark reports): TIGER = P (prefill) + W L
single-token decoder steps (W (L - 1) needed; `beam_search`'s loop also runs the step after the
last choice); NEZHA = P + L once, then W L head evaluations of size D x K_i (no decoder call).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.errors import DataError
from jaxrec.generate.constraints import NEG_INF, DecodeState, HashSetConstraint
from jaxrec.generate.decode import _beam_search, beam_search
from jaxrec.models.generative.nezha import NEZHA
from jaxrec.models.generative.recommender import SIDRecommender, wrapped_net
from jaxrec.models.generative.sid import PAD, SIDVocab
from jaxrec.models.generative.tiger import TIGER


class SIDBeams(NamedTuple):
    """`codes [B, W, L]` (-1 for fillers), `scores [B, W]` total log-probabilities, best first (-inf = filler)."""

    codes: jax.Array
    scores: jax.Array


def sid_verifier(vocab: SIDVocab, item_codes: np.ndarray) -> HashSetConstraint:
    """The hash-set verifier over the SID tokens of `item_codes [M, L]` (a `logits_processor`)."""
    return HashSetConstraint.build(vocab.check_codes(item_codes, "item_codes"), vocab.max_codebook_size, vocab.offsets)


def code_verifier(verifier: HashSetConstraint) -> HashSetConstraint:
    """The same prefix sets over code indices (zero offsets): scores `[N, K_max]` at level i."""
    return verifier.replace(offsets=jnp.zeros_like(verifier.offsets))


def lookup_items(item_codes: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Item ids of `codes [..., L]` among `item_codes [M, L]` (row = item id); -1 where none (host side)."""
    item_codes, codes = np.asarray(item_codes, np.int64), np.asarray(codes, np.int64)
    base = int(max(item_codes.max(), codes.max(initial=0))) + 1
    powers = base ** np.arange(item_codes.shape[1], dtype=np.int64)
    keys = item_codes @ powers
    order = np.argsort(keys, kind="stable")
    query = np.where((codes < 0).any(-1), -1, codes @ powers)
    pos = np.clip(np.searchsorted(keys[order], query), 0, len(keys) - 1)
    return np.where(keys[order][pos] == query, order[pos], -1)


def _prompts(tokens: np.ndarray | Sequence[Sequence[int]], vocab_size: int) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise DataError(f"prompts: expected [B, P] integer token ids (SIDVocab.history), got {tokens.dtype} {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise DataError(f"prompts: token ids must lie in [0, {vocab_size}), got [{tokens.min()}, {tokens.max()}]")
    return tokens.astype(np.int32)


def unpadded(prompts: np.ndarray, pad_id: int) -> list[np.ndarray]:
    """The rows of left-padded SID prompts `[B, P]` without their pads (ragged), what
    `jaxrec.generate.beam_search` takes: a `[B, P]` array there counts every slot as a token."""
    return [row[row != pad_id] for row in np.asarray(prompts)]


def tiger_beam_search(model: TIGER, variables: dict, prompts: np.ndarray, vocab: SIDVocab, beam_width: int,
                      constraint: Any) -> SIDBeams:
    """TIGER decoding: `jaxrec.generate.beam_search` over the KV cache, L steps, `constraint` a
    `HashSetConstraint` (`sid_verifier`) or a `TrieConstraint` over the items' token sequences.
    `prompts [B, P]` from `SIDVocab.history` (left-padded with pad 0: the pads are not prompt
    tokens, so a padded row decodes as it would alone). -> `SIDBeams`."""
    prompts = _prompts(prompts, model.vocab_size)
    beams = beam_search(model, variables, unpadded(prompts, vocab.pad_id), vocab.num_levels, beam_width,
                        pad_id=vocab.pad_id, logits_processor=constraint, pad_to=prompts.shape[1])
    return _as_codes(beams, vocab)


def _as_codes(beams, vocab: SIDVocab) -> SIDBeams:
    filler = beams.scores == NEG_INF
    codes = beams.sequences - jnp.asarray(vocab.offsets, jnp.int32)
    return SIDBeams(jnp.where(filler[..., None], -1, codes), beams.scores)


@functools.partial(jax.jit, static_argnames=("model", "beam_width", "top_k"))
def _nezha_search(model: NEZHA, variables, tokens, verifier: HashSetConstraint, *, beam_width: int, top_k: int):
    h0, h = model.apply(variables, tokens, method=NEZHA.encode)        # the one backbone call
    b, levels = h.shape[:2]
    w, sizes = beam_width, tuple(model.codebook_sizes)
    k_max = max(sizes)
    rep = lambda x: jnp.repeat(x, w, axis=0)
    r, partial = rep(h0), jnp.zeros((b * w,), jnp.int32)
    codes = jnp.full((b * w, levels), -1, jnp.int32)
    scores = jnp.tile(jnp.where(jnp.arange(w) == 0, 0.0, NEG_INF), (b, 1))   # [B, W]
    for i, size in enumerate(sizes):
        logp = jax.nn.log_softmax(model.apply(variables, i, r, rep(h[:, i]), method=NEZHA.level_logits), axis=-1)
        logp = jnp.pad(logp, ((0, 0), (0, k_max - size)), constant_values=NEG_INF)            # [BW, K_max]
        state = DecodeState(codes, jnp.int32(i), partial)
        logp = verifier(state, logp)                                                           # -inf: invalid prefix
        k = min(top_k, size)
        top, idx = jax.lax.top_k(logp, k)                                                      # [BW, k]
        cand = (scores.reshape(b * w, 1) + top).reshape(b, w * k)
        scores, sel = jax.lax.top_k(cand, w)                                                   # [B, W]
        parent = (sel // k + jnp.arange(b)[:, None] * w).reshape(-1)
        code = jnp.take_along_axis(idx.reshape(b, w * k), sel, axis=1).reshape(-1).astype(jnp.int32)
        partial = verifier.advance(DecodeState(codes, jnp.int32(i), partial[parent]), code)
        codes = codes[parent].at[:, i].set(code)
        if i + 1 < levels:
            r = model.apply(variables, i, r[parent], code, method=NEZHA.transition)
    codes = codes.reshape(b, w, levels)
    return SIDBeams(jnp.where((scores == NEG_INF)[..., None], -1, codes), scores)


def nezha_beam_search(model: NEZHA, variables: dict, prompts: np.ndarray, verifier: HashSetConstraint,
                      beam_width: int, top_k: int | None = None) -> SIDBeams:
    """NEZHA decoding (module docstring): one `NEZHA.encode` over `prompts [B, P]` (`SIDVocab.history`),
    then beam search of width `beam_width` inside the head, each beam's `top_k` codes per level
    (default: all, K_i), pruned by `verifier` (`sid_verifier` or `code_verifier` of it). -> `SIDBeams`."""
    prompts = _prompts(prompts, model.backbone.vocab_size)
    if int(beam_width) <= 0:
        raise ValueError(f"beam_width={beam_width} must be positive")
    k = max(model.codebook_sizes) if top_k is None else int(top_k)
    if k <= 0:
        raise ValueError(f"top_k={top_k} must be positive")
    if verifier.prefix_sets.shape[0] != len(model.codebook_sizes) or verifier.codebook_size < max(model.codebook_sizes):
        raise ValueError(f"verifier: built for {verifier.prefix_sets.shape[0]} levels of {verifier.codebook_size} codes; "
                         f"the model has codebook_sizes={tuple(model.codebook_sizes)}")
    return _nezha_search(model, variables, jnp.asarray(prompts), code_verifier(verifier), beam_width=int(beam_width),
                         top_k=k)


def recommend(model: SIDRecommender, variables: dict, batch, beam_width: int, top_k: int | None = None) -> SIDBeams:
    """The next item's SID for every row of a next-item batch (`jaxrec.data.sequential`), by the
    registry model's own decoding: 'tiger' constrained beam search over the KV cache, 'nezha' one
    backbone pass + the head's beam search, both with the hash-set verifier over the catalogue
    (`model.item_codes` without row 0, padding). Traceable (prompts built on the device), so it runs
    inside the trainer's jitted predict. `variables` are the registry model's; -> `SIDBeams [B, W, L]`."""
    prompts = model.apply(variables, batch, method=SIDRecommender.prompts)
    net, net_vars = wrapped_net(model), {"params": variables["params"]["net"]}
    verifier = sid_verifier(model.vocab, np.asarray(model.item_codes.value)[1:])
    if isinstance(net, NEZHA):
        k = max(net.codebook_sizes) if top_k is None else int(top_k)
        return _nezha_search(net, net_vars, prompts, code_verifier(verifier), beam_width=int(beam_width), top_k=k)
    beams = _beam_search(net, net_vars, prompts, prompts != PAD, jnp.float32(0.0), verifier,
                         max_new_tokens=model.vocab.num_levels, beam_width=int(beam_width), eos_id=None, pad_id=PAD)
    return _as_codes(beams, model.vocab)


MISS = 2 ** 30  # the rank of a target no beam holds: contributes 0 to HR@K / NDCG@K (K <= W) and ~0 to MRR


def target_rank(beams: SIDBeams, target_codes: jax.Array) -> jax.Array:
    """1-based rank `[B]` int32 of the target item among the beams (best first), `MISS` if absent;
    `target_codes [B, L]`. Codes are unique per item (the unique level), so this is the item's rank."""
    hit = jnp.all(beams.codes == target_codes[:, None, :], axis=-1)                    # [B, W]
    return jnp.where(hit.any(axis=1), jnp.argmax(hit, axis=1) + 1, MISS).astype(jnp.int32)
