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
    want_g = jax.grad(loss(functools.partial(embedding_bag_reference, combiner=combiner)))(table)
    np.testing.assert_allclose(np.asarray(got_g, np.float32), np.asarray(want_g, np.float32), **TOL[dtype])


@pytest.mark.parametrize("shape", [(3, 3, 5, 6), (256, 2, 26, 16), (64, 4, 39, 32), (16, 1, 64, 64), (1, 1, 1, 4)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("with_w", [True, False])
def test_field_attention_kernel_values_and_grads(shape, dtype, with_w):
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=shape), dtype) for _ in range(3))
    w = jnp.asarray(rng.normal(size=(shape[2], shape[2])), dtype) if with_w else None
    kernel = functools.partial(field_attention, implementation="pallas")
    np.testing.assert_allclose(np.asarray(jax.jit(kernel)(q, k, v, w), np.float32),
                               np.asarray(field_attention_reference(q, k, v, w), np.float32), **TOL[dtype])
    g = jnp.asarray(rng.normal(size=shape), jnp.float32)
    args = (q, k, v) if w is None else (q, k, v, w)

    def loss(op):
        return lambda *a: jnp.sum(op(*a, *([None] if w is None else [])).astype(jnp.float32) * g)

    argnums = tuple(range(len(args)))
    got = jax.jit(jax.grad(loss(kernel), argnums))(*args)
    want = jax.grad(loss(field_attention_reference), argnums)(*args)
    for name, a, b in zip("qkvw", got, want):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), err_msg=f"d{name}", **TOL[dtype])
