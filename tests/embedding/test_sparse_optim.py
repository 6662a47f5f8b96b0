"""Sparse embedding optimizers: dedup, equality with dense optax, hand-computed steps, no O(V) work."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec.embedding import sparse_optim as so
from jaxrec.errors import ConfigError

V, D = 10, 4
ALL = {
    "sgd": lambda: so.sgd(0.1),
    "adagrad": lambda: so.adagrad(0.1),
    "rowwise_adagrad": lambda: so.rowwise_adagrad(0.1),
    "adam_row": lambda: so.adam(0.1),
    "adam_global": lambda: so.adam(0.1, bias_correction="global"),
    "ftrl": lambda: so.ftrl(0.1, l1=0.01, l2=0.1),
}


def rand(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def dense_grad(ids, grads, num_rows):
    out = np.zeros((num_rows, grads.shape[1]), np.float32)
    np.add.at(out, np.asarray(ids), np.asarray(grads))
    return out


dedup = jax.jit(so.dedup, static_argnums=(2, 3))  # jitted: eager op-by-op dispatch is slow


def update(tx):
    return jax.jit(tx.update)  # cached per transformation


def step(tx, ids, grads, state, table):
    """One sparse step from raw (repeating) ids, through dedup."""
    uids, ugrads = dedup(jnp.asarray(ids, jnp.int32), jnp.asarray(grads), table.shape[0])
    return update(tx)(uids, ugrads, table, state)


# --- dedup -------------------------------------------------------------------------------

def test_dedup_sums_duplicates_and_pads_with_num_rows():
    ids = np.array([3, 1, 3, 7, 1, 3])
    g = rand((6, D), 0)
    uids, ug = dedup(jnp.asarray(ids), jnp.asarray(g), V)
    assert uids.dtype == jnp.int32 and uids.tolist() == [1, 3, 7, V, V, V]
    np.testing.assert_allclose(ug[0], g[1] + g[4], rtol=1e-6)
    np.testing.assert_allclose(ug[1], g[0] + g[2] + g[5], rtol=1e-6)
    np.testing.assert_array_equal(ug[2], g[3])
    np.testing.assert_array_equal(ug[3:], 0.0)


def test_dedup_is_order_independent():
    ids = np.array([5, 0, 5, 2, 9, 0, 5, 2])
    g = rand((8, D), 1)
    perm = np.random.default_rng(2).permutation(8)
    a = dedup(jnp.asarray(ids), jnp.asarray(g), V)
    b = dedup(jnp.asarray(ids[perm]), jnp.asarray(g[perm]), V)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6, atol=1e-7)


def test_dedup_capacity_smaller_than_n_and_jittable():
    ids = jnp.asarray([4, 4, 4, 8, 8, 1, 4, 1], jnp.int32)
    g = jnp.ones((8, D))
    uids, ug = dedup(ids, g, V, 4)
    assert uids.tolist() == [1, 4, 8, V]
    np.testing.assert_array_equal(ug[:, 0], [2.0, 4.0, 2.0, 0.0])


def test_dedup_sort_path_equals_unique_with_inverse_bitwise():
    """The sort path against its definition (`jnp.unique(return_inverse)` + `segment_sum`), padding
    ids (= num_rows) included, with a capacity that fits and one that drops the largest ids."""
    rng = np.random.default_rng(3)
    num_rows, n = 50, 64
    ids = rng.integers(0, num_rows + 1, n).astype(np.int32)      # num_rows: padding
    g = jnp.asarray(rand((n, D), 4))
    for capacity in (n, 12):
        want_ids, inv = jnp.unique(jnp.asarray(ids), size=capacity, fill_value=num_rows, return_inverse=True)
        want = jax.ops.segment_sum(g, inv.reshape(-1), num_segments=capacity)
        got_ids, got = dedup(jnp.asarray(ids), g, num_rows, capacity)
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_array_equal(got, want)


# --- equality with dense optax -----------------------------------------------------------

SCHEDULE = optax.exponential_decay(0.1, transition_steps=1, decay_rate=0.5)


@pytest.mark.parametrize("name,lr", [("sgd", 0.1), ("sgd", SCHEDULE), ("adagrad", 0.1), ("adagrad", SCHEDULE)])
def test_matches_dense_optax_with_zero_gradient_elsewhere(name, lr):
    sparse = so.sgd(lr) if name == "sgd" else so.adagrad(lr, initial_accumulator=0.1, eps=1e-10)
    dense = optax.sgd(lr) if name == "sgd" else optax.adagrad(lr, initial_accumulator_value=0.1, eps=1e-10)
    table = jnp.asarray(rand((V, D), 0))
    state, dense_table = sparse.init(table), table
    dense_state = dense.init(dense_table)
    rng = np.random.default_rng(1)
    for t in range(4):
        ids = rng.integers(0, 6, size=7)  # repeats; rows 6..9 never touched
        g = rand((7, D), 10 + t)
        before = np.asarray(table)
        table, state = step(sparse, ids, g, state, table)
        updates, dense_state = jax.jit(dense.update)(jnp.asarray(dense_grad(ids, g, V)), dense_state, dense_table)
        dense_table = optax.apply_updates(dense_table, updates)
        untouched = np.setdiff1d(np.arange(V), ids)
        np.testing.assert_array_equal(np.asarray(table)[untouched], before[untouched])
        np.testing.assert_allclose(table, dense_table, rtol=1e-6, atol=1e-7)
        if name == "adagrad":  # dense optax accumulates 0 on untouched rows, so all of G matches
            np.testing.assert_allclose(state.slots["accum"], dense_state[0].sum_of_squares, rtol=1e-6)
    assert int(state.count) == 4


@pytest.mark.parametrize("bias_correction", ["row", "global"])
def test_adam_touching_every_row_equals_optax_adam(bias_correction):
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-8
    sparse, dense = so.adam(lr, b1, b2, eps, bias_correction), optax.adam(lr, b1, b2, eps)
    table = dense_table = jnp.asarray(rand((V, D), 0))
    state, dense_state = sparse.init(table), dense.init(dense_table)
    for t in range(5):
        g = jnp.asarray(rand((V, D), 20 + t))
        table, state = update(sparse)(jnp.arange(V, dtype=jnp.int32), g, table, state)
        updates, dense_state = jax.jit(dense.update)(g, dense_state, dense_table)
        dense_table = optax.apply_updates(dense_table, updates)
        np.testing.assert_allclose(table, dense_table, atol=1e-6)
    np.testing.assert_allclose(state.slots["mu"], dense_state[0].mu, atol=1e-6)
    np.testing.assert_allclose(state.slots["nu"], dense_state[0].nu, atol=1e-6)


@pytest.mark.parametrize("bias_correction", ["row", "global"])
def test_adam_is_lazy_a_skipped_row_keeps_its_moments(bias_correction):
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    tx = so.adam(lr, b1, b2, eps, bias_correction)
    w0 = rand((3, D), 0)
    g1, g2, g3 = rand((2, D), 1), rand((2, D), 2), rand((2, D), 3)
    table, state = jnp.asarray(w0), tx.init(jnp.asarray(w0))
    table, state = update(tx)(jnp.array([0, 1]), jnp.asarray(g1), table, state)          # t=1: rows 0, 1
    after1 = (np.asarray(table), {k: np.asarray(v) for k, v in state.slots.items()})
    table, state = update(tx)(jnp.array([0, 3]), jnp.asarray(g2), table, state)          # t=2: row 0 only
    np.testing.assert_array_equal(np.asarray(table)[1], after1[0][1])
    for k, v in state.slots.items():
        np.testing.assert_array_equal(np.asarray(v)[1], after1[1][k][1])             # no decay of row 1
    table, state = update(tx)(jnp.array([1, 3]), jnp.asarray(g3), table, state)          # t=3: row 1 again

    # Row 1 by hand: two Adam updates, the second at row-step 2 (global step 3).
    m1, v1 = (1 - b1) * g1[1].astype(np.float64), (1 - b2) * g1[1].astype(np.float64) ** 2
    w1 = w0[1] - lr * (m1 / (1 - b1)) / (np.sqrt(v1 / (1 - b2)) + eps)
    m2, v2 = b1 * m1 + (1 - b1) * g3[0], b2 * v1 + (1 - b2) * g3[0].astype(np.float64) ** 2
    tau = 2 if bias_correction == "row" else 3
    w2 = w1 - lr * (m2 / (1 - b1 ** tau)) / (np.sqrt(v2 / (1 - b2 ** tau)) + eps)
    np.testing.assert_allclose(after1[0][1], w1, rtol=1e-5)
    np.testing.assert_allclose(table[1], w2, rtol=1e-5)
    np.testing.assert_allclose(state.slots["mu"][1], m2, rtol=1e-5)
    np.testing.assert_allclose(state.slots["nu"][1], v2, rtol=1e-5)
    if bias_correction == "row":
        assert state.slots["row_count"].tolist() == [2, 2, 0]
    else:
        assert "row_count" not in state.slots


# --- hand-computed row-wise Adagrad and FTRL ---------------------------------------------

def test_rowwise_adagrad_two_steps_by_hand():
    lr, eps = 0.5, 1e-8
    tx = so.rowwise_adagrad(lr, eps=eps)
    w0 = rand((3, D), 0)
    g1, g2 = rand((1, D), 1), rand((1, D), 2)
    table, state = jnp.asarray(w0), tx.init(jnp.asarray(w0))
    for g in (g1, g2):
        table, state = update(tx)(jnp.array([1]), jnp.asarray(g), table, state)
    G1 = np.mean(g1.astype(np.float64) ** 2)
    w1 = w0[1] - lr * g1[0] / (np.sqrt(G1) + eps)
    G2 = G1 + np.mean(g2.astype(np.float64) ** 2)
    w2 = w1 - lr * g2[0] / (np.sqrt(G2) + eps)
    assert state.slots["accum"].shape == (3,)
    np.testing.assert_allclose(state.slots["accum"], [0.0, G2, 0.0], rtol=1e-6)
    np.testing.assert_allclose(table[1], w2, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(table)[[0, 2]], w0[[0, 2]])


def test_ftrl_scalar_case_by_hand():
    """alpha=1, beta=1, n0=0, no l1/l2, w0=0: g=3 -> z=3, n=9, w=-3/(1+3); g=4 -> n=25,
    sigma=(5-3)/1=2, z=3+4-2*(-0.75)=8.5, w=-8.5/(1+5)."""
    tx = so.ftrl(1.0, beta=1.0, initial_accumulator=0.0)
    table, state = jnp.zeros((2, 1)), tx.init(jnp.zeros((2, 1)))
    np.testing.assert_array_equal(state.slots["z"], 0.0)  # paper's initialisation for a zero table
    table, state = update(tx)(jnp.array([0]), jnp.array([[3.0]]), table, state)
    assert float(table[0, 0]) == pytest.approx(-0.75) and float(state.slots["z"][0, 0]) == pytest.approx(3.0)
    table, state = update(tx)(jnp.array([0]), jnp.array([[4.0]]), table, state)
    assert float(table[0, 0]) == pytest.approx(-8.5 / 6, rel=1e-6)
    assert float(state.slots["z"][0, 0]) == pytest.approx(8.5) and float(state.slots["n"][0, 0]) == pytest.approx(25.0)
    assert float(table[1, 0]) == 0.0


def test_ftrl_two_steps_with_l1_l2_by_hand():
    alpha, beta, l1, l2, n0 = 0.5, 1.0, 0.3, 0.2, 0.1
    tx = so.ftrl(alpha, l1=l1, l2=l2, beta=beta, initial_accumulator=n0)
    w0 = rand((3, D), 0) * 0.1
    table, state = jnp.asarray(w0), tx.init(jnp.asarray(w0))
    # Reference in float64, Algorithm 1 of McMahan et al. (2013) with z chosen to reproduce w0.
    n = np.full(D, n0)
    z = -(w0[1] * ((beta + np.sqrt(n)) / alpha + l2) + np.sign(w0[1]) * l1)
    np.testing.assert_allclose(state.slots["z"][1], z, rtol=1e-6)
    # Coordinate 0's first gradient cancels z, so |z| <= l1 and the weight becomes exactly 0.
    g1 = np.array([[-z[0], -2.0, 0.5, 1.0]], np.float32)
    g2 = np.array([[0.01, -1.0, -1.5, 2.0]], np.float32)
    w = w0[1].astype(np.float64)
    for g in (g1[0], g2[0]):
        table, state = update(tx)(jnp.array([1]), jnp.asarray(g[None]), table, state)
        sigma = (np.sqrt(n + g ** 2) - np.sqrt(n)) / alpha
        z = z + g - sigma * w
        n = n + g.astype(np.float64) ** 2
        w = np.where(np.abs(z) <= l1, 0.0, -(z - np.sign(z) * l1) / ((beta + np.sqrt(n)) / alpha + l2))
        np.testing.assert_allclose(table[1], w, rtol=1e-5, atol=1e-7)
    assert w[0] == 0.0 and np.all(w[1:] != 0.0)  # both branches of the closed form exercised
    np.testing.assert_allclose(state.slots["z"][1], z, rtol=1e-5)
    np.testing.assert_allclose(state.slots["n"][1], n, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(table)[[0, 2]], w0[[0, 2]])


# --- padding, jit, donation, cost --------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_padding_ids_change_nothing(name):
    tx = ALL[name]()
    table = jnp.asarray(rand((V, D), 0))
    state = tx.init(table)
    big = jnp.asarray(rand((3, D), 1) * 100)  # large gradients at the padding slots must not leak anywhere
    new_table, new_state = update(tx)(jnp.array([V, V, V]), big, table, state)
    np.testing.assert_array_equal(new_table, table)
    for k in state.slots:
        np.testing.assert_array_equal(new_state.slots[k], state.slots[k])
    # One real id among padding: only that row moves.
    new_table, new_state = update(tx)(jnp.array([2, V, V]), big, table, state)
    changed = np.flatnonzero(np.any(np.asarray(new_table) != np.asarray(table), axis=1))
    assert changed.tolist() == [2]
    for k in state.slots:
        rows = np.flatnonzero(np.asarray(new_state.slots[k] != state.slots[k]).reshape(V, -1).any(axis=1))
        assert set(rows.tolist()) <= {2}


@pytest.mark.parametrize("name", ALL)
def test_jit_with_donation_matches_undonated(name):
    tx = ALL[name]()
    ids, g = jnp.array([1, 4, 7, V], jnp.int32), jnp.asarray(rand((4, D), 1))
    expected_table, expected_state = update(tx)(ids, g, jnp.asarray(rand((V, D), 0)), tx.init(jnp.asarray(rand((V, D), 0))))
    for fn in (jax.jit(tx.update, donate_argnums=(2, 3)),):
        table = jnp.asarray(rand((V, D), 0))
        state = tx.init(table)
        new_table, new_state = fn(ids, g, table, state)
        assert table.is_deleted()  # donated
        np.testing.assert_allclose(new_table, expected_table, rtol=1e-6)
        for k in expected_state.slots:
            np.testing.assert_allclose(new_state.slots[k], expected_state.slots[k], rtol=1e-6)


def _compiled_temp_bytes(tx, num_rows, U=4096, Dim=16):
    table = jax.ShapeDtypeStruct((num_rows, Dim), jnp.float32)
    state = jax.eval_shape(tx.init, table)
    ids, g = jax.ShapeDtypeStruct((U,), jnp.int32), jax.ShapeDtypeStruct((U, Dim), jnp.float32)
    fn = jax.jit(tx.update, donate_argnums=(2, 3))
    mem = fn.lower(ids, g, table, state).compile().memory_analysis()
    if mem is None:
        pytest.skip("backend reports no memory analysis")
    table_and_slots = num_rows * Dim * 4 + sum(x.size * x.dtype.itemsize for x in state.slots.values())
    return mem.temp_size_in_bytes, mem.alias_size_in_bytes, table_and_slots


@pytest.mark.parametrize("name", ALL)
def test_compiled_update_needs_no_table_sized_buffer(name):
    """In place: table and slots are aliased to the outputs and scratch memory does not grow with V."""
    temp, aliased, table_and_slots = _compiled_temp_bytes(ALL[name](), 2_000_000)
    assert aliased >= table_and_slots
    assert temp < 4 * 2**20  # scratch ~ U * D (256 KB per [U, D] array), never V * D (128 MB)


def test_from_config_builds_each_optimizer():
    table = jnp.zeros((V, D))
    assert set(so.from_config({"name": "adam", "lr": 0.1}).init(table).slots) == {"mu", "nu", "row_count"}
    assert set(so.from_config({"name": "adam", "lr": 0.1, "bias_correction": "global"}).init(table).slots) == {"mu", "nu"}
    assert so.from_config({"name": "rowwise_adagrad", "lr": 0.1}).init(table).slots["accum"].shape == (V,)
    assert set(so.from_config({"name": "ftrl", "lr": 0.1, "l1": 1.0}).init(table).slots) == {"z", "n"}
    so.from_config({"name": "sgd", "lr": SCHEDULE})
    so.from_config({"name": "adagrad", "lr": 0.1, "initial_accumulator": 0.0, "eps": 1e-7})


@pytest.mark.parametrize("cfg,key", [
    ({"name": "lamb", "lr": 0.1}, "sparse_optimizer.name"),
    ({"lr": 0.1}, "sparse_optimizer.name"),
    ({"name": "sgd", "lr": 0.1, "momentum": 0.9}, "sparse_optimizer.momentum"),
    ({"name": "adagrad", "lr": 0.1, "b1": 0.9}, "sparse_optimizer.b1"),
    ({"name": "adam"}, "sparse_optimizer.lr"),
    ({"name": "adam", "lr": "fast"}, "sparse_optimizer.lr"),
    ({"name": "adam", "lr": 0.1, "bias_correction": "step"}, "sparse_optimizer.bias_correction"),
    ({"name": "ftrl", "lr": 0.1, "l1": -1.0}, "sparse_optimizer.l1"),
])
def test_from_config_errors_name_the_key(cfg, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        so.from_config(cfg)


def test_dedup_small_table_path_equals_sort_path():
    rng = np.random.default_rng(3)
    V, N = 50, 400  # V <= N: the bincount path; capacity=N forces the sort path
    ids = jnp.asarray(rng.integers(0, V, N).astype(np.int32))
    grads = jnp.asarray(rng.normal(size=(N, 3)).astype(np.float32))
    u1, g1 = so.dedup(ids, grads, V)
    u2, g2 = so.dedup(ids, grads, V, capacity=N)
    assert u1.shape == (V,) and u2.shape == (N,)
    assert set(np.asarray(u1)[np.asarray(u1) < V].tolist()) == set(np.unique(np.asarray(ids)).tolist())
    dense = lambda u, g: np.asarray(jnp.zeros((V, 3)).at[u].add(g, mode="drop"))
    np.testing.assert_allclose(dense(u1, g1), dense(u2, g2), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(g1)[np.asarray(u1) == V], 0.0)  # padding slots carry no gradient
