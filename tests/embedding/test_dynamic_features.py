"""Dynamic-vocabulary features in a train step: keys -> rows, shared tables, metrics, and
re-initialised rows (embedding and optimizer slots) for new keys."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec.data import encoding
from jaxrec.data.features import Categorical
from jaxrec.embedding import StackLayout, dynamic_features as dfe
from jaxrec.embedding import sparse_optim
from jaxrec.embedding.specs import TableSpec
from jaxrec.errors import ConfigError, DataError

CLICKED = Categorical("clicked", encoding="dynamic", vocab_size=16, group="item")
TARGET = Categorical("target", encoding="dynamic", vocab_size=16, group="item")
USER = Categorical("user", encoding="dynamic", vocab_size=8, min_count=2)


def keys(values):
    return jnp.asarray(encoding.dynamic_keys(encoding._as_tokens(np.asarray(values, dtype=object))))


def test_dynamic_keys_stable_missing_is_zero_and_sequences_rejected():
    k = encoding.dynamic_keys(np.array(["a", "", "b", "a"], dtype=object))
    assert k.dtype == np.uint32 and k.shape == (4, 2)
    assert (k[1] == 0).all() and (k[0] == k[3]).all() and (k[0] != k[2]).any()
    h = encoding.stable_hash(np.array([7], np.int64))[0]
    assert encoding.dynamic_keys(np.array([7], np.int64)).tolist() == [[int(h) >> 32, int(h) & 0xFFFFFFFF]]
    specs, _ = encoding.fit((USER,), {"user": np.array([1, 2])})
    assert specs[0].vocab_size == 8  # the capacity, not fitted
    with pytest.raises(DataError, match="vocab_size >= 2"):
        encoding.fit((Categorical("u", encoding="dynamic"),), {"u": np.array([1])})


def test_vocab_tables_group_shared_and_conflicts_named():
    tables = dfe.vocab_tables((CLICKED, TARGET, USER, Categorical("static")))
    assert {t: names for t, (_, names) in tables.items()} == {"item": ("clicked", "target"), "user": ("user",)}
    assert tables["user"][0].min_count == 2 and tables["item"][0].capacity == 16
    with pytest.raises(ConfigError, match="share table 'item'"):
        dfe.vocab_tables((CLICKED, Categorical("target", encoding="dynamic", vocab_size=32, group="item")))
    with pytest.raises(ConfigError, match="a table has one encoding"):
        dfe.vocab_tables((CLICKED, Categorical("other", group="item")))
    with pytest.raises(ConfigError, match="feature 'bad'.*min_count"):
        dfe.vocab_tables((Categorical("bad", encoding="dynamic", vocab_size=8, min_count=0),))


def test_map_batch_shares_rows_counts_and_admits():
    tables = dfe.vocab_tables((CLICKED, TARGET, USER))
    vocabs = dfe.init_vocabs(tables)
    batch = {"clicked": keys(["x", "y", ""]), "target": keys(["y", "z", "x"]), "user": keys([5, 5, 6])}
    out, vocabs, m, new = dfe.map_batch(tables, vocabs, batch, 0, train=True)
    c, t = np.asarray(out["clicked"]), np.asarray(out["target"])
    assert c.dtype == np.int32 and c.shape == (3,)
    assert c[2] == 0 and c[0] == t[2] and c[1] == t[0] and len({c[0], c[1], t[1]}) == 3 and min(c[0], c[1], t[1]) > 0
    assert int(m["vocab/item/admitted"]) == 3 and int(m["vocab/item/unknown"]) == 0
    assert float(m["vocab/item/occupancy"]) == pytest.approx(3 / 15)
    assert sorted(np.asarray(new["item"]).tolist()) == [0, 0, 0] + sorted([c[0], c[1], t[1]])
    # user: min_count=2, so user 5 (seen twice in this batch) is admitted, user 6 is not yet.
    u = np.asarray(out["user"])
    assert u[0] == u[1] > 0 and u[2] == 0
    assert int(m["vocab/user/admitted"]) == 1 and int(m["vocab/user/rejected"]) == 1 and int(m["vocab/user/unknown"]) == 1
    # Eval lookups are read-only: known keys keep their rows, unknown ones get 0, nothing is admitted.
    ev, same, m2, new2 = dfe.map_batch(tables, vocabs, {"clicked": keys(["y", "w", "x"]), "target": keys(["z", "x", "q"]),
                                                        "user": keys([6, 6, 5])}, 1, train=False)
    assert np.asarray(ev["clicked"]).tolist() == [c[1], 0, c[0]] and np.asarray(ev["user"]).tolist() == [0, 0, u[0]]
    assert m2 == {} and new2 == {} and jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), same, vocabs))
    with pytest.raises(ValueError, match="feature 'user' has encoding='dynamic'"):
        dfe.map_batch(tables, vocabs, {**batch, "user": jnp.zeros(3, jnp.int32)}, 0, train=True)


def test_placeholder_rows():
    out = dfe.placeholder_rows((USER, Categorical("static")), {"user": np.zeros((4, 2), np.uint32), "static": np.ones(4)})
    assert out["user"].shape == (4,) and out["user"].dtype == jnp.int32 and (out["static"] == 1).all()


@pytest.mark.parametrize("optimizer", ["rowwise_adagrad", "optax_adam"])
def test_reset_new_rows_redraws_rows_and_resets_slots_only_there(optimizer):
    specs = (TableSpec("a", 5, 3, init_scale=0.5), TableSpec("user", 8, 3, initializer="uniform", init_scale=0.25))
    layouts = {("embedding", "stacked"): StackLayout.from_tables(specs)}
    table = jnp.full((13, 3), 7.0)
    tables = {"embedding": {"stacked": table}}
    if optimizer == "rowwise_adagrad":
        tx = sparse_optim.adagrad(0.1, initial_accumulator=0.1)
        init = lambda t: jax.tree.map(tx.init, t)
        state = init(tables)
        state = jax.tree.map(lambda x: x + 9 if x.ndim == 2 else x, state)  # "trained" slots
        initial = 0.1
    else:
        tx = optax.adam(0.1)
        init = tx.init
        state = jax.tree.map(lambda x: x + 9 if x.ndim == 2 else x, init(tables))
        initial = 0.0
    new = {"user": jnp.array([3, 0, 6, 0], jnp.int32)}  # rows 3 and 6 of table 'user' (stacked 8, 11)
    t2, s2 = dfe.reset_new_rows(new, tables, state, init, layouts, jax.random.PRNGKey(0))
    t2 = np.asarray(t2["embedding"]["stacked"])
    changed = [8, 11]
    others = [i for i in range(13) if i not in changed]
    assert (t2[others] == 7.0).all()
    assert (np.abs(t2[changed]) <= 0.25).all() and len(np.unique(t2[changed])) == 6  # uniform(-0.25, 0.25) draws
    for leaf in jax.tree.leaves(s2):
        if np.ndim(leaf) == 2:
            leaf = np.asarray(leaf)
            assert (leaf[changed] == initial).all() and (leaf[others] == 9 + initial).all()
