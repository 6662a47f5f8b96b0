"""jaxrec.generate against full recomputation and brute force, on tiny random GPTs (width 32, depth 2).

References: a full forward (`GPT.__call__`) over each unpadded sequence so far, one row at a time;
the exact log-probability of every allowed sequence by full forwards, ranked (brute force).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxrec.generate import (HashSetConstraint, TrieConstraint, WeightedTrieConstraint, beam_search, generate,
                             sample_logits, top_k_mask, top_p_mask)
from jaxrec.generate.constraints import DecodeState
from jaxrec.generate.decode import _beam_search, prepare_prompts
from jaxrec.generate.scoring import sequence_logprob, token_logprobs
from jaxrec.models.text.gpt import GPT

PAD, EOS = 0, 1


@functools.lru_cache(maxsize=None)
def tiny(vocab: int = 16, position: str = "rope", kv: int = 0, seed: int = 0, max_len: int = 24):
    """A tiny GPT with sharpened random weights (embeddings x 20: peaked next-token distributions)."""
    model = GPT(vocab_size=vocab, width=32, depth=2, num_heads=4, num_kv_heads=kv, max_len=max_len, position=position)
    variables = nn.unbox(model.init(jax.random.key(seed), {"tokens": jnp.zeros((1, 4), jnp.int32)}))
    params = dict(variables["params"])
    params["embed"] = {"embedding": params["embed"]["embedding"] * 20}
    return model, {"params": params}


@functools.lru_cache(maxsize=None)
def _full_fn(model):
    return jax.jit(lambda v, t: model.apply(v, {"tokens": t}))


def full_logits(model, variables, seq) -> np.ndarray:
    """Next-token logits after every prefix of `seq` by one full forward: `[len(seq), V]` (right
    padding to max_len, invisible to a causal model, keeps one compiled shape)."""
    padded = list(seq) + [0] * (model.max_len + 1 - len(seq))
    return np.asarray(_full_fn(model)(variables, jnp.asarray([padded], jnp.int32))[0, :len(seq)])


def seq_logprob(model, variables, prompt, seq) -> float:
    """log p(seq | prompt), exact, by a full forward."""
    logp = jax.nn.log_softmax(full_logits(model, variables, list(prompt) + list(seq)))
    return float(sum(logp[len(prompt) - 1 + j, t] for j, t in enumerate(seq)))


PROMPTS = [[3, 4, 5, 6, 7], [8, 2], [9, 10, 11, 12, 13, 14, 15]]


# ---- (a), (b): the cache against full recomputation ---------------------------------------------

@pytest.mark.parametrize("position,kv", [("rope", 0), ("learned", 2)])
def test_kv_cache_logits_equal_full_recomputation_on_ragged_prompts(position, kv):
    model, variables = tiny(position=position, kv=kv)
    n = 6
    out = generate(model, variables, PROMPTS, n, return_logits=True)
    for r, prompt in enumerate(PROMPTS):
        seq = list(prompt) + [int(t) for t in out.tokens[r]]
        ref = full_logits(model, variables, seq)[len(prompt) - 1:len(prompt) - 1 + n]      # [n, V]
        np.testing.assert_allclose(np.asarray(out.logits[r]), ref, atol=1e-5, rtol=0)
        # greedy == argmax of the full recomputation, step by step
        np.testing.assert_array_equal(np.asarray(out.tokens[r]), ref.argmax(-1))
        alone = generate(model, variables, [prompt], n, return_logits=True, pad_to=7)   # more pads than needed
        np.testing.assert_array_equal(alone.tokens[0], out.tokens[r])
        np.testing.assert_allclose(alone.logits[0], out.logits[r], atol=1e-5, rtol=0)


def test_recompute_path_equals_cache_and_eos_stops_rows():
    model, variables = tiny()
    cached = generate(model, variables, PROMPTS, 8, return_logits=True)
    again = generate(model, variables, PROMPTS, 8, return_logits=True, recompute=True)
    np.testing.assert_array_equal(cached.tokens, again.tokens)
    np.testing.assert_allclose(cached.logits, again.logits, atol=1e-5, rtol=0)
    # EOS: take row 0's third token as EOS; row 0 stops there, the others where it first occurs
    eos = int(cached.tokens[0, 2])
    out = generate(model, variables, PROMPTS, 8, eos_id=eos)
    for r in range(len(PROMPTS)):
        row = [int(t) for t in cached.tokens[r]]
        stop = row.index(eos) + 1 if eos in row else 8
        assert out.lengths[r] == stop
        np.testing.assert_array_equal(out.tokens[r, :stop], row[:stop])
        assert (np.asarray(out.tokens[r, stop:]) == PAD).all()


def test_logits_processor_sees_the_decoding_state():
    """A plain function hook: at step i allow only tokens != the previous one and, at even steps,
    only token 2 + i; the greedy output must follow both rules, and equal a hand-run of them."""
    model, variables = tiny()

    def rule(state, scores):
        prev = jnp.where(state.step > 0, state.tokens[:, jnp.maximum(state.step - 1, 0)], -1)
        ban = jnp.arange(scores.shape[-1])[None, :] == prev[:, None]
        force = (state.step % 2 == 0) & (jnp.arange(scores.shape[-1]) != 2 + state.step)[None, :]
        return jnp.where(ban | force, -jnp.inf, scores)

    out = generate(model, variables, PROMPTS, 6, logits_processor=rule)
    for r, prompt in enumerate(PROMPTS):
        seq = list(prompt)
        for i in range(6):
            logits = full_logits(model, variables, seq)[-1]
            allowed = [t for t in range(16) if (i == 0 or t != seq[-1]) and (i % 2 or t == 2 + i)]
            seq.append(max(allowed, key=lambda t: logits[t]))
        assert [int(t) for t in out.tokens[r]] == seq[len(prompt):]


# ---- (c): sampling --------------------------------------------------------------------------------

def test_top_k_and_top_p_masks_by_hand():
    logits = jnp.log(jnp.array([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    assert np.isfinite(np.asarray(top_k_mask(logits, 2))).tolist() == [[True, True, False, False, False]]
    # nucleus 0.8: 0.5 + 0.2 = 0.7 < 0.8, + 0.15 = 0.85 >= 0.8 -> three tokens
    assert np.isfinite(np.asarray(top_p_mask(logits, 0.8))).tolist() == [[True, True, True, False, False]]
    assert np.isfinite(np.asarray(top_p_mask(logits, 0.5))).tolist() == [[True, False, False, False, False]]
    assert np.isfinite(np.asarray(top_p_mask(logits, 1e-6))).sum() == 1


def test_sampling_stays_in_top_k_and_nucleus_and_is_reproducible():
    model, variables = tiny()
    key = jax.random.key(7)
    runs = {"top_k": dict(top_k=3), "top_p": dict(top_p=0.7)}
    for name, kw in runs.items():
        out = generate(model, variables, PROMPTS * 4, 10, key=key, temperature=1.0, return_logits=True, **kw)
        logits = np.asarray(out.logits, np.float64)                                     # [B, N, V]
        chosen = np.take_along_axis(logits, np.asarray(out.tokens)[..., None], -1)[..., 0]
        if name == "top_k":
            kth = np.sort(logits, -1)[..., -3]
            assert (chosen >= kth).all()
        else:
            p = np.exp(logits - logits.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            mass_above = np.where(logits > chosen[..., None], p, 0).sum(-1)             # mass strictly before it
            assert (mass_above < 0.7 + 1e-6).all()
        again = generate(model, variables, PROMPTS * 4, 10, key=key, temperature=1.0, return_logits=True, **kw)
        np.testing.assert_array_equal(out.tokens, again.tokens)
    other = generate(model, variables, PROMPTS * 4, 10, key=jax.random.key(8), temperature=1.0, return_logits=True)
    first = generate(model, variables, PROMPTS * 4, 10, key=key, temperature=1.0, return_logits=True)
    assert (np.asarray(other.tokens) != np.asarray(first.tokens)).any()


def test_temperature_to_zero_is_greedy():
    model, variables = tiny()
    greedy = generate(model, variables, PROMPTS, 8)
    for t in (1e-6, 0.0):
        cold = generate(model, variables, PROMPTS, 8, key=jax.random.key(3), temperature=t)
        np.testing.assert_array_equal(cold.tokens, greedy.tokens)
    logits = jax.random.normal(jax.random.key(0), (64, 50))
    np.testing.assert_array_equal(sample_logits(jax.random.key(1), logits, 0.0), jnp.argmax(logits, -1))


# ---- (d): beam search under a trie, against brute force -------------------------------------------

V, L, BEAM = 8, 3, 8
TOKENS = st.integers(2, V - 1)                                  # 0 = pad, 1 = EOS are never in a sequence


def _check_against_brute_force(model, variables, prompts, beams, allowed, suffix=()):
    for r, prompt in enumerate(prompts):
        truth = sorted(((seq_logprob(model, variables, prompt, list(s) + list(suffix)), tuple(s)) for s in allowed),
                       reverse=True)
        scores = np.asarray(beams.scores[r])
        finite = np.isfinite(scores)
        assert finite.sum() == min(len(truth), beams.scores.shape[1])
        got = [tuple(int(t) for t in beams.sequences[r, w, :beams.lengths[r, w] - len(suffix)]) for w in range(finite.sum())]
        assert set(got) <= set(allowed)                           # only allowed sequences
        if beams.scores.shape[1] >= len(truth):                   # the beam covers the set: exact ranking
            assert got == [s for _, s in truth]
            np.testing.assert_allclose(scores[finite], [x for x, _ in truth], atol=1e-4, rtol=0)


@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(allowed=st.sets(st.tuples(TOKENS, TOKENS, TOKENS), min_size=1, max_size=BEAM), seed=st.integers(0, 3),
       narrow=st.booleans())
def test_beam_search_under_trie_fixed_length(allowed, seed, narrow):
    model, variables = tiny(vocab=V, seed=seed)
    allowed = sorted(allowed)
    trie = TrieConstraint.build(allowed, V, num_nodes=3 * BEAM + 2)
    prompts = [[2, 3], [4, 5, 6]]
    beams = beam_search(model, variables, prompts, L, 3 if narrow else BEAM, logits_processor=trie)
    assert (np.asarray(beams.lengths)[np.isfinite(beams.scores)] == L).all()
    _check_against_brute_force(model, variables, prompts, beams, allowed)


@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(allowed=st.sets(st.lists(TOKENS, min_size=1, max_size=L).map(tuple), min_size=1, max_size=BEAM),
       seed=st.integers(0, 3))
def test_beam_search_under_trie_with_eos(allowed, seed):
    model, variables = tiny(vocab=V, seed=seed)
    allowed = sorted(allowed)
    trie = TrieConstraint.build(allowed, V, eos_id=EOS, num_nodes=3 * BEAM + 2)
    prompts = [[2, 3]]
    beams = beam_search(model, variables, prompts, L + 1, BEAM, eos_id=EOS, logits_processor=trie)
    for w in np.flatnonzero(np.isfinite(beams.scores[0])):
        n = int(beams.lengths[0, w])
        assert int(beams.sequences[0, w, n - 1]) == EOS and (np.asarray(beams.sequences[0, w, n:]) == PAD).all()
    _check_against_brute_force(model, variables, prompts, beams, allowed, suffix=(EOS,))


def test_length_penalty_reranks_finished_hypotheses():
    model, variables = tiny(vocab=V)
    allowed = [(2,), (3, 4, 5), (6, 7)]
    trie = TrieConstraint.build(allowed, model.vocab_size, eos_id=EOS)
    for lp in (0.0, 1.0):
        beams = beam_search(model, variables, [[2, 3]], 4, 4, eos_id=EOS, logits_processor=trie, length_penalty=lp)
        truth = sorted((seq_logprob(model, variables, [2, 3], list(s) + [EOS]) / (len(s) + 1) ** lp, s) for s in allowed)[::-1]
        np.testing.assert_allclose(np.asarray(beams.scores[0, :3]), [x for x, _ in truth], atol=1e-4, rtol=0)
        assert [tuple(int(t) for t in beams.sequences[0, w, :len(s)]) for w, (_, s) in enumerate(truth)] == [s for _, s in truth]


# ---- (e): hash set == trie on fixed-length codes; the weighted trie -------------------------------

def test_hash_set_equals_trie_on_fixed_length_codes():
    k, levels = 4, 3
    vocab = 2 + levels * k                                      # token of code c at level i: 2 + i k + c
    model, variables = tiny(vocab=vocab, seed=1)
    rng = np.random.default_rng(0)
    codes = np.unique(rng.integers(0, k, (12, levels)), axis=0)
    offsets = 2 + k * np.arange(levels)
    hashed = HashSetConstraint.build(codes, k, offsets)
    trie = TrieConstraint.build(codes + offsets, vocab)
    prompts = [[2, 3, 4], [5]]
    a = beam_search(model, variables, prompts, levels, 16, logits_processor=hashed)
    b = beam_search(model, variables, prompts, levels, 16, logits_processor=trie)
    np.testing.assert_array_equal(a.sequences, b.sequences)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    assert np.isfinite(a.scores).sum(1).tolist() == [len(codes)] * 2
    # the masks themselves, step by step along every code and a few off-set prefixes
    scores = jnp.zeros((1, vocab))
    call = jax.jit(lambda p, i, c: p(DecodeState(None, i, c), scores))
    advance = jax.jit(lambda p, i, c, tok: p.advance(DecodeState(None, i, c), tok))
    for path in [list(c + offsets) for c in codes] + [[2, 2 + k + 3, 2 + 2 * k]]:
        h, t = hashed.init(1), trie.init(1)
        for i, tok in enumerate(path):
            i = jnp.int32(i)
            np.testing.assert_array_equal(np.isfinite(call(hashed, i, h)), np.isfinite(call(trie, i, t)))
            tok = jnp.array([tok], jnp.int32)
            h, t = advance(hashed, i, h, tok), advance(trie, i, t, tok)


def test_weighted_trie_by_hand():
    seqs, values = [[2, 3], [2, 4], [5, 6]], [1.0, 4.0, 2.0]
    w = WeightedTrieConstraint.build(seqs, values, vocab_size=8, alpha=2.0, tau=0.5)
    scores = jnp.log(jnp.full((1, 8), 1 / 8))
    out = np.asarray(w(DecodeState(None, jnp.int32(0), w.init(1)), scores))[0]
    # root: children 2 (v = max(1, 4) = 4), 5 (v = 2); p' = p^(1/tau) (v / 4)^alpha
    np.testing.assert_allclose(out[[2, 5]], [np.log(1 / 8) / 0.5, np.log(1 / 8) / 0.5 + 2 * np.log(0.5)], rtol=1e-6)
    assert np.isneginf(np.delete(out, [2, 5])).all()
    # below node "2": children 3 (v 1) and 4 (v 4)
    node = w.advance(DecodeState(None, jnp.int32(0), w.init(1)), jnp.array([2]))
    out = np.asarray(w(DecodeState(None, jnp.int32(1), node), scores))[0]
    np.testing.assert_allclose(out[3] - out[4], 2 * np.log(1 / 4), rtol=1e-6)
    # new values, same structure
    w2 = w.with_values([8.0, 1.0, 2.0])
    assert w2.children is w.children
    out = np.asarray(w2(DecodeState(None, jnp.int32(1), node), scores))[0]
    np.testing.assert_allclose(out[4] - out[3], 2 * np.log(1 / 8), rtol=1e-6)


def test_weighted_trie_alpha_zero_is_the_trie_and_alpha_steers_to_value():
    model, variables = tiny(vocab=V, seed=2)
    allowed = [(2, 3, 4), (2, 5, 6), (3, 3, 7), (6, 4, 2), (7, 7, 7)]
    prompts = [[2, 3], [4]]
    plain = beam_search(model, variables, prompts, L, 8, logits_processor=TrieConstraint.build(allowed, V))
    w = WeightedTrieConstraint.build(allowed, [1.0, 5.0, 2.0, 0.5, 3.0], V, alpha=0.0)
    weighted = beam_search(model, variables, prompts, L, 8, logits_processor=w)
    np.testing.assert_array_equal(plain.sequences, weighted.sequences)
    np.testing.assert_allclose(plain.scores, weighted.scores, atol=1e-6)
    # a strong alpha makes the most valuable item win; new values re-steer without rebuilding or recompiling
    compiled = _beam_search._cache_size()
    for values, best in (([1.0, 5.0, 2.0, 0.5, 3.0], (2, 5, 6)), ([1.0, 0.1, 2.0, 9.0, 3.0], (6, 4, 2))):
        steered = beam_search(model, variables, prompts, L, 8, logits_processor=w.replace(alpha=jnp.float32(50.0)).with_values(values))
        assert [tuple(int(t) for t in steered.sequences[r, 0]) for r in range(2)] == [best, best]
    assert _beam_search._cache_size() == compiled



@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(allowed=st.sets(st.lists(TOKENS, min_size=1, max_size=L).map(tuple), min_size=1, max_size=BEAM),
       values=st.lists(st.floats(0.0, 10.0), min_size=BEAM, max_size=BEAM), alpha=st.sampled_from([0.5, 2.0, 50.0]),
       tau=st.sampled_from([0.5, 1.0]), aggregate=st.sampled_from(["max", "mean", "sum"]))
def test_weighted_trie_beams_never_leave_the_trie(allowed, values, alpha, tau, aggregate):
    """Whatever the values (zeros included), weights and aggregate: every live beam is an allowed sequence + EOS."""
    model, variables = tiny(vocab=V, seed=1)
    allowed = sorted(allowed)
    w = WeightedTrieConstraint.build(allowed, values[:len(allowed)], V, alpha=alpha, tau=tau, eos_id=EOS,
                                     num_nodes=3 * BEAM + 2, aggregate=aggregate)
    beams = beam_search(model, variables, [[2, 3], [4]], L + 1, BEAM, eos_id=EOS, logits_processor=w)
    for r in range(2):
        live = np.flatnonzero(np.isfinite(beams.scores[r]))
        assert len(live) >= 1
        for b in live:
            n = int(beams.lengths[r, b])
            assert int(beams.sequences[r, b, n - 1]) == EOS
            assert tuple(int(t) for t in beams.sequences[r, b, :n - 1]) in allowed

# ---- (f): bad inputs ------------------------------------------------------------------------------

def test_bad_inputs_get_clear_errors():
    model, variables = tiny()
    with pytest.raises(ValueError, match=r"prompt row 1 has unknown token id 99 at position 1.*vocab_size=16"):
        generate(model, variables, [[2, 3], [4, 99]], 4)
    with pytest.raises(ValueError, match=r"prompt row 0 has unknown token id -1"):
        beam_search(model, variables, [[-1]], 4, 2)
    with pytest.raises(ValueError, match=r"prompt row 1 has 22 tokens.*max_new_tokens=4.*26 positions.*max_len=24"):
        generate(model, variables, [[2], [3] * 22], 4)
    with pytest.raises(ValueError, match=r"prompt row 0 is empty"):
        generate(model, variables, [[]], 4)
    with pytest.raises(ValueError, match=r"eos_id=16 outside"):
        generate(model, variables, [[2]], 4, eos_id=16)
    with pytest.raises(ValueError, match=r"PRNG key"):
        generate(model, variables, [[2]], 4, temperature=0.7)
    with pytest.raises(ValueError, match=r"token id 9 outside the vocabulary \[0, 8\)"):
        TrieConstraint.build([[1, 9]], 8)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, codebook_size=4\)"):
        HashSetConstraint.build([[0, 4]], 4)


# ---- (g): teacher-forced scoring (generate.scoring) -----------------------------------------------

def test_token_logprobs_equal_full_forwards_on_ragged_prompts_and_lengths():
    model, variables = tiny(seed=4)
    prompts, conts, lengths = [[3, 4, 5], [8], [9, 10, 11, 12]], [[6, 7, 2], [5, 1, 0], [4, 0, 0]], [3, 2, 1]
    tokens, valid = prepare_prompts(model, prompts, 3)
    got = token_logprobs(model, variables, jnp.asarray(tokens), jnp.asarray(valid), jnp.asarray(conts, jnp.int32),
                         jnp.asarray(lengths))
    for r in range(3):
        want = [seq_logprob(model, variables, prompts[r] + conts[r][:j], [conts[r][j]]) for j in range(lengths[r])]
        np.testing.assert_allclose(np.asarray(got[r, :lengths[r]]), want, rtol=1e-4, atol=1e-4)
        assert (np.asarray(got[r, lengths[r]:]) == 0).all()
    total = sequence_logprob(model, variables, jnp.asarray(tokens), jnp.asarray(valid), jnp.asarray(conts, jnp.int32),
                             jnp.asarray(lengths))
    np.testing.assert_allclose(np.asarray(total), np.asarray(got).sum(1), rtol=1e-6)


def test_token_logprobs_under_a_trie_renormalise_over_the_valid_children():
    model, variables = tiny(seed=5)
    allowed = [(2, 3), (2, 5), (4, 6)]
    trie = TrieConstraint.build(allowed, model.vocab_size, eos_id=EOS)
    tokens, valid = prepare_prompts(model, [[7, 8]], 3)
    got = token_logprobs(model, variables, jnp.asarray(tokens), jnp.asarray(valid), jnp.asarray([[2, 5, EOS]]),
                         processor=trie)
    logp = lambda prefix: jax.nn.log_softmax(full_logits(model, variables, [7, 8] + prefix))[-1]  # noqa: E731
    p0, p1 = logp([]), logp([2])
    want = [p0[2] - np.logaddexp(p0[2], p0[4]), p1[5] - np.logaddexp(p1[3], p1[5]), 0.0]  # EOS: the only choice
    np.testing.assert_allclose(np.asarray(got[0]), want, rtol=1e-4, atol=1e-5)
    # the constrained distribution sums to one over the allowed set, and gradients past EOS stay finite
    probs = [np.exp(float(token_logprobs(model, variables, jnp.asarray(tokens), jnp.asarray(valid),
                                         jnp.asarray([list(s) + [EOS]]), processor=trie).sum())) for s in allowed]
    np.testing.assert_allclose(sum(probs), 1.0, rtol=1e-5)
    grads = jax.grad(lambda v: token_logprobs(model, v, jnp.asarray(tokens), jnp.asarray(valid), jnp.asarray([[4, 6, EOS]]),
                                              jnp.asarray([2]), processor=trie).sum())(variables)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_weighted_trie_aggregates():
    seqs, values = [[2, 3], [2, 4], [5, 6]], [1.0, 4.0, 2.0]
    node = {a: np.asarray(WeightedTrieConstraint.build(seqs, values, 8, aggregate=a).node_values)[1] for a in ("max", "mean", "sum")}
    assert node == {"max": 4.0, "mean": 2.5, "sum": 5.0}  # node 1 = prefix (2,): items 1 and 4 below it
    with pytest.raises(ValueError, match="aggregate='median'"):
        WeightedTrieConstraint.build(seqs, values, 8, aggregate="median")
