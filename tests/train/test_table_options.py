"""Per-table options (config `tables`): each table's own optimizer and row sharding, stacked apart."""

import jax
import numpy as np
import pytest

from jaxrec.data import batching
from jaxrec.data.features import Categorical
from jaxrec.embedding import EmbeddingLayer
from jaxrec.embedding.plan import group_stacks
from jaxrec.embedding.specs import TableOptions, TableSpec
from jaxrec.errors import ConfigError
from jaxrec.train.experiment import build


def test_stacks_group_tables_by_optimizer_and_sharding():
    ftrl = {"name": "ftrl", "lr": 0.1}
    tables = (TableSpec("a", 3, 4, optimizer=ftrl), TableSpec("b", 5, 4), TableSpec("c", 2, 4, optimizer=ftrl),
              TableSpec("d", 7, 4, sharding="contiguous"), TableSpec("e", 4, 4))
    stacks = group_stacks(tables)
    assert {s: l.names for s, l in stacks.items()} == {"stacked": ("b", "e"), "stacked_1": ("a", "c"), "stacked_2": ("d",)}
    assert stacks["stacked_1"].optimizer == (("lr", 0.1), ("name", "ftrl")) and stacks["stacked"].optimizer is None
    assert stacks["stacked_2"].sharding == "contiguous" and stacks["stacked_1"].sharding is None
    only_own = group_stacks((TableSpec("a", 3, 4, optimizer=ftrl),))
    assert list(only_own) == ["stacked_1"]  # 'stacked' always means the run's defaults


def test_stacking_apart_leaves_the_lookup_unchanged():
    feats = (Categorical("a", vocab_size=5), Categorical("b", vocab_size=7), Categorical("c", vocab_size=3))
    batch = {"a": np.array([1, 4, 0]), "b": np.array([6, 2, 2]), "c": np.array([0, 1, 2])}
    one = EmbeddingLayer(feats, 4)
    two = EmbeddingLayer(feats, 4, tables=(("b", TableOptions(optimizer={"name": "sgd"})),))
    v1, v2 = one.init(jax.random.PRNGKey(0), batch), two.init(jax.random.PRNGKey(1), batch)
    assert set(v2["embedding"]) == {"stacked", "stacked_1"}
    logical = one.stacks["stacked"].unstack(v1["embedding"]["stacked"])
    v2 = {"embedding": {s: l.stack(logical) for s, l in two.stacks.items()}}
    np.testing.assert_array_equal(one.apply(v1, batch), two.apply(v2, batch))


def one_step(config, dataset, tables_from=None):
    """One train step; with `tables_from` = (exp, state), start from that run's logical tables."""
    exp = build(config, dataset)
    state = exp.init_state()
    if tables_from is not None:
        src_exp, src = tables_from
        logical = {}
        for path, layout in src_exp.layouts.items():
            logical.setdefault(path[:-1], {}).update(layout.unstack(src.params["sparse"][path[0]][path[1]]))
        sparse = {layer: {s: exp.layouts[(layer, s)].stack(logical[(layer,)]) for s in state.params["sparse"][layer]}
                  for layer in state.params["sparse"]}
        state = state.replace(params={**state.params, "sparse": sparse})
    before = jax.device_get(state)
    _, chunk = next(batching.train_chunks(dataset.columns("train"), 1024, 1, 0, 0))
    return exp, before, jax.device_get(exp.train_steps(state, chunk)[0])


def tables_of(exp, state):
    out = {}
    for (layer, stack), layout in exp.layouts.items():
        for name, t in layout.unstack(np.asarray(state.params["sparse"][layer][stack])).items():
            out[(layer, name)] = t
    return out


@pytest.mark.parametrize("rowwise", [True, False])
def test_a_table_with_its_own_optimizer_is_updated_by_it(small_config, movielens, rowwise):
    c = small_config.copy_and_resolve_references()
    c.train.steps_per_call = 1
    c.sparse_optimizer.rowwise = rowwise
    c.sparse_optimizer.lr = 0.01
    base_exp, base0, base1 = one_step(c, movielens)  # every table: Adam
    sgd = c.copy_and_resolve_references()
    sgd.sparse_optimizer.name, sgd.sparse_optimizer.lr = "sgd", 0.5
    sgd_exp, _, sgd1 = one_step(sgd, movielens, (base_exp, base0))  # every table: SGD, same start
    mixed = c.copy_and_resolve_references()
    mixed.tables = {"item_id": {"optimizer": {"name": "sgd", "lr": 0.5}}}
    mixed_exp, mixed0, mixed1 = one_step(mixed, movielens, (base_exp, base0))  # item_id: SGD, others Adam
    assert set(mixed0.params["sparse"]["embedding"]) == {"stacked", "stacked_1"}
    base, by_sgd, got = tables_of(base_exp, base1), tables_of(sgd_exp, sgd1), tables_of(mixed_exp, mixed1)
    assert set(got) == set(base)
    for key in got:
        want = by_sgd[key] if key[1] == "item_id" else base[key]
        np.testing.assert_allclose(got[key], want, rtol=1e-5, atol=1e-7, err_msg=str(key))
    assert not np.allclose(by_sgd[("embedding", "item_id")], base[("embedding", "item_id")])  # the test can fail


@pytest.mark.parametrize("tables, message", [
    ({"item": {"sharding": "mod"}}, r"tables\.item: no feature reads a table 'item' \(did you mean 'item_id'\?\)"),
    ({"item_id": {"shard": "mod"}}, r"unknown config key 'tables\.item_id\.shard' \(did you mean 'sharding'\?\)"),
    ({"item_id": {"sharding": "range"}}, r"tables\.item_id\.sharding='range'"),
    ({"item_id": {"optimizer": {"rowwise": True}}}, r"tables\.item_id\.optimizer\.rowwise"),
    ({"item_id": {"optimizer": {"name": "nadam"}}}, r"tables\.item_id\.optimizer .*nadam"),
])
def test_bad_table_options_are_named(small_config, movielens, tables, message):
    small_config.tables = tables
    with pytest.raises(ConfigError, match=message):
        build(small_config, movielens)
