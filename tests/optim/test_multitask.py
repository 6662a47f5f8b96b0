"""Multi-task gradient combiners: hand-computed cases, GradOPS's promises (strong non-conflict,
order invariance, T = 1, zero gradients) on random vectors and on real model gradients."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from jaxrec.errors import ConfigError
from jaxrec.optim import multitask as mt

TOL = 1e-5


def _conflicts(g, update, projected=None) -> list[str]:
    """Violations of GradOPS's "strong non-conflict" (the paper's Figure 1: neither any g_i' nor G'
    conflicts with any original g_j): G' . g_j >= 0, g_i' . g_j = 0 for j != i, g_i' . g_i >= 0."""
    out = []
    scale = np.linalg.norm(g, axis=1)
    if not np.all(np.asarray(g @ update) >= -TOL * scale * np.linalg.norm(update)):
        out.append(f"update conflicts: G' . g_j = {g @ update}")
    if projected is not None:
        k = np.asarray(projected @ g.T)  # [i, j] = g_i' . g_j
        off = ~np.eye(len(k), dtype=bool)
        if not np.all(np.abs(k[off]) <= TOL * np.outer(np.linalg.norm(projected, axis=1), scale)[off]):
            out.append(f"g_i' not orthogonal to the other g_j: {k}")
        if not np.all(np.diag(k) >= -TOL * scale ** 2):
            out.append(f"g_i' conflicts with g_i: {np.diag(k)}")
    return out


def test_gradops_by_hand():
    g = jnp.array([[1.0, 0.0], [-1.0, 1.0]])
    np.testing.assert_allclose(mt.gradops_projections(g), [[0.5, 0.5], [0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(mt.gradops(alpha=0.0)(g), [0.5, 1.5], atol=1e-6)  # equal weights: w = (1, 1)
    np.testing.assert_allclose(mt.pcgrad(shuffle=False)(g), [0.5, 1.5], atol=1e-6)  # two tasks: the same projections


def test_gradops_weights_by_hand():
    g = jnp.array([[1.0, 0.0], [-1.0, 1.0]])
    projected = mt.gradops_projections(g)
    total = np.array([0.5, 1.5])
    r = np.array([g[0] @ total / np.linalg.norm(total), g[1] @ total / (np.sqrt(2) * np.linalg.norm(total))])
    for alpha in (-3.0, 1.0):
        w = 2 * r ** alpha / np.sum(r ** alpha)
        np.testing.assert_allclose(mt.gradops_weights(g, projected, alpha), w, rtol=1e-5)
        np.testing.assert_allclose(mt.gradops(alpha)(g), w @ np.asarray(projected), rtol=1e-5)


@pytest.mark.parametrize("t,p", [(2, 5), (3, 10), (5, 40), (6, 4)])  # (6, 4): more tasks than dimensions
def test_gradops_strong_non_conflict_random(t, p):
    rng = np.random.default_rng(t * 100 + p)
    for _ in range(5):
        g = jnp.asarray(rng.normal(size=(t, p)), jnp.float32)
        projected = mt.gradops_projections(g)
        for alpha in (-3.0, -1.0, 0.0, 1.0, 3.0):
            assert not _conflicts(g, mt.gradops(alpha)(g), projected), alpha
        assert not _conflicts(g, mt.gradops(weights=rng.uniform(0.1, 2.0, size=t))(g), projected)


def test_projected_pairs_can_conflict_when_the_originals_agree():
    """g_i' . g_j' = -c_i |g_i'|^2, c_i the coefficient of g_i in the projection of g_j on the others'
    span; for two tasks = -c (1 - c^2 / (|g_1|^2 |g_2|^2)) with c = g_1 . g_2: negative when the tasks
    agree. So "g_i' . g_j' >= 0" holds for conflicting pairs only; `only_if_conflict` keeps agreeing
    tasks untouched, which restores it for them."""
    g = jnp.array([[1.0, 0.0], [1.0, 1.0]])  # c = 1 > 0: no conflict
    p = mt.gradops_projections(g)
    np.testing.assert_allclose(p[0] @ p[1], -1.0 * (1 - 1.0 / 2.0), atol=1e-6)
    kept = mt.gradops_projections(g, only_if_conflict=True)
    assert float(kept[0] @ kept[1]) > 0
    conflicting = jnp.array([[1.0, 0.0], [-1.0, 1.0]])  # c = -1
    p = mt.gradops_projections(conflicting)
    np.testing.assert_allclose(p[0] @ p[1], 1.0 * (1 - 1.0 / 2.0), atol=1e-6)


def test_gradops_is_order_invariant_pcgrad_is_not():
    g = jnp.array([[1.0, 0.2, 0.0], [-0.8, 1.0, 0.3], [-0.5, -0.9, 1.0]])
    outs = {perm: mt.gradops(alpha=-1.0)(g[jnp.array(perm)]) for perm in itertools.permutations(range(3))}
    for out in outs.values():
        np.testing.assert_allclose(out, outs[(0, 1, 2)], atol=1e-5)
    pc = [mt.pcgrad(shuffle=False)(g[jnp.array(perm)]) for perm in itertools.permutations(range(3))]
    assert max(float(jnp.max(jnp.abs(x - pc[0]))) for x in pc) > 1e-2  # PCGrad depends on the order


def test_gradops_edge_cases():
    g = jnp.array([[0.3, -1.0, 2.0]])
    np.testing.assert_allclose(mt.gradops(alpha=-3.0)(g), g[0])  # T = 1: no-op
    z = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]])  # a zero-norm task gradient
    out = mt.gradops(alpha=-1.0)(z)
    assert np.all(np.isfinite(out))
    assert not _conflicts(z, out, mt.gradops_projections(z))
    agree = jnp.array([[1.0, 0.5], [0.5, 1.0]])  # no conflict: only_if_conflict keeps them
    np.testing.assert_allclose(mt.gradops_projections(agree, only_if_conflict=True), agree)
    np.testing.assert_allclose(mt.gradops(weights=[1.0, 1.0], only_if_conflict=True)(agree), [1.5, 1.5])


def test_min_norm_weights_two_tasks_closed_form():
    rng = np.random.default_rng(0)
    for _ in range(5):
        g1, g2 = rng.normal(size=(2, 6))
        a = np.clip((g2 - g1) @ g2 / np.sum((g1 - g2) ** 2), 0, 1)
        got = mt.min_norm_weights(jnp.asarray(np.stack([g1, g2]) @ np.stack([g1, g2]).T, jnp.float32))
        np.testing.assert_allclose(got, [a, 1 - a], atol=1e-4)


def test_cagrad_against_a_grid_search():
    g = np.array([[1.0, 0.3], [-0.6, 1.0]])
    c = 0.5
    g0 = g.mean(axis=0)
    phi = c ** 2 * g0 @ g0
    best = min(np.linspace(0, 1, 20001), key=lambda w: (np.array([w, 1 - w]) @ g) @ g0 + np.sqrt(phi) * np.linalg.norm(np.array([w, 1 - w]) @ g))
    gw = np.array([best, 1 - best]) @ g
    d = (g0 + np.sqrt(phi) / np.linalg.norm(gw) * gw) / (1 + c ** 2)
    np.testing.assert_allclose(mt.cagrad(c=c, steps=2000)(jnp.asarray(g, jnp.float32)), 2 * d, atol=2e-3)
    np.testing.assert_allclose(mt.cagrad(c=0.0)(jnp.asarray(g, jnp.float32)), g.sum(axis=0), atol=1e-6)


class SharedBottom(nn.Module):
    """Test model: shared MLP, one linear head per task."""

    tasks: int = 3

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(16, name="shared")(x))
        return jnp.stack([nn.Dense(1, name=f"tower_{t}")(h)[:, 0] for t in range(self.tasks)], axis=-1)


def _conflicting_tasks(n=256, seed=0):
    """Three tasks whose true weight vectors point apart (task 1 is the negative of task 0)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    w = rng.normal(size=(8,))
    ws = np.stack([w, -w + 0.3 * rng.normal(size=8), rng.normal(size=8)])
    return jnp.asarray(x), jnp.asarray((x @ ws.T > 0).astype(np.float32))


def _losses(model):
    def losses(params, x, y):
        logits = model.apply(params, x)
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y), axis=0), None
    return losses


def test_per_task_grads_equal_separate_grads():
    model = SharedBottom()
    x, y = _conflicting_tasks()
    params = model.init(jax.random.PRNGKey(0), x)
    losses, jac, _ = mt.per_task_grads(_losses(model), params, x, y)
    for t in range(3):
        own = jax.grad(lambda p: _losses(model)(p, x, y)[0][t])(params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[t], b, atol=1e-6), jac, own)
    assert losses.shape == (3,)


def test_properties_hold_on_real_model_gradients():
    """GradOPS through the optax transformation on a real shared-bottom model: the shared update
    conflicts with no task's gradient, towers get exactly their own task's gradient."""
    model = SharedBottom()
    x, y = _conflicting_tasks()
    params = model.init(jax.random.PRNGKey(1), x)
    _, jac, _ = mt.per_task_grads(_losses(model), params, x, y)
    shared = lambda path: "shared" in path  # noqa: E731
    g = jax.vmap(lambda tree: ravel_pytree(tree)[0])(jac["params"]["shared"])
    assert float(jnp.min(g @ g.T)) < 0  # the tasks really conflict
    for alpha in (-3.0, 0.0, 3.0):
        tx = mt.multitask_transform(mt.gradops(alpha=alpha), is_shared=shared)
        update, _ = tx.update(jac, tx.init(params), params)
        flat = ravel_pytree(update["params"]["shared"])[0]
        assert not _conflicts(g, flat, mt.gradops_projections(g))
        for t in range(3):
            tower = update["params"][f"tower_{t}"]
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b[t], atol=1e-7), tower, jac["params"][f"tower_{t}"])
    # and the whole chain trains: the sum of the task losses falls under GradOPS + Adam
    tx = optax.chain(mt.multitask_transform(mt.gradops(alpha=-1.0), is_shared=shared), optax.adam(1e-2))
    state, first = tx.init(params), float(jnp.sum(_losses(model)(params, x, y)[0]))
    for _ in range(50):
        _, jac, _ = mt.per_task_grads(_losses(model), params, x, y)
        updates, state = tx.update(jac, state, params)
        params = optax.apply_updates(params, updates)
    assert float(jnp.sum(_losses(model)(params, x, y)[0])) < first - 0.1


def test_make_combiner_names_the_choices():
    assert np.allclose(mt.make_combiner("linear", weights=[2.0, 1.0])(jnp.eye(2)), [2.0, 1.0])
    with pytest.raises(ConfigError, match="multi-task method 'nash'"):
        mt.make_combiner("nash")
