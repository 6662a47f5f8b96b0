"""embedding_bag: Pallas kernels (interpret mode) and the custom VJP against the jnp reference."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from jax.experimental.pallas import tpu as pltpu

from pallas_kernels import embedding_bag as eb
from pallas_kernels.embedding_bag import (check_ids, checkify_ids, embedding_bag, embedding_bag_reference,
                                          embedding_bag_row_grads)

V, D, B, L = 13, 6, 10, 5   # D not a power of two; B, L not multiples of the test blocks
TOL = dict(rtol=1e-5, atol=1e-5)


def make_batch(seed=0):
    """Bags with an empty bag, a full bag, ids repeated within and across bags, garbage padding."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(V, D)).astype(np.float32)
    ids = rng.integers(0, V, size=(B, L)).astype(np.int32)
    lengths = rng.integers(1, L + 1, size=(B,)).astype(np.int32)
    lengths[0] = 0                        # empty bag
    lengths[1] = L                        # full bag
    ids[2, :4] = [3, 3, 7, 3]             # repeated within a bag
    lengths[2] = 4
    ids[3, 0] = 3                         # ... and across bags
    lengths[3] = max(lengths[3], 1)
    ids[4, :] = [5, -1, 10**6, -7, 99]    # positions >= length hold garbage: ignored
    lengths[4] = 1
    ids[0, :] = -3                        # the empty bag too
    return jnp.asarray(table), jnp.asarray(ids), jnp.asarray(lengths)


def loss_fn(op, combiner):
    w = jnp.asarray(np.random.default_rng(1).normal(size=(B, D)).astype(np.float32))
    return lambda table, ids, lengths: jnp.sum(op(table, ids, lengths, combiner) * w)


# ----------------------------------------------------------------------------------- reference

def test_reference_by_hand():
    table = jnp.arange(12, dtype=jnp.float32).reshape(4, 3)
    ids = jnp.array([[1, 1, 3], [2, -5, 40], [0, 0, 0]], jnp.int32)
    lengths = jnp.array([3, 1, 0], jnp.int32)
    want_sum = np.stack([2 * np.arange(3, 6) + np.arange(9, 12), np.arange(6, 9), np.zeros(3)])
    np.testing.assert_allclose(embedding_bag_reference(table, ids, lengths, "sum"), want_sum)
    np.testing.assert_allclose(embedding_bag_reference(table, ids, lengths, "mean"),
                               want_sum / np.array([[3], [1], [1]]))


# ------------------------------------------------------------------------ kernels, forward values

@pytest.mark.parametrize("combiner", ["sum", "mean"])
@pytest.mark.parametrize("block_bags,block_len", [(4, 2), (16, 8)])
def test_gpu_kernel_matches_reference(combiner, block_bags, block_len):
    table, ids, lengths = make_batch()
    want = embedding_bag_reference(table, ids, lengths, combiner)
    got = eb._gpu_forward(table, ids, lengths, combiner, interpret=True,
                          block_bags=block_bags, block_len=block_len)
    assert got.shape == (B, D) and got.dtype == table.dtype
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_array_equal(got[0], 0.0)                       # empty bag


@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_tpu_kernel_matches_reference(combiner):
    table, ids, lengths = make_batch()
    want = embedding_bag_reference(table, ids, lengths, combiner)
    got = eb._tpu_forward(table, ids, lengths, combiner, interpret=pltpu.InterpretParams(), block_bags=8)
    np.testing.assert_allclose(got, want, **TOL)


def test_public_op_paths_agree():
    table, ids, lengths = make_batch(seed=3)
    want = embedding_bag_reference(table, ids, lengths, "mean")
    np.testing.assert_allclose(embedding_bag(table, ids, lengths, "mean"), want, **TOL)  # CPU default: XLA
    np.testing.assert_allclose(embedding_bag(table, ids, lengths, "mean", interpret=True), want, **TOL)
    jitted = jax.jit(functools.partial(embedding_bag, combiner="mean", implementation="pallas", interpret=True))
    np.testing.assert_allclose(jitted(table, ids, lengths), want, **TOL)


def test_bfloat16_table():
    table, ids, lengths = make_batch()
    table = table.astype(jnp.bfloat16)
    got = embedding_bag(table, ids, lengths, "sum", interpret=True)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(got.astype(np.float32), embedding_bag_reference(table, ids, lengths).astype(np.float32),
                               rtol=1e-2, atol=1e-2)


def test_kernels_lower_for_their_backends():
    """Both kernels pass Pallas' own lowering (Triton for 'cuda', Mosaic for 'tpu') from CPU."""
    args = (jax.ShapeDtypeStruct((1000, 64), jnp.float32), jax.ShapeDtypeStruct((40, 20), jnp.int32),
            jax.ShapeDtypeStruct((40,), jnp.int32))
    for fn, platform in ((eb._gpu_forward, "cuda"), (eb._tpu_forward, "tpu")):
        lowered = jax.jit(functools.partial(fn, combiner="mean")).trace(*args).lower(lowering_platforms=(platform,))
        assert "embedding_bag" in lowered.as_text()


# ---------------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_grad_through_custom_vjp_matches_reference(combiner):
    table, ids, lengths = make_batch()
    want = jax.grad(loss_fn(embedding_bag_reference, combiner))(table, ids, lengths)
    kernel_op = functools.partial(embedding_bag, implementation="pallas", interpret=True)
    got = jax.grad(loss_fn(kernel_op, combiner))(table, ids, lengths)
    np.testing.assert_allclose(got, want, **TOL)
    got_xla = jax.jit(jax.grad(loss_fn(functools.partial(embedding_bag, implementation="xla"), combiner)))(
        table, ids, lengths)
    np.testing.assert_allclose(got_xla, want, **TOL)


@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_row_grads_scatter_to_dense_grad(combiner):
    table, ids, lengths = make_batch()
    g_out = jnp.asarray(np.random.default_rng(1).normal(size=(B, D)).astype(np.float32))
    dense = jax.grad(loss_fn(embedding_bag_reference, combiner))(table, ids, lengths)
    unique_ids, row_grads = embedding_bag_row_grads(ids, lengths, g_out, combiner, V)
    assert unique_ids.shape == (B * L,) and row_grads.shape == (B * L, D)
    scattered = jnp.zeros((V, D), jnp.float32).at[unique_ids].add(row_grads, mode="drop")
    np.testing.assert_allclose(scattered, dense, **TOL)

    uid = np.asarray(unique_ids)
    real = uid[uid < V]
    assert len(np.unique(real)) == len(real)                            # distinct
    ids_np, len_np = np.asarray(ids), np.asarray(lengths)
    looked_up = {int(ids_np[b, l]) for b in range(B) for l in range(len_np[b])}
    assert set(real.tolist()) == looked_up
    assert np.all(uid[len(real):] == V)                                  # padding slots
    np.testing.assert_array_equal(np.asarray(row_grads)[uid == V], 0.0)


# ------------------------------------------------------------------------------ invalid input

@pytest.mark.parametrize("bad_id", [V, -1])
def test_out_of_range_id_raises_on_concrete_input(bad_id):
    table, ids, lengths = make_batch()
    ids = ids.at[6, 0].set(bad_id)
    with pytest.raises(ValueError, match=rf"id {bad_id} at bag 6, position 0 is out of range"):
        embedding_bag(table, ids, lengths)
    with pytest.raises(ValueError, match="bag 6, position 0"):
        embedding_bag(table, ids, lengths, implementation="pallas", interpret=True)


def test_bad_lengths_and_arguments_raise():
    table, ids, lengths = make_batch()
    with pytest.raises(ValueError, match=r"bag 2 has length 6, outside \[0, 5\]"):
        embedding_bag(table, ids, lengths.at[2].set(L + 1))
    with pytest.raises(ValueError, match="unknown combiner"):
        embedding_bag(table, ids, lengths, "max")
    with pytest.raises(ValueError, match="interpret=True"):
        embedding_bag(table, ids, lengths, implementation="pallas")      # no CPU kernel
    with pytest.raises(ValueError, match="implementation='xla'"):
        embedding_bag(table, ids, lengths, implementation="xla", interpret=True)
    assert eb.resolve("embedding_bag", None, False) == "xla"                            # CPU default


def test_jit_inputs_checked_on_host_or_with_checkify():
    table, ids, lengths = make_batch()
    bad_ids = np.asarray(ids).copy()
    bad_ids[7, 0] = 2 * V
    # Host batch before a jitted step.
    with pytest.raises(ValueError, match=rf"id {2 * V} at bag 7, position 0"):
        check_ids(V, bad_ids, lengths)
    check_ids(V, ids, lengths)                                           # padding garbage is fine

    # In-graph, through checkify.
    def step(table, ids, lengths):
        checkify_ids(table.shape[0], ids, lengths)
        return embedding_bag(table, ids, lengths)

    checked = jax.jit(checkify.checkify(step, errors=checkify.user_checks))
    err, _ = checked(table, ids, lengths)
    err.throw()                                                          # valid batch: no error
    err, _ = checked(table, jnp.asarray(bad_ids), lengths)
    with pytest.raises(checkify.JaxRuntimeError, match=rf"id {2 * V} at bag 7, position 0"):
        err.throw()


def test_unchecked_out_of_range_ids_under_jit_contribute_zero():
    table, ids, lengths = make_batch()
    bad = ids.at[7, 0].set(2 * V).at[8, 0].set(-2)
    want = embedding_bag_reference(table, ids, lengths)                  # bad ids read a zero row:
    want = want.at[7].add(-table[ids[7, 0]]).at[8].add(-table[ids[8, 0]])
    for impl in ("xla", "pallas"):
        f = jax.jit(functools.partial(embedding_bag, implementation=impl, interpret=impl == "pallas"))
        np.testing.assert_allclose(f(table, bad, lengths), want, **TOL)
    unique_ids, _ = embedding_bag_row_grads(bad, lengths, jnp.ones((B, D)), "sum", V)
    assert not np.isin([2 * V, -2], np.asarray(unique_ids)).any()        # and get no gradient


# ---------------------------------------------------------------------------- host huge pages

def _anon_huge_kb(ptr: int) -> int | None:
    """AnonHugePages (kB) of the mapping holding address `ptr`, from /proc/self/smaps."""
    try:
        lines = open("/proc/self/smaps").read().splitlines()
    except OSError:
        return None
    inside = False
    for line in lines:
        head = line.split()[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= ptr < hi
        elif inside and head == "AnonHugePages:":
            return int(line.split()[1])
    return None


def test_advise_huge_pages_keeps_values_and_backs_the_buffer():
    table = jax.random.normal(jax.random.key(0), (1 << 18, 16), jnp.float32)   # 16 MiB
    before = np.asarray(table).copy()
    ids = jnp.asarray(np.random.default_rng(0).integers(0, table.shape[0], (64, 7)), jnp.int32)
    lengths = jnp.full((64,), 7, jnp.int32)
    want = np.asarray(embedding_bag(table, ids, lengths))
    n = eb.advise_huge_pages(table)
    if n == 0:
        pytest.skip("not Linux on a CPU backend: advise_huge_pages is a no-op")
    assert n % eb.HUGE_PAGE == 0 and table.nbytes - 2 * eb.HUGE_PAGE < n <= table.nbytes
    np.testing.assert_array_equal(np.asarray(table), before)
    np.testing.assert_array_equal(np.asarray(embedding_bag(table, ids, lengths)), want)
    thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    ptr = table.unsafe_buffer_pointer()
    huge_kb = _anon_huge_kb(-(-ptr // eb.HUGE_PAGE) * eb.HUGE_PAGE)   # the advised part is its own mapping
    if "[never]" not in thp and huge_kb is not None:
        assert huge_kb * 1024 >= n // 2, f"{huge_kb} kB on huge pages after advising {n} bytes"


def test_advise_huge_pages_is_a_no_op_for_small_buffers():
    assert eb.advise_huge_pages(jnp.ones((100, 16), jnp.float32)) == 0
