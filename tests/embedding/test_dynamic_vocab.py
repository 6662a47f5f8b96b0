"""Dynamic vocabulary: hash-table rows, admission (min_count, bloom), eviction, jit, host keys.

XLA:CPU compiles of `lookup` take ~1 s here, so the tests share a few specs and pad every
batch to a fixed width (padding masked out) to keep the number of compilations small.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.encoding import stable_hash
from jaxrec.embedding import dynamic_vocab as dv
from jaxrec.embedding.dynamic_vocab import DynamicVocabSpec

SMALL = DynamicVocabSpec(capacity=64)
FOUR = DynamicVocabSpec(capacity=4, steps_to_live=2)  # 3 usable rows
MINC = DynamicVocabSpec(capacity=64, admission="min_count", min_count=3, bloom_size=64, steps_to_live=3)
BLOOM = DynamicVocabSpec(capacity=64, admission="bloom", min_count=2, bloom_size=1 << 12, bloom_hashes=3)
PROBE = DynamicVocabSpec(capacity=32, steps_to_live=1, max_probes=8)

_lookup = jax.jit(dv.lookup, static_argnums=0, static_argnames="train")


def as_keys(ids):
    """int ids or (hi, lo) -> uint32 (hi, lo) with hi = 0 for plain ints."""
    if isinstance(ids, tuple):
        return tuple(np.asarray(x) for x in ids)
    lo = np.asarray(ids, np.int64).astype(np.uint32)
    return np.zeros_like(lo), lo


def run(spec, state, ids, step, train=True):
    """Pads the batch to 16 entries (mask False), looks it up, strips the padding."""
    hi, lo = as_keys(ids)
    n = hi.size
    width = 16
    pad = lambda x: np.concatenate([x.reshape(-1), np.zeros(width - n, x.dtype)])
    mask = np.arange(width) < n
    rows, state, stats = _lookup(spec, state, (pad(hi), pad(lo)), jnp.int32(step), train=train, mask=mask)
    return np.asarray(rows)[:n].reshape(hi.shape), state, {k: np.asarray(v) for k, v in stats.items()}


def start_slots(spec, keys):
    lo = jnp.asarray(keys, jnp.uint32)
    return np.asarray(dv._probe_slots(jnp.zeros_like(lo), lo, spec.capacity, spec.probes, dv._TABLE_SEED)[:, 0])


def colliding(spec, n):
    """The first n keys >= 1 sharing a start slot."""
    keys = np.arange(1, 10_000)
    by_slot = {}
    for key, slot in zip(keys.tolist(), start_slots(spec, keys).tolist()):
        by_slot.setdefault(slot, []).append(key)
        if len(by_slot[slot]) == n:
            return by_slot[slot]
    raise AssertionError("no collision found")


def test_same_key_same_row_distinct_keys_distinct_rows():
    state = dv.init(SMALL)
    ids = np.arange(100, 116)
    rows, state, stats = run(SMALL, state, ids, 0)
    assert rows.min() >= 1 and rows.max() < 64 and len(set(rows.tolist())) == 16
    assert stats["admitted"] == 16 and stats["num_occupied"] == 16 and stats["new_rows"].sum() == 16
    rows2, state, stats = run(SMALL, state, ids[::-1], 1)
    np.testing.assert_array_equal(rows2, rows[::-1])
    assert stats["admitted"] == 0 and stats["new_rows"].sum() == 0


def test_unknown_at_eval_is_row_zero_and_read_only():
    state = dv.init(SMALL)
    rows, state, _ = run(SMALL, state, [5, 6], 0)
    ev, state2, stats = run(SMALL, state, [5, 6, 7, 8], 1, train=False)
    np.testing.assert_array_equal(ev, [rows[0], rows[1], 0, 0])
    assert stats["unknown"] == 2 and stats["admitted"] == 0 and stats["num_occupied"] == 2
    assert not stats["new_rows"].any()
    jax.tree.map(np.testing.assert_array_equal, state, state2)  # nothing changed
    assert run(SMALL, state2, [7], 2, train=False)[0][0] == 0


def test_min_count_admission_exactly_at_threshold():
    state = dv.init(MINC)  # min_count=3
    rows, state, stats = run(MINC, state, [7, 7, 8], 0)  # 7 seen twice, 8 once
    np.testing.assert_array_equal(rows, [0, 0, 0])
    assert stats["rejected"] == 2 and stats["admitted"] == 0 and stats["unknown"] == 3
    rows, state, stats = run(MINC, state, [8, 7], 1)  # 7 reaches 3 in this batch, 8 has 2
    assert rows[0] == 0 and rows[1] > 0
    assert stats["admitted"] == 1 and stats["rejected"] == 1 and stats["new_rows"][rows[1]]
    r7 = rows[1]
    rows, state, stats = run(MINC, state, [8, 7], 2)  # 8 reaches 3
    assert rows[0] > 0 and rows[1] == r7 and stats["admitted"] == 1
    # A key seen min_count times in one batch is admitted in that batch, all occurrences alike.
    rows, state, _ = run(MINC, state, [9, 9, 9], 3)
    assert rows[0] > 0 and (rows == rows[0]).all()
    # Admitted keys leave the pending table: it only holds keys still being counted.
    assert int(state.pending_used.sum()) == 0
    assert int(state.total_admitted) == 3 and int(state.total_rejected) == 3


def test_bloom_admission_and_false_positive_only_early():
    state = dv.init(BLOOM)  # min_count=2
    rows, state, stats = run(BLOOM, state, [1, 2], 0)
    np.testing.assert_array_equal(rows, [0, 0])
    assert stats["rejected"] == 2
    rows, state, stats = run(BLOOM, state, [1, 3, 3], 1)
    assert rows[0] > 0 and rows[1] > 0 and rows[1] == rows[2] != rows[0]
    assert stats["admitted"] == 2 and stats["rejected"] == 0
    assert int(state.bloom.sum()) == 3  # key 2's single count stays (3 hashes); 1 and 3 removed
    # A 1-counter filter makes every key collide: key 11 is admitted on its first sighting
    # because key 10 already raised the shared counter (the documented false positive).
    tiny = DynamicVocabSpec(capacity=64, admission="bloom", min_count=2, bloom_size=1, bloom_hashes=1)
    st = dv.init(tiny)
    rows, st, _ = run(tiny, st, [10], 0)
    assert rows[0] == 0
    rows, st, _ = run(tiny, st, [11], 1)
    assert rows[0] > 0
    assert int(st.bloom[0]) == 0  # the admitted key's estimate is subtracted


def test_eviction_after_steps_to_live_and_readmission():
    state = dv.init(MINC)  # steps_to_live=3, min_count=3
    rows, state, _ = run(MINC, state, [5, 5, 5, 6, 6, 6], 0)
    r5, r6 = rows[0], rows[3]
    assert r5 > 0 and r6 > 0
    for step in (1, 2, 3):  # 6 keeps being seen, 5 is not
        rows, state, stats = run(MINC, state, [6], step)
        assert rows[0] == r6 and stats["evicted"] == 0
    assert run(MINC, state, [5], 3, train=False)[0][0] == r5  # still live at step 3
    rows, state, stats = run(MINC, state, [6], 4)  # 5 unseen at steps 1..3: evicted at step 4
    assert stats["evicted"] == 1 and stats["num_occupied"] == 1 and stats["total_evicted"] == 1
    assert run(MINC, state, [5], 4, train=False)[0][0] == 0
    rows, state, stats = run(MINC, state, [5, 5], 5)  # must earn admission again
    assert rows[0] == 0 and stats["rejected"] == 1
    rows, state, stats = run(MINC, state, [5], 6)
    assert rows[0] > 0 and stats["admitted"] == 1 and stats["new_rows"][rows[0]]


def test_lookup_past_evicted_slot_and_slot_reuse():
    a, b, c = colliding(PROBE, 3)  # steps_to_live=1
    state = dv.init(PROBE)
    rows, state, _ = run(PROBE, state, [a], 0)
    ra = rows[0]
    rows, state, _ = run(PROBE, state, [b], 1)
    rb = rows[0]
    assert ra == start_slots(PROBE, [a])[0] and rb == ra % 31 + 1  # b probed past a's slot
    # Step 2: a (seen at 0, not at 1) is evicted; b (seen at 1) lives and is still found.
    rows, state, stats = run(PROBE, state, [b], 2)
    assert stats["evicted"] == 1 and rows[0] == rb  # no tombstone needed
    ev, _, _ = run(PROBE, state, [a, b], 2, train=False)
    np.testing.assert_array_equal(ev, [0, rb])
    rows, state, stats = run(PROBE, state, [c, b], 3)  # c reuses a's freed slot; b unchanged
    np.testing.assert_array_equal(rows, [ra, rb])
    assert stats["admitted"] == 1 and stats["new_rows"].sum() == 1 and stats["new_rows"][ra]
    # Re-seen a is a new key again: next free slot of its window.
    rows, state, _ = run(PROBE, state, [a, b, c], 4)
    assert rows[0] not in (0, ra, rb) and rows[1] == rb and rows[2] == ra


def test_full_table_and_probe_limit_drop():
    state = dv.init(FOUR)
    rows, state, stats = run(FOUR, state, [1, 2, 3, 4, 5, 5], 0)
    assert len(set(rows[rows > 0].tolist())) == 3 and rows[4] == rows[5]
    assert set(rows[rows > 0].tolist()) == {1, 2, 3}
    assert stats["admitted"] == 3 and stats["dropped"] == 2 and stats["occupancy"] == 1.0
    assert stats["unknown"] == int((rows == 0).sum())
    # Probe limit: 9 keys starting at one slot, windows of 8 slots: the 9th (largest) key is
    # dropped though the table has room.
    keys = colliding(PROBE, 9)
    rows, state, stats = run(PROBE, dv.init(PROBE), keys[::-1], 0)
    assert rows[0] == 0 and (rows[1:] > 0).all() and len(set(rows[1:].tolist())) == 8
    assert stats["dropped"] == 1 and stats["num_occupied"] == 8


def test_intra_batch_duplicates_are_deterministic():
    keys = colliding(PROBE, 4)
    batch = np.array(keys * 3 + [keys[0]] * 2)
    outs = []
    for perm_seed in range(3):
        perm = np.random.default_rng(perm_seed).permutation(len(batch))
        rows, _, stats = run(PROBE, dv.init(PROBE), batch[perm], 0)
        assert stats["admitted"] == 4 and stats["unknown"] == 0
        mapping = {}
        for k, r in zip(batch[perm].tolist(), rows.tolist()):
            assert mapping.setdefault(k, r) == r
        outs.append(mapping)
    assert outs[0] == outs[1] == outs[2]  # independent of batch order
    assert sorted(outs[0].values()) == [outs[0][keys[0]] + i for i in range(4)]  # one probe run


def test_mask_multidim_and_single_array_input():
    ids = jnp.asarray([[1, 2, 0], [2, 0, 0]], jnp.int32)
    rows, state, stats = _lookup(SMALL, dv.init(SMALL), ids, 0, mask=ids != 0)
    rows = np.asarray(rows)
    assert rows.shape == (2, 3)
    assert rows[0, 0] > 0 and rows[0, 1] == rows[1, 0] > 0 and (rows[np.asarray(ids) == 0] == 0).all()
    assert stats["admitted"] == 2 and stats["unknown"] == 0
    # A single 32-bit array is the key (0, x).
    again, _, _ = run(SMALL, state, [1, 2], 1, train=False)
    np.testing.assert_array_equal(again, rows[0, :2])


def test_stats_on_hand_computed_sequence():
    s = dv.init(FOUR)  # 3 usable rows, steps_to_live=2
    rows, s, st = run(FOUR, s, [1, 2, 2], 0)
    assert (st["admitted"], st["num_occupied"], st["unknown"], st["new_rows"].sum()) == (2, 2, 0, 2)
    np.testing.assert_allclose(st["occupancy"], 2 / 3)
    rows, s, st = run(FOUR, s, [1, 3, 4], 1)  # one free row: key 3 (smaller) wins, 4 dropped
    assert rows[1] > 0 and rows[2] == 0
    assert (st["admitted"], st["dropped"], st["unknown"], st["num_occupied"]) == (1, 1, 1, 3)
    np.testing.assert_allclose(st["occupancy"], 1.0)
    rows, s, st = run(FOUR, s, [4, 4], 3)  # horizon 1: key 2 (last seen 0) evicted, 4 takes its row
    assert rows[0] == rows[1] > 0
    assert (st["evicted"], st["admitted"], st["dropped"], st["num_occupied"]) == (1, 1, 0, 3)
    assert (st["total_admitted"], st["total_evicted"], st["total_dropped"], st["total_rejected"]) == (4, 1, 1, 0)
    ev, _, st = run(FOUR, s, [1, 2, 4, 9], 3, train=False)
    assert (ev == 0).tolist() == [False, True, False, True] and st["unknown"] == 2
    rows, s, st = run(FOUR, s, [9], 6)  # horizon 4: 1, 3 (seen at 1) and 4 (seen at 3) evicted
    assert (st["evicted"], st["admitted"], st["num_occupied"], st["total_evicted"]) == (3, 1, 1, 4)
    np.testing.assert_allclose(st["occupancy"], 1 / 3)
    assert set(dv.SCALAR_STATS) | {"new_rows"} == set(st)
    assert all(st[k].shape == () for k in dv.SCALAR_STATS)


def test_jit_with_donation():
    donating = jax.jit(dv.lookup, static_argnums=0, static_argnames="train", donate_argnums=1)
    rng = np.random.default_rng(0)
    plain, donated = dv.init(MINC), dv.init(MINC)
    for step in range(0, 16, 2):
        ids = rng.integers(0, 30, size=16)
        keys = as_keys(ids)
        r1, plain, s1 = _lookup(MINC, plain, keys, jnp.int32(step), mask=np.ones(16, bool))
        old = donated
        r2, donated, s2 = donating(MINC, donated, keys, jnp.int32(step), mask=np.ones(16, bool))
        np.testing.assert_array_equal(r1, r2)
        jax.tree.map(np.testing.assert_array_equal, s1, s2)
        assert old.key_hi.is_deleted() and old.total_admitted.is_deleted()  # buffers consumed
    jax.tree.map(np.testing.assert_array_equal, plain, donated)
    assert int(donated.total_admitted) > 0 and int(donated.total_evicted) > 0


def test_int64_and_string_keys_via_host_helpers():
    big = np.array([2**40 + 1, 2**40 + 1 + 2**32, 2**31 + 5, -3, 2**40 + 1], np.int64)  # 0, 1 share low 32 bits
    hi, lo = dv.keys_from_int64(big)
    assert hi.dtype == lo.dtype == np.uint32 and hi.shape == big.shape
    np.testing.assert_array_equal((hi.astype(np.uint64) << np.uint64(32)) | lo, stable_hash(big))
    rows, state, _ = run(SMALL, dv.init(SMALL), (hi, lo), 0)
    assert len(set(rows[:4].tolist())) == 4 and rows[4] == rows[0] and (rows > 0).all()
    # Keys are stable: re-deriving them later finds the same rows.
    again, _, _ = run(SMALL, state, dv.keys_from_int64(big[::-1].copy()), 1, train=False)
    np.testing.assert_array_equal(again, rows[::-1])
    # int32 pairs are read bit for bit like uint32 pairs.
    as_i32 = tuple(jnp.asarray(x.view(np.int32)) for x in (hi, lo))
    np.testing.assert_array_equal(np.asarray(dv.lookup(SMALL, state, as_i32, 1, train=False)[0]), rows)
    words = np.array([["apple", "pear"], ["apple", "fig"]])
    keys = dv.keys_from_strings(words)
    assert keys[0].shape == (2, 2)
    rows, state, _ = run(SMALL, state, keys, 2)
    assert rows[0, 0] == rows[1, 0] > 0 and len({rows[0, 0], rows[0, 1], rows[1, 1]}) == 3
    # Strings and integers never share keys: "5" and 5 differ.
    assert dv.keys_from_strings(np.array(["5"]))[1][0] != dv.keys_from_int64(np.array([5]))[1][0]
    with pytest.raises(TypeError, match="uint32 or int32"):
        dv.lookup(SMALL, state, np.array([1, 2], np.int64), 0)


def test_random_stream_invariants_with_eviction():
    """Against a reference model: live keys keep their row, live keys never share a row."""
    spec = PROBE  # 31 rows, windows of 8, steps_to_live=1
    rng = np.random.default_rng(1)
    state, row_of, last = dv.init(spec), {}, {}
    for step in range(60):
        ids = rng.integers(0, 50, size=14)
        for k in [k for k, t in last.items() if t < step - spec.steps_to_live]:  # reference eviction
            del last[k]
            row_of.pop(k, None)
        rows, state, stats = run(spec, state, ids, step)
        for k, r in zip(ids.tolist(), rows.tolist()):
            if k in row_of:
                assert r == row_of[k], (step, k)
            elif r > 0:
                row_of[k] = r
            last[k] = step
        live = list(row_of.values())
        assert len(live) == len(set(live)) == int(stats["num_occupied"])
        assert int(stats["total_admitted"]) - int(stats["total_evicted"]) == len(live)
    assert int(stats["total_evicted"]) > 20 and int(stats["total_dropped"]) > 0


def test_reset_rows_mask_and_ids():
    _, _, stats = run(SMALL, dv.init(SMALL), [3, 4, 3], 0)
    new = stats["new_rows"]
    assert new.sum() == 2 and not new[0]
    ones = lambda rng, shape, dtype: jnp.ones(shape, dtype)
    table = jnp.zeros((64, 4))
    t1 = np.asarray(dv.reset_rows(table, new, ones, jax.random.key(0)))
    np.testing.assert_array_equal(t1[:, 0] == 1, new)
    ids = dv.new_row_ids(new, size=5)
    assert ids.shape == (5,) and int((ids > 0).sum()) == 2
    np.testing.assert_array_equal(np.asarray(dv.reset_rows(table, ids, ones, jax.random.key(0))), t1)
    # Stacked table: this vocab's rows start at offset 10; other rows untouched.
    stacked = jnp.zeros((80, 4))
    t3 = np.asarray(dv.reset_rows(stacked, ids, ones, jax.random.key(0), offset=10))
    np.testing.assert_array_equal(t3[10:74], t1)
    assert t3[:10].sum() == 0 and t3[74:].sum() == 0
    np.testing.assert_array_equal(np.asarray(dv.reset_rows(stacked, new, ones, jax.random.key(0), offset=10)), t3)


def test_spec_validation():
    with pytest.raises(ValueError):
        DynamicVocabSpec(capacity=1)
    with pytest.raises(ValueError):
        DynamicVocabSpec(capacity=8, admission="lru")
    with pytest.raises(ValueError):
        DynamicVocabSpec(capacity=8, min_count=0)
    assert DynamicVocabSpec(capacity=8, admission="bloom", min_count=1).counting == "none"
    assert dv.init(DynamicVocabSpec(capacity=8)).bloom.shape == (1,)  # no filter memory unless used
