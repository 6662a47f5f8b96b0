"""The straggler replay runs the trainer's own math: sync with equal speeds equals `train.py`'s
steps; stale gradients are computed at their own versions and decayed; switching modes
mid-run is continuous."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data import batching
from jaxrec.distributed import straggler
from jaxrec.train import straggler_replay
from jaxrec.distributed.straggler import Arrival, SpeedModel
from jaxrec.errors import ConfigError
from jaxrec.optim import gba
from jaxrec.train import experiment
from jaxrec.train import state as state_lib


def _experiment(config, rowwise: bool, batch_size: int):
    config.train.batch_size = batch_size
    config.sparse_optimizer.rowwise = rowwise
    if rowwise:
        config.sparse_optimizer.bias_correction = "row"
    return experiment.build(config)


def _close(a, b, atol):
    diffs = jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b))
    assert max(diffs) <= atol, max(diffs)


@pytest.mark.parametrize("rowwise", [False, True])
def test_sync_replay_equals_the_trainer(small_config, rowwise):
    """N workers at batch b, equal speeds: the same parameters as the trainer at batch N b."""
    exp = _experiment(small_config, rowwise, batch_size=256)
    cols = exp.dataset.columns("train")
    _, chunk = next(batching.train_chunks(cols, 256, 6, int(small_config.seed), 0))
    trained, _ = exp.train_steps(exp.init_state(), chunk)

    replayer = straggler_replay.Replayer(exp.model, exp.optimizers, cols, local_batch=64)
    order = straggler_replay.local_batch_order(replayer.num_rows, 64, 4, int(small_config.seed), 1)
    out = straggler_replay.simulate(replayer, "sync", SpeedModel(4, jitter=0.0), exp.init_state(), order, 24)
    assert out.steps == 6 and int(out.state.step) == 6 and out.staleness.tolist() == [24]
    _close(out.state.params, trained.params, atol=2e-6)
    _close(out.state.opt_state, trained.opt_state, atol=2e-6)


def test_stale_gradients_use_their_version_and_decay(small_config):
    """Hand-built arrivals (M = 2, iota = 0, inverse decay): the stale gradient of step 1 is taken at
    version 0 and weighted 1 / (1 + 1); a discarded arrival changes nothing."""
    exp = _experiment(small_config, rowwise=True, batch_size=256)
    cols = exp.dataset.columns("train")
    b, config = 64, gba.GBAConfig(num_aggregate=2, tolerance=0, decay="inverse")
    replayer = straggler_replay.Replayer(exp.model, exp.optimizers, cols, local_batch=b)
    order = straggler_replay.local_batch_order(replayer.num_rows, b, 2, 0, 1)
    arrivals = [Arrival(1.0, 0, 0, 0, 0), Arrival(1.0, 1, 1, 0, 0), Arrival(2.0, 0, 2, 1, 1),
                Arrival(2.5, 2, 4, 0, -1), Arrival(3.0, 1, 3, 0, 1)]
    state = exp.init_state()
    out = replayer.replay(arrivals, state, order, config)
    assert (out.steps, out.applied_batches, out.discarded_batches, out.staleness.tolist()) == (2, 4, 1, [3, 1])

    grad_fn = state_lib.make_gradient_fn(exp.model, exp.optimizers)
    apply_fn = state_lib.make_apply_fn(exp.optimizers)

    def grad(params, i):
        batch = {k: jnp.asarray(v[order[i * b:(i + 1) * b]]) for k, v in cols.items()}
        return grad_fn(params, batch, jax.random.fold_in(state.rng, i))[2]

    def mean(pairs):  # [(weight, grads)] -> the aggregate / M, written out by hand
        dense = jax.tree.map(lambda *g: sum(w * x for (w, _), x in zip(pairs, g)) / 2, *[g[0] for _, g in pairs])
        rows = {s: (jnp.concatenate([g[1][s][0] for _, g in pairs]),
                    jnp.concatenate([w * g[1][s][1] for w, g in pairs]) / 2) for s in pairs[0][1][1]}
        return dense, rows

    p0, o0 = state.params, state.opt_state
    p1, o1 = apply_fn(p0, o0, mean([(1.0, grad(p0, 0)), (1.0, grad(p0, 1))]))
    p2, o2 = apply_fn(p1, o1, mean([(1.0, grad(p1, 2)), (0.5, grad(p0, 3))]))
    _close(out.state.params, p2, atol=1e-6)
    _close(out.state.opt_state, o2, atol=1e-6)


def test_replay_counts_match_the_schedule(small_config):
    exp = _experiment(small_config, rowwise=True, batch_size=256)
    replayer = straggler_replay.Replayer(exp.model, exp.optimizers, exp.dataset.columns("train"), local_batch=32)
    order = straggler_replay.local_batch_order(replayer.num_rows, 32, 8, 0, 1)
    speed = SpeedModel(8, 0.3, 4.0, jitter=0.1, seed=1)
    config = gba.GBAConfig(num_aggregate=8, tolerance=1)
    arrivals = straggler.schedule("gba", speed, 100)
    out = replayer.replay(arrivals, exp.init_state(), order, config)
    joined = [a for a in arrivals if a.step < out.steps]
    stale = np.bincount([a.step - a.version for a in joined])
    assert out.steps == 100 // 8 and len(joined) == 96 and out.staleness.tolist() == stale.tolist()
    assert stale[2:].sum() > 0  # the slow workers' gradients are late, and dropped
    assert out.applied_batches == stale[:2].sum() and out.discarded_batches == 100 - out.applied_batches
    assert out.time == max(a.time for a in joined) and np.all(np.diff(out.step_times) >= 0)


def test_switching_sync_gba_sync_is_continuous(small_config):
    """One run: sync, then GBA under stragglers, then sync again, optimizer state and hyper-parameters
    carried over. Jump at a switch = the change of the mean loss over the w steps after vs before it,
    minus the same change in a sync-only run over the same data; it must stay within the noise a
    window mean has. A switch that loses the trained dense parameters is caught by the same measure."""
    exp = _experiment(small_config, rowwise=True, batch_size=1024)
    replayer = straggler_replay.Replayer(exp.model, exp.optimizers, exp.dataset.columns("train"), local_batch=128)
    order = straggler_replay.local_batch_order(replayer.num_rows, 128, 8, 0, 2)
    per_epoch = replayer.num_rows // 1024 * 8
    segments = [("sync", per_epoch * 3 // 4 // 8 * 8), ("gba", per_epoch // 2 // 8 * 8), ("sync", per_epoch // 2 // 8 * 8)]
    speed = SpeedModel(8, 0.3, 4.0, jitter=0.1, seed=0)
    reference = straggler_replay.simulate(replayer, "sync", speed, exp.init_state(), order, sum(n for _, n in segments)).losses

    def run(lose_params: bool):
        state, first, losses = exp.init_state(), 0, []
        for mode, n in segments:
            if lose_params and first:
                state = state.replace(params={**state.params, "dense": exp.init_state().params["dense"]})
            out = straggler_replay.simulate(replayer, mode, speed, state, order, n, first_batch=first)
            assert int(out.state.step) == int(state.step) + n // 8  # GBA keeps the global batch: same step count
            state, first = out.state, first + n
            losses.append(out.losses)
        return np.concatenate(losses), np.cumsum([len(x) for x in losses])[:-1]

    w = 8

    def jump(loss, s):
        return (loss[s:s + w].mean() - loss[s - w:s].mean()) - (reference[s:s + w].mean() - reference[s - w:s].mean())

    window_noise = np.std(np.diff(reference)) / np.sqrt(w)  # std of one window mean's step-to-step noise, roughly
    loss, switches = run(lose_params=False)
    assert all(abs(jump(loss, s)) < 3 * window_noise for s in switches), ([jump(loss, s) for s in switches], window_noise)
    loss, switches = run(lose_params=True)
    assert all(jump(loss, s) > 3 * window_noise for s in switches), ([jump(loss, s) for s in switches], window_noise)


def test_errors():
    assert gba.mode_aggregation("sync", 8).num_aggregate == 8
    assert gba.mode_aggregation("backup", 8, backups=2).num_aggregate == 6
    assert gba.mode_aggregation("async", 8).num_aggregate == 1
    assert gba.mode_aggregation("ssp", 8).tolerance == gba.NO_DECAY
    assert gba.mode_aggregation("gba", 8).tolerance == gba.GBAConfig(8).tolerance
    with pytest.raises(ConfigError, match="mode 'hogwild'"):
        gba.mode_aggregation("hogwild", 8)
    with pytest.raises(ConfigError, match="fewer than one global batch"):
        straggler_replay.local_batch_order(100, 64, 2, 0, 1)


def test_replay_rejects_inconsistent_schedules(small_config):
    exp = _experiment(small_config, rowwise=False, batch_size=256)
    replayer = straggler_replay.Replayer(exp.model, exp.optimizers, exp.dataset.columns("train"), local_batch=64)
    order = straggler_replay.local_batch_order(replayer.num_rows, 64, 2, 0, 1)
    with pytest.raises(ValueError, match="joins step 1 but the server is at step 0"):
        replayer.replay([Arrival(1.0, 0, 0, 0, 1)], exp.init_state(), order, gba.GBAConfig(2))
    with pytest.raises(ConfigError, match="more epochs needed"):
        replayer.replay([Arrival(1.0, 0, len(order) // 64, 0, 0)], exp.init_state(), order, gba.GBAConfig(2))
