"""Multi-task models: output shape, GradOPS's promises on their real shared gradients, and the
shared / task-specific split that gradient methods rely on: a task-specific parameter has a
non-zero gradient for its own task only."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from jax.flatten_util import ravel_pytree

from jaxrec.data.multitask import load_synthetic_multitask
from jaxrec.models.multitask import MULTITASK_MODELS, is_shared
from jaxrec.optim.multitask import gradops, gradops_projections, per_task_grads


@pytest.mark.parametrize("name", sorted(MULTITASK_MODELS))
def test_task_parameters_serve_one_task(name):
    ds = load_synthetic_multitask(rows=200, dim=6, correlation=0.0, seed=0)
    batch = {k: v[:64] for k, v in ds.columns("train").items()}
    model = MULTITASK_MODELS[name](ds.features, num_tasks=3, embed_dim=4)
    variables = model.init(jax.random.PRNGKey(0), batch)
    out = model.apply(variables, batch)
    assert out.shape == (64, 3)
    target = jnp.asarray(np.random.default_rng(0).normal(size=(64, 3)), jnp.float32)
    _, jac, _ = per_task_grads(lambda v: (jnp.mean(jnp.square(model.apply(v, batch) - target), axis=0), None), variables)
    flat = traverse_util.flatten_dict(jac)
    shared_seen = False
    for path, g in flat.items():
        active = [t for t in range(3) if float(jnp.max(jnp.abs(g[t]))) > 0]
        if is_shared(path):
            shared_seen |= len(active) > 1
        else:
            owner = int(next(p for p in path if p.startswith(("tower_", "task_"))).split("_")[1])
            assert active == [owner], (path, active)
    assert shared_seen
    # GradOPS's promise on this model's real shared gradients: the update conflicts with no task,
    # and each projected task gradient is orthogonal to the other tasks' gradients
    g = jax.vmap(lambda tree: ravel_pytree(tree)[0])({p: x for p, x in flat.items() if is_shared(p)})
    projected = gradops_projections(g)
    update = gradops(alpha=-1.0)(g)
    assert float(jnp.min(g @ update)) >= -1e-5 * float(jnp.max(jnp.linalg.norm(g, axis=1)) * jnp.linalg.norm(update))
    cross = np.asarray(projected @ g.T)[~np.eye(3, dtype=bool)]
    assert np.max(np.abs(cross)) <= 1e-4 * float(jnp.max(jnp.sum(g * g, axis=1)))
