"""field_attention: Pallas kernels (interpret mode) and the custom VJP against the jnp reference."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu

from pallas_kernels import field_attention as fa
from pallas_kernels.field_attention import field_attention, field_attention_reference

B, H, F, DH = 3, 3, 5, 6   # F, Dh not powers of two; B * H = 9 not a multiple of the test block
TOL = dict(rtol=1e-5, atol=1e-5)


def make_inputs(shape=(B, H, F, DH), seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    q, k, v = (jnp.asarray(rng.normal(size=shape).astype(np.float32)) for _ in range(3))
    w = jnp.asarray(rng.normal(size=shape[2:3] * 2).astype(np.float32))
    return q * spread, k, v, w


def loss_fn(op, shape):
    g = jnp.asarray(np.random.default_rng(1).normal(size=shape).astype(np.float32))
    return lambda *args: jnp.sum(op(*args).astype(jnp.float32) * g)


def assert_values_and_grads_match(op, q, k, v, w, **tol):
    np.testing.assert_allclose(op(q, k, v, w), field_attention_reference(q, k, v, w), **tol)
    argnums = tuple(range(3 if w is None else 4))
    args = (q, k, v) if w is None else (q, k, v, w)
    want = jax.grad(loss_fn(field_attention_reference, q.shape), argnums)(*args)
    got = jax.grad(loss_fn(op, q.shape), argnums)(*args)
    for name, g, gw in zip("qkvw", got, want):
        assert g.shape == gw.shape and g.dtype == gw.dtype, name
        np.testing.assert_allclose(g, gw, err_msg=f"d{name}", **tol)


# ----------------------------------------------------------------------------------- reference

def test_reference_by_hand():
    q, k, v, w = (np.asarray(x) for x in make_inputs((1, 2, 3, 2)))
    s = np.einsum("bhid,bhjd->bhij", q, k) / np.sqrt(2.0) * w
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want = np.einsum("bhij,bhjd->bhid", p, v)
    np.testing.assert_allclose(field_attention_reference(*map(jnp.asarray, (q, k, v, w))), want, **TOL)
    np.testing.assert_allclose(field_attention_reference(q, k, v),
                               field_attention_reference(q, k, v, np.ones((3, 3), np.float32)), **TOL)


# ------------------------------------------------------------------------------ GPU form (interpret)

@pytest.mark.parametrize("shape,block", [
    ((B, H, F, DH), 4),        # padded F, Dh and B * H
    ((1, 3, 17, 20), 16),      # F, Dh just past 16 (padded to 32); one partial block
])
def test_gpu_kernel_values_and_grads_match_reference(shape, block):
    op = functools.partial(field_attention, implementation="pallas", interpret=True, block=block)
    assert_values_and_grads_match(op, *make_inputs(shape), **TOL)


def test_large_scores_are_stable():
    """Scores reach ~300: exp overflows float32 without the max shift. Rounding grows with |s|,
    hence the looser tolerance."""
    q, k, v, w = make_inputs(spread=100.0)
    op = functools.partial(field_attention, interpret=True, block=4)
    np.testing.assert_allclose(op(q, k, v, w), field_attention_reference(q, k, v, w), rtol=1e-4, atol=1e-4)
    grads = jax.grad(loss_fn(op, q.shape), (0, 1, 2, 3))(q, k, v, w)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_w_none_is_plain_attention():
    q, k, v, _ = make_inputs()
    op = functools.partial(field_attention, interpret=True, block=4)
    assert_values_and_grads_match(op, q, k, v, None, **TOL)


def test_bfloat16_inputs():
    q, k, v, w = (x.astype(jnp.bfloat16) for x in make_inputs())
    got = field_attention(q, k, v, w, interpret=True, block=4)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(got.astype(np.float32), field_attention_reference(q, k, v, w).astype(np.float32),
                               rtol=2e-2, atol=2e-2)
    grads = jax.grad(loss_fn(functools.partial(field_attention, interpret=True, block=4), q.shape),
                     (0, 1, 2, 3))(q, k, v, w)
    assert all(g.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(g))) for g in grads)


# ------------------------------------------------------------------------------ TPU form (interpret)

def test_tpu_kernel_values_and_grads_match_reference():
    op = functools.partial(field_attention, interpret=pltpu.InterpretParams(), block=4)
    assert_values_and_grads_match(op, *make_inputs(), **TOL)


# ----------------------------------------------------------------------------------- lowering

@pytest.mark.parametrize("variant,platform", [("gpu", "cuda"), ("tpu", "tpu")])
def test_kernels_lower_for_their_backends(variant, platform):
    """Forward and backward pass Pallas' own lowering (Triton for 'cuda', Mosaic for 'tpu') from CPU."""
    n, f, d = 40, 10, 6
    x = jax.ShapeDtypeStruct((n, f, d), jnp.bfloat16)
    w = jax.ShapeDtypeStruct((f, f), jnp.float32)
    lse = jax.ShapeDtypeStruct((n, f, 1), jnp.float32)
    for fn, args, name in ((fa._pallas_forward, (x, x, x, w), "field_attention_fwd"),
                           (fa._pallas_backward, (x, x, x, w, x, lse, x), "field_attention_bwd")):
        lowered = jax.jit(functools.partial(fn, variant=variant)).trace(*args).lower(lowering_platforms=(platform,))
        assert name in lowered.as_text()


# ------------------------------------------------------------------------------- public op, jit

def test_public_op_paths_agree():
    q, k, v, w = make_inputs(seed=3)
    want = field_attention_reference(q, k, v, w)
    np.testing.assert_allclose(field_attention(q, k, v, w), want, **TOL)                 # CPU default: XLA
    jitted = jax.jit(functools.partial(field_attention, implementation="pallas", interpret=True, block=4))
    np.testing.assert_allclose(jitted(q, k, v, w), want, **TOL)


def test_jitted_grads_of_xla_path_and_kernel_agree():
    q, k, v, w = make_inputs(seed=4)

    def grads(**kw):
        return jax.jit(jax.grad(loss_fn(functools.partial(field_attention, **kw), q.shape), (0, 1, 2, 3)))(q, k, v, w)

    for name, a, b in zip("qkvw", grads(implementation="xla"), grads(interpret=True, block=4)):
        np.testing.assert_allclose(b, a, err_msg=f"d{name}", **TOL)


# --------------------------------------------------------------------------------- bad input

def test_dispatch_and_argument_errors():
    q, k, v, w = make_inputs()
    with pytest.raises(ValueError, match="interpret=True"):
        field_attention(q, k, v, w, implementation="pallas")                 # no CPU kernel
    with pytest.raises(ValueError, match="unknown implementation 'triton'"):
        field_attention(q, k, v, w, implementation="triton")
    with pytest.raises(ValueError, match="implementation='xla'"):
        field_attention(q, k, v, w, implementation="xla", interpret=True)
    with pytest.raises(ValueError, match="power of two"):
        field_attention(q, k, v, w, interpret=True, block=3)
    assert fa.resolve("field_attention", None, False) == "xla"                                 # CPU default


@pytest.mark.parametrize("args,match", [
    (lambda q, k, v, w: (q[0], k[0], v[0], w), r"q must be \[B, H, F, Dh\], got shape \(3, 5, 6\)"),
    (lambda q, k, v, w: (q, k[:, :, :4], v, w), r"k must have q's shape .* got shape \(3, 3, 4, 6\)"),
    (lambda q, k, v, w: (q, k, v[..., :2], w), r"v must have q's shape .* got shape \(3, 3, 5, 2\)"),
    (lambda q, k, v, w: (q, k, v, w[:4]), r"w must be \[F, F\] = \(5, 5\), got shape \(4, 5\)"),
    (lambda q, k, v, w: (q.astype(jnp.int32), k, v, w), "q must be a float array, got int32"),
])
def test_bad_shapes_and_dtypes_raise(args, match):
    with pytest.raises(ValueError, match=match):
        field_attention(*args(*make_inputs()), interpret=True)
