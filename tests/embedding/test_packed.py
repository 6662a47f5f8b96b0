"""Packed AMTL storage: the packed lookup equals the masked lookup (sizes 0..D included), the byte
count by hand, save/load round trip, stacks, and a model served from packed stacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.embedding import packed as packed_lib
from jaxrec.errors import ConfigError, DataError


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packed_lookup_equals_masked_lookup(seed):
    rng = np.random.default_rng(seed)
    V, D = 50, 8
    table = rng.normal(size=(V, D)).astype(np.float32)
    sizes = rng.integers(0, D + 1, size=V)
    sizes[:3] = [0, D, 1]  # the ends always present
    packed = packed_lib.pack(table, sizes)
    ids = rng.integers(0, V, size=(7, 5))
    got = np.asarray(packed_lib.packed_lookup(packed, ids))
    want = table[ids] * (np.arange(D) < sizes[ids][..., None])  # by hand
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, np.asarray(packed_lib.masked_lookup(table, sizes, ids)))
    assert packed.data.size == sizes.sum()
    np.testing.assert_array_equal(packed.sizes, sizes)


def test_all_zero_and_all_full_sizes():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    empty = packed_lib.pack(table, np.zeros(4, int))
    np.testing.assert_array_equal(packed_lib.packed_lookup(empty, np.array([0, 3])), np.zeros((2, 3)))
    full = packed_lib.pack(table, np.full(4, 3))
    np.testing.assert_array_equal(packed_lib.unpack(full), table)


def test_layout_and_bytes_by_hand():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)  # rows [0 1 2] [3 4 5] [6 7 8] [9 10 11]
    p = packed_lib.pack(table, np.array([2, 0, 3, 1]))
    np.testing.assert_array_equal(p.offsets, [0, 2, 2, 5, 6])
    np.testing.assert_array_equal(p.data, [0, 1, 6, 7, 8, 9])
    assert p.offsets.dtype == np.int64
    assert p.nbytes == 6 * 4 + 5 * 8  # data float32 + offsets int64 [V + 1]
    np.testing.assert_array_equal(packed_lib.unpack(p), [[0, 1, 0], [0, 0, 0], [6, 7, 8], [9, 0, 0]])


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(30, 6)).astype(np.float32)
    p = packed_lib.pack(table, rng.integers(0, 7, size=30))
    size = packed_lib.save(tmp_path / "t.npz", p)
    assert size == (tmp_path / "t.npz").stat().st_size and size >= p.nbytes
    q = packed_lib.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(q.offsets, p.offsets)
    np.testing.assert_array_equal(q.data, p.data)
    assert q.dim == 6
    np.savez(tmp_path / "bad.npz", offsets=np.array([0, 9]), data=np.zeros(2, np.float32), dim=np.int64(6))
    with pytest.raises(DataError):
        packed_lib.load(tmp_path / "bad.npz")


def test_bad_sizes_are_refused():
    table = np.zeros((3, 4), np.float32)
    with pytest.raises(ConfigError):
        packed_lib.pack(table, np.array([0, 5, 1]))
    with pytest.raises(ConfigError):
        packed_lib.pack(table, np.array([1, 2]))


def test_pack_stack_keeps_unlisted_tables_full():
    class L:  # the two StackLayout fields pack_stack reads
        names, sizes = ("a", "b"), (2, 3)

    stacked = np.arange(20, dtype=np.float32).reshape(5, 4)
    p = packed_lib.pack_stack(stacked, L, {"b": np.array([1, 0, 4])})
    np.testing.assert_array_equal(p.sizes, [4, 4, 1, 0, 4])
    with pytest.raises(ConfigError):
        packed_lib.pack_stack(stacked, L, {"c": np.array([1])})


def test_model_served_from_packed_stack_equals_masked_model():
    """An EmbeddingLayer with an AMTL table: the layer served from the packed stack (masks off)
    returns what the masked layer returns."""
    from jaxrec.data.features import Categorical
    from jaxrec.embedding.amtl import AMTLMask, frequency_key, per_value_dims
    from jaxrec.embedding.layer import EMBEDDING, EmbeddingLayer
    from jaxrec.embedding.specs import TableOptions

    feats = (Categorical("a", vocab_size=40), Categorical("b", vocab_size=9))
    opts = TableOptions(amtl={"start": "uniform"})
    layer = EmbeddingLayer(feats, 6, init_std=1.0, tables=(("a", opts),))
    rng = np.random.default_rng(0)
    u = rng.uniform(size=40).astype(np.float32)
    batch = {"a": jnp.asarray(rng.integers(0, 40, 64)), "b": jnp.asarray(rng.integers(0, 9, 64))}
    batch[frequency_key("a")] = jnp.asarray(u)[batch["a"]]
    v = layer.init(jax.random.PRNGKey(1), batch)
    amtl = jax.tree.map(lambda x: x, v["params"]["amtl_a"])  # frequent values: large sizes, rare ones: small
    amtl["high"]["layers_1"]["bias"] = 0.5 * jnp.arange(6.0)
    amtl["low"]["layers_1"]["bias"] = -0.5 * jnp.arange(6.0)
    v = {**v, "params": {**v["params"], "amtl_a": amtl}}
    masked = layer.apply(v, batch)
    sub = {"params": v["params"]["amtl_a"]}
    sizes = per_value_dims(AMTLMask(6, opts.amtl.hidden, opts.amtl.start), sub, u)
    assert len(set(sizes.tolist())) > 1  # sizes differ between values (else the test is weak)
    layout = layer.plan.layouts["stacked"]
    p = packed_lib.pack_stack(v[EMBEDDING]["stacked"], layout, {"a": sizes})
    with packed_lib.serve_packed({("stacked",): p}) as used:
        served = layer.apply(v, batch)
    assert used == {("stacked",)}
    np.testing.assert_array_equal(np.asarray(served), np.asarray(masked))
