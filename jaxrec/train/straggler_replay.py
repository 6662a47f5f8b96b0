"""Straggler simulation, replay half: the real gradient math and optimizer over a schedule.

`jaxrec.distributed.straggler.schedule` says when each worker's gradient arrives and at which
parameter version it was computed; `replay` walks those arrivals in server order and, for
each, computes the real gradient of its local batch at the parameters of its version
(`jaxrec.train.state.make_gradient_fn`), adds it to the GBA accumulator
(`jaxrec.optim.gba.accumulate`, decayed by its staleness), and every M arrivals applies the
mean with the trainer's own update (`make_apply_fn`). Every mode goes through that one
accumulator; only M and the decay differ (`jaxrec.optim.gba.mode_aggregation`):

    sync     M = N, no decay (staleness is always 0)   = the trainer's step at batch N b
    backup   M = N - backups, no decay (late gradients were discarded by the schedule)
    async    M = 1, no decay (stale gradients applied as they are)
    ssp      M = 1, no decay (staleness bounded by the schedule)
    gba      M = N (the synchronous global batch), GBA's decay of stale gradients

Local batch i is rows `[i b, (i + 1) b)` of the trainer's own epoch orders laid end to end
(`local_batch_order`), so N consecutive local batches are exactly the trainer's global
batch: with equal speeds and no jitter, the sync replay reproduces `train.py`'s run
(tested). Parameter versions still in flight are kept and freed after their last use.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxrec.data import batching
from jaxrec.distributed import straggler
from jaxrec.errors import ConfigError
from jaxrec.optim import gba
from jaxrec.train import state as state_lib


def local_batch_order(num_rows: int, local_batch: int, num_workers: int, seed: int, num_epochs: int) -> np.ndarray:
    """Row indices `[E * S * N * b]` (int32): the trainer's epoch orders (`batching.epoch_order`)
    cut to S = num_rows // (N b) global batches each and laid end to end; local batch i is
    `[i b, (i + 1) b)`."""
    global_batch = local_batch * num_workers
    spe = batching.steps_per_epoch(num_rows, global_batch)
    if spe == 0:
        raise ConfigError(f"train split has {num_rows} rows, fewer than one global batch of {num_workers} x {local_batch}")
    return np.concatenate([batching.epoch_order(num_rows, seed, e)[:spe * global_batch]
                           for e in range(num_epochs)]).astype(np.int32)


@dataclasses.dataclass
class Replay:
    """What a replayed run did.

    Attributes:
      state: the TrainState after the last complete update.
      steps: updates applied.
      time: simulated seconds at the last applied update.
      step_times: `[steps]` simulated time of each update.
      losses: `[steps]` mean training loss of the local batches each update aggregated.
      staleness: histogram, `staleness[t]` = local gradients of staleness t that joined an
        update (weighted by the decay, possibly by 0).
      applied_batches: local gradients that joined an update with a non-zero weight.
      discarded_batches: local gradients thrown away (a backup worker's late ones, GBA's
        dropped stale ones, or those of a final incomplete step).
    """

    state: state_lib.TrainState
    steps: int
    time: float
    step_times: np.ndarray
    losses: np.ndarray
    staleness: np.ndarray
    applied_batches: int
    discarded_batches: int


class Replayer:
    """Compiled gradient / update functions of one experiment, reusable across replays.

    Args:
      model, optimizers: as for `make_train_step` (single device).
      train_columns: the train split as numpy arrays (kept on device once).
      local_batch: b, rows per local gradient.
    """

    def __init__(self, model, optimizers: state_lib.Optimizers, train_columns: Mapping[str, np.ndarray], local_batch: int):
        self.local_batch = int(local_batch)
        self.data = {k: jnp.asarray(v) for k, v in train_columns.items()}
        self.num_rows = len(next(iter(train_columns.values())))
        self._gradient = state_lib.make_gradient_fn(model, optimizers)
        self._apply = state_lib.make_apply_fn(optimizers)
        self._compiled: dict[gba.GBAConfig, tuple] = {}

    def _functions(self, config: gba.GBAConfig):
        if config in self._compiled:
            return self._compiled[config]
        b = self.local_batch

        def grads(params, order, index, rng):
            rows = jax.lax.dynamic_slice(order, (index * b,), (b,))
            loss, _, (dense, sparse) = self._gradient(params, {k: v[rows] for k, v in self.data.items()}, rng)
            return loss, dense, sparse

        def arrive(acc, params, order, index, token, rng):
            loss, dense, sparse = grads(params, order, index, jax.random.fold_in(rng, index))
            return gba.accumulate(acc, token, dense, sparse, config), loss

        def update(state, acc, num_rows):
            params, opt_state = self._apply(state.params, state.opt_state, gba.global_gradient(acc, config))
            return state.replace(step=state.step + 1, params=params, opt_state=opt_state), gba.advance(acc, dict(num_rows))

        self._compiled[config] = (grads, jax.jit(arrive), jax.jit(update, static_argnums=2))
        return self._compiled[config]

    def replay(self, arrivals: Sequence[straggler.Arrival], state: state_lib.TrainState, order: np.ndarray,
               config: gba.GBAConfig, first_batch: int = 0) -> Replay:
        """Runs `arrivals` (a `straggler.schedule`) from `state`; local batch i of the schedule is
        `first_batch + i` of `order` (`local_batch_order`). Only complete steps are applied."""
        grads, arrive, update = self._functions(config)
        order = jnp.asarray(order)
        last = max((a.batch for a in arrivals), default=-1) + first_batch
        if (last + 1) * self.local_batch > order.shape[0]:
            raise ConfigError(f"the schedule reaches local batch {last}, beyond the {order.shape[0] // self.local_batch} "
                              "the row order holds (more epochs needed)")
        tables = traverse_util.flatten_dict(state.params["sparse"])
        num_rows = tuple(sorted((path, t.shape[0]) for path, t in tables.items()))
        shapes = jax.eval_shape(grads, state.params, order, 0, state.rng)
        acc = gba.init(shapes[1], shapes[2], config, dict(num_rows))

        last_use = {}
        for i, a in enumerate(arrivals):
            if a.step >= 0:
                last_use[a.version] = i
        versions = {0: state.params}
        k, pending, times, losses, stale = 0, [], [], [], []
        for i, a in enumerate(arrivals):
            if a.step < 0:
                continue
            if a.step != k:
                raise ValueError(f"arrival {i} joins step {a.step} but the server is at step {k}: not a schedule of M={config.num_aggregate}")
            acc, loss = arrive(acc, versions[a.version], order, first_batch + a.batch, a.version, state.rng)
            if last_use[a.version] == i and a.version != k:
                del versions[a.version]
            pending.append(loss)
            stale.append(k - a.version)
            if len(pending) == config.num_aggregate:
                state, acc = update(state, acc, num_rows)
                k += 1
                if k in last_use:
                    versions[k] = state.params
                losses.append(float(np.mean(jax.device_get(pending))))
                times.append(a.time)
                pending = []
        joined = k * config.num_aggregate  # arrivals of complete steps
        stale = np.asarray(stale[:joined], np.int64)
        histogram = np.bincount(stale, minlength=1)
        num_applied = int(np.sum(np.asarray(gba.decay_weight(stale, config)) > 0))
        return Replay(state=state, steps=k, time=float(times[-1]) if times else 0.0, step_times=np.asarray(times),
                      losses=np.asarray(losses), staleness=histogram, applied_batches=num_applied,
                      discarded_batches=len(arrivals) - num_applied)


def simulate(replayer: Replayer, mode: str, speed: straggler.SpeedModel, state: state_lib.TrainState, order: np.ndarray,
             num_batches: int, *, first_batch: int = 0, gba_config: gba.GBAConfig | None = None, backups: int = 1,
             bound: int = 2) -> Replay:
    """One simulated run of `mode`: `num_batches` local batches from `first_batch` on, scheduled
    under `speed` (`straggler.schedule`) and replayed from `state`. Chain calls (passing
    `Replay.state` and advancing `first_batch`) to switch modes mid-run: the optimizer state
    and hyper-parameters carry over unchanged."""
    config = gba.mode_aggregation(mode, speed.num_workers, backups=backups, gba_config=gba_config)
    arrivals = straggler.schedule(mode, speed, num_batches, num_aggregate=config.num_aggregate, backups=backups, bound=bound)
    return replayer.replay(arrivals, state, order, config, first_batch)
