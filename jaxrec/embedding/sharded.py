"""Row-sharded embedding tables and their lookup over a `(data, model)` mesh.

A table `[V, D]` too large for one device is split by rows over *all* `S = data * model`
devices of the mesh (both axes; shard `s = d * model + m` lives on the device at mesh
position `(d, m)`, the order of `PartitionSpec(('data', 'model'))`). `V` is padded up to
`S * R` rows, `R = ceil(V / S)` rows per shard, and the padding rows are zeros that no id
reaches. Two placements, chosen by `RowSharding.kind`:

* `'contiguous'`: shard `s` holds logical rows `[s*R, (s+1)*R)`. Simple, and a logical
  range stays on one device; but frequency-sorted vocabularies (ids ordered by count, as
  `jaxrec.data.encoding` produces) put all the hot rows on the first shard.
* `'mod'`: row `r` lives on shard `r % S` at local index `r // S` (round robin), which
  spreads hot, low ids evenly over the shards. Usually the better default.

The sharded array is stored in *physical* order: `[S*R, D]`, shard `s` being rows
`[s*R, (s+1)*R)` of it, placed with `NamedSharding(mesh, P(('data', 'model')))`.
`shard_table` / `unshard_table` convert between logical and physical tables (exact
inverses; checkpoints store the logical table so they restore on any mesh), and
`RowSharding.physical_index` maps logical ids to physical rows.

Lookup (`sharded_lookup`, `sharded_bag_lookup`) runs under `jax.shard_map`. The batch is
split over `data` (each `data` slice replicated over `model`); the table over all devices.
On every device:

1. `all_gather(ids, 'data')`: the ids of the whole global batch `[B, F]`;
2. a local gather of the rows this shard owns; rows owned elsewhere (and ids outside
   `[0, V)`) read as zeros. (Bags are pooled here, before any communication: pooling is
   linear, so pooling the partial rows and then summing equals summing and then pooling,
   and the traffic shrinks by the bag length `L`.)
3. `psum_scatter(partial, 'data')`: sums the partial `[B, F, D]` results over the `data`
   axis and leaves each device only its own batch slice `[B/data, F, D]`;
4. `psum(., 'model')`: completes the sum over the `model` axis, so every device of a
   `data` slice ends with the same (replicated) rows.

Every id is owned by exactly one shard, so the sum over all shards adds each row to zeros:
the result equals `table[ids]` exactly. The backward pass is the transpose: the incoming
`[B/data, F, D]` cotangent is passed through the `model` psum (no communication),
all-gathered over `data` (transpose of the reduce-scatter) and scatter-added into the rows
each shard owns, giving the gradient of the sharded table in place, already sharded.

Communication per step, per device (ring algorithms; `B` global batch, `F` ids per example,
`D` width; floats unless noted):

* ids: `all_gather` over `data`: `(data-1)/data * B*F` int32 — `1/D` of the rest;
* forward: reduce-scatter over `data`: `(data-1)/data * B*F*D`, then all-reduce over
  `model` of the already-scattered slice: `2 (model-1)/model * B*F*D / data`;
* backward: all-gather over `data`: `(data-1)/data * B*F*D`.

Reduce-scatter first is the cheap order: a `psum` over both axes of the full `[B, F, D]`
followed by slicing would move `2 (S-1)/S * B*F*D`, about twice as much. For bags, `F*D`
becomes `D` (pooled before the reduction). The volume does not depend on how many
distinct rows the batch touches; an all-to-all scheme (send each id to its owner, rows
back) moves about `2 B*F*D / data` instead, which wins on large `data` axes, but needs
per-shard capacities (dynamic sizes padded to a static bound) — a later refinement.

All functions are pure and work under `jit` and `grad`; `mesh` and `kind` are static.
"""

from __future__ import annotations

import dataclasses
import math
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrec.mesh import AXES, DATA, MODEL
from jaxrec.embedding.layer import pool
from jaxrec.embedding.specs import SHARDINGS as KINDS, Sharding as Kind  # the one list of row placements


@dataclasses.dataclass(frozen=True)
class RowSharding:
    """How the rows of one table are placed on `num_shards` shards.

    Attributes:
      kind: `'mod'` (row r on shard r % S at local r // S) or `'contiguous'` (shard s holds
        rows [s*R, (s+1)*R), R = ceil(V / S)).
      num_shards: S, the number of shards (the mesh size for `shard_table`).
    """

    kind: Kind
    num_shards: int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"RowSharding.kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.num_shards, (int, np.integer)) or self.num_shards < 1:
            raise ValueError(f"RowSharding.num_shards must be a positive int, got {self.num_shards!r}")

    def rows_per_shard(self, vocab_size: int) -> int:
        """R = ceil(V / S) (at least 1)."""
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}")
        return max(1, math.ceil(vocab_size / self.num_shards))

    def padded_rows(self, vocab_size: int) -> int:
        """S * R, the rows of the physical (sharded) table."""
        return self.num_shards * self.rows_per_shard(vocab_size)

    def shard_of(self, ids, vocab_size: int):
        """The shard owning each logical id."""
        if self.kind == "mod":
            return ids % self.num_shards
        return ids // self.rows_per_shard(vocab_size)

    def local_index(self, ids, vocab_size: int):
        """Row of each logical id inside its owner shard."""
        if self.kind == "mod":
            return ids // self.num_shards
        return ids % self.rows_per_shard(vocab_size)

    def physical_index(self, ids, vocab_size: int):
        """Row of each logical id in the physical `[S*R, D]` table."""
        return self.shard_of(ids, vocab_size) * self.rows_per_shard(vocab_size) + self.local_index(ids, vocab_size)

    def to_physical(self, table):
        """Logical `[V, ...]` -> physical `[S*R, ...]` (zero padding), numpy or jax in, same out."""
        xp = np if isinstance(table, np.ndarray) else jnp
        v = table.shape[0]
        r, s = self.rows_per_shard(v), self.num_shards
        padded = xp.pad(table, [(0, s * r - v)] + [(0, 0)] * (table.ndim - 1))
        if self.kind == "contiguous":
            return padded
        rest = table.shape[1:]
        return xp.swapaxes(padded.reshape((r, s) + rest), 0, 1).reshape((s * r,) + rest)

    def to_logical(self, physical, vocab_size: int):
        """Physical `[S*R, ...]` -> logical `[V, ...]`; exact inverse of `to_physical`."""
        xp = np if isinstance(physical, np.ndarray) else jnp
        r, s = self.rows_per_shard(vocab_size), self.num_shards
        if physical.shape[0] != s * r:
            raise ValueError(f"sharded table has {physical.shape[0]} rows; {self} of vocab_size={vocab_size} "
                             f"needs S*R = {s}*{r} = {s * r}")
        if self.kind == "contiguous":
            return physical[:vocab_size]
        rest = physical.shape[1:]
        return xp.swapaxes(physical.reshape((s, r) + rest), 0, 1).reshape((s * r,) + rest)[:vocab_size]


def _resolve(kind: Kind | RowSharding, num_shards: int | None) -> RowSharding:
    if isinstance(kind, RowSharding):
        if num_shards is not None and kind.num_shards != num_shards:
            raise ValueError(f"{kind} does not match the {num_shards} devices of the mesh")
        return kind
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or a RowSharding, got {kind!r}")
    if num_shards is None:
        raise ValueError(f"kind={kind!r} needs the number of shards: pass num_shards= or RowSharding({kind!r}, S)")
    return RowSharding(kind, int(num_shards))


def table_sharding(mesh: Mesh) -> NamedSharding:
    """Rows (dim 0) split over all devices, `('data', 'model')`; the width replicated."""
    return NamedSharding(mesh, P(AXES))


def shard_table(table, mesh: Mesh, kind: Kind | RowSharding = "mod") -> jax.Array:
    """Logical table `[V, D]` (numpy or jax) -> physical `[S*R, D]` sharded over all devices.

    A numpy table is permuted on the host and each device receives only its own rows.
    """
    rs = _resolve(kind, mesh.size)
    return jax.device_put(rs.to_physical(table), table_sharding(mesh))


def unshard_table(sharded, vocab_size: int, kind: Kind | RowSharding = "mod", num_shards: int | None = None):
    """Physical `[S*R, D]` (numpy or jax, e.g. a gradient) -> logical `[V, D]`; inverse of `shard_table`.

    S comes from `kind` if it is a `RowSharding`, else from `num_shards`, else from the
    array's `NamedSharding` mesh (a `'contiguous'` table needs none: it is a prefix).
    """
    if isinstance(kind, str) and num_shards is None:
        sharding = None
        try:
            sharding = sharded.sharding
        except Exception:  # noqa: BLE001 - numpy arrays and tracers have no concrete sharding
            pass
        if isinstance(sharding, NamedSharding) and not sharding.mesh.empty:
            num_shards = sharding.mesh.size
        elif kind == "contiguous":
            if sharded.shape[0] < vocab_size:
                raise ValueError(f"sharded table has {sharded.shape[0]} rows < vocab_size={vocab_size}")
            return sharded[:vocab_size]
    return _resolve(kind, num_shards).to_logical(sharded, vocab_size)


def _check(mesh: Mesh, table, batch: int, vocab_size: int, rs: RowSharding) -> None:
    if tuple(mesh.axis_names) != AXES:
        raise ValueError(f"mesh axes must be {AXES} (jaxrec.mesh.make_mesh), got {mesh.axis_names}")
    if table.shape[0] != rs.padded_rows(vocab_size):
        raise ValueError(f"sharded table has {table.shape[0]} rows; vocab_size={vocab_size} on {rs.num_shards} "
                         f"shards needs {rs.padded_rows(vocab_size)} (use shard_table)")
    if batch % mesh.shape[DATA]:
        raise ValueError(f"batch size {batch} is not divisible by the 'data' axis size {mesh.shape[DATA]}")


def _local_rows(table_local: jax.Array, ids: jax.Array, rs: RowSharding, vocab_size: int) -> jax.Array:
    """Rows of `ids` that this shard owns; zeros for ids owned elsewhere or outside [0, V)."""
    me = jax.lax.axis_index(AXES)  # = d * model + m, the shard order of P(('data', 'model'))
    mine = (rs.shard_of(ids, vocab_size) == me) & (ids >= 0) & (ids < vocab_size)
    local = jnp.where(mine, rs.local_index(ids, vocab_size), 0)
    rows = jnp.take(table_local, local, axis=0, mode="clip")
    mask = mine.reshape(mine.shape + (1,) * (table_local.ndim - 1))
    return jnp.where(mask, rows, jnp.zeros((), rows.dtype))


def _combine(partial: jax.Array) -> jax.Array:
    """Sum partial results over all shards, keeping this device's batch slice (see module doc)."""
    mine = jax.lax.psum_scatter(partial, DATA, scatter_dimension=0, tiled=True)
    return jax.lax.psum(mine, MODEL)


def sharded_lookup(mesh: Mesh, sharded_table: jax.Array, ids: jax.Array, vocab_size: int,
                   kind: Kind | RowSharding = "mod") -> jax.Array:
    """`table[ids]` from a row-sharded table: ids `[B, ...]` -> `[B, ..., D]`.

    Args:
      mesh: the `(data, model)` mesh the table is sharded over (`shard_table`).
      sharded_table: physical `[S*R, D]` table.
      ids: int ids in `[0, V)`, e.g. `[B, F]`, batch split over `data` (B divisible by the
        `data` size); ids outside `[0, V)` read as zeros.
      vocab_size: V, the logical rows.
      kind: the placement used by `shard_table`.

    Returns:
      `[B, ..., D]`, batch split over `data`, replicated over `model`. Differentiable in the
      table: the gradient is the sharded (physical) table gradient.
    """
    rs = _resolve(kind, mesh.size)
    _check(mesh, sharded_table, ids.shape[0], vocab_size, rs)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"ids must be integers, got {ids.dtype}")

    def body(table_local, ids_local):
        all_ids = jax.lax.all_gather(ids_local, DATA, axis=0, tiled=True)
        return _combine(_local_rows(table_local, all_ids, rs, vocab_size))

    return jax.shard_map(body, mesh=mesh, in_specs=(P(AXES), P(DATA)), out_specs=P(DATA))(sharded_table, ids)


def sharded_bag_lookup(mesh: Mesh, sharded_table: jax.Array, ids: jax.Array, lengths: jax.Array, vocab_size: int,
                       kind: Kind | RowSharding = "mod", combiner: str = "mean") -> jax.Array:
    """Pooled multi-hot bags from a row-sharded table: ids `[B, L]`, lengths `[B]` -> `[B, D]`.

    Equals `pool(table[ids], lengths, combiner)` (`jaxrec.embedding.layer.pool`: masked sum
    or mean over the first `lengths[b]` ids). Each shard pools the rows it owns before the
    reduction, so the traffic is that of `[B, D]`, not `[B, L, D]`. Same layout and
    gradient contract as `sharded_lookup`.
    """
    rs = _resolve(kind, mesh.size)
    if ids.ndim != 2 or lengths.shape != ids.shape[:1]:
        raise ValueError(f"expected ids [B, L] and lengths [B], got {ids.shape} and {lengths.shape}")
    if combiner not in ("mean", "sum"):
        raise ValueError(f"unknown combiner {combiner!r}; expected 'mean' or 'sum'")
    _check(mesh, sharded_table, ids.shape[0], vocab_size, rs)

    def body(table_local, ids_local, lengths_local):
        all_ids = jax.lax.all_gather(ids_local, DATA, axis=0, tiled=True)
        all_lengths = jax.lax.all_gather(lengths_local, DATA, axis=0, tiled=True)
        rows = _local_rows(table_local, all_ids, rs, vocab_size)
        return _combine(pool(rows, all_lengths, combiner))

    return jax.shard_map(body, mesh=mesh, in_specs=(P(AXES), P(DATA), P(DATA)),
                         out_specs=P(DATA))(sharded_table, ids, lengths)


__all__ = ["KINDS", "RowSharding", "shard_table", "sharded_bag_lookup", "sharded_lookup", "table_sharding",
                "unshard_table"]
