"""Embedding bag: pooled lookup of ragged id lists, with a Pallas kernel and a sparse backward.

The op
------
``embedding_bag(table, ids, lengths, combiner)`` pools, for every bag ``b``, the table rows
named by its first ``lengths[b]`` ids::

    out[b] = sum_{l < lengths[b]} table[ids[b, l]]            combiner='sum'
    out[b] = that sum / max(lengths[b], 1)                     combiner='mean'

It is the multi-hot ("sequence") feature lookup of a CTR model (a user's clicked items, a
query's terms) and what ``torch.nn.EmbeddingBag`` / TF's ``embedding_lookup_sparse`` compute.

Layout
------
* ``table``  ``[V, D]`` float (float32 or bfloat16); accumulation is always float32 and the
  result is cast back to ``table.dtype``.
* ``ids``    ``[B, L]`` int32, bags padded to a common length ``L``.
* ``lengths`` ``[B]`` int32. Positions ``l >= lengths[b]`` are ignored whatever they hold
  (padding may be 0, -1 or garbage); an empty bag pools to zeros; 'mean' divides by
  ``max(length, 1)``. Lengths are clipped to ``[0, L]`` inside compiled code (see "Invalid
  input" below).
* result ``[B, D]`` in ``table.dtype``.

Three pieces, one semantics (ARCHITECTURE.md, "Reference before kernel")
-------------------------------------------------------------------------
``embedding_bag_reference``  plain ``jax.numpy``: mask, ``take``, masked sum. This is the
    definition; the tests hold the kernels to it (values and gradients).
``_gpu_forward``  the Pallas kernel in its Triton-lowerable form. The grid is one axis over
    blocks of ``block_bags`` bags (B is padded up to a multiple of it with empty bags). Each
    program keeps a ``[block_bags, Dp]`` float32 accumulator (``Dp`` = D rounded up to a power
    of two, as Triton needs) and walks the L axis in tiles of ``block_len`` positions
    (``ceil(L / block_len)`` steps, the last one masked): per step it loads the
    ``[block_bags, block_len]`` id tile (masked by ``l < length``), then gathers the
    ``[block_bags, block_len, Dp]`` row tile straight from the table in HBM with one masked
    ``load`` through integer-array indices (pointer arithmetic ``id * D + col`` in Triton;
    masked lanes issue no memory traffic), and adds its sum over positions. 'mean' scales
    once at the end; one store writes the block. The table is never copied or blocked.
``_tpu_forward``  the Mosaic (TPU) form. Mosaic has no vector gather from a ref, so the
    same grid over bag blocks instead reads the block's ids and lengths into SMEM, issues one
    row DMA ``table[id] (HBM) -> buf[j, l] (VMEM)`` per valid position (all in flight at
    once on one DMA semaphore), writes a zero row for the invalid ones, waits, and reduces
    ``buf[j]`` over positions in float32. VMEM holds ``block_bags * L * D`` table elements.

What runs where
---------------
``embedding_bag(..., implementation=None)`` picks by ``jax.default_backend()``: 'gpu' runs the
Triton kernel, 'tpu' the Mosaic kernel, anything else (CPU) the XLA path (`_xla_forward`:
the reference's math, one gather per bag position).
``implementation='xla'`` forces the XLA path, ``'pallas'`` the kernel of the current
backend (an error on CPU unless interpreted). ``interpret=True`` runs the GPU form in
Pallas' generic interpreter on any backend (what the CPU tests do);
``interpret=pltpu.InterpretParams()`` runs the TPU form in the TPU interpreter (DMAs and
semaphores simulated). The CPU tests run both in interpret mode and lower them with Pallas'
Triton and Mosaic lowerings (``lower(lowering_platforms=('cuda',))`` / ``('tpu',)``). The GPU
form has been compiled and run on an H100 (jax 0.11.2: ``tests/kernels/test_on_gpu.py``,
timings in docs/results/pallas_gpu.md); the TPU form has not met a TPU, and the tiles are untuned.

Backward
--------
Both implementations share one custom VJP. Its sparse form,
``embedding_bag_row_grads(ids, lengths, g_out, combiner, num_rows)``, returns the gradient of
every distinct looked-up row (duplicates summed; ``C = B * L`` static slots, unused slots
padded with id ``num_rows`` and zero grads) for row-wise sparse optimizers; the dense
cotangent ``[V, D]`` is that scattered into zeros (padding ids are dropped).

Invalid input
-------------
Ids outside ``[0, V)`` at positions ``< length`` (or lengths outside ``[0, L]``) are errors.
Compiled code cannot raise, so the check lives where values are known:

* ``embedding_bag`` on concrete (non-traced) arrays calls ``check_ids`` and raises
  ``ValueError`` naming the bag, the position and the id.
* Under ``jit``, call ``check_ids(table_rows, ids, lengths)`` on host (numpy) batches before
  they enter the step, or, to check inside compiled code, call ``checkify_ids`` in the step and
  wrap it with ``jax.experimental.checkify.checkify``.
* Unchecked out-of-range ids under ``jit`` read nothing: in every implementation they
  contribute a zero row and receive no gradient (never an out-of-bounds memory access), and
  lengths are clipped to ``[0, L]``. That is defined behaviour, not a recommendation.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify
from jax.experimental import pallas as pl

from pallas_kernels._dispatch import resolve

__all__ = [
    "embedding_bag",
    "embedding_bag_reference",
    "embedding_bag_row_grads",
    "check_ids",
    "checkify_ids",
    "advise_huge_pages",
]

COMBINERS = ("sum", "mean")

# Default tiles (not tuned on hardware yet).
GPU_BLOCK_BAGS = 16
GPU_BLOCK_LEN = 8
TPU_BLOCK_BAGS = 8


# ----------------------------------------------------------------------------- validation

def _check_combiner(combiner: str) -> None:
    if combiner not in COMBINERS:
        raise ValueError(f"unknown combiner {combiner!r}; expected one of {COMBINERS}")


def _check_shapes(table, ids, lengths) -> None:
    if getattr(table, "ndim", None) != 2:
        raise ValueError(f"table must be [V, D], got shape {getattr(table, 'shape', None)}")
    if getattr(ids, "ndim", None) != 2:
        raise ValueError(f"ids must be [B, L], got shape {getattr(ids, 'shape', None)}")
    if getattr(lengths, "shape", None) != (ids.shape[0],):
        raise ValueError(f"lengths must be [B] = [{ids.shape[0]}], got shape {getattr(lengths, 'shape', None)}")
    if not jnp.issubdtype(ids.dtype, jnp.integer) or not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(f"ids and lengths must be integer arrays, got {ids.dtype} and {lengths.dtype}")
    if not jnp.issubdtype(table.dtype, jnp.floating):
        raise ValueError(f"table must be a float array, got {table.dtype}")


def check_ids(table_rows: int, ids, lengths) -> None:
    """Host-side check of a batch: raises ValueError on the first invalid entry.

    Checks ``0 <= lengths[b] <= L`` and ``0 <= ids[b, l] < table_rows`` for ``l < lengths[b]``;
    padding positions are not looked at. Call it on numpy batches before a jitted step
    (``embedding_bag`` calls it itself on concrete inputs). Device arrays are copied to host.
    """
    ids = np.asarray(ids)
    lengths = np.asarray(lengths)
    if ids.ndim != 2 or lengths.shape != (ids.shape[0],):
        raise ValueError(f"expected ids [B, L] and lengths [B], got {ids.shape} and {lengths.shape}")
    L = ids.shape[1]
    bad_len = np.flatnonzero((lengths < 0) | (lengths > L))
    if bad_len.size:
        b = int(bad_len[0])
        raise ValueError(f"embedding_bag: bag {b} has length {int(lengths[b])}, outside [0, {L}] "
                         f"(ids has {L} positions)")
    valid = np.arange(L)[None, :] < lengths[:, None]
    bad = valid & ((ids < 0) | (ids >= table_rows))
    if bad.any():
        b, l = (int(x) for x in np.argwhere(bad)[0])
        raise ValueError(f"embedding_bag: id {int(ids[b, l])} at bag {b}, position {l} is out of range "
                         f"for a table of {table_rows} rows (valid ids are 0..{table_rows - 1}); "
                         f"{int(bad.sum())} invalid id(s) in this batch")


def checkify_ids(table_rows: int, ids: jax.Array, lengths: jax.Array) -> None:
    """In-graph form of ``check_ids`` through ``jax.experimental.checkify``.

    Call it inside a function wrapped with ``checkify.checkify`` (``errors`` including
    ``checkify.user_checks``); ``err.throw()`` then raises naming the first bad bag, position
    and id. Outside a checkify transform a staged ``checkify.check`` is itself an error, which
    is why ``embedding_bag`` never calls this implicitly.
    """
    B, L = ids.shape
    checkify.check(jnp.all((lengths >= 0) & (lengths <= L)),
                   "embedding_bag: a bag length is outside [0, {L}]", L=jnp.int32(L))
    valid = jnp.arange(L)[None, :] < lengths[:, None]
    bad = valid & ((ids < 0) | (ids >= table_rows))
    first = jnp.argmax(bad.reshape(-1))
    b, l = first // L, first % L
    checkify.check(~jnp.any(bad),
                   "embedding_bag: id {i} at bag {b}, position {l} is out of range for a table of {v} rows",
                   i=ids[b, l], b=b, l=l, v=jnp.int32(table_rows))


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _valid_mask(ids, lengths, num_rows):
    """[B, L] bool: position inside its bag and id inside the table."""
    L = ids.shape[1]
    n = jnp.clip(lengths, 0, L)
    return (jnp.arange(L)[None, :] < n[:, None]) & (ids >= 0) & (ids < num_rows)


def _bag_scale(lengths, L, combiner):
    """[B] float32 weight of each position of a bag: 1 ('sum') or 1 / max(length, 1) ('mean')."""
    if combiner == "sum":
        return jnp.ones(lengths.shape, jnp.float32)
    return 1.0 / jnp.maximum(jnp.clip(lengths, 0, L), 1).astype(jnp.float32)


# ------------------------------------------------------------------------------ reference

def embedding_bag_reference(table: jax.Array, ids: jax.Array, lengths: jax.Array,
                            combiner: str = "sum") -> jax.Array:
    """Plain-jnp embedding bag: ``[V, D], [B, L], [B] -> [B, D]`` (see the module docstring)."""
    _check_combiner(combiner)
    valid = _valid_mask(ids, lengths, table.shape[0])
    rows = jnp.take(table, jnp.where(valid, ids, 0), axis=0)               # [B, L, D]
    total = jnp.sum(jnp.where(valid[..., None], rows.astype(jnp.float32), 0.0), axis=1)
    if combiner == "mean":
        total = total * _bag_scale(lengths, ids.shape[1], combiner)[:, None]
    return total.astype(table.dtype)


# ------------------------------------------------------------------------------ XLA path

# Unroll of the XLA path's loop over bag positions, by row width D: full (up to 64 positions)
# below WIDE_ROW, else XLA_UNROLL_WIDE. Measured on a 2-core AMD EPYC (jax 0.10.2, loaded host,
# 15 fresh-id repeats, ratio to an adjacent copy): at D = 16 full unrolling reaches 2-4x the
# bandwidth of unroll 2 or 4 (10^5 and 10^7 rows); at D = 64 unroll 2 reaches 1.3-1.5x full
# unrolling (10^6 and 10^7 rows). D between 16 and 64 was not measured and keeps full unrolling.
WIDE_ROW = 64
XLA_UNROLL_WIDE = 2


def _xla_forward(table: jax.Array, ids: jax.Array, lengths: jax.Array, combiner: str) -> jax.Array:
    """The default op off GPU/TPU: one `[B]` gather per bag position, accumulated in float32.

    Same result as the reference, but position by position: on CPU, XLA's gather of a whole
    `[B, L]` id block and the separate reduction over `L` reach a few % of the copy bandwidth,
    while `L` gathers of `[B]` ids into a running `[B, D]` sum reach several times that
    (benchmarks/embedding_lookup_bandwidth.py): the gathered rows never leave the cache.
    The ids are made safe (invalid ones read row 0, then masked out), so the gathers are
    `promise_in_bounds`: no clamping or fill per element. The loop is unrolled by row width
    (`WIDE_ROW`, `XLA_UNROLL_WIDE`).
    """
    valid = _valid_mask(ids, lengths, table.shape[0])
    safe = jnp.where(valid, ids, 0)

    def add_position(l, acc):
        rows = table.at[safe[:, l]].get(mode="promise_in_bounds").astype(jnp.float32)
        return acc + jnp.where(valid[:, l, None], rows, 0.0)

    L = ids.shape[1]
    unroll = XLA_UNROLL_WIDE if table.shape[1] >= WIDE_ROW else max(1, min(L, 64))
    total = jax.lax.fori_loop(0, L, add_position, jnp.zeros((ids.shape[0], table.shape[1]), jnp.float32),
                              unroll=max(1, min(L, unroll)))
    if combiner == "mean":
        total = total * _bag_scale(lengths, ids.shape[1], combiner)[:, None]
    return total.astype(table.dtype)


# ------------------------------------------------------------------- host memory (CPU tables)

_MADV_HUGEPAGE, _MADV_COLLAPSE = 14, 25   # linux/mman.h
HUGE_PAGE = 1 << 21


def advise_huge_pages(table: jax.Array, collapse: bool = True) -> int:
    """Backs a CPU array's buffer with 2 MiB transparent huge pages; returns the bytes advised.

    A random row read from a table of millions of rows on 4 KiB pages also costs a page-table
    walk that misses the caches (a 10^7 x 64 float32 table spans 625k pages); on 2 MiB pages
    the TLB covers gigabytes (benchmarks/embedding_lookup_bandwidth.py measures the effect).
    This calls Linux ``madvise(MADV_HUGEPAGE)`` and, with ``collapse``, ``MADV_COLLAPSE``
    (Linux >= 6.1: the pages are rebuilt now, ~seconds per GB, instead of by khugepaged
    later) on the 2 MiB-aligned part of ``table``'s buffer. Contents are unchanged. The advice
    stays with the buffer: a table donated and updated in place keeps it, a fresh buffer does
    not (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` at process start asks for huge pages for
    every large allocation instead).

    Returns 0 (and does nothing) off Linux, off the CPU backend, for a sharded or deleted
    array, or for a buffer under 2 MiB; raises ``OSError`` if ``MADV_HUGEPAGE`` fails and warns
    if ``MADV_COLLAPSE`` does (the advice then takes effect later).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux") or not isinstance(table, jax.Array) or table.is_deleted():
        return 0
    if len(table.devices()) != 1 or next(iter(table.devices())).platform != "cpu":
        return 0
    ptr = table.unsafe_buffer_pointer()
    start = -(-ptr // HUGE_PAGE) * HUGE_PAGE
    length = (ptr + table.nbytes - start) // HUGE_PAGE * HUGE_PAGE
    if length <= 0:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.madvise(start, length, _MADV_HUGEPAGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"madvise(MADV_HUGEPAGE) on {length} bytes failed: {os.strerror(err)}")
    if collapse and libc.madvise(start, length, _MADV_COLLAPSE) != 0:
        # Best effort (an older kernel, or no free huge pages): khugepaged collapses later.
        err = ctypes.get_errno()
        warnings.warn(f"madvise(MADV_COLLAPSE) on {length} bytes failed ({os.strerror(err)}); the pages stay "
                      "advised and are collapsed later by khugepaged", RuntimeWarning, stacklevel=2)
    return int(length)


# ------------------------------------------------------------------------ GPU (Triton) kernel

def _gpu_kernel(ids_ref, len_ref, table_ref, out_ref, *, seq_len, block_len, dim, num_rows, combiner):
    from jax.experimental.pallas import triton as plgpu

    block_bags, dim_p = out_ref.shape
    n = jnp.clip(len_ref[...], 0, seq_len)                                   # [bb]
    cols = jnp.arange(dim_p, dtype=jnp.int32)
    col_ok = cols < dim
    cols3 = jnp.broadcast_to(cols[None, None, :], (block_bags, block_len, dim_p))

    def step(k, acc):
        pos = k * block_len + jnp.arange(block_len, dtype=jnp.int32)        # [bl]
        in_bag = pos[None, :] < n[:, None]                                   # [bb, bl]
        ids = plgpu.load(ids_ref.at[:, pl.ds(k * block_len, block_len)], mask=in_bag, other=0)
        ok = in_bag & (ids >= 0) & (ids < num_rows)
        ids3 = jnp.broadcast_to(jnp.where(ok, ids, 0)[:, :, None], (block_bags, block_len, dim_p))
        mask3 = ok[:, :, None] & col_ok[None, None, :]
        rows = plgpu.load(table_ref.at[ids3, cols3], mask=mask3, other=0)    # [bb, bl, Dp]
        return acc + jnp.sum(rows.astype(jnp.float32), axis=1)

    acc = jax.lax.fori_loop(0, pl.cdiv(seq_len, block_len), step,
                            jnp.zeros((block_bags, dim_p), jnp.float32))
    if combiner == "mean":
        acc = acc / jnp.maximum(n, 1).astype(jnp.float32)[:, None]
    out_ref[...] = acc.astype(out_ref.dtype)


def _gpu_forward(table, ids, lengths, combiner, *, interpret=False,
                 block_bags=GPU_BLOCK_BAGS, block_len=GPU_BLOCK_LEN):
    """Pallas (Triton-lowerable) forward; also what ``interpret=True`` runs on any backend."""
    for name, v in (("block_bags", block_bags), ("block_len", block_len)):
        if v < 1 or v & (v - 1):
            raise ValueError(f"{name} must be a power of two (Triton block shapes), got {v}")
    V, D = table.shape
    B, L = ids.shape
    if B == 0 or L == 0:
        return jnp.zeros((B, D), table.dtype)
    b_pad = pl.cdiv(B, block_bags) * block_bags
    dim_p = pl.next_power_of_2(D)
    ids = jnp.pad(ids.astype(jnp.int32), ((0, b_pad - B), (0, 0)))
    lengths = jnp.pad(lengths.astype(jnp.int32), (0, b_pad - B))            # padded bags are empty
    kernel = functools.partial(_gpu_kernel, seq_len=L, block_len=block_len, dim=D,
                               num_rows=V, combiner=combiner)
    compiler_params = None
    if not interpret:
        from jax.experimental.pallas import triton as plgpu
        compiler_params = plgpu.CompilerParams(num_warps=4, num_stages=1)
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((b_pad, dim_p), table.dtype),
        grid=(b_pad // block_bags,),
        in_specs=[
            pl.BlockSpec((block_bags, L), lambda i: (i, 0)),
            pl.BlockSpec((block_bags,), lambda i: (i,)),
            pl.BlockSpec((V, D), lambda i: (0, 0)),                          # whole table, gathered from
        ],
        out_specs=pl.BlockSpec((block_bags, dim_p), lambda i: (i, 0)),
        interpret=interpret,
        compiler_params=compiler_params,
        name="embedding_bag_gpu",
    )(ids, lengths, table)
    return out[:B, :D]


# ------------------------------------------------------------------------- TPU (Mosaic) kernel

def _tpu_kernel(ids_smem, len_smem, table_hbm, out_ref, buf, sem, *, seq_len, num_rows, combiner):
    from jax.experimental.pallas import tpu as pltpu

    block_bags, dim = out_ref.shape

    def position(j, l):
        n = jnp.clip(len_smem[j, 0], 0, seq_len)
        idx = ids_smem[j, l]
        return (l < n) & (idx >= 0) & (idx < num_rows), idx

    def copy(j, l, idx):
        return pltpu.make_async_copy(table_hbm.at[pl.ds(idx, 1)], buf.at[j, pl.ds(l, 1)], sem)

    for j in range(block_bags):                        # issue every row DMA of the block
        @pl.loop(0, seq_len)
        def _(l, j=j):
            ok, idx = position(j, l)

            @pl.when(ok)
            def _():
                copy(j, l, idx).start()

            @pl.when(jnp.logical_not(ok))
            def _():
                buf[j, pl.ds(l, 1), :] = jnp.zeros((1, dim), buf.dtype)

    for j in range(block_bags):                        # then wait for them
        @pl.loop(0, seq_len)
        def _(l, j=j):
            ok, idx = position(j, l)

            @pl.when(ok)
            def _():
                copy(j, l, idx).wait()

    for j in range(block_bags):
        acc = jnp.sum(buf[j].astype(jnp.float32), axis=0, keepdims=True)    # [1, D]
        if combiner == "mean":
            n = jnp.clip(len_smem[j, 0], 1, max(seq_len, 1))
            acc = acc / jnp.full((1, dim), n, jnp.int32).astype(jnp.float32)
        out_ref[pl.ds(j, 1), :] = acc.astype(out_ref.dtype)


def _tpu_forward(table, ids, lengths, combiner, *, interpret=False, block_bags=TPU_BLOCK_BAGS):
    """Pallas (Mosaic TPU) forward: row DMAs from the HBM table into VMEM, reduce per bag."""
    from jax.experimental.pallas import tpu as pltpu

    V, D = table.shape
    B, L = ids.shape
    if B == 0 or L == 0:
        return jnp.zeros((B, D), table.dtype)
    b_pad = pl.cdiv(B, block_bags) * block_bags
    ids = jnp.pad(ids.astype(jnp.int32), ((0, b_pad - B), (0, 0)))
    lengths = jnp.pad(lengths.astype(jnp.int32), (0, b_pad - B))[:, None]   # 2-D: Mosaic block rules
    kernel = functools.partial(_tpu_kernel, seq_len=L, num_rows=V, combiner=combiner)
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((b_pad, D), table.dtype),
        grid=(b_pad // block_bags,),
        in_specs=[
            pl.BlockSpec((block_bags, L), lambda i: (i, 0), memory_space=pltpu.SMEM),
            pl.BlockSpec((block_bags, 1), lambda i: (i, 0), memory_space=pltpu.SMEM),
            pl.BlockSpec(memory_space=pl.ANY),                               # table stays in HBM
        ],
        out_specs=pl.BlockSpec((block_bags, D), lambda i: (i, 0)),
        scratch_shapes=[pltpu.VMEM((block_bags, L, D), table.dtype), pltpu.SemaphoreType.DMA(())],
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel",)),
        interpret=interpret,
        name="embedding_bag_tpu",
    )(ids, lengths, table)
    return out[:B]


# ---------------------------------------------------------------------------------- backward

def embedding_bag_row_grads(ids: jax.Array, lengths: jax.Array, g_out: jax.Array, combiner: str,
                            num_rows: int) -> tuple[jax.Array, jax.Array]:
    """Sparse gradient of the table: ``(unique_ids [C], row_grads [C, D])``, ``C = B * L``.

    ``row_grads[c]`` is ``d loss / d table[unique_ids[c]]`` given ``g_out = d loss / d out``:
    the sum over all valid positions holding that id of ``g_out[b]`` (times
    ``1 / max(length, 1)`` for 'mean'). The distinct looked-up ids come first in increasing
    order; the remaining slots hold id ``num_rows`` with zero grads (drop them, or scatter with
    ``mode='drop'``). Invalid positions (padding, out-of-range ids) contribute nothing.
    Grads are float32 (the accumulation dtype); cast to the table dtype when applying.
    """
    _check_combiner(combiner)
    B, L = ids.shape
    valid = _valid_mask(ids, lengths, num_rows)
    flat_ids = jnp.where(valid, ids, num_rows).reshape(-1).astype(jnp.int32)
    g = g_out.astype(jnp.float32) * _bag_scale(lengths, L, combiner)[:, None]        # [B, D]
    contrib = jnp.where(valid[..., None], g[:, None, :], 0.0).reshape(B * L, -1)     # [B*L, D]
    unique_ids, inverse = jnp.unique(flat_ids, size=B * L, fill_value=num_rows, return_inverse=True)
    row_grads = jax.ops.segment_sum(contrib, inverse.reshape(-1), num_segments=B * L)
    return unique_ids.astype(jnp.int32), row_grads


# ------------------------------------------------------------------------------- public op

def _forward(table, ids, lengths, combiner, variant, interpret):
    if variant == "xla":
        return _xla_forward(table, ids, lengths, combiner)
    if variant == "gpu":
        return _gpu_forward(table, ids, lengths, combiner, interpret=interpret)
    return _tpu_forward(table, ids, lengths, combiner, interpret=interpret)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _embedding_bag(static, table, ids, lengths):
    combiner, variant, interpret = static
    return _forward(table, ids, lengths, combiner, variant, interpret)


def _embedding_bag_fwd(static, table, ids, lengths):
    combiner, variant, interpret = static
    out = _forward(table, ids, lengths, combiner, variant, interpret)
    # The table is kept only for its shape/dtype (it is alive anyway as a parameter).
    return out, (table, ids, lengths)


def _embedding_bag_bwd(static, res, g):
    combiner = static[0]
    table, ids, lengths = res
    V = table.shape[0]
    unique_ids, row_grads = embedding_bag_row_grads(ids, lengths, g, combiner, V)
    d_table = jnp.zeros(table.shape, jnp.float32).at[unique_ids].add(row_grads, mode="drop")
    return d_table.astype(table.dtype), None, None


_embedding_bag.defvjp(_embedding_bag_fwd, _embedding_bag_bwd)


def embedding_bag(table: jax.Array, ids: jax.Array, lengths: jax.Array, combiner: str = "sum", *,
                  implementation: str | None = None, interpret: Any = False) -> jax.Array:
    """Pooled lookup ``[V, D], [B, L], [B] -> [B, D]``, differentiable in ``table``.

    Args:
      table: ``[V, D]`` float embedding table.
      ids: ``[B, L]`` int ids; only the first ``lengths[b]`` of bag ``b`` are read.
      lengths: ``[B]`` int bag lengths in ``[0, L]``.
      combiner: 'sum' or 'mean' (divides by ``max(length, 1)``; empty bags give zeros).
      implementation: None picks by backend (Pallas kernel on GPU/TPU, the XLA path
        elsewhere); 'xla' forces the XLA path; 'pallas' forces the kernel of this backend.
      interpret: True runs the (GPU-form) kernel in the Pallas interpreter on any backend;
        a ``pltpu.InterpretParams`` runs the TPU-form kernel in the TPU interpreter.

    Raises:
      ValueError: for concrete inputs with an id outside ``[0, V)`` at a position
        ``< length`` or a length outside ``[0, L]`` (naming bag, position and id); for a bad
        combiner, implementation or shape. Traced inputs are not checked (see module docstring).
    """
    _check_combiner(combiner)
    _check_shapes(table, ids, lengths)
    variant = resolve("embedding_bag", implementation, interpret)
    if _is_concrete(ids, lengths):
        check_ids(table.shape[0], ids, lengths)
    return _embedding_bag((combiner, variant, interpret), table, ids, lengths)
