"""Compressed embedding schemes: unique index tuples, exact row counts, determinism, unseen ids,
and the module's fusion by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.embedding.compressed import IndexScheme, fuse, mix_bits, table_bytes
from jaxrec.errors import ConfigError

V = 5000


@pytest.mark.parametrize("strategy", ["succession", "skip"])
@pytest.mark.parametrize("blocks", [1, 2, 3, 5, 13])
def test_binary_code_tuples_are_unique(strategy, blocks):
    scheme = IndexScheme("binary_code", V, num_blocks=blocks, strategy=strategy)
    idx = np.asarray(scheme.indices(jnp.arange(V)))
    assert idx.shape == (V, blocks) and scheme.bits == 13
    assert len({tuple(r) for r in idx}) == V  # distinct values -> distinct block-index tuples
    assert sorted(b for block in scheme.blocks for b in block) == list(range(13))  # the blocks partition the bits
    assert idx.min() >= 0 and idx.max() < scheme.num_rows == sum(2 ** len(b) for b in scheme.blocks)
    ends = scheme.block_offsets[1:] + (scheme.num_rows,)
    for r in range(blocks):  # block r reads only its own slice of the table
        assert np.all((idx[:, r] >= scheme.block_offsets[r]) & (idx[:, r] < ends[r]))


def test_block_bits_is_the_papers_knob():
    """t = 5 on L = 13 bits: blocks of 5, 5, 3 bits, 2^5 + 2^5 + 2^3 = 72 rows, unique tuples."""
    scheme = IndexScheme("binary_code", V, block_bits=5)
    assert [len(b) for b in scheme.blocks] == [5, 5, 3] and scheme.num_rows == 72 and scheme.block_offsets == (0, 32, 64)
    idx = np.asarray(scheme.indices(jnp.arange(V)))
    assert len({tuple(r) for r in idx}) == V and idx[:, 2].min() >= 64 and idx.max() < 72
    with pytest.raises(ConfigError, match="block_bits"):
        IndexScheme("binary_code", V, block_bits=5, strategy="skip")


def test_mix_bits_is_a_bijection():
    for bits in (1, 7, 12):
        assert len(set(np.asarray(mix_bits(jnp.arange(2 ** bits), bits)).tolist())) == 2 ** bits


def test_binary_code_by_hand():
    """Skip strategy, L = 4, 2 blocks: block 0 = bits 0 and 2, block 1 = bits 1 and 3."""
    scheme = IndexScheme("binary_code", 16, num_bits=4, num_blocks=2, strategy="skip")
    ids = jnp.arange(16)
    code = np.asarray(mix_bits(ids, 4))
    expect0 = (code & 1) + 2 * ((code >> 2) & 1)
    expect1 = ((code >> 1) & 1) + 2 * ((code >> 3) & 1) + 4
    np.testing.assert_array_equal(np.asarray(scheme.indices(ids)), np.stack([expect0, expect1], 1))


def test_other_schemes():
    ids = jnp.arange(V)
    qr = IndexScheme("qr", V, buckets=100)
    pairs = np.asarray(qr.indices(ids))
    assert len({tuple(p) for p in pairs}) == V and qr.num_rows == 100 + 50 and pairs.max() < qr.num_rows
    for kind in ("hash", "double_hash"):
        s = IndexScheme(kind, V, buckets=97)
        idx = np.asarray(s.indices(ids))
        assert idx.shape == (V, s.num_lookups) and idx.min() >= 0 and idx.max() < 97
        assert np.array_equal(idx, np.asarray(s.indices(ids)))  # deterministic
    dh = np.asarray(IndexScheme("double_hash", V, buckets=97).indices(ids))
    assert np.mean(dh[:, 0] == dh[:, 1]) < 0.05  # two different hashes
    assert table_bytes(IndexScheme("full", V), 16) == V * 16 * 4


def test_unseen_ids_get_rows():
    for scheme in (IndexScheme("binary_code", V, num_blocks=3), IndexScheme("hash", V, buckets=50),
                   IndexScheme("qr", V, buckets=100), IndexScheme("full", V)):
        idx = np.asarray(scheme.indices(jnp.array([V, 10 * V, 2 ** 30])))
        assert idx.min() >= 0 and idx.max() < scheme.num_rows


def test_layer_fuses_by_hand():
    """A compressed table inside EmbeddingLayer: each id reads its K rows of the stacked table
    (at the table's offset) and fuses them."""
    from jaxrec.data.features import Categorical
    from jaxrec.embedding import EMBEDDING, EmbeddingLayer
    from jaxrec.embedding.specs import TableOptions

    feats = (Categorical("a", vocab_size=5), Categorical("item", vocab_size=64))
    opts = (("item", TableOptions(compression={"kind": "binary_code", "num_blocks": 2})),)
    layer = EmbeddingLayer(feats, dim=3, tables=opts)
    scheme = layer.plan.layouts["stacked"].specs[1].scheme
    batch = {"a": jnp.array([1, 4]), "item": jnp.array([2, 63])}
    variables = layer.init(jax.random.PRNGKey(0), batch)
    table = variables[EMBEDDING]["stacked"]
    assert table.shape == (5 + scheme.num_rows, 3)
    out = layer.apply(variables, batch)
    np.testing.assert_allclose(out[:, 1], table[scheme.indices(batch["item"]) + 5].sum(-2), rtol=1e-6)
    np.testing.assert_array_equal(out[:, 0], table[batch["a"]])
    concat = (("item", TableOptions(compression={"kind": "binary_code", "num_blocks": 2, "fusion": "concat"})),)
    with pytest.raises(ValueError, match="fusion 'concat' changes the width"):
        EmbeddingLayer(feats, dim=3, tables=concat).init(jax.random.PRNGKey(0), batch)
    v = jnp.arange(12.0).reshape(2, 2, 3)
    np.testing.assert_allclose(fuse(v, "prod"), v[:, 0] * v[:, 1])
    np.testing.assert_allclose(fuse(v, "mean"), v.mean(1))


def test_bad_options_name_the_key():
    with pytest.raises(ConfigError, match="compression kind 'bloom'"):
        IndexScheme("bloom", 10)
    with pytest.raises(ConfigError, match="needs buckets"):
        IndexScheme("hash", 10)
    with pytest.raises(ConfigError, match="num_blocks <= num_bits"):
        IndexScheme("binary_code", 16, num_blocks=9)
    with pytest.raises(ConfigError, match="strategy 'random'"):
        IndexScheme("binary_code", 16, num_blocks=2, strategy="random")


def test_layer_reads_compressed_tables_by_config(small_config):
    """`config.tables.<table>.compression` swaps that table for a compressed one inside the ordinary
    embedding layer: 'full' reproduces the plain layer exactly; binary_code shrinks the table to
    sum_r 2^l_r rows and still trains (row-wise updates included)."""
    from jaxrec.embedding import EmbeddingLayer
    from jaxrec.embedding.specs import TableOptions
    from jaxrec.train import experiment

    exp = experiment.build(small_config)
    feats = exp.dataset.features
    batch = {k: v[:32] for k, v in exp.dataset.columns("train").items()}
    plain = EmbeddingLayer(feats, 8)
    full = EmbeddingLayer(feats, 8, tables=(("item_id", TableOptions(compression={"kind": "full"})),))
    variables = plain.init(jax.random.PRNGKey(0), batch)
    np.testing.assert_array_equal(full.apply(variables, batch), plain.apply(variables, batch))

    small_config.tables = {"item_id": {"compression": {"kind": "binary_code", "num_blocks": 4}}}
    small_config.sparse_optimizer.rowwise = True
    small_config.train.num_epochs = 1
    exp = experiment.build(small_config)
    spec = next(t for t in exp.plan.layer("embedding").tables if t.name == "item_id")
    assert spec.scheme is not None and spec.rows == 3 * 2 ** 3 + 2 ** 2  # 1,651 items: L = 11 bits, blocks of 3, 3, 3, 2
    state = exp.init_state()
    chunk = {k: v[:20 * 1024].reshape((20, 1024) + v.shape[1:]) for k, v in exp.dataset.columns("train").items()}
    state, out = exp.train_steps(state, chunk)
    assert np.all(np.isfinite(np.asarray(out["loss"]))) and float(out["loss"][-1]) < float(out["loss"][0])
    assert experiment.evaluate(exp, state.params, "valid")["auc"] > 0.65


def test_bad_compression_config_names_the_table(small_config):
    from jaxrec.train import experiment

    small_config.tables = {"item_id": {"compression": {"kind": "binary_code", "blocks": 4}}}
    with pytest.raises(ValueError, match="tables.item_id.compression"):
        experiment.build(small_config)
