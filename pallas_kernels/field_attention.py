"""Field attention: softmax attention over field tokens with a learnable field-pair modulation.

The op (FAT, arXiv 2511.12081 §3.2, "cross-field modulation")
-------------------------------------------------------------
For per-head queries, keys and values of the F field tokens and a field-pair matrix w::

    s[b, h, i, j] = (q[b, h, i] . k[b, h, j] / sqrt(Dh)) * w[i, j]
    p[b, h, i, :] = softmax_j s[b, h, i, :]
    o[b, h, i]    = sum_j p[b, h, i, j] v[b, h, j]

``w=None`` is plain scaled dot-product attention (w = 1).

Layout
------
``q, k, v`` ``[B, H, F, Dh]`` float (float32 or bfloat16); ``w`` ``[F, F]`` float (row = query
field, column = key field; asymmetric); result ``[B, H, F, Dh]`` in ``q.dtype``. F (fields,
~5..64) and Dh (~4..64) are small, so one ``[F, F]`` score tile of one (b, h) slice fits a
program whole: no online softmax, no tiling over keys. Accumulation is float32 throughout.

Three pieces, one semantics (ARCHITECTURE.md, "Reference before kernel")
-------------------------------------------------------------------------
``field_attention_reference``  plain ``jax.numpy``; the definition the tests hold the kernels
    to (values and gradients).
``_fwd_kernel`` / ``_bwd_kernel``  one Pallas kernel body per direction, shared by both
    forms. The grid is one axis over blocks of ``block`` slices of the flattened ``B * H``
    axis (padded up to a multiple of it with zero slices); a program walks its slices with a
    ``fori_loop`` and does 2-D dots per slice (Triton does not lower batched 3-D dots
    reliably). Tiles are upcast to float32 on load (bfloat16 inputs thus take float32 dots,
    the reference's math; at the backend's default precision, i.e. TF32 on recent GPUs, unless
    ``precision`` says otherwise), padded key columns are masked out of the
    softmax with an iota mask (``j < F``), and the forward saves the per-row logsumexp.
``_pallas_forward`` / ``_pallas_backward`` with ``variant='gpu'``  the Triton-lowerable form:
    F and Dh are zero-padded up to powers of two >= 16 (Triton block shapes; ``tl.dot`` needs
    every dim >= 16) and the padding is sliced away afterwards.
``variant='tpu'``  the Mosaic form: the same kernels with unpadded full-extent ``[F, Dh]``
    blocks (legal for any F, Dh) and a "parallel" grid.

What runs where
---------------
``field_attention(..., implementation=None)`` picks by ``jax.default_backend()``: 'gpu' runs
the Triton kernels, 'tpu' the Mosaic kernels, anything else (CPU) the XLA path (the
reference's math, differentiated by JAX). ``implementation='xla'`` forces the XLA path,
``'pallas'`` the kernels of the current backend (an error on CPU unless interpreted).
``interpret=True`` runs the GPU form in Pallas' generic interpreter on any backend (what the
CPU tests do); ``interpret=pltpu.InterpretParams()`` runs the TPU form in the TPU interpreter.
The CPU tests run both forms in interpret mode and lower them with Pallas' Triton and
Mosaic lowerings (``lower(lowering_platforms=('cuda',))`` / ``('tpu',)``). The GPU form has
been compiled and run on an H100 (jax 0.11.2: ``tests/kernels/test_on_gpu.py``, timings in
docs/results/pallas_gpu.md); the TPU form has not met a TPU (Mosaic checks the layouts of the
small unaligned tiles only there), and the block sizes are untuned.

Backward
--------
The Pallas path is a ``jax.custom_vjp``; residuals are the inputs, ``o`` and the logsumexp
``lse``. One fused kernel recomputes the probabilities per slice and forms every gradient::

    s0 = q k^T / sqrt(Dh);  p = exp(s0 * w - lse);  dv = p^T do;  dp = do v^T
    ds = p * (dp - rowsum(do * o));  dw = sum_{b,h} ds * s0
    dq = (ds * w) k / sqrt(Dh);  dk = (ds * w)^T q / sqrt(Dh)

``dw`` reduces over all slices: each program writes its partial ``[F, F]`` sum and the
partials are added outside the kernel. With ``w=None`` the kernels use ones and no ``dw``
is returned.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from pallas_kernels._dispatch import resolve

__all__ = ["field_attention", "field_attention_reference"]


# Default (b, h) slices per program (not tuned on hardware yet).
GPU_BLOCK = 16
TPU_BLOCK = 8
_TRITON_MIN_DIM = 16          # tl.dot needs every dimension >= 16


# ------------------------------------------------------------------------------ validation

def _check_inputs(q, k, v, w) -> None:
    if getattr(q, "ndim", None) != 4:
        raise ValueError(f"q must be [B, H, F, Dh], got shape {getattr(q, 'shape', None)}")
    for name, x in (("k", k), ("v", v)):
        if getattr(x, "shape", None) != q.shape:
            raise ValueError(f"{name} must have q's shape [B, H, F, Dh] = {q.shape}, "
                             f"got shape {getattr(x, 'shape', None)}")
    F = q.shape[2]
    if w is not None and getattr(w, "shape", None) != (F, F):
        raise ValueError(f"w must be [F, F] = {(F, F)}, got shape {getattr(w, 'shape', None)}")
    for name, x in (("q", q), ("k", k), ("v", v), ("w", w)):
        if x is not None and not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"{name} must be a float array, got {x.dtype}")


# ------------------------------------------------------------------------------- reference

def field_attention_reference(q: jax.Array, k: jax.Array, v: jax.Array, w: jax.Array | None = None,
                              precision: Any = None) -> jax.Array:
    """Plain-jnp definition of the op (module docstring); `[B, H, F, Dh] -> [B, H, F, Dh]`;
    `precision` of the two einsums as for `jnp.einsum`."""
    s = jnp.einsum("bhid,bhjd->bhij", q, k, preferred_element_type=jnp.float32,
                   precision=precision) / jnp.sqrt(q.shape[-1]).astype(jnp.float32)
    if w is not None:
        s = s * w.astype(jnp.float32)
    p = jax.nn.softmax(s, axis=-1)
    return jnp.einsum("bhij,bhjd->bhid", p, v.astype(jnp.float32), precision=precision).astype(q.dtype)


# --------------------------------------------------------------------------------- kernels

def _dot(a, b, contract=(1, 0), precision=None):
    """2-D float32 dot contracting `a`'s axis `contract[0]` with `b`'s `contract[1]` (a transposed
    operand is folded into the dot: both lowerings take these dimension numbers)."""
    return jax.lax.dot_general(a, b, (((contract[0],), (contract[1],)), ((), ())),
                               precision=precision, preferred_element_type=jnp.float32)


def _scores(q, k, w, num_fields, scale, precision):
    """Unmodulated scores s0 and the modulated ones, padded key columns at -inf: `[Fp, Fp]`."""
    s0 = _dot(q, k, (1, 1), precision) * scale
    key_ok = jax.lax.broadcasted_iota(jnp.int32, (1, s0.shape[1]), 1) < num_fields
    return s0, jnp.where(key_ok, s0 * w, -jnp.inf)


def _load(ref, n):
    """Slice `n` of a block ref, upcast to float32."""
    return ref[n].astype(jnp.float32)


def _fwd_kernel(q_ref, k_ref, v_ref, w_ref, o_ref, lse_ref, *, num_fields, scale, precision):
    w = w_ref[...].astype(jnp.float32)

    def slice_(n, carry):
        _, s = _scores(_load(q_ref, n), _load(k_ref, n), w, num_fields, scale, precision)
        m = jnp.max(s, axis=1, keepdims=True)                               # [Fp, 1]
        p = jnp.exp(s - m)
        l = jnp.sum(p, axis=1, keepdims=True)
        o_ref[n] = (_dot(p, _load(v_ref, n), precision=precision) / l).astype(o_ref.dtype)
        lse_ref[n] = m + jnp.log(l)
        return carry

    jax.lax.fori_loop(0, q_ref.shape[0], slice_, 0)


def _bwd_kernel(q_ref, k_ref, v_ref, w_ref, o_ref, lse_ref, do_ref, dq_ref, dk_ref, dv_ref, dw_ref, *,
                num_fields, scale, precision):
    w = w_ref[...].astype(jnp.float32)

    def slice_(n, dw):
        q, k, v, o, do = (_load(r, n) for r in (q_ref, k_ref, v_ref, o_ref, do_ref))
        s0, s = _scores(q, k, w, num_fields, scale, precision)
        p = jnp.exp(s - lse_ref[n])                                         # padded keys: 0
        dv_ref[n] = _dot(p, do, (0, 0), precision).astype(dv_ref.dtype)
        ds = p * (_dot(do, v, (1, 1), precision) - jnp.sum(do * o, axis=1, keepdims=True))
        ds0 = ds * w * scale
        dq_ref[n] = _dot(ds0, k, precision=precision).astype(dq_ref.dtype)
        dk_ref[n] = _dot(ds0, q, (0, 0), precision).astype(dk_ref.dtype)
        return dw + ds * s0

    dw_ref[...] = jax.lax.fori_loop(0, q_ref.shape[0], slice_, jnp.zeros(dw_ref.shape, jnp.float32))


# ----------------------------------------------------------------------- pallas_call wrappers

def _pad_to(x, shape):
    return jnp.pad(x, [(0, t - s) for s, t in zip(x.shape, shape)])


def _layout(variant, shape, block):
    """The form's block, padded `(N, F, Dh)` and grid size for slices of `shape = (N, F, Dh)`."""
    block = (GPU_BLOCK if variant == "gpu" else TPU_BLOCK) if block is None else block
    if block < 1 or (variant == "gpu" and block & (block - 1)):
        raise ValueError(f"block must be a positive int, a power of two for the GPU form (Triton block "
                         f"shapes); got {block}")
    n, f, d = shape
    if variant == "gpu":
        f, d = (max(pl.next_power_of_2(x), _TRITON_MIN_DIM) for x in (f, d))
    grid = pl.cdiv(n, block)
    return block, (grid * block, f, d), grid


def _call_params(variant, interpret):
    if variant == "tpu":
        from jax.experimental.pallas import tpu as pltpu
        # Every program writes its own output blocks (dw included), so the grid is parallel.
        return dict(interpret=interpret, compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel",)))
    if interpret:
        return dict(interpret=interpret)
    from jax.experimental.pallas import triton as plgpu
    return dict(compiler_params=plgpu.CompilerParams(num_warps=4, num_stages=1))


def _specs(block, fp, dp):
    tile = pl.BlockSpec((block, fp, dp), lambda i: (i, 0, 0))
    rows = pl.BlockSpec((block, fp, 1), lambda i: (i, 0, 0))                 # per-row lse
    whole_w = pl.BlockSpec((fp, fp), lambda i: (0, 0))
    return tile, rows, whole_w


def _pallas_forward(q, k, v, w, *, variant, interpret=False, block=None, precision=None):
    """Fused forward on flattened slices: `q, k, v [N, F, Dh], w [F, F]` ->
    `(o [N, F, Dh] in q.dtype, lse [N, F, 1] float32)`."""
    n, f, d = q.shape
    block, (np_, fp, dp), grid = _layout(variant, q.shape, block)
    tile, rows, whole_w = _specs(block, fp, dp)
    o, lse = pl.pallas_call(
        functools.partial(_fwd_kernel, num_fields=f, scale=d ** -0.5, precision=precision),
        out_shape=(jax.ShapeDtypeStruct((np_, fp, dp), q.dtype), jax.ShapeDtypeStruct((np_, fp, 1), jnp.float32)),
        grid=(grid,),
        in_specs=[tile, tile, tile, whole_w],
        out_specs=(tile, rows),
        name=f"field_attention_fwd_{variant}",
        **_call_params(variant, interpret),
    )(*(_pad_to(x, (np_, fp, dp)) for x in (q, k, v)), _pad_to(w, (fp, fp)))
    return o[:n, :f, :d], lse[:n, :f]


def _pallas_backward(q, k, v, w, o, lse, do, *, variant, interpret=False, block=None, precision=None):
    """Fused backward: residuals of `_pallas_forward` and `do [N, F, Dh]` -> `dq, dk, dv, dw`
    (each in its input's dtype)."""
    n, f, d = q.shape
    block, (np_, fp, dp), grid = _layout(variant, q.shape, block)
    tile, rows, whole_w = _specs(block, fp, dp)
    q_, k_, v_, o_, do_ = (_pad_to(x, (np_, fp, dp)) for x in (q, k, v, o, do))
    dq, dk, dv, dw = pl.pallas_call(
        functools.partial(_bwd_kernel, num_fields=f, scale=d ** -0.5, precision=precision),
        out_shape=(*(jax.ShapeDtypeStruct((np_, fp, dp), x.dtype) for x in (q, k, v)),
                   jax.ShapeDtypeStruct((grid, fp, fp), jnp.float32)),
        grid=(grid,),
        in_specs=[tile, tile, tile, whole_w, tile, rows, tile],
        out_specs=(tile, tile, tile, pl.BlockSpec((None, fp, fp), lambda i: (i, 0, 0))),  # partial dw
        name=f"field_attention_bwd_{variant}",
        **_call_params(variant, interpret),
    )(q_, k_, v_, _pad_to(w, (fp, fp)), o_, _pad_to(lse, (np_, fp, 1)), do_)
    dw = jnp.sum(dw, axis=0)[:f, :f].astype(w.dtype)
    return dq[:n, :f, :d], dk[:n, :f, :d], dv[:n, :f, :d], dw


# ------------------------------------------------------------------------------ custom VJP

class _Static(NamedTuple):
    """The custom VJP's static (non-differentiated) arguments."""

    variant: str
    interpret: Any
    block: int | None
    precision: Any


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _field_attention(static, q, k, v, w):
    return _pallas_forward(q, k, v, w, **static._asdict())[0]


def _field_attention_fwd(static, q, k, v, w):
    o, lse = _pallas_forward(q, k, v, w, **static._asdict())
    return o, (q, k, v, w, o, lse)


def _field_attention_bwd(static, res, do):
    return _pallas_backward(*res, do, **static._asdict())


_field_attention.defvjp(_field_attention_fwd, _field_attention_bwd)


# ------------------------------------------------------------------------------- public op

def field_attention(q: jax.Array, k: jax.Array, v: jax.Array, w: jax.Array | None = None, *,
                    implementation: str | None = None, interpret: Any = False,
                    block: int | None = None, precision: Any = None) -> jax.Array:
    """Field-pair-modulated attention; `q, k, v [B, H, F, Dh]`, `w [F, F]` -> `[B, H, F, Dh]`.

    Args:
      q, k, v: ``[B, H, F, Dh]`` float queries, keys and values of the F field tokens.
      w: ``[F, F]`` float field-pair modulation (row = query field), or None for all ones.
      implementation: None picks by backend (Pallas kernels on GPU/TPU, the XLA path
        elsewhere); 'xla' forces the XLA path; 'pallas' forces the kernels of this backend.
      interpret: True runs the (GPU-form) kernels in the Pallas interpreter on any backend;
        a ``pltpu.InterpretParams`` runs the TPU-form kernels in the TPU interpreter.
      block: ``(b, h)`` slices per kernel program (a power of two for the GPU form); None
        for the form's default. Ignored by the XLA path.
      precision: of the dots (a ``jax.lax.Precision`` or its name), both paths. None: the
        backend's default, as for XLA's own matmuls: TF32 on Ampere / Hopper GPUs (~1e-3
        relative error for float32), exact float32 on CPU. ``'highest'``: exact float32
        everywhere, several times slower on an H100 at large F (docs/results/pallas_gpu.md).

    Returns:
      ``[B, H, F, Dh]`` in ``q.dtype``; differentiable in ``q, k, v`` and ``w``.

    Raises:
      ValueError: for a bad shape or dtype (naming the argument), implementation or block.
    """
    _check_inputs(q, k, v, w)
    variant = resolve("field_attention", implementation, interpret)
    if variant == "xla":
        return field_attention_reference(q, k, v, w, precision)
    B, H, F, Dh = q.shape
    flat = [x.reshape(B * H, F, Dh) for x in (q, k, v)]
    # w=None: ones, a constant, so JAX drops its (unused) cotangent.
    w = jnp.ones((F, F), jnp.float32) if w is None else w
    static = _Static(variant, interpret, block, None if precision is None else jax.lax.Precision(precision))
    return _field_attention(static, *flat, w).reshape(B, H, F, Dh)
