"""The Pallas kernels compiled for and run on a real GPU (Triton), against the jnp references.

Skipped unless JAX's default backend is 'gpu': CI has no accelerator; run on a GPU machine with
`python -m pytest tests/kernels/test_on_gpu.py`. The interpret-mode tests beside this file
check the same kernel bodies everywhere; these check what the Triton compiler makes of them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.embedding_bag import embedding_bag, embedding_bag_reference
from pallas_kernels.field_attention import field_attention, field_attention_reference

pytestmark = pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU (Triton kernels)")

TOL = {jnp.float32: dict(rtol=2e-5, atol=2e-5), jnp.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def bag_inputs(V, D, B, L, dtype, seed=0):
    rng = np.random.default_rng(seed)
    table = jnp.asarray(rng.normal(size=(V, D)), dtype)
    ids = jnp.asarray(rng.integers(0, V, size=(B, L)), jnp.int32)
    lengths = jnp.asarray(rng.integers(0, L + 1, size=B), jnp.int32)
    return table, ids, lengths


@pytest.mark.parametrize("combiner", ["sum", "mean"])
@pytest.mark.parametrize("V,D,B,L", [(1000, 16, 64, 5), (100_000, 64, 4096, 26), (50, 128, 33, 1), (7, 8, 300, 40)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_embedding_bag_kernel_values_and_grads(combiner, V, D, B, L, dtype):
    table, ids, lengths = bag_inputs(V, D, B, L, dtype)
    kernel = jax.jit(functools.partial(embedding_bag, combiner=combiner, implementation="pallas"))
    got = kernel(table, ids, lengths)
    want = embedding_bag_reference(table, ids, lengths, combiner)
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), **TOL[dtype])
    g = jnp.asarray(np.random.default_rng(1).normal(size=(B, D)), jnp.float32)

    def loss(op):
        return lambda t: jnp.sum(op(t, ids, lengths).astype(jnp.float32) * g)

    got_g = jax.jit(jax.grad(loss(functools.partial(embedding_bag, combiner=combiner, implementation="pallas"))))(table)
    # The exact gradient: the reference on the float32 table (a bfloat16 gradient sums many
    # rows per id in bfloat16; the kernel's VJP accumulates in float32 and rounds once).
    want_g = np.asarray(jax.grad(loss(functools.partial(embedding_bag_reference, combiner=combiner)))(table.astype(jnp.float32)))
    tol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(got_g, np.float32), want_g, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, np.abs(want_g).max()))


def rel_err(got, want) -> float:
    """max |got - want| / max(max |want|, 1): relative to the output's scale, absolute where the
    output is all but zero (with one field, dq and dk are exactly zero)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1.0))


@pytest.mark.parametrize("shape", [(3, 3, 5, 6), (256, 2, 26, 16), (64, 4, 39, 32), (16, 1, 64, 64), (1, 1, 1, 4)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("with_w", [True, False])
@pytest.mark.parametrize("precision", [None, "highest"])
def test_field_attention_kernel_values_and_grads(shape, dtype, with_w, precision):
    """Values and gradients of the kernel against the reference at HIGHEST precision on
    float32 copies of the inputs, as the largest error relative to each output's scale:
    at HIGHEST within float32 rounding (1e-5); at the default precision (TF32 on this GPU, as
    XLA's own matmuls: about 1e-3) within 3e-3; bfloat16 outputs within their rounding, 1e-2."""
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=shape), dtype) for _ in range(3))
    w = jnp.asarray(rng.normal(size=(shape[2], shape[2])), dtype) if with_w else None
    args = (q, k, v) if w is None else (q, k, v, w)
    g = jnp.asarray(rng.normal(size=shape), jnp.float32)
    argnums = tuple(range(len(args)))

    def value_and_grads(op, *a):
        def loss(*a):
            return jnp.sum(op(*a, *([None] if w is None else [])).astype(jnp.float32) * g)
        return op(*a, *([None] if w is None else [])), jax.grad(loss, argnums)(*a)

    exact = value_and_grads(functools.partial(field_attention_reference, precision="highest"),
                            *(x.astype(jnp.float32) for x in args))
    kernel = jax.jit(functools.partial(value_and_grads, functools.partial(field_attention, implementation="pallas",
                                                                          precision=precision)))(*args)
    bound = 1e-2 if dtype == jnp.bfloat16 else (1e-5 if precision == "highest" else 3e-3)
    for i, name in enumerate(["out"] + [f"d{c}" for c in "qkvw"[:len(args)]]):
        got, want = (kernel[0], exact[0]) if i == 0 else (kernel[1][i - 1], exact[1][i - 1])
        assert rel_err(got, want) <= bound, f"{name}: error {rel_err(got, want):.2e} > {bound}"
