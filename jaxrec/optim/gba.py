"""GBA: Global Batch gradients Aggregation, the pure aggregation (parameter-server side).

Paper: "GBA: A Tuning-free Approach to Switch between Synchronous and Asynchronous Training
for Recommendation Models" (NeurIPS 2022, arXiv 2205.11048; notes in
shared/specs/recsys-methods.md §1). Synchronous training applies one update per global batch
B = N b. GBA keeps that global batch when workers run asynchronously: the server sums
gradients until M = B / b local ones have arrived, then applies their mean with the *same*
optimizer and hyper-parameters as synchronous training, so switching needs no re-tuning.

    token      t = k at issue                         (k: the server's global step) [M]
    staleness  tau = k - t                            when the gradient arrives
    decay      d(tau) = 1                  tau <= iota
               d(tau) = 0                  'drop'     tau > iota   (default [I])
               d(tau) = rate^(tau - iota)  'exp'
               d(tau) = 1 / (1 + tau - iota) 'inverse'
    accumulate S += d(tau) g;  n += 1                 (a decayed gradient still counts [I])
    apply      when n == M:  G = S / M;  params <- optimizer(G);  k += 1;  S, n <- 0

Sparse (embedding) gradients arrive as `(ids [C], row_grads [C, D])` per local batch, each
row gradient already the local batch mean's contribution. The server keeps the M batches'
pairs side by side (`[M * C]` ids, `[M * C, D]` grads, decayed) and hands them, divided by M,
to the row-wise optimizer, whose `dedup` sums repeated ids: the row update then equals the
synchronous global-batch mean, not a per-occurrence average [I]. Which decay the paper uses,
the token details and whether dropped gradients count towards M are not verified ([M]/[I]);
all are options here.

Everything is a pure function of an explicit `GBAState` pytree, jit- and scan-friendly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from jaxrec.errors import ConfigError

DECAYS = ("drop", "exp", "inverse")
MODES = ("sync", "backup", "async", "ssp", "gba")
NO_DECAY = 2**30  # a tolerance no staleness reaches


@dataclasses.dataclass(frozen=True)
class GBAConfig:
    """Aggregation options.

    Attributes:
      num_aggregate: M, local gradients per global step (B / b; M = N for N workers at batch b).
      tolerance: iota, staleness accepted undecayed.
      decay: 'drop' | 'exp' | 'inverse' for gradients staler than iota.
      decay_rate: lambda of 'exp'.
    """

    num_aggregate: int
    tolerance: int = 2
    decay: str = "drop"
    decay_rate: float = 0.5

    def __post_init__(self):
        if not (isinstance(self.num_aggregate, int) and self.num_aggregate >= 1):
            raise ConfigError(f"gba.num_aggregate must be an int >= 1, got {self.num_aggregate!r}")
        if not (isinstance(self.tolerance, int) and self.tolerance >= 0):
            raise ConfigError(f"gba.tolerance must be an int >= 0, got {self.tolerance!r}")
        if self.decay not in DECAYS:
            raise ConfigError(f"gba.decay={self.decay!r}: expected one of {DECAYS}")
        if not 0.0 <= self.decay_rate <= 1.0:
            raise ConfigError(f"gba.decay_rate must be in [0, 1], got {self.decay_rate!r}")


def mode_aggregation(mode: str, num_workers: int, *, backups: int = 1, gba_config: GBAConfig | None = None) -> GBAConfig:
    """The accumulator options under which this one aggregation runs training mode `mode` with
    N = `num_workers` workers (the straggler replay `jaxrec.train.straggler_replay` and the Ray
    parameter server `jaxrec.train.ray_ps` both take their modes from here):

        sync     M = N, no decay (staleness is always 0)   = the synchronous global-batch step
        backup   M = N - backups, no decay (late gradients discarded by the schedule)
        async    M = 1, no decay (stale gradients applied as they are)
        ssp      M = 1, no decay (staleness bounded by the schedule)
        gba      M = N with GBA's decay of stale gradients (`gba_config`, default GBAConfig(N))
    """
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r}: expected one of {MODES}")
    if mode == "gba":
        return gba_config or GBAConfig(num_aggregate=num_workers)
    m = {"sync": num_workers, "backup": num_workers - backups, "async": 1, "ssp": 1}[mode]
    return GBAConfig(num_aggregate=m, tolerance=NO_DECAY)


class GBAState(NamedTuple):
    """step: int32 global step k; count: int32 gradients accumulated this step (n);
    dense: running sum S of the dense gradient pytree; sparse: `{stack: (ids [M*C] int32,
    grads [M*C, D])}`, slot j*C..(j+1)*C-1 holding the j-th arrival (ids padded with `num_rows`)."""

    step: jax.Array
    count: jax.Array
    dense: Any
    sparse: dict


def init(dense_like: Any, sparse_like: Mapping[str, tuple[jax.Array, jax.Array]], config: GBAConfig,
         num_rows: Mapping[str, int]) -> GBAState:
    """Empty accumulator at step 0.

    Args:
      dense_like: a pytree shaped like the dense gradient.
      sparse_like: `{stack: (ids [C], row_grads [C, D])}` shaped like one local batch's sparse
        gradient.
      num_rows: `{stack: V}`; empty slots hold id V, which the row-wise optimizers drop.
    """
    m = config.num_aggregate
    sparse = {name: (jnp.full((m * ids.shape[0],), num_rows[name], jnp.int32),
                     jnp.zeros((m * ids.shape[0],) + grads.shape[1:], grads.dtype))
              for name, (ids, grads) in sparse_like.items()}
    return GBAState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, dense_like), sparse)


def issue_token(state: GBAState) -> jax.Array:
    """The token a worker takes with its next batch: the current global step k (int32 scalar)."""
    return state.step


def staleness(state: GBAState, token: jax.Array) -> jax.Array:
    """tau = k - t, int32 scalar."""
    return state.step - token


def decay_weight(tau: jax.Array, config: GBAConfig) -> jax.Array:
    """d(tau): 1 up to the tolerance, then the configured decay (float32 scalar)."""
    excess = jnp.asarray(tau, jnp.float32) - config.tolerance
    late = {"drop": jnp.float32(0.0),
            "exp": jnp.float32(config.decay_rate) ** excess,
            "inverse": 1.0 / (1.0 + excess)}[config.decay]
    return jnp.where(excess <= 0, jnp.float32(1.0), late)


def accumulate(state: GBAState, token: jax.Array, dense_grads: Any,
               sparse_grads: Mapping[str, tuple[jax.Array, jax.Array]], config: GBAConfig) -> GBAState:
    """Adds one worker's gradient, decayed by its staleness, as arrival number `count`.

    Once `is_ready`, take `global_gradient`, apply it with the synchronous optimizers, and
    `advance` before the next arrival.
    """
    w = decay_weight(staleness(state, token), config)
    dense = jax.tree.map(lambda s, g: s + w.astype(g.dtype) * g, state.dense, dense_grads)
    sparse = {}
    for name, (buf_ids, buf_grads) in state.sparse.items():
        ids, grads = sparse_grads[name]
        start = state.count * ids.shape[0]
        sparse[name] = (jax.lax.dynamic_update_slice(buf_ids, ids.astype(jnp.int32), (start,)),
                        jax.lax.dynamic_update_slice(buf_grads, w.astype(grads.dtype) * grads, (start,) + (0,) * (grads.ndim - 1)))
    return state._replace(count=state.count + 1, dense=dense, sparse=sparse)


def is_ready(state: GBAState, config: GBAConfig) -> jax.Array:
    """True once M gradients are in (bool scalar)."""
    return state.count >= config.num_aggregate


def global_gradient(state: GBAState, config: GBAConfig) -> tuple[Any, dict]:
    """The global-batch gradient G = S / M: `(dense pytree, {stack: (ids [M*C], grads [M*C, D])})`."""
    m = config.num_aggregate
    dense = jax.tree.map(lambda s: s / m, state.dense)
    return dense, {name: (ids, grads / m) for name, (ids, grads) in state.sparse.items()}


def advance(state: GBAState, num_rows: Mapping[str, int]) -> GBAState:
    """After the update: k += 1, the accumulator emptied (new tokens carry k + 1)."""
    sparse = {name: (jnp.full_like(ids, num_rows[name]), jnp.zeros_like(grads)) for name, (ids, grads) in state.sparse.items()}
    return GBAState(state.step + 1, jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, state.dense), sparse)
