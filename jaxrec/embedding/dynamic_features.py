"""Dynamic-vocabulary features in a train step: raw keys in the batch -> embedding rows.

A `Categorical(encoding='dynamic')` feature reaches the step as 64-bit keys, uint32 `[B, 2]`
(hi, lo; `jaxrec.data.encoding.dynamic_keys`; (0, 0) = missing). Before the model runs,
`map_batch` sends the keys of all features that read one table (a feature's own table, or
its `group`) through that table's fixed-capacity hash table in one lookup
(`jaxrec.embedding.dynamic_vocab.lookup`) and puts the rows, int32 `[B]`, in their place,
so models never see keys and need no change. A train lookup admits and evicts (RecIS /
DeepRec-style feature admission and eviction); an eval lookup is read-only (unknown keys ->
row 0). The vocabularies are part of the model: a prediction needs them, so the trainer
keeps them in the TrainState as `params['vocab']` (not trained by gradients; checkpointed
with the parameters, replicated on a mesh).

A row handed to a new key may still hold the embedding and the optimizer slots of the key
evicted from it: `reset_new_rows` redraws it from its table's initializer and sets its
slots back to the optimizer's initial values, in the same step, before the model reads it.
Its cost is the number of keys of the step, not the table size (only the vocabulary's own
eviction scan is O(capacity); see `dynamic_vocab`).

Metrics per table and step (`METRICS`): `vocab/<table>/admitted`, `evicted`, `rejected`,
`dropped` (distinct keys) and `unknown` (occurrences mapped to row 0) are counts; the
`vocab/<table>/occupancy` gauge is the fraction of usable rows in use.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from flax import traverse_util

from jaxrec.data.features import Feature, is_embedded
from jaxrec.embedding import dynamic_vocab as dv
from jaxrec.embedding.layer import draw_rows
from jaxrec.embedding.plan import StackLayout, stack_path_in
from jaxrec.embedding.specs import table_name
from jaxrec.errors import ConfigError

METRICS = ("occupancy", "admitted", "evicted", "rejected", "dropped", "unknown")
# {table name: (its vocabulary's spec, the features that read it through that vocabulary)}
VocabTables = Mapping[str, tuple[dv.DynamicVocabSpec, tuple[str, ...]]]


def is_dynamic(feature: Feature) -> bool:
    return getattr(feature, "encoding", None) == "dynamic"


def vocab_tables(features: tuple[Feature, ...]) -> dict[str, tuple[dv.DynamicVocabSpec, tuple[str, ...]]]:
    """The dynamic vocabularies the features need, one per table (empty if none is dynamic).

    Raises ConfigError when features sharing a table disagree (one dynamic, one not; or two
    dynamic ones with different capacity / admission / eviction settings).
    """
    out: dict[str, tuple[dv.DynamicVocabSpec, tuple[str, ...]]] = {}
    for f in features:
        if not is_dynamic(f):
            continue
        try:
            spec = dv.DynamicVocabSpec(capacity=int(f.vocab_size or 0), admission=f.admission, min_count=int(f.min_count),
                                       bloom_size=int(f.bloom_size), steps_to_live=int(f.steps_to_live))
        except ValueError as e:
            raise ConfigError(f"feature {f.name!r} (encoding='dynamic'): {e}") from None
        t = table_name(f)
        if t in out and out[t][0] != spec:
            raise ConfigError(f"features {out[t][1]} and {f.name!r} share table {t!r} but not their dynamic-vocabulary "
                              f"settings ({out[t][0]} vs {spec}); give them the same vocab_size, min_count, admission, "
                              "bloom_size and steps_to_live")
        out[t] = (spec, (out[t][1] if t in out else ()) + (f.name,))
    for f in features:
        if is_embedded(f) and not is_dynamic(f) and table_name(f) in out:
            raise ConfigError(f"feature {f.name!r} reads table {table_name(f)!r} with encoding={getattr(f, 'encoding', None)!r}, "
                              f"but {out[table_name(f)][1]} read it with encoding='dynamic'; a table has one encoding")
    return out


def init_vocabs(tables: VocabTables) -> dict[str, dv.VocabState]:
    """Empty vocabularies `{table: VocabState}`."""
    return {t: dv.init(spec) for t, (spec, _) in tables.items()}


def _keys(batch: Mapping[str, jax.Array], name: str) -> jax.Array:
    k = batch[name]
    if k.ndim < 1 or k.shape[-1] != 2 or k.dtype not in (jnp.uint32, jnp.int32):
        raise ValueError(f"feature {name!r} has encoding='dynamic': the batch must hold its keys as uint32 [..., 2] "
                         f"(jaxrec.data.encoding.dynamic_keys), got {k.dtype}{list(k.shape)}")
    return k


def placeholder_rows(features: tuple[Feature, ...], batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch with every dynamic feature's keys `[..., 2]` replaced by row 0 `[...]`: what a
    model sees, for `init` and shape tracing, without a vocabulary."""
    out = dict(batch)
    for f in features:
        if is_dynamic(f) and f.name in out:
            out[f.name] = jnp.zeros(_keys(out, f.name).shape[:-1], jnp.int32)
    return out


def map_batch(tables: VocabTables, vocabs: Mapping[str, dv.VocabState], batch: Mapping[str, jax.Array], step,
              train: bool) -> tuple[dict, dict, dict, dict]:
    """Keys -> rows for every dynamic feature of a batch.

    Args:
      tables: `vocab_tables(features)`.
      vocabs: `{table: VocabState}`.
      batch: the batch; dynamic features hold keys uint32 `[B, 2]`.
      step: global train step (int scalar, may be traced); drives eviction.
      train: admit / evict / count (True) or read only (False). Static.
    Returns:
      (batch with those features as rows int32 `[B]`, new vocabs, metrics
      `{'vocab/<table>/<stat>': scalar}`, new rows `{table: int32 [N_t]}`: the rows handed to
      new keys in this lookup, 0-padded to the N_t keys looked up (empty dict if not `train`)).
    """
    batch, new_vocabs, metrics, new_rows = dict(batch), {}, {}, {}
    for t, (spec, names) in tables.items():
        parts = [_keys(batch, n) for n in names]
        keys = jnp.concatenate([p.reshape(-1, 2) for p in parts]).astype(jnp.uint32)
        mask = (keys[:, 0] != 0) | (keys[:, 1] != 0)
        rows, new_vocabs[t], stats = dv.lookup(spec, vocabs[t], (keys[:, 0], keys[:, 1]), step, train=train, mask=mask)
        start = 0
        for n, p in zip(names, parts):
            size = p.size // 2
            batch[n] = rows[start:start + size].reshape(p.shape[:-1])
            start += size
        if train:
            metrics.update({f"vocab/{t}/{k}": stats[k] for k in METRICS})
            new_rows[t] = dv.new_row_ids(stats["new_rows"], size=keys.shape[0])
    return batch, new_vocabs, metrics, new_rows


def _str_path(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def reset_new_rows(new_rows: Mapping[str, jax.Array], tables: Any, opt_state: Any, init_opt: Callable[[Any], Any],
                   layouts: Mapping[tuple[str, ...], StackLayout], rng: jax.Array, sharding=None) -> tuple[Any, Any]:
    """Fresh embedding rows and optimizer slots for the rows handed to new keys.

    Args:
      new_rows: `{table: int32 [N]}` from `map_batch` (0 = padding, never touched).
      tables: the EMBEDDING collection `{layer...: {stack: [V, D]}}` (physical rows on a mesh).
      opt_state: the tables' optimizer state (optax over the tables, or row-wise; any tree).
      init_opt: the optimizer's init over such a collection; it is applied to one-row tables
        to learn each slot's initial row (zeros for Adam moments, the initial accumulator for
        Adagrad ...).
      layouts: `{stack path: StackLayout}` (`EmbeddingPlan.layouts`), with TableSpecs.
      rng: PRNG key for the redrawn rows.
      sharding: `ShardedEmbeddings` when the tables are row-sharded (ids -> physical rows).
    Returns:
      (tables, opt_state) with only those rows changed.
    """
    # Stacked row ids to reset per stack, padding -> out of range (dropped by the scatters).
    targets: dict[tuple[str, ...], tuple[jax.Array, list]] = {}
    for stack, layout in layouts.items():
        specs = {s.name: s for s in layout.specs}
        ids, draws = [], []
        for t in new_rows:
            if t not in layout.offsets:
                continue
            r = new_rows[t]
            ids.append(jnp.where(r > 0, r + layout.offsets[t], layout.total_rows))
            draws.append((specs[t], r.shape[0]))
        if ids:
            ids = jnp.concatenate(ids)
            if sharding is not None:
                ids = sharding.physical_ids(ids, layout)
            targets[stack] = (ids, draws)

    flat = traverse_util.flatten_dict(tables)
    keys = jax.random.split(rng, max(len(targets), 1))
    for k, (stack, (ids, draws)) in zip(keys, targets.items()):
        fresh = jnp.concatenate([draw_rows(s, kk, n) for (s, n), kk in zip(draws, jax.random.split(k, len(draws)))])
        flat[stack] = flat[stack].at[ids].set(fresh.astype(flat[stack].dtype), mode="drop")

    one_row = jax.tree.map(lambda x: jnp.zeros((1,) + x.shape[1:], x.dtype), tables)
    initial = init_opt(one_row)  # the same tree as opt_state, with one-row slots

    def reset(path, x, init):
        stack = stack_path_in(_str_path(path), targets)  # the stack this optimizer leaf belongs to
        if stack is None or getattr(x, "ndim", 0) < 1:
            return x
        layout = layouts[stack]
        if x.shape[0] != layout.stored_rows(None if sharding is None else sharding.rows_for(layout)):
            return x
        ids = targets[stack][0]
        return x.at[ids].set(jnp.broadcast_to(init[0], ids.shape + x.shape[1:]), mode="drop")

    return traverse_util.unflatten_dict(flat), jax.tree_util.tree_map_with_path(reset, opt_state, initial)


def prepare_batch(tables: VocabTables, params: Mapping[str, Any], opt_state: Mapping[str, Any], batch: Mapping[str, jax.Array],
                  step, init_opt: Callable[[Any], Any], layouts: Mapping[tuple[str, ...], StackLayout], rng: jax.Array,
                  sharding=None) -> tuple[dict, dict, dict, dict]:
    """A train step's dynamic-vocabulary glue: keys -> rows (admitting / evicting), then fresh
    rows and optimizer slots for the rows handed to new keys (`map_batch`, `reset_new_rows`).

    Args:
      tables: `vocab_tables(features)`.
      params, opt_state: the TrainState's (`params['vocab']`, `['sparse']`; `opt_state['sparse']`).
      batch, step: the batch (keys) and the global step.
      init_opt, layouts, rng, sharding: as for `reset_new_rows`.
    Returns:
      (params, opt_state, batch with rows, metrics `{'vocab/<table>/<stat>': scalar}`).
    """
    batch, vocabs, metrics, new_rows = map_batch(tables, params["vocab"], batch, step, train=True)
    sparse, sparse_opt = reset_new_rows(new_rows, params["sparse"], opt_state["sparse"], init_opt, layouts, rng, sharding)
    return {**params, "sparse": sparse, "vocab": vocabs}, {**opt_state, "sparse": sparse_opt}, batch, metrics
