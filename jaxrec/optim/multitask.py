"""Multi-task gradient combination: per-task gradients and the optax transformations over them.

Every method sees the matrix G = [g_1 ... g_T] (`[T, P]`) of the per-task gradients of the
*shared* parameters and returns one update direction `[P]`; task-specific parameters keep the
sum of their own gradients. `multitask_transform(combine, is_shared)` turns a combiner into an
optax `GradientTransformation` whose input updates carry a leading task axis T (as
`per_task_grads` returns them), so it chains with any optimizer:
`optax.chain(multitask_transform(gradops(alpha=-1)), optax.adam(1e-3))`.

Combiners (sum-of-losses scale: equal weights give sum_i g_i):
  linear    sum_i w_i g_i (static weights; linear scalarization).
  pcgrad    Yu et al., NeurIPS 2020, "Gradient Surgery for Multi-Task Learning": for each i, in
            a random order over j != i, if g_i' . g_j < 0: g_i' -= (g_i' . g_j / |g_j|^2) g_j;
            update sum_i g_i'. Order-dependent.
  mgda      Sener & Koltun, NeurIPS 2018, "Multi-Task Learning as Multi-Objective Optimization":
            the min-norm point of the convex hull, alpha = argmin_{alpha in simplex} |G^T alpha|^2
            (Frank-Wolfe on the Gram matrix), update T * G^T alpha. Their MGDA-UB computes alpha
            from the gradients w.r.t. the shared *representation*: pass that Gram as `gram`.
  cagrad    Liu et al., NeurIPS 2021, "Conflict-Averse Gradient Descent": g0 = mean_i g_i,
            w = argmin_{w in simplex} g_w . g0 + sqrt(phi) |g_w|, phi = c^2 |g0|^2, g_w = G^T w;
            d = g0 + sqrt(phi) / |g_w| g_w, divided by (1 + c^2) ('rescale', as the authors'
            code does [I]); update T * d. The inner problem is solved by gradient descent on
            softmax logits [I] (the authors use scipy's SLSQP).
  gradops   GradOPS (Zhu et al., WSDM 2025, arXiv 2503.03438; notes shared/specs/recsys-methods.md
            §3): g_i' = g_i - A^T (A A^T)^+ A g_i with A = G without row i (g_i projected onto
            the orthogonal complement of span{g_j : j != i}), so g_i' . g_j = 0 for j != i.
            Weights [M/I]: G0' = sum_i g_i', r_i = cos(g_i, G0') (clipped >= eps),
            w_i = T r_i^alpha / sum_j r_j^alpha (alpha = 0: equal; alpha < 0 favours the tasks
            G0' serves worst), update G' = sum_i w_i g_i'; or fixed `weights` (GradOPS-static).
            Any w_i >= 0 gives G' . g_j = w_j |g_j'|^2 >= 0: no task is conflicted.
            `only_if_conflict` [I] keeps g_i when it conflicts with no other g_j.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util
from jax.flatten_util import ravel_pytree

from jaxrec.errors import ConfigError

Combiner = Callable[[jax.Array, jax.Array], jax.Array]  # (G [T, P], rng) -> update [P]
EPS = 1e-12


def per_task_grads(loss_fn: Callable[..., tuple[jax.Array, Any]], params: Any, *args, has_aux: bool = True):
    """Per-task gradients in one reverse-mode pass over the stacked losses (`jax.jacrev`).

    Args:
      loss_fn: `(params, *args) -> (losses [T], aux)` (or just `losses [T]` if `has_aux=False`).
    Returns:
      `(losses [T], per-task gradients: params' pytree with a leading axis T on every leaf, aux)`.
    """
    def stacked(p):
        out = loss_fn(p, *args)
        losses, aux = out if has_aux else (out, None)
        return losses, (losses, aux)

    jac, (losses, aux) = jax.jacrev(stacked, has_aux=True)(params)
    return losses, jac, aux


# ---- combiners on G [T, P] ----------------------------------------------------------------------

def linear(weights: Sequence[float] | None = None) -> Combiner:
    """Static weighted sum sum_i w_i g_i (default: all ones)."""
    def combine(g, rng=None):
        w = jnp.ones(g.shape[0], g.dtype) if weights is None else jnp.asarray(weights, g.dtype)
        return w @ g
    return combine


def pcgrad(shuffle: bool = True) -> Combiner:
    """PCGrad (module docstring). With `shuffle`, each task visits the others in a random order
    drawn from `rng`; otherwise in index order."""
    def combine(g, rng=None):
        t = g.shape[0]
        sq = jnp.sum(g * g, axis=1)

        def project(i, key):
            order = jax.random.permutation(key, t) if shuffle else jnp.arange(t)

            def body(k, gi):
                j = order[k]
                dot = gi @ g[j]
                hit = (j != i) & (dot < 0)
                return jnp.where(hit, gi - dot / jnp.maximum(sq[j], EPS) * g[j], gi)

            return jax.lax.fori_loop(0, t, body, g[i])

        keys = jax.random.split(rng if rng is not None else jax.random.PRNGKey(0), t)
        return jnp.sum(jax.vmap(project)(jnp.arange(t), keys), axis=0)
    return combine


def min_norm_weights(gram: jax.Array, steps: int = 250) -> jax.Array:
    """argmin over the simplex of alpha^T K alpha (Frank-Wolfe with exact line search), `[T]`."""
    t = gram.shape[0]

    def body(_, a):
        ka = gram @ a
        v = jnp.argmin(ka)
        vv, av, aa = gram[v, v], ka[v], a @ ka  # |g_v|^2, <G a, g_v>, |G a|^2
        gamma = jnp.clip((aa - av) / jnp.maximum(aa - 2 * av + vv, EPS), 0.0, 1.0)
        return (1 - gamma) * a + gamma * jax.nn.one_hot(v, t, dtype=a.dtype)

    return jax.lax.fori_loop(0, steps, body, jnp.full((t,), 1.0 / t, gram.dtype))


def mgda(gram: jax.Array | None = None, steps: int = 250) -> Combiner:
    """MGDA (module docstring): T * G^T alpha with alpha the min-norm weights of `gram`
    (default G G^T; MGDA-UB: the Gram of the representation gradients)."""
    def combine(g, rng=None):
        a = min_norm_weights(g @ g.T if gram is None else gram, steps)
        return g.shape[0] * (a @ g)
    return combine


def cagrad(c: float = 0.5, steps: int = 200, lr: float = 0.5, rescale: bool = True) -> Combiner:
    """CAGrad (module docstring)."""
    def combine(g, rng=None):
        t = g.shape[0]
        gram = g @ g.T
        g0_g = gram.mean(axis=1)                      # g_i . g0
        phi = c ** 2 * gram.mean()                    # c^2 |g0|^2

        scale = jnp.maximum(jnp.mean(jnp.diag(gram)), EPS)  # both terms scale as |g|^2: make the step scale-free

        def objective(z):
            w = jax.nn.softmax(z)
            return (w @ g0_g + jnp.sqrt(phi) * jnp.sqrt(jnp.maximum(w @ gram @ w, EPS))) / scale

        z = jax.lax.fori_loop(0, steps, lambda _, z: z - lr * jax.grad(objective)(z), jnp.zeros((t,), g.dtype))
        w = jax.nn.softmax(z)
        gw = w @ g
        d = g.mean(axis=0) + jnp.sqrt(phi) / jnp.maximum(jnp.linalg.norm(gw), EPS) * gw
        return t * (d / (1 + c ** 2) if rescale else d)
    return combine


def gradops_projections(g: jax.Array, only_if_conflict: bool = False) -> jax.Array:
    """g_i' = g_i minus its projection on span{g_j : j != i}, `[T, P]`; via the T x T Gram
    matrix: the pseudo-inverse of the Gram with row and column i zeroed gives the
    coefficients on the other gradients. Guarantees g_i' . g_j = 0 (j != i) and
    g_i' . g_i >= 0; note g_i' . g_j' = -c |g_i'|^2 (c: g_i's coefficient in g_j's projection)
    can be negative for tasks that did not conflict (tests/optim/test_multitask.py)."""
    t = g.shape[0]
    gram = g @ g.T
    scale = jnp.maximum(jnp.max(jnp.diag(gram)), EPS)  # pinv's cutoff is relative; keep it scale-free

    def one(i):
        keep = 1.0 - jax.nn.one_hot(i, t, dtype=g.dtype)
        coef = jnp.linalg.pinv(gram * keep[:, None] * keep[None, :] / scale, rtol=1e-6) @ (gram[:, i] * keep / scale)
        projected = g[i] - coef @ g
        # g_i in the others' span leaves only float rounding: call that zero, not a direction
        projected = jnp.where(jnp.linalg.norm(projected) <= 1e-4 * jnp.linalg.norm(g[i]), 0.0, projected)
        if only_if_conflict:
            conflicted = jnp.any((gram[i] < 0) & (keep > 0))
            return jnp.where(conflicted, projected, g[i])
        return projected

    return jax.vmap(one)(jnp.arange(t)) if t > 1 else g


def gradops_weights(g: jax.Array, projected: jax.Array, alpha: float) -> jax.Array:
    """w_i = T r_i^alpha / sum_j r_j^alpha, r_i = cos(g_i, sum_j g_j') clipped to >= eps, `[T]`."""
    total = projected.sum(axis=0)
    r = (g @ total) / jnp.maximum(jnp.linalg.norm(g, axis=1) * jnp.linalg.norm(total), EPS)
    p = jnp.maximum(r, 1e-6) ** alpha
    return g.shape[0] * p / jnp.sum(p)


def gradops(alpha: float = 0.0, weights: Sequence[float] | None = None, only_if_conflict: bool = False) -> Combiner:
    """GradOPS (module docstring); `weights` fixes w (GradOPS-static) instead of alpha."""
    def combine(g, rng=None):
        if g.shape[0] == 1:
            return g[0]
        projected = gradops_projections(g, only_if_conflict)
        w = jnp.asarray(weights, g.dtype) if weights is not None else gradops_weights(g, projected, alpha)
        return w @ projected
    return combine


COMBINERS = {"linear": linear, "pcgrad": pcgrad, "mgda": mgda, "cagrad": cagrad, "gradops": gradops}


def make_combiner(name: str, **options) -> Combiner:
    """A combiner by name (`COMBINERS`) with its options (e.g. `alpha` for gradops)."""
    if name not in COMBINERS:
        raise ConfigError(f"multi-task method {name!r}: expected one of {sorted(COMBINERS)}")
    return COMBINERS[name](**options)


# ---- optax -------------------------------------------------------------------------------------

class MultitaskState(NamedTuple):
    rng: jax.Array


def multitask_transform(combine: Combiner, is_shared: Callable[[tuple[str, ...]], bool] = lambda path: True,
                        seed: int = 0) -> optax.GradientTransformation:
    """Optax transformation from per-task gradients (leading axis T on every leaf) to one update.

    Leaves whose path `is_shared` are combined jointly (flattened into G `[T, P]`); the others
    (task towers) get the sum over tasks of their gradients, i.e. each its own task's.
    """
    def init(params):
        return MultitaskState(jax.random.PRNGKey(seed))

    def update(updates, state, params=None):
        rng, key = jax.random.split(state.rng)
        return combine_tree(updates, combine, is_shared, key), MultitaskState(rng)

    return optax.GradientTransformation(init, update)


def is_shared(path: tuple[str, ...]) -> bool:
    """The default split of a model's parameters: True for a path more than one task's output
    depends on; False under modules named `tower_<t>` or `task_<t>_...` (the convention of
    `jaxrec.models.multitask`)."""
    return not any(str(p).startswith(("tower_", "task_")) for p in path)


def combine_tree(per_task: Any, combine: Combiner, is_shared: Callable[[tuple[str, ...]], bool], rng: jax.Array) -> Any:
    """Per-task gradients (a pytree with a leading axis T on every leaf) -> one gradient pytree:
    the leaves whose path `is_shared` flattened jointly into G `[T, P]` and combined; the others
    summed over T (`multitask_transform` without its state)."""
    flat = traverse_util.flatten_dict(per_task) if isinstance(per_task, dict) else {("",): per_task}
    shared = {p: x for p, x in flat.items() if is_shared(p)}
    out = {p: jnp.sum(x, axis=0) for p, x in flat.items() if not is_shared(p)}
    if shared:
        g, unravel = jax.vmap(lambda tree: ravel_pytree(tree)[0])(shared), ravel_pytree(jax.tree.map(lambda x: x[0], shared))[1]
        out.update(unravel(combine(g, rng)))
    return traverse_util.unflatten_dict(out) if isinstance(per_task, dict) else out[("",)]
