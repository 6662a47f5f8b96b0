"""Sparse (row-wise) optimizers for embedding tables: only the rows a batch touched change.

A step of sparse/dense split training hands the table's optimizer the global row ids the
batch looked up and the gradient of the loss w.r.t. each looked-up row. `dedup` turns
those (`[N]` ids with repeats, `[N, D]` grads) into unique ids `[U]` padded with `V` and
summed grads `[U, D]`; `update(ids, row_grads, table, state)` then gathers the touched rows
of the table and of every per-row state array, applies the optimizer's rule to them and
scatters them back (`mode='drop'`, so padding ids `>= V` write nothing). No step does work
proportional to the number of rows `V`: there is no dense `[V, D]` gradient and no
full-table elementwise op, and with the table and state donated XLA updates their buffers
in place (table before state in both arguments and results, so donated buffers pair up).

The transformations are pure, optax style: `init(table [V, D]) -> SparseState` and
`update(...) -> (new_table, new_state)`. `lr` is a float or an optax schedule evaluated at
the global step count `state.count` (updates applied so far, as optax does).

Untouched rows see no update at all, not even a decay of their optimizer state; for SGD
and Adagrad this is exactly the dense update with a gradient that is zero outside the
touched rows, for Adam it is the "lazy" variant (see `adam`).
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxrec.errors import ConfigError

LearningRate = float | optax.Schedule
# rule(w [U, D], g [U, D], slots {name: [U, ...]}, lr scalar, t int32 scalar (1-based step))
#   -> (new w [U, D], new slots)
Rule = Callable[[jax.Array, jax.Array, dict, jax.Array, jax.Array], tuple[jax.Array, dict]]


class SparseState(NamedTuple):
    """State of a sparse optimizer.

    Attributes:
      count: int32 scalar, updates applied so far (the step a schedule sees).
      slots: per-row state, `{name: [V, ...]}` (e.g. Adagrad's `accum [V, D]`).
    """

    count: jax.Array
    slots: dict[str, jax.Array]


class SparseGradientTransformation(NamedTuple):
    """A sparse optimizer: `init(table [V, D]) -> state` and
    `update(ids [U] int32, row_grads [U, D], table [V, D], state) -> (new_table, new_state)`.

    The table comes before the state in both the arguments and the results, so a jitted
    update that donates `(table, state)` aliases each buffer to its own result and works in
    place (JAX pairs donated inputs with same-shaped outputs in order).

    `ids` must be unique in `[0, V)` except for padding slots equal to `V` (as `dedup` makes
    them); only rows `ids` of the table and of the per-row state change.
    """

    init: Callable[[jax.Array], Any]
    update: Callable[[jax.Array, jax.Array, Any, jax.Array], tuple[jax.Array, Any]]


def dedup(ids: jax.Array, grads: jax.Array, num_rows: int, capacity: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Merges repeated row ids, summing their gradients (jittable, static shapes).

    Args:
      ids: `[N]` int row ids in `[0, num_rows]`, may repeat (`num_rows` = padding).
      grads: `[N, D]` gradient of each looked-up row.
      num_rows: V, the table's row count; used as the padding id.
      capacity: C, number of output slots (default N). Must be at least the number of
        distinct ids; ids beyond the first C distinct (in sorted order) would be dropped.

    Returns:
      `(unique_ids [C] int32` sorted ascending, padded with `num_rows`,
      `summed_grads [C, D]` with zero rows at the padding slots). When no capacity is given
      and the table is no larger than the id list (V <= N), C = V and slot r holds row r if
      it was touched (else the padding id): a bincount instead of a sort, same update.
    """
    if capacity is None and num_rows <= ids.shape[0]:
        # Small table: a bincount over the rows beats sorting the ids. Slots are the rows
        # themselves (C = V), untouched ones padded with num_rows like the sorted path.
        counts = jnp.zeros((num_rows,), jnp.int32).at[ids].add(1, mode="drop")
        summed = jnp.zeros((num_rows,) + grads.shape[1:], grads.dtype).at[ids].add(grads, mode="drop")
        return jnp.where(counts > 0, jnp.arange(num_rows, dtype=jnp.int32), num_rows), summed
    capacity = int(capacity or ids.shape[0])
    # Sort the ids alone (a one-operand sort: on CPU ~5x faster than the key-plus-permutation
    # sort of `jnp.unique(..., return_inverse=True)`), compact the distinct ones into the first
    # slots, and find each id's slot by binary search. Same slots and the same scatter-add
    # order as `jnp.unique` with `return_inverse`, so the sums are bitwise equal; about half
    # the time (measured once with N = 106,496 ids, D = 16, on a loaded 2-core CPU host).
    ids = ids.astype(jnp.int32).reshape(-1)
    s = jnp.sort(ids)
    first = jnp.concatenate([jnp.ones((min(1, s.shape[0]),), bool), s[1:] != s[:-1]])
    slot = jnp.cumsum(first.astype(jnp.int32)) - 1
    uniq = jnp.full((capacity,), num_rows, jnp.int32).at[slot].set(s, mode="drop")
    inverse = jnp.searchsorted(uniq, ids)          # slots past `capacity` give `capacity`: dropped
    summed = jax.ops.segment_sum(grads, inverse, num_segments=capacity)
    return uniq, summed


def _lr_fn(lr: LearningRate) -> Callable[[jax.Array], jax.Array]:
    return lr if callable(lr) else (lambda _: lr)


def _sparse(lr: LearningRate, init_slots: Callable[[jax.Array], dict], rule: Rule) -> SparseGradientTransformation:
    """Builds a transformation from per-row slot initialisers and an update rule on gathered rows."""
    lr_fn = _lr_fn(lr)

    def init(table: jax.Array) -> SparseState:
        return SparseState(jnp.zeros((), jnp.int32), init_slots(table))

    def update(ids: jax.Array, row_grads: jax.Array, table: jax.Array, state: SparseState):
        # Padding ids (= V) gather a real row (clip) so the rule stays finite; their results are dropped.
        take = lambda x: jnp.take(x, ids, axis=0, mode="clip")
        put = lambda x, rows: x.at[ids].set(rows.astype(x.dtype), mode="drop")
        lr_t = jnp.asarray(lr_fn(state.count), table.dtype)
        w, slots = rule(take(table), row_grads.astype(table.dtype), {k: take(v) for k, v in state.slots.items()},
                        lr_t, state.count + 1)
        new_slots = {k: put(v, slots[k]) for k, v in state.slots.items()}
        return put(table, w), SparseState(state.count + 1, new_slots)

    return SparseGradientTransformation(init, update)


def _check(key: str, value: Any, ok: Callable[[Any], bool], expected: str) -> None:
    """Raises `ValueError('<key>=<value>: expected ...')` unless `value` is a real number with `ok(value)`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not ok(value):
        raise ValueError(f"{key}={value!r}: expected {expected}")


def _check_lr(lr: LearningRate) -> None:
    if not callable(lr):
        _check("lr", lr, lambda x: x > 0, "a positive number or an optax schedule")


def sgd(lr: LearningRate) -> SparseGradientTransformation:
    """Plain SGD on the touched rows: `w_r <- w_r - lr_t * g_r`.

    State: only the step count. Equal to dense SGD with a gradient that is zero on the
    untouched rows.
    """
    _check_lr(lr)
    return _sparse(lr, lambda table: {}, lambda w, g, s, lr_t, t: (w - lr_t * g, s))


def adagrad(lr: LearningRate, initial_accumulator: float = 0.1, eps: float = 1e-10) -> SparseGradientTransformation:
    """Per-coordinate Adagrad (Duchi, Hazan & Singer, JMLR 2011), in optax's form.

    For a touched row r, elementwise over its D coordinates:

        G_r <- G_r + g_r^2                                   (G_r starts at initial_accumulator)
        w_r <- w_r - lr_t * g_r / sqrt(G_r + eps)            (0 where G_r = 0)

    State: `accum [V, D]`. Identical to `optax.adagrad(lr, initial_accumulator, eps)` applied
    to a dense gradient that is zero outside the touched rows (there G and w stay put).
    """
    _check_lr(lr)
    _check("initial_accumulator", initial_accumulator, lambda x: x >= 0, ">= 0")
    _check("eps", eps, lambda x: x >= 0, ">= 0")

    def rule(w, g, s, lr_t, t):
        acc = s["accum"] + jnp.square(g)
        step = jnp.where(acc > 0, jax.lax.rsqrt(acc + eps), 0.0) * g
        return w - lr_t * step, {"accum": acc}

    return _sparse(lr, lambda table: {"accum": jnp.full_like(table, initial_accumulator)}, rule)


def rowwise_adagrad(lr: LearningRate, initial_accumulator: float = 0.0, eps: float = 1e-8) -> SparseGradientTransformation:
    """Row-wise Adagrad, as FBGEMM's `EXACT_ROWWISE_ADAGRAD` / TorchRec's `RowWiseAdagrad`.

    One accumulator per row instead of per coordinate (D times less state):

        G_r <- G_r + mean_d(g_rd^2)                          (G_r starts at initial_accumulator)
        w_r <- w_r - lr_t * g_r / (sqrt(G_r) + eps)

    State: `accum [V]`. Defaults follow FBGEMM (accumulator 0, eps 1e-8).
    """
    _check_lr(lr)
    _check("initial_accumulator", initial_accumulator, lambda x: x >= 0, ">= 0")
    _check("eps", eps, lambda x: x > 0 or initial_accumulator > 0, "> 0 when initial_accumulator is 0")

    def rule(w, g, s, lr_t, t):
        acc = s["accum"] + jnp.mean(jnp.square(g), axis=-1)
        return w - (lr_t / (jnp.sqrt(acc) + eps))[:, None] * g, {"accum": acc}

    return _sparse(lr, lambda table: {"accum": jnp.full(table.shape[:1], initial_accumulator, table.dtype)}, rule)


def adam(lr: LearningRate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         bias_correction: str = "row") -> SparseGradientTransformation:
    """Lazy Adam (Kingma & Ba, ICLR 2015) on the touched rows.

    For a touched row r at global step t (1-based), with k_r the number of times r has now
    been updated:

        m_r <- b1 m_r + (1 - b1) g_r
        v_r <- b2 v_r + (1 - b2) g_r^2
        tau  = k_r ('row') or t ('global')
        w_r <- w_r - lr_t * (m_r / (1 - b1^tau)) / (sqrt(v_r / (1 - b2^tau)) + eps)

    "Lazy" as in TensorFlow Addons' `LazyAdam` and PyTorch's `SparseAdam`: moments of an
    untouched row are neither decayed nor applied (dense Adam would decay them and keep
    moving the row). With 'global', the bias correction uses the global step like
    `LazyAdam`; with 'row' (the default) it uses the row's own update count, which is the
    exact normaliser of its moments' EMA weights (a row's first update is then a unit step
    `lr * sign(g)` like dense Adam's first step, however late it comes). Both equal dense
    `optax.adam` when every row is touched every step.

    State: `mu [V, D]`, `nu [V, D]`, and for 'row' `row_count [V]` int32.
    """
    _check_lr(lr)
    _check("b1", b1, lambda x: 0 <= x < 1, "in [0, 1)")
    _check("b2", b2, lambda x: 0 <= x < 1, "in [0, 1)")
    _check("eps", eps, lambda x: x >= 0, ">= 0")
    if bias_correction not in ("row", "global"):
        raise ValueError(f"bias_correction={bias_correction!r}: expected 'row' or 'global'")
    per_row = bias_correction == "row"

    def init_slots(table):
        slots = {"mu": jnp.zeros_like(table), "nu": jnp.zeros_like(table)}
        if per_row:
            slots["row_count"] = jnp.zeros(table.shape[:1], jnp.int32)
        return slots

    def rule(w, g, s, lr_t, t):
        mu = b1 * s["mu"] + (1 - b1) * g
        nu = b2 * s["nu"] + (1 - b2) * jnp.square(g)
        new = {"mu": mu, "nu": nu}
        if per_row:
            new["row_count"] = s["row_count"] + 1
            tau = new["row_count"].astype(w.dtype)[:, None]
        else:
            tau = t.astype(w.dtype)
        mu_hat = mu / (1 - b1 ** tau)
        nu_hat = nu / (1 - b2 ** tau)
        return w - lr_t * (mu_hat / (jnp.sqrt(nu_hat) + eps)), new

    return _sparse(lr, init_slots, rule)


def ftrl(lr: LearningRate, lr_power: float = -0.5, l1: float = 0.0, l2: float = 0.0, beta: float = 1.0,
         initial_accumulator: float = 0.1) -> SparseGradientTransformation:
    """FTRL-Proximal (McMahan et al., "Ad Click Prediction: a View from the Trenches",
    KDD 2013, Algorithm 1), per coordinate, with `lr` = alpha and TensorFlow's `lr_power`
    generalisation (`lr_power=-0.5` is the paper's square root).

    With p = -lr_power, for each coordinate i of a touched row:

        sigma_i <- (( n_i + g_i^2 )^p - n_i^p) / alpha
        z_i     <- z_i + g_i - sigma_i w_i
        n_i     <- n_i + g_i^2                                (n starts at initial_accumulator)
        w_i     <- 0                                          if |z_i| <= l1
                   -(z_i - sign(z_i) l1) / ((beta + n_i^p) / alpha + l2)   otherwise

    (l2 enters as in the paper, not TensorFlow's `2 * l2`.) `init` sets z so that this
    closed form reproduces the initial table, `z = -(w0 ((beta + n0^p) / alpha + l2) +
    sign(w0) l1)`, so the table always equals the closed form of its state; for an all-zero
    table this is the paper's `z = 0`. With a schedule, alpha is the step's value (as TF).

    State: `z [V, D]`, `n [V, D]`.
    """
    _check_lr(lr)
    _check("lr_power", lr_power, lambda x: x <= 0, "<= 0")
    _check("l1", l1, lambda x: x >= 0, ">= 0")
    _check("l2", l2, lambda x: x >= 0, ">= 0")
    _check("beta", beta, lambda x: x >= 0, ">= 0")
    _check("initial_accumulator", initial_accumulator, lambda x: x > 0 or (x == 0 and (beta > 0 or l2 > 0)),
           ">= 0, and > 0 when beta and l2 are 0")
    p = -lr_power
    lr_fn = _lr_fn(lr)

    def init_slots(table):
        n = jnp.full_like(table, initial_accumulator)
        quad = (beta + n ** p) / jnp.asarray(lr_fn(0), table.dtype) + l2
        return {"z": -(table * quad + jnp.sign(table) * l1), "n": n}

    def rule(w, g, s, alpha, t):
        n = s["n"] + jnp.square(g)
        z = s["z"] + g - (n ** p - s["n"] ** p) / alpha * w
        quad = (beta + n ** p) / alpha + l2
        w = jnp.where(jnp.abs(z) <= l1, 0.0, -(z - jnp.sign(z) * l1) / quad)
        return w, {"z": z, "n": n}

    return _sparse(lr, init_slots, rule)


OPTIMIZERS: dict[str, Callable[..., SparseGradientTransformation]] = {
    "sgd": sgd, "adagrad": adagrad, "rowwise_adagrad": rowwise_adagrad, "adam": adam, "ftrl": ftrl,
}


def from_config(cfg: Mapping, where: str = "sparse_optimizer") -> SparseGradientTransformation:
    """`{'name': 'sgd'|'adagrad'|'rowwise_adagrad'|'adam'|'ftrl', 'lr': ..., **kwargs}` -> optimizer.

    The other keys are the chosen optimizer's keyword arguments. Raises `ConfigError`
    naming `<where>.<key>` for an unknown name or key, a missing `lr` or a bad value.
    """
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ConfigError(f"{where}.name={name!r}: expected one of {sorted(OPTIMIZERS)}")
    fn = OPTIMIZERS[name]
    valid = list(inspect.signature(fn).parameters)
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ConfigError(f"unknown config key(s) {[f'{where}.{k}' for k in unknown]} for {where}.name={name!r}; "
                          f"valid: {['name', *valid]}")
    if "lr" not in cfg:
        raise ConfigError(f"{where}.lr is required")
    try:
        return fn(**cfg)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}.{e}") from e
