"""GBA's mesh collective equals the pure aggregation (run with 8 forced CPU devices)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.distributed.gba_collective import gba_global_gradient
from jaxrec.mesh import make_mesh
from jaxrec.optim import gba

V, D, b = 11, 4, 3


def loss(params, batch):
    logit = batch["x"] @ params["w"] + params["table"][batch["ids"]].sum(-1) + params["bias"]
    return jnp.mean(jnp.logaddexp(0.0, logit) - batch["y"] * logit)


def grad_fn(params, batch):
    """Dense grads of w and bias; the table's as (ids, d loss / d looked-up row)."""
    rows = params["table"][batch["ids"]]
    g, grows = jax.grad(lambda p, r: loss({**p, "table": params["table"].at[batch["ids"]].set(r)}, batch), argnums=(0, 1))(
        {"w": params["w"], "bias": params["bias"]}, rows)
    return g, {"stacked": (batch["ids"], grows)}


def check(shape, decay, tokens, step):
    mesh = make_mesh(shape)
    n = mesh.shape["data"]
    rng = np.random.default_rng(sum(shape))
    versions = {"w": jnp.asarray(rng.normal(size=(n, D)), jnp.float32), "bias": jnp.asarray(rng.normal(size=(n,)), jnp.float32),
                "table": jnp.asarray(rng.normal(size=(n, V, D)), jnp.float32)}
    batch = {"x": jnp.asarray(rng.normal(size=(n * b, D)), jnp.float32),
             "ids": jnp.asarray(rng.integers(0, V, size=(n * b,)), jnp.int32).at[::2].set(5),
             "y": jnp.asarray(rng.integers(0, 2, size=(n * b,)), jnp.float32)}
    cfg = gba.GBAConfig(num_aggregate=n, tolerance=1, decay=decay, decay_rate=0.5)
    tokens = jnp.asarray(tokens, jnp.int32)
    got = jax.jit(lambda v, bt, t, k: gba_global_gradient(grad_fn, v, bt, t, k, cfg, mesh))(versions, batch, tokens, jnp.int32(step))
    # the pure aggregation: arrivals in device order, each at its own version
    local = lambda i: grad_fn(jax.tree.map(lambda a: a[i], versions), jax.tree.map(lambda a: a[i * b:(i + 1) * b], batch))
    state = gba.init(*local(0), cfg, {"stacked": V})
    for _ in range(step):
        state = gba.advance(state, {"stacked": V})
    for i in range(n):
        state = gba.accumulate(state, tokens[i], *local(i), cfg)
    want = gba.global_gradient(state, cfg)
    err = max(float(jnp.max(jnp.abs(a - c))) for a, c in zip(jax.tree.leaves(got), jax.tree.leaves(want)))
    assert err <= 1e-6, (shape, decay, err)
    weights = [float(gba.decay_weight(step - t, cfg)) for t in tokens]
    print(f"ok   mesh {shape} decay {decay}: max |collective - pure| = {err:.1e}; weights {weights}")


if __name__ == "__main__":
    assert jax.device_count() == 8, jax.devices()
    check((8, 1), "exp", [6, 6, 5, 4, 6, 2, 6, 0], 6)
    check((8, 1), "drop", [6, 6, 5, 4, 6, 2, 6, 0], 6)
    check((4, 2), "inverse", [3, 1, 0, 3], 3)
    print("ALL CHECKS PASSED")
