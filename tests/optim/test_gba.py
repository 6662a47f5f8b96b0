"""GBA aggregation: tokens, staleness, decay and accumulation against hand-computed cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.errors import ConfigError
from jaxrec.optim import gba

V, D, b, M = 7, 3, 2, 3   # table rows, width, local batch, local gradients per global step


def problem(seed=0):
    """A linear model with one dense weight vector and an embedding table: logit = x.w + sum(e[id])."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(M * b, D)), jnp.float32)
    ids = jnp.asarray(rng.integers(0, V, size=(M * b,)), jnp.int32).at[:3].set(4)  # id 4 repeated
    y = jnp.asarray(rng.integers(0, 2, size=(M * b,)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(D,)), jnp.float32)
    table = jnp.asarray(rng.normal(size=(V, D)), jnp.float32)
    return x, ids, y, w, table


def loss(w, rows, x, y):
    logit = x @ w + rows.sum(-1)
    return jnp.mean(jnp.logaddexp(0.0, logit) - y * logit)


def local_gradient(w, table, x, ids, y):
    """What a worker sends: the dense gradient and (ids, d loss / d looked-up row)."""
    gw, grows = jax.grad(loss, argnums=(0, 1))(w, table[ids], x, y)
    return gw, {"stacked": (ids, grows)}


def dense_rows(ids, grads):
    return np.asarray(jnp.zeros((V + 1, D)).at[ids].add(grads)[:V])  # slot V = padding


def test_token_and_staleness():
    cfg = gba.GBAConfig(num_aggregate=2)
    s = gba.init(jnp.zeros(2), {}, cfg, {})
    t0 = gba.issue_token(s)
    assert int(t0) == 0 and int(gba.staleness(s, t0)) == 0
    s = gba.advance(gba.advance(s, {}), {})
    assert int(s.step) == 2 and int(gba.issue_token(s)) == 2 and int(gba.staleness(s, t0)) == 2


@pytest.mark.parametrize("decay,want", [
    ("drop", [1, 1, 1, 0, 0]),
    ("exp", [1, 1, 1, 0.5, 0.25]),
    ("inverse", [1, 1, 1, 1 / 2, 1 / 3]),
])
def test_decay_by_hand(decay, want):
    cfg = gba.GBAConfig(num_aggregate=4, tolerance=2, decay=decay, decay_rate=0.5)
    got = [float(gba.decay_weight(jnp.int32(tau), cfg)) for tau in range(5)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_fresh_gradients_aggregate_to_the_synchronous_global_batch_mean():
    x, ids, y, w, table = problem()
    cfg = gba.GBAConfig(num_aggregate=M)
    gw0, sp0 = local_gradient(w, table, x[:b], ids[:b], y[:b])
    s = gba.init(gw0, sp0, cfg, {"stacked": V})
    for j in range(M):
        sl = slice(j * b, (j + 1) * b)
        assert not bool(gba.is_ready(s, cfg))
        s = gba.accumulate(s, gba.issue_token(s), *local_gradient(w, table, x[sl], ids[sl], y[sl]), cfg)
    assert bool(gba.is_ready(s, cfg))
    g_dense, g_sparse = gba.global_gradient(s, cfg)
    # synchronous: one gradient of the mean loss over the global batch B = M b
    want_w, want_table = jax.grad(lambda w, t: loss(w, t[ids], x, y), argnums=(0, 1))(w, table)
    np.testing.assert_allclose(g_dense, want_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dense_rows(*g_sparse["stacked"]), want_table, rtol=1e-5, atol=1e-7)
    assert g_sparse["stacked"][0].shape == (M * b,)


def test_stale_gradients_are_decayed_but_counted():
    x, ids, y, w, table = problem(1)
    cfg = gba.GBAConfig(num_aggregate=2, tolerance=1, decay="exp", decay_rate=0.25)
    grads = [local_gradient(w, table, x[j * b:(j + 1) * b], ids[j * b:(j + 1) * b], y[j * b:(j + 1) * b]) for j in range(2)]
    s = gba.init(grads[0][0], grads[0][1], cfg, {"stacked": V})
    for _ in range(3):
        s = gba.advance(s, {"stacked": V})                 # server at k = 3
    s = gba.accumulate(s, jnp.int32(3), *grads[0], cfg)    # fresh: weight 1
    s = gba.accumulate(s, jnp.int32(0), *grads[1], cfg)    # tau = 3 > iota = 1: weight 0.25^2
    g_dense, g_sparse = gba.global_gradient(s, cfg)
    want = (grads[0][0] + grads[1][0] / 16) / 2
    np.testing.assert_allclose(g_dense, want, rtol=1e-6)
    want_rows = (dense_rows(*grads[0][1]["stacked"]) + dense_rows(*grads[1][1]["stacked"]) / 16) / 2
    np.testing.assert_allclose(dense_rows(*g_sparse["stacked"]), want_rows, rtol=1e-5, atol=1e-7)
    s = gba.advance(s, {"stacked": V})
    assert int(s.step) == 4 and int(s.count) == 0 and float(jnp.abs(s.dense).sum()) == 0.0
    assert bool(jnp.all(s.sparse["stacked"][0] == V))


def test_jitted_scan_matches_the_python_loop():
    x, ids, y, w, table = problem(2)
    cfg = gba.GBAConfig(num_aggregate=M, tolerance=0, decay="inverse")
    grads = [local_gradient(w, table, x[j * b:(j + 1) * b], ids[j * b:(j + 1) * b], y[j * b:(j + 1) * b]) for j in range(M)]
    tokens = jnp.array([1, 0, 1], jnp.int32)
    s0 = gba.advance(gba.init(grads[0][0], grads[0][1], cfg, {"stacked": V}), {"stacked": V})
    loop = s0
    for t, (gd, gs) in zip(tokens, grads):
        loop = gba.accumulate(loop, t, gd, gs, cfg)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *grads)
    scanned, _ = jax.jit(lambda s, xs: jax.lax.scan(lambda s, x: (gba.accumulate(s, x[0], x[1], x[2], cfg), None), s, xs))(
        s0, (tokens, stacked[0], stacked[1]))
    for a, c in zip(jax.tree.leaves(loop), jax.tree.leaves(scanned)):
        np.testing.assert_allclose(a, c, rtol=1e-6)


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="gba.num_aggregate"):
        gba.GBAConfig(num_aggregate=0)
    with pytest.raises(ConfigError, match="gba.decay"):
        gba.GBAConfig(num_aggregate=2, decay="linear")
    with pytest.raises(ConfigError, match="gba.tolerance"):
        gba.GBAConfig(num_aggregate=2, tolerance=-1)
