"""Compacted per-value storage of an AMTL-masked table: each value keeps only its first k_v dims.

AMTL (`jaxrec.embedding.amtl`) learns a size k_v in 0..D for every value v of a `[V, D]` table
and serves `e'_v = e_v * m_v` with the prefix mask `m_{v,j} = 1[j < k_v]` (0-based j). The
packed table stores exactly the kept entries, back to back:

    offsets[0] = 0,   offsets[v + 1] = offsets[v] + k_v        int64 `[V + 1]`
    data[offsets[v] + j] = table[v, j]       for j < k_v       `[sum_v k_v]` (the table's dtype)

and the packed lookup rebuilds the masked row from it:

    lookup(v)_j = data[offsets[v] + j]   if j < k_v = offsets[v + 1] - offsets[v],   else 0

which is `table[v] * m_v`, the masked lookup (`masked_lookup`), entry for entry. Its memory is

    bytes = itemsize * sum_v k_v + 8 * (V + 1)        (data + offsets; `PackedTable.nbytes`)

`pack` builds it from a trained full table and the learned sizes, `pack_stack` does so for a
stacked table of an `EmbeddingLayer` (tables without a learned size keep all D dims),
`save` / `load` write it as an uncompressed `.npz`, and `serve_packed` serves a model's
lookups from packed stacks (and turns the AMTL masks off: the zeros are in the storage).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Mapping, NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxrec.errors import ConfigError, DataError


class PackedTable(NamedTuple):
    """A `[V, D]` table whose value v keeps its first `k_v` dims (module docstring).

    offsets: int64 `[V + 1]`, offsets[0] = 0, non-decreasing, steps in 0..dim.
    data: `[offsets[-1]]`, every value's kept dims back to back.
    dim: D, the width a lookup returns.
    """

    offsets: np.ndarray
    data: np.ndarray
    dim: int

    @property
    def sizes(self) -> np.ndarray:
        """k_v of every value, `[V]` int64."""
        return np.diff(self.offsets)

    @property
    def nbytes(self) -> int:
        """Bytes held: data + offsets = itemsize * sum k_v + 8 (V + 1)."""
        return int(self.data.nbytes + self.offsets.nbytes)


def _check_sizes(sizes: np.ndarray, rows: int, dim: int) -> np.ndarray:
    sizes = np.asarray(sizes)
    if sizes.shape != (rows,):
        raise ConfigError(f"sizes has shape {sizes.shape}, expected ({rows},): one size per row of the table")
    if not np.issubdtype(sizes.dtype, np.integer):
        raise ConfigError(f"sizes must be integers, got {sizes.dtype}")
    if rows and (sizes.min() < 0 or sizes.max() > dim):
        raise ConfigError(f"sizes must lie in 0..{dim}, got {int(sizes.min())}..{int(sizes.max())}")
    return sizes.astype(np.int64)


def prefix_mask(sizes, dim: int):
    """`m[..., j] = 1[j < sizes[...]]`, `[..., dim]` (the table's dtype is left to the caller)."""
    return jnp.arange(dim) < jnp.asarray(sizes)[..., None]


def pack(table: np.ndarray, sizes: np.ndarray) -> PackedTable:
    """The packed storage of `table` `[V, D]` where value v keeps its first `sizes[v]` dims.

    Args:
      table: the trained full table `[V, D]`.
      sizes: k_v `[V]` integers in 0..D (AMTL's learned sizes, `amtl.learned_dims`).
    Returns:
      `PackedTable` with offsets = [0, cumsum(k)] and data = the kept entries, row-major.
    """
    table = np.asarray(table)
    if table.ndim != 2:
        raise ConfigError(f"table must be [V, D], got shape {table.shape}")
    sizes = _check_sizes(sizes, table.shape[0], table.shape[1])
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    keep = np.arange(table.shape[1])[None, :] < sizes[:, None]
    return PackedTable(offsets, np.ascontiguousarray(table[keep]), int(table.shape[1]))  # row-major: v's dims, then v+1's


def packed_lookup(packed: PackedTable, ids) -> jnp.ndarray:
    """Rows `[..., D]` of ids `[...]` served from the packed storage: the kept dims, zeros beyond
    (module docstring); equal to `masked_lookup` of the table it was packed from."""
    ids = jnp.asarray(ids)
    offsets = jnp.asarray(packed.offsets)
    start, size = offsets[ids], offsets[ids + 1] - offsets[ids]
    j = jnp.arange(packed.dim)
    keep = j < size[..., None]
    if packed.data.size == 0:  # every size is 0
        return jnp.zeros((*ids.shape, packed.dim), packed.data.dtype)
    data = jnp.asarray(packed.data)
    rows = jnp.take(data, jnp.where(keep, start[..., None] + j, 0), axis=0)
    return jnp.where(keep, rows, jnp.zeros((), data.dtype))


def masked_lookup(table, sizes, ids) -> jnp.ndarray:
    """The reference: `table[ids] * m` with AMTL's prefix mask of `sizes[ids]`, `[..., D]`."""
    table = jnp.asarray(table)
    rows = jnp.take(table, jnp.asarray(ids), axis=0)
    return rows * prefix_mask(jnp.asarray(sizes)[jnp.asarray(ids)], table.shape[1]).astype(table.dtype)


def unpack(packed: PackedTable) -> np.ndarray:
    """The masked full table `[V, D]` (zeros beyond each k_v)."""
    return np.asarray(packed_lookup(packed, np.arange(len(packed.offsets) - 1)))


def save(path: str | Path, packed: PackedTable) -> int:
    """Writes `packed` to `path` (an uncompressed .npz: offsets, data, dim); returns the file's size
    in bytes (the arrays plus the .npz headers)."""
    path = Path(path)
    with open(path, "wb") as f:  # a file object: numpy appends no '.npz'
        np.savez(f, offsets=packed.offsets, data=packed.data, dim=np.int64(packed.dim))
    return path.stat().st_size


def load(path: str | Path) -> PackedTable:
    """The `PackedTable` `save` wrote to `path`, checked for consistency."""
    with np.load(path) as z:
        missing = {"offsets", "data", "dim"} - set(z.files)
        if missing:
            raise DataError(f"{path}: not a packed table (missing {sorted(missing)})")
        packed = PackedTable(z["offsets"].astype(np.int64), z["data"], int(z["dim"]))
    steps = np.diff(packed.offsets)
    if packed.offsets[0] != 0 or packed.offsets[-1] != packed.data.size or (steps.size and (steps.min() < 0 or steps.max() > packed.dim)):
        raise DataError(f"{path}: offsets do not describe data of {packed.data.size} entries with sizes in 0..{packed.dim}")
    return packed


def pack_stack(stacked: np.ndarray, layout, sizes: Mapping[str, np.ndarray]) -> PackedTable:
    """Packs an `EmbeddingLayer` stack `[sum_t V_t, D]` (`layout`: its `StackLayout`): table t's
    rows keep `sizes[t]` dims (`[V_t]`), tables missing from `sizes` keep all D."""
    stacked = np.asarray(stacked)
    unknown = set(sizes) - set(layout.names)
    if unknown:
        raise ConfigError(f"sizes for {sorted(unknown)}: not tables of this stack ({list(layout.names)})")
    per_row = [np.asarray(sizes[t]) if t in sizes else np.full(n, stacked.shape[1]) for t, n in zip(layout.names, layout.sizes)]
    for t, n, k in zip(layout.names, layout.sizes, per_row):
        if k.shape != (n,):
            raise ConfigError(f"sizes[{t!r}] has shape {k.shape}, expected ({n},)")
    return pack(stacked, np.concatenate(per_row).astype(np.int64))


@contextlib.contextmanager
def serve_packed(packs: Mapping[tuple[str, ...], PackedTable]):
    """Within the block, models traced serve every lookup of a stack in `packs` (`{layer path +
    (stack,): PackedTable}`, the keys of `Experiment.layouts`) from its packed storage, and
    AMTL masks are all-ones (the packed rows already hold the zeros). Only traces made inside
    the block are affected: call it around a fresh jit's first call."""
    import flax.linen as nn

    from jaxrec.embedding.amtl import AMTLMask
    from jaxrec.embedding.layer import EmbeddingLayer

    used = set()

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, EmbeddingLayer) and context.method_name == "lookup":
            stack = kwargs.get("stack", args[2] if len(args) > 2 else "stacked")
            key = tuple(module.path) + (stack,)
            if key in packs:
                used.add(key)
                return packed_lookup(packs[key], args[1] if len(args) > 1 else kwargs["ids"])
        if isinstance(module, AMTLMask) and context.method_name in ("mask_and_size", "__call__"):
            u = args[0] if args else kwargs["u"]
            ones = jnp.ones((*u.shape, module.dim), jnp.float32)
            return (ones, jnp.full(u.shape, float(module.dim))) if context.method_name == "mask_and_size" else ones
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        yield used
