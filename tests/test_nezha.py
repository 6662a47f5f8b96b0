"""Generative recommenders on semantic IDs (issue 22): the SID token layout, TIGER's constrained
beam search and NEZHA's one-pass decoding, on synthetic item codes and histories."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxrec.errors import DataError
from jaxrec.generate.nezha import lookup_items, nezha_beam_search, sid_verifier, tiger_beam_search
from jaxrec.models.generative import SIDVocab, make_nezha, make_tiger, nezha_loss, tiger_loss
from jaxrec.models.text.gpt import GPT

SIZES = (4, 4, 3)  # K_1, K_2, K_3: 48 possible codes
VOCAB = SIDVocab(SIZES)
HISTORY = 4
TINY = dict(width=16, depth=1, num_heads=2)
ALL_CODES = np.array(np.meshgrid(*[range(k) for k in SIZES], indexing="ij")).reshape(len(SIZES), -1).T


def _items(seed: int, m: int) -> np.ndarray:
    return ALL_CODES[np.random.default_rng(seed).choice(len(ALL_CODES), m, replace=False)]


_INITS = {}


def _init(model, prompts, codes, seed=0):
    init = _INITS.setdefault(model, jax.jit(model.init))  # one compilation per model and shape
    return init(jax.random.key(seed), {"tokens": jnp.asarray(prompts), "codes": jnp.asarray(codes)})


def test_sid_vocab_layout_by_hand():
    v = VOCAB
    # pad 0, bos 1, eos 2, placeholders 3..5, level offsets 6, 10, 14; 6 + 4 + 4 + 3 = 17 tokens
    assert v.placeholder_ids == (3, 4, 5) and v.offsets == (6, 10, 14) and v.vocab_size == 17
    items = np.array([[3, 0, 0], [0, 3, 1], [1, 1, 2]])
    np.testing.assert_array_equal(v.encode(items), [[9, 10, 14], [6, 13, 15], [7, 11, 16]])
    np.testing.assert_array_equal(v.decode(v.encode(items)), items)
    np.testing.assert_array_equal(v.history(items, [[0, 1, 2], [2], []], max_history=2),
                                  [[1, 6, 13, 15, 7, 11, 16],    # width 1 + 2 x 3; the last 2 items kept
                                   [0, 0, 0, 1, 7, 11, 16],
                                   [0, 0, 0, 0, 0, 0, 1]])
    with pytest.raises(DataError, match="level 2's codebook"):
        v.encode([[0, 0, 3]])
    with pytest.raises(DataError, match="L=3"):
        v.encode([[0, 0]])
    with pytest.raises(DataError, match="tokens - offsets"):
        v.decode([[10, 10, 14]])  # 10 is a level-2 token in the level-1 slot
    with pytest.raises(DataError, match="history row 0"):
        v.history(items, [[5]], 2)
    with pytest.raises(ValueError, match="codebook_sizes"):
        SIDVocab((4, 0))
    np.testing.assert_array_equal(lookup_items(items, [[1, 1, 2], [0, 0, 0], [-1, -1, -1]]), [2, -1, -1])


M, BEAM, B = 8, 8, 3  # shared by the tests below: one compilation of each decoder
_tiger = make_tiger(VOCAB, HISTORY, **TINY)
_nezha = make_nezha(VOCAB, HISTORY, **TINY)


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.sets(st.tuples(*[st.integers(0, k - 1) for k in SIZES]), min_size=M, max_size=M),
       seed=st.integers(0, 3), histories=st.lists(st.lists(st.integers(0, M - 1), max_size=6), min_size=B, max_size=B),
       top_k=st.sampled_from([2, None]))
def test_every_constrained_and_nezha_output_is_a_valid_item(items, seed, histories, top_k):
    items = np.array(sorted(items))
    prompts = VOCAB.history(items, histories, HISTORY)
    verifier = sid_verifier(VOCAB, items)
    valid = {tuple(c) for c in items}
    tv, nv = _init(_tiger, prompts, items[:B], seed), _init(_nezha, prompts, items[:B], seed)
    for name, out, full in (("tiger/hash", tiger_beam_search(_tiger, tv, prompts, VOCAB, BEAM, verifier), True),
                            ("nezha", nezha_beam_search(_nezha, nv, prompts, verifier, BEAM, top_k), top_k is None)):
        codes, scores = np.asarray(out.codes), np.asarray(out.scores)
        live = np.isfinite(scores)
        assert live[:, 0].all(), name                       # the best beam always reaches an item
        if full:                                            # M >= BEAM valid items reachable: no filler
            assert live.all(), name
        assert {tuple(c) for c in codes[live]} <= valid, name
        assert (lookup_items(items, codes)[live] >= 0).all() and (codes[~live] == -1).all(), name
        for row in range(B):                                # distinct items per request, best first
            assert len({tuple(c) for c in codes[row][live[row]]}) == live[row].sum(), name
            assert (np.diff(scores[row][live[row]]) <= 1e-6).all(), name


def test_nezha_head_beam_search_equals_brute_force_over_all_items():
    items = _items(1, M)
    prompts = VOCAB.history(items, [[0, 3, 5], [7], [6, 6, 2, 1, 4]], HISTORY)
    variables = _init(_nezha, prompts, items[:B], seed=2)
    out = nezha_beam_search(_nezha, variables, prompts, sid_verifier(VOCAB, items), beam_width=BEAM)  # BEAM >= M
    # brute force: every item's total log-probability from the head (teacher forcing = the training path)
    codes = jnp.asarray(np.tile(items, (B, 1)))
    logits = _nezha.apply(variables, {"tokens": jnp.asarray(np.repeat(prompts, M, axis=0)), "codes": codes})
    brute = -np.asarray(nezha_loss(logits, codes)).reshape(B, M)
    for row in range(B):
        order = np.argsort(-brute[row], kind="stable")
        np.testing.assert_array_equal(np.asarray(out.codes[row]), items[order])
        np.testing.assert_allclose(np.asarray(out.scores[row]), brute[row, order], rtol=1e-5, atol=1e-5)
    assert len(np.unique(np.round(brute, 4))) == brute.size  # no ties: the order is a real check


def _count_backbone_calls(fn):
    """Traces `fn` afresh (caches cleared), recording every `GPT.hidden` call's token shape: every
    LM forward goes through it. NEZHA's program is straight-line (levels unrolled, no loop), so a
    traced call is an executed call."""
    calls = []

    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, GPT) and context.method_name == "hidden":
            calls.append(tuple(args[0].shape))
        return next_fun(*args, **kwargs)

    jax.clear_caches()
    with nn.intercept_methods(interceptor):
        fn()
    return calls


def test_exactly_one_backbone_forward_per_request():
    items = _items(3, M)
    prompts = VOCAB.history(items, [[1, 2], [3], [4, 5, 6]], HISTORY)
    b, p, levels = prompts.shape[0], prompts.shape[1], VOCAB.num_levels
    verifier = sid_verifier(VOCAB, items)
    nv, tv = _init(_nezha, prompts, items[:b]), _init(_tiger, prompts, items[:b])
    # NEZHA: one call over the whole batch, each request's prompt + L placeholders once
    assert _count_backbone_calls(lambda: nezha_beam_search(_nezha, nv, prompts, verifier, BEAM)) == [(b, p + levels)]
    # TIGER (the contrast): a prefill, then a single-token step over B x W rows inside the while loop (run L times)
    calls = _count_backbone_calls(lambda: tiger_beam_search(_tiger, tv, prompts, VOCAB, BEAM, verifier))
    assert calls == [(b, p), (b * BEAM, 1)]


def _synthetic(rng, items, successor, n):
    """Histories of 1..HISTORY random items; the next item is `successor[last item]`."""
    hist = [list(rng.integers(0, len(items), rng.integers(1, HISTORY + 1))) for _ in range(n)]
    return VOCAB.history(items, hist, HISTORY), items[successor[[h[-1] for h in hist]]]


@pytest.mark.slow  # ~30 s each on the shared 2-core machine (mostly compilation)
@pytest.mark.parametrize("kind", ["tiger", "nezha"])
def test_teacher_forced_training_fits_a_next_item_function(kind):
    rng = np.random.default_rng(0)
    m = 24
    items = _items(4, m)
    successor = rng.permutation(m)
    model = (make_tiger if kind == "tiger" else make_nezha)(VOCAB, HISTORY, width=32, depth=1, num_heads=2)
    loss_of = ((lambda logits, codes: tiger_loss(logits, codes, VOCAB.offsets)) if kind == "tiger" else nezha_loss)
    prompts, codes = _synthetic(rng, items, successor, 64)
    params = _init(model, prompts, codes)["params"]
    opt = optax.adam(1e-2)

    @jax.jit
    def step(params, opt_state, tokens, codes):
        loss, g = jax.value_and_grad(lambda p: loss_of(model.apply({"params": p}, {"tokens": tokens, "codes": codes}),
                                                       codes).mean())(params)
        updates, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state, losses = opt.init(params), []
    for _ in range(200):
        prompts, codes = _synthetic(rng, items, successor, 64)
        params, state, loss = step(params, state, jnp.asarray(prompts), jnp.asarray(codes))
        losses.append(float(loss))
    prompts, codes = _synthetic(np.random.default_rng(1), items, successor, 64)
    verifier = sid_verifier(VOCAB, items)
    variables = {"params": params}
    out = (tiger_beam_search(model, variables, prompts, VOCAB, 4, verifier) if kind == "tiger"
           else nezha_beam_search(model, variables, prompts, verifier, 4))
    accuracy = (np.asarray(out.codes[:, 0]) == codes).all(-1).mean()
    assert np.mean(losses[-20:]) < 0.25 * np.mean(losses[:5]), (losses[:5], losses[-20:])
    assert accuracy > 0.6, accuracy  # chance: 1 / 24


def test_tiger_padded_prompt_decodes_as_the_row_alone():
    """Left pads of SID prompts are not tokens: a short history in a padded batch decodes exactly as alone."""
    items = _items(1, M)
    prompts = VOCAB.history(items, [[0, 3, 5], [7], [6, 6, 2, 1, 4]], HISTORY)
    variables = _init(_tiger, prompts, items[:B], seed=2)
    verifier = sid_verifier(VOCAB, items)
    batch = tiger_beam_search(_tiger, variables, prompts, VOCAB, BEAM, verifier)
    for r in range(B):
        alone = tiger_beam_search(_tiger, variables, prompts[r][prompts[r] != 0][None], VOCAB, BEAM, verifier)
        np.testing.assert_array_equal(np.asarray(batch.codes[r]), np.asarray(alone.codes[0]))
        np.testing.assert_allclose(np.asarray(batch.scores[r]), np.asarray(alone.scores[0]), rtol=1e-5, atol=1e-5)
