"""Dynamic vocabulary: a fixed-capacity, jittable hash table from raw ids to embedding rows.

Industrial recommenders do not fit a vocabulary up front: ids (users, items, queries) appear
and disappear while training runs. RecIS (arXiv 2509.20883) backs its sparse embeddings with
dynamic hash tables that admit new ids and evict stale ones; DeepRec's EmbeddingVariable does
the same with feature *admission* filters (`CounterFilter`: admit an id once seen
`filter_freq` times; `CBFFilter`: the same count kept in a counting Bloom filter) and feature
*eviction* (`GlobalStepEvict(steps_to_live)`: drop an id not seen for that many global steps).
This module is the JAX version: the table is a pytree of fixed-shape arrays, so it lives in
the train state, works under `jit` (with buffer donation) and checkpoints like any array, and
every operation is a pure function `state -> new state`.

Keys
  A key is a 64-bit hash of the raw id, carried as two uint32 arrays `(hi, lo)` because JAX
  runs with x64 off (`jax_enable_x64` is *not* needed). The host helpers `keys_from_int64`
  and `keys_from_strings` make them with `jaxrec.data.encoding.stable_hash` (SplitMix64 for
  integers, BLAKE2b for strings: stable across runs and machines); `split_uint64` splits
  hashes you already have. `lookup` also accepts a single 32-bit array (int32 / uint32), read
  as the key `(0, x)` — for ids that already fit in 32 bits. Two raw ids whose 64-bit hashes
  collide share a row (probability ~ n^2 / 2^65: negligible).

Table (`VocabState`)
  `capacity` slots; the *row* of a key is its slot index, so the embedding table this vocab
  maps into has `capacity` rows. Slot 0 is never used: row 0 means "unknown / not admitted /
  padding" (as row 0 of every table in `layer.py`). Open addressing with linear probing: key
  k may only live in the `max_probes` slots `1 + (h(k) + i) mod (capacity - 1)`,
  i = 0..max_probes-1, its *probe window* (h = a 32-bit mix of hi and lo).

  Deletion uses the *full re-probe rule* instead of tombstones: a lookup always compares the
  key against every slot of its window (it does not stop at the first free slot), and an
  insert puts a key in the first free slot of its window only after that scan found no copy.
  A key therefore sits in its window at most once, and freeing a slot (eviction) can never
  hide another key that probed past it. Freed slots are reused at once. Vectorised over the
  batch, the full scan costs the same `[U, max_probes]` gather that an early-exit probe
  needs on SIMD hardware anyway.

Train lookup (`lookup(..., train=True)`), in this order, at global step `step`:
  1. Eviction (`steps_to_live > 0`): every occupied slot with `last_seen < step -
     steps_to_live` (the key was seen at step s and not at s+1 .. s+steps_to_live) is freed
     and counted as `evicted`. An evicted key that shows up again is a *new* key: it goes
     through admission again and gets a fresh row (possibly the same slot), flagged in
     `new_rows`. `step` must not decrease between calls.
  2. Deduplication: the batch's keys are sorted and deduplicated (`U <= N` unique keys, in
     (hi, lo) order), so all occurrences of a key in a batch get the same row and every
     decision below is per unique key, independent of the order of the batch.
  3. Keys already in the table: `last_seen = step`, `freq += occurrences`.
  4. Admission of the other keys (their occurrences in this batch count):
       'none'       admit at once.
       'min_count'  (DeepRec CounterFilter) exact counts of not-yet-admitted keys are kept in
                    a separate pending-key hash table of `bloom_size` slots (same probing);
                    a key is admitted in the lookup where its count reaches `min_count`
                    (e.g. min_count=3: the 3rd occurrence gets a row, the first two get 0).
                    Counts are exact: no false positives. If the pending table has no free
                    slot in the key's window, the key cannot be counted and is rejected
                    (`pending_occupancy` in the stats shows the pressure). Pending entries
                    expire under the same `steps_to_live` rule; with `steps_to_live = 0` they
                    never do, so size `bloom_size` for the number of distinct rare ids.
       'bloom'      (DeepRec CBFFilter) a counting Bloom filter of `bloom_size` int32
                    counters and `bloom_hashes` hash functions (double hashing); each
                    occurrence of a not-yet-admitted key adds 1 to its counters, and the key is
                    admitted when the minimum of its counters reaches `min_count`. Memory is
                    fixed, but counters shared with other keys can only overestimate: a key may
                    be admitted *early* (false positive, never late); the rate grows with
                    (distinct pending keys * bloom_hashes / bloom_size). On admission the
                    key's estimate is subtracted from its counters (clamped at 0), so an
                    evicted key must earn its admission again; when the estimate was inflated
                    this also removes some counts of colliding keys (delaying them slightly).
     `min_count <= 1` admits everything, for every policy. Keys not (yet) admitted map to
     row 0 and count as `rejected`.
  5. Insertion of admitted keys into the first free slot of their window. Keys competing for
     one slot are resolved in rounds (lowest unique index, i.e. smallest key, wins; losers
     retry on the next free slot), so the result is deterministic. A key with no free slot in
     its window (table full, or a crowded window: `max_probes` exhausted) maps to row 0 and
     counts as `dropped`; under 'min_count' its count is kept so it is admitted once room
     appears. Newly filled slots are flagged in `stats['new_rows']`.
Cost per train lookup: O(N log N) for the dedup sort, O(U * max_probes) gathers per insert
round, plus O(capacity) elementwise work (eviction scan, occupancy count, `new_rows` mask).
Call it once per step per vocabulary with all the ids that share it (concatenate the
features' id arrays; `mask` drops padding), rather than once per feature.
Eval lookup (`train=False`): read-only; keys not in the table map to row 0. No eviction, no
admission, no counters touched; the state is returned unchanged.

Re-initialising rows (contract with the embedding table)
  A row handed to a new key may still hold the embedding (and optimizer slots) of the key
  evicted from it. After every train lookup the trainer must re-initialise the rows in
  `stats['new_rows']` (bool `[capacity]`) of the embedding table *and* of any per-row
  optimizer state (Adagrad accumulators, Adam moments — reset those to zeros) before
  they are read: `reset_rows(table, stats['new_rows'], initializer, rng)`. With a stacked
  table (`StackLayout`), pass `offset=layout.offsets[name]`. For large tables,
  `new_row_ids(stats['new_rows'], size=batch_size)` gives a fixed-size id list so only those
  rows are drawn.

Stats (returned by every lookup; jnp scalars a trainer can log; `SCALAR_STATS` names them)
  occupancy (fraction of the capacity - 1 usable slots in use), num_occupied, this lookup's
  admitted / evicted / rejected / dropped (distinct keys), unknown (occurrences mapped to row
  0, padding excluded), total_admitted / total_evicted / total_rejected / total_dropped
  (running totals kept in the state, int32), pending_occupancy ('min_count' only, else 0);
  plus the non-scalar `new_rows`.

Example
  >>> spec = DynamicVocabSpec(capacity=1 << 16, admission='min_count', min_count=2,
  ...                         steps_to_live=10_000)
  >>> state = init(spec)
  >>> step_fn = jax.jit(lookup, static_argnums=0, static_argnames='train', donate_argnums=1)
  >>> rows, state, stats = step_fn(spec, state, keys_from_int64(batch_ids), step)
  >>> table = reset_rows(table, stats['new_rows'], nn.initializers.normal(1e-4), rng)
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.data.encoding import split_uint64, stable_hash
from jaxrec.embedding.hashing import fmix32

ADMISSIONS = ("none", "min_count", "bloom")
SCALAR_STATS = (
    "occupancy", "num_occupied", "admitted", "evicted", "rejected", "dropped", "unknown",
    "total_admitted", "total_evicted", "total_rejected", "total_dropped", "pending_occupancy",
)

# Seeds that make the table, pending-table and Bloom hashes independent of one another.
_TABLE_SEED = np.uint32(0x9E3779B9)
_PENDING_SEED = np.uint32(0x7F4A7C15)
_BLOOM_SEED_A = np.uint32(0x85EBCA77)
_BLOOM_SEED_B = np.uint32(0xC2B2AE3D)


@dataclasses.dataclass(frozen=True)
class DynamicVocabSpec:
    """Static configuration of one dynamic vocabulary (hashable: a `jit` static argument).

    Attributes:
      capacity: rows of the embedding table it maps into; row 0 is reserved ("unknown"), so
        at most `capacity - 1` keys are held at once.
      admission: 'none' | 'min_count' (exact counts, DeepRec CounterFilter) | 'bloom'
        (counting Bloom filter, DeepRec CBFFilter).
      min_count: a key is admitted once seen this many times (counting the current batch).
      bloom_size: size of the admission structure: Bloom counters for 'bloom', pending-key
        slots for 'min_count' (unused for 'none').
      bloom_hashes: hash functions of the counting Bloom filter.
      steps_to_live: 0 = never evict; else a key unseen for this many steps is evicted.
      max_probes: linear-probing window of a key (capped at `capacity - 1`).
    """

    capacity: int
    admission: str = "none"
    min_count: int = 1
    bloom_size: int = 1 << 20
    bloom_hashes: int = 3
    steps_to_live: int = 0
    max_probes: int = 32

    def __post_init__(self):
        if self.capacity < 2:
            raise ValueError(f"capacity must be >= 2 (row 0 is reserved), got {self.capacity}")
        if self.capacity >= 2**31:
            raise ValueError(f"capacity must be < 2**31 (rows are int32), got {self.capacity}")
        if self.admission not in ADMISSIONS:
            raise ValueError(f"unknown admission {self.admission!r}; expected one of {ADMISSIONS}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")
        if self.admission == "min_count" and self.min_count > 1 and self.bloom_size < 2:
            raise ValueError(f"admission='min_count' needs bloom_size >= 2 pending slots, got {self.bloom_size}")
        if self.admission == "bloom" and self.bloom_size < 1:
            raise ValueError(f"admission='bloom' needs bloom_size >= 1, got {self.bloom_size}")
        if self.bloom_hashes < 1:
            raise ValueError(f"bloom_hashes must be >= 1, got {self.bloom_hashes}")
        if self.steps_to_live < 0:
            raise ValueError(f"steps_to_live must be >= 0, got {self.steps_to_live}")
        if self.max_probes < 1:
            raise ValueError(f"max_probes must be >= 1, got {self.max_probes}")

    @property
    def probes(self) -> int:
        return min(self.max_probes, self.capacity - 1)

    @property
    def counting(self) -> str:
        """The admission structure actually used: 'none' when min_count <= 1."""
        return "none" if self.min_count <= 1 else self.admission


class VocabState(NamedTuple):
    """All mutable state of a dynamic vocabulary: fixed-shape arrays (a pytree).

    Table (`[capacity]`, slot = row): key_hi / key_lo uint32 (the 64-bit key), occupied bool
    (slot 0 always False), last_seen int32 (train step the key was last seen), freq int32
    (occurrences since admission). Pending table for 'min_count' (`[bloom_size]`, else `[1]`):
    pending_hi / pending_lo / pending_used / pending_count / pending_last_seen. bloom int32
    counters (`[bloom_size]` for 'bloom', else `[1]`). Running totals (int32 scalars):
    total_admitted, total_evicted, total_rejected, total_dropped.
    """

    key_hi: jax.Array
    key_lo: jax.Array
    occupied: jax.Array
    last_seen: jax.Array
    freq: jax.Array
    pending_hi: jax.Array
    pending_lo: jax.Array
    pending_used: jax.Array
    pending_count: jax.Array
    pending_last_seen: jax.Array
    bloom: jax.Array
    total_admitted: jax.Array
    total_evicted: jax.Array
    total_rejected: jax.Array
    total_dropped: jax.Array


def init(spec: DynamicVocabSpec) -> VocabState:
    """An empty vocabulary for `spec`."""
    c = spec.capacity
    p = spec.bloom_size if spec.counting == "min_count" else 1
    b = spec.bloom_size if spec.counting == "bloom" else 1
    zero = lambda: jnp.zeros((), jnp.int32)  # distinct buffers, so the state can be donated
    return VocabState(
        key_hi=jnp.zeros(c, jnp.uint32), key_lo=jnp.zeros(c, jnp.uint32),
        occupied=jnp.zeros(c, bool), last_seen=jnp.zeros(c, jnp.int32), freq=jnp.zeros(c, jnp.int32),
        pending_hi=jnp.zeros(p, jnp.uint32), pending_lo=jnp.zeros(p, jnp.uint32),
        pending_used=jnp.zeros(p, bool), pending_count=jnp.zeros(p, jnp.int32),
        pending_last_seen=jnp.zeros(p, jnp.int32),
        bloom=jnp.zeros(b, jnp.int32),
        total_admitted=zero(), total_evicted=zero(), total_rejected=zero(), total_dropped=zero(),
    )


# ---------------------------------------------------------------------------------------------
# Host helpers: raw ids -> (hi, lo) uint32 keys.


def keys_from_int64(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer raw ids `[...]` (any int dtype, values beyond 2^31 fine) -> (hi, lo) uint32 keys."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iub":
        raise TypeError(f"keys_from_int64 needs integer ids, got {ids.dtype}; use keys_from_strings")
    return split_uint64(stable_hash(ids.reshape(-1)).reshape(ids.shape))


def keys_from_strings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """String raw ids `[...]` -> (hi, lo) uint32 keys (BLAKE2b of the text; 5 and "5" differ)."""
    values = np.asarray(values)
    flat = values.reshape(-1).astype(str)
    if flat.size == 0:
        return np.zeros(values.shape, np.uint32), np.zeros(values.shape, np.uint32)
    return split_uint64(stable_hash(flat).reshape(values.shape))


# ---------------------------------------------------------------------------------------------
# Hashing and the open-addressing primitives (device side, uint32 arithmetic only).


def _mix(hi: jax.Array, lo: jax.Array, seed: np.uint32) -> jax.Array:
    return fmix32(lo ^ fmix32(hi ^ seed))


def _probe_slots(hi: jax.Array, lo: jax.Array, n_slots: int, probes: int, seed: np.uint32) -> jax.Array:
    """Probe window of each key `[U]` -> slots `[U, probes]` int32 in [1, n_slots)."""
    m = np.uint32(n_slots - 1)
    start = _mix(hi, lo, seed) % m
    steps = jnp.arange(probes, dtype=jnp.uint32)
    # start + i < 2 * (n_slots - 1) < 2^32: no wrap-around before the modulo.
    return ((start[:, None] + steps[None, :]) % m + np.uint32(1)).astype(jnp.int32)


def _find(used, t_hi, t_lo, slots, hi, lo):
    """Full-window search: (found [U] bool, slot [U] int32, 0 where not found)."""
    match = used[slots] & (t_hi[slots] == hi[:, None]) & (t_lo[slots] == lo[:, None])
    found = match.any(axis=1)
    slot = jnp.take_along_axis(slots, jnp.argmax(match, axis=1)[:, None], axis=1)[:, 0]
    return found, jnp.where(found, slot, 0)


def _insert(used, slots, want):
    """Claims a free slot for every key with `want` `[U]`, in deterministic rounds.

    In each round every still-waiting key proposes the first free slot of its window; the
    lowest key index proposing a slot gets it; the others try again next round. Ends when no
    waiting key has a free slot in its window (at most U rounds; usually 1-3).
    Returns (used, slot [U] int32 (0 = not inserted), inserted [U] bool).
    """
    n, (u, _) = used.shape[0], slots.shape
    idx = jnp.arange(u, dtype=jnp.int32)

    def proposals(used, waiting):
        free = ~used[slots]
        can = waiting & free.any(axis=1)
        cand = jnp.take_along_axis(slots, jnp.argmax(free, axis=1)[:, None], axis=1)[:, 0]
        return can, jnp.where(can, cand, n)

    def cond(carry):
        used, _, waiting = carry
        return proposals(used, waiting)[0].any()

    def body(carry):
        used, slot, waiting = carry
        can, cand = proposals(used, waiting)
        claim = jnp.full(n, u, jnp.int32).at[cand].min(idx, mode="drop")
        win = can & (claim[jnp.minimum(cand, n - 1)] == idx)
        used = used.at[jnp.where(win, cand, n)].set(True, mode="drop")
        return used, jnp.where(win, cand, slot), waiting & ~win

    used, slot, _ = jax.lax.while_loop(cond, body, (used, jnp.zeros(u, jnp.int32), want))
    return used, slot, slot > 0


def _scatter_set(arr, slot, ok, values):
    """arr[slot[i]] = values[i] where ok[i] (slots of distinct keys are distinct)."""
    return arr.at[jnp.where(ok, slot, arr.shape[0])].set(values, mode="drop")


def _bloom_index(hi, lo, size: int, k: int) -> jax.Array:
    """k counter indices per key `[U]` -> `[U, k]` int32 (Kirsch-Mitzenmacher double hashing)."""
    a = _mix(hi, lo, _BLOOM_SEED_A)
    b = _mix(lo, hi, _BLOOM_SEED_B) | np.uint32(1)
    i = jnp.arange(k, dtype=jnp.uint32)
    return ((a[:, None] + i[None, :] * b[:, None]) % np.uint32(size)).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------
# Lookup.


def _as_keys(raw_ids) -> tuple[jax.Array, jax.Array]:
    def u32(x):
        dtype = getattr(x, "dtype", None)  # checked before jnp.asarray, which would truncate int64
        x = jnp.asarray(x)
        if dtype is None:
            dtype = x.dtype
        if dtype == jnp.uint32:
            return x
        if dtype == jnp.int32:
            return jax.lax.bitcast_convert_type(x, jnp.uint32)
        raise TypeError(f"key arrays must be uint32 or int32 (x64 is off), got {x.dtype}; "
                        "make keys with keys_from_int64 / keys_from_strings")

    if isinstance(raw_ids, (tuple, list)):
        if len(raw_ids) != 2:
            raise ValueError(f"keys must be a (hi, lo) pair, got {len(raw_ids)} arrays")
        hi, lo = u32(raw_ids[0]), u32(raw_ids[1])
        if hi.shape != lo.shape:
            raise ValueError(f"hi and lo key arrays differ in shape: {hi.shape} vs {lo.shape}")
        return hi, lo
    lo = u32(raw_ids)
    return jnp.zeros_like(lo), lo


def _dedup(hi, lo, valid):
    """Flat keys `[N]` -> unique keys `[N]` (first `num_unique` valid), inverse `[N]`, multiplicity."""
    n = hi.shape[0]
    order = jnp.lexsort((lo, hi, ~valid))  # valid keys first, then by (hi, lo)
    s_hi, s_lo, s_valid = hi[order], lo[order], valid[order]
    first = jnp.concatenate([jnp.ones(1, bool), (s_hi[1:] != s_hi[:-1]) | (s_lo[1:] != s_lo[:-1]) | (s_valid[1:] != s_valid[:-1])])
    uid = jnp.cumsum(first, dtype=jnp.int32) - 1
    inverse = jnp.zeros(n, jnp.int32).at[order].set(uid)
    u_hi = jnp.zeros(n, jnp.uint32).at[uid].set(s_hi)
    u_lo = jnp.zeros(n, jnp.uint32).at[uid].set(s_lo)
    u_valid = jnp.zeros(n, bool).at[uid].set(s_valid)
    mult = jnp.zeros(n, jnp.int32).at[uid].add(s_valid.astype(jnp.int32))
    return u_hi, u_lo, u_valid, mult, inverse


def _stats(spec, state, new_rows, unknown, admitted=0, evicted=0, rejected=0, dropped=0):
    num = state.occupied.sum(dtype=jnp.int32)
    i32 = lambda x: jnp.asarray(x, jnp.int32)
    pending = (state.pending_used.sum(dtype=jnp.int32) / (state.pending_used.shape[0] - 1)
               if spec.counting == "min_count" else 0.0)
    return {
        "occupancy": num.astype(jnp.float32) / (spec.capacity - 1),
        "num_occupied": num,
        "admitted": i32(admitted), "evicted": i32(evicted), "rejected": i32(rejected), "dropped": i32(dropped),
        "unknown": i32(unknown),
        "total_admitted": state.total_admitted, "total_evicted": state.total_evicted,
        "total_rejected": state.total_rejected, "total_dropped": state.total_dropped,
        "pending_occupancy": jnp.asarray(pending, jnp.float32),
        "new_rows": new_rows,
    }


def lookup(spec: DynamicVocabSpec, state: VocabState, raw_ids, step, train: bool = True, mask=None):
    """Maps keys to embedding rows, admitting / evicting on train lookups.

    Args:
      spec: the vocabulary's static spec (a `jit` static argument).
      state: its `VocabState` (donatable).
      raw_ids: keys `(hi, lo)`, two uint32 (or int32, bit-reinterpreted) arrays `[...]` from
        `keys_from_int64` / `keys_from_strings`; or one 32-bit array `[...]` read as `(0, x)`.
      step: global train step, int scalar (may be traced); must not decrease.
      train: True inserts admitted keys, updates last_seen / counts, evicts; False is
        read-only (unknown keys -> row 0, state returned unchanged). Static under `jit`.
      mask: optional bool `[...]`; False entries (padding) map to row 0 and are neither
        counted nor inserted.
    Returns:
      rows int32 `[...]` in [0, capacity), the new state, and the stats dict (module
      docstring; `stats['new_rows']` bool `[capacity]` marks rows to re-initialise).

    (One function of ~100 lines on purpose: it is one traced program whose phases, dedup,
    probe, admit, evict and insert, share a dozen intermediate arrays over the unique keys;
    split, each piece would take and return most of them.)
    """
    hi, lo = _as_keys(raw_ids)
    shape = hi.shape
    hi, lo = hi.reshape(-1), lo.reshape(-1)
    valid = jnp.ones(hi.shape, bool) if mask is None else jnp.broadcast_to(jnp.asarray(mask, bool), shape).reshape(-1)
    c = spec.capacity
    no_new = jnp.zeros(c, bool)
    if hi.shape[0] == 0:
        return jnp.zeros(shape, jnp.int32), state, _stats(spec, state, no_new, 0)

    if not train:  # read-only: no need to deduplicate
        slots = _probe_slots(hi, lo, c, spec.probes, _TABLE_SEED)
        found, slot = _find(state.occupied, state.key_hi, state.key_lo, slots, hi, lo)
        rows = jnp.where(found & valid, slot, 0)
        unknown = (valid & (rows == 0)).sum(dtype=jnp.int32)
        return rows.reshape(shape), state, _stats(spec, state, no_new, unknown)

    u_hi, u_lo, u_valid, mult, inverse = _dedup(hi, lo, valid)
    slots = _probe_slots(u_hi, u_lo, c, spec.probes, _TABLE_SEED)

    step = jnp.asarray(step, jnp.int32)
    s = state
    # 1. Eviction.
    n_evicted = jnp.zeros((), jnp.int32)
    if spec.steps_to_live > 0:
        horizon = step - spec.steps_to_live
        stale = s.occupied & (s.last_seen < horizon)
        n_evicted = stale.sum(dtype=jnp.int32)
        s = s._replace(occupied=s.occupied & ~stale)
        if spec.counting == "min_count":
            s = s._replace(pending_used=s.pending_used & ~(s.pending_last_seen < horizon))

    # 3. Keys already in the table.
    found, slot = _find(s.occupied, s.key_hi, s.key_lo, slots, u_hi, u_lo)
    found = found & u_valid
    cand = u_valid & ~found  # keys not (yet) admitted, seen in this batch

    # 4. Admission.
    counting = spec.counting
    if counting == "none":
        want, count = cand, mult
    elif counting == "min_count":
        p_slots = _probe_slots(u_hi, u_lo, s.pending_used.shape[0], min(spec.max_probes, s.pending_used.shape[0] - 1), _PENDING_SEED)
        p_found, p_slot = _find(s.pending_used, s.pending_hi, s.pending_lo, p_slots, u_hi, u_lo)
        p_found = p_found & cand
        count = jnp.where(p_found, s.pending_count[p_slot], 0) + mult
        want = cand & (count >= spec.min_count)
    else:  # bloom
        b_idx = _bloom_index(u_hi, u_lo, spec.bloom_size, spec.bloom_hashes)
        add = jnp.where(cand, mult, 0)
        bloom = s.bloom.at[b_idx.reshape(-1)].add(jnp.repeat(add, spec.bloom_hashes))
        count = bloom[b_idx].min(axis=1)
        want = cand & (count >= spec.min_count)

    # 5. Insertion.
    occupied, new_slot, inserted = _insert(s.occupied, slots, want)
    s = s._replace(
        occupied=occupied,
        key_hi=_scatter_set(s.key_hi, new_slot, inserted, u_hi),
        key_lo=_scatter_set(s.key_lo, new_slot, inserted, u_lo),
    )
    hit = found | inserted
    slot = jnp.where(found, slot, new_slot)
    s = s._replace(
        last_seen=_scatter_set(s.last_seen, slot, hit, jnp.broadcast_to(step, slot.shape)),
        freq=_scatter_set(s.freq, slot, hit, jnp.where(found, s.freq[slot] + mult, count)),
    )

    if counting == "min_count":
        # Admitted keys leave the pending table; the others keep (or get) their count there.
        keep = cand & ~inserted
        used = s.pending_used.at[jnp.where(p_found & inserted, p_slot, s.pending_used.shape[0])].set(False, mode="drop")
        used, p_new, p_ins = _insert(used, p_slots, keep & ~p_found)
        p_at = jnp.where(p_found, p_slot, p_new)
        p_ok = keep & (p_found | p_ins)
        s = s._replace(
            pending_used=used,
            pending_hi=_scatter_set(s.pending_hi, p_at, p_ok, u_hi),
            pending_lo=_scatter_set(s.pending_lo, p_at, p_ok, u_lo),
            pending_count=_scatter_set(s.pending_count, p_at, p_ok, count),
            pending_last_seen=_scatter_set(s.pending_last_seen, p_at, p_ok, jnp.broadcast_to(step, p_at.shape)),
        )
    elif counting == "bloom":
        sub = jnp.where(inserted, count, 0)
        bloom = jnp.maximum(bloom.at[b_idx.reshape(-1)].add(-jnp.repeat(sub, spec.bloom_hashes)), 0)
        s = s._replace(bloom=bloom)

    n_admitted = inserted.sum(dtype=jnp.int32)
    n_rejected = (cand & ~want).sum(dtype=jnp.int32)
    n_dropped = (want & ~inserted).sum(dtype=jnp.int32)
    s = s._replace(
        total_admitted=s.total_admitted + n_admitted, total_evicted=s.total_evicted + n_evicted,
        total_rejected=s.total_rejected + n_rejected, total_dropped=s.total_dropped + n_dropped,
    )
    rows = jnp.where(valid, jnp.where(hit, slot, 0)[inverse], 0)
    unknown = (valid & (rows == 0)).sum(dtype=jnp.int32)
    new_rows = no_new.at[jnp.where(inserted, new_slot, c)].set(True, mode="drop")
    return rows.reshape(shape), s, _stats(spec, s, new_rows, unknown, n_admitted, n_evicted, n_rejected, n_dropped)


# ---------------------------------------------------------------------------------------------
# Re-initialising rows handed to new keys.

Initializer = Callable[[jax.Array, tuple, jnp.dtype], jax.Array]


def new_row_ids(new_rows: jax.Array, size: int) -> jax.Array:
    """`stats['new_rows']` mask `[capacity]` -> int32 ids `[size]`, padded with 0 (ignored by
    `reset_rows`). At most the batch's number of ids are new per lookup, so `size = batch
    size` never truncates."""
    return jnp.nonzero(new_rows, size=size, fill_value=0)[0].astype(jnp.int32)


def reset_rows(table: jax.Array, rows: jax.Array, initializer: Initializer, rng: jax.Array, offset: int = 0) -> jax.Array:
    """Re-initialises the rows given to new keys.

    Args:
      table: `[R, ...]` array holding this vocabulary's `capacity` rows at `offset` (the
        embedding table, or a per-row optimizer slot: pass a zeros initializer for those).
      rows: bool mask `[capacity]` (`stats['new_rows']`: draws `capacity` fresh rows) or int
        ids `[K]` in [0, capacity) (`new_row_ids`: draws only K rows); id 0 is padding and is
        ignored, so row 0 is never touched.
      initializer: Flax-style `init(rng, shape, dtype)`.
      rng: PRNG key.
      offset: first row of this vocabulary in a stacked table (`StackLayout.offsets[name]`).
    Returns:
      the table with those rows replaced by fresh draws.
    """
    rows = jnp.asarray(rows)
    tail = table.shape[1:]
    if rows.dtype == jnp.bool_:
        cap = rows.shape[0]
        fresh = initializer(rng, (cap, *tail), table.dtype)
        keep = table[offset:offset + cap]
        m = (rows & (jnp.arange(cap) > 0)).reshape((cap,) + (1,) * len(tail))
        return table.at[offset:offset + cap].set(jnp.where(m, fresh, keep))
    fresh = initializer(rng, (rows.shape[0], *tail), table.dtype)
    return table.at[jnp.where(rows > 0, rows + offset, table.shape[0])].set(fresh, mode="drop")
