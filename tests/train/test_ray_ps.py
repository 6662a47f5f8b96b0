"""GBA over a Ray parameter server: sharding round trip, a real run, the switch from and back
to `train.py`, and faults (a killed worker, a killed shard). Each test starts and stops its
own local Ray cluster; no Ray process is left behind."""

import time

import jax
import numpy as np
import pytest

ray = pytest.importorskip("ray")

from jaxrec.train import ray_ps  # noqa: E402
from jaxrec.errors import ConfigError  # noqa: E402
from tests.conftest import ray_cluster  # noqa: E402
from jaxrec.train import experiment as experiment_lib  # noqa: E402
from jaxrec.train import loop  # noqa: E402


@pytest.fixture
def cluster():
    with ray_cluster():
        yield


@pytest.fixture
def experiment(small_config):
    small_config.sparse_optimizer.rowwise = True
    small_config.sparse_optimizer.bias_correction = "row"
    small_config.train.num_epochs = 2
    return small_config, experiment_lib.build(small_config)


def _close(a, b):
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)))


def test_shard_state_round_trip(experiment):
    _, exp = experiment
    state = exp.init_state(place=False)
    parts = [ray_ps.shard_state(jax.device_get(state.params), jax.device_get(state.opt_state), s, 3) for s in range(3)]
    assert parts[1][0]["dense"] == {} and parts[0][0]["dense"]
    table = state.params["sparse"]["embedding"]["stacked"]
    np.testing.assert_array_equal(parts[2][0]["sparse"]["embedding"]["stacked"], np.asarray(table)[2::3])
    params, opt = ray_ps.merge_state(parts, jax.device_get(state.params), jax.device_get(state.opt_state))
    assert _close(params, state.params) == 0 and _close(opt, state.opt_state) == 0


def test_split_rows_routes_ids_to_their_shard():
    ids = np.array([0, 1, 2, 3, 4, 5, 4])
    grads = np.arange(7.0)[:, None]
    out = ray_ps.split_rows({("t",): (ids, grads)}, 1, 2, {("t",): 3})[("t",)]
    np.testing.assert_array_equal(out[0], [3, 0, 3, 1, 3, 2, 3])  # local row id // 2, others padded with 3
    np.testing.assert_array_equal(out[1][:, 0], [0, 1, 0, 3, 0, 5, 0])


def test_options_are_checked(experiment):
    with pytest.raises(ConfigError, match="mode 'hogwild'"):
        ray_ps.PSOptions(mode="hogwild", num_workers=2, local_batch=64, num_batches=10)
    assert ray_ps.PSOptions(mode="async", num_workers=4, local_batch=64, num_batches=10).aggregation.num_aggregate == 1


def test_switch_trainer_to_gba_and_back(cluster, experiment, tmp_path):
    """train.py 1 epoch -> GBA on the parameter server 1 epoch (from its checkpoint) -> train.py again:
    the server starts from the trainer's state and the trainer resumes from the server's."""
    config, exp = experiment
    config.train.num_epochs = 1
    loop.train_and_evaluate(config, tmp_path)
    latest = exp.checkpointer(tmp_path / "checkpoints")
    state, meta = latest.restore(exp.init_state(place=False))
    spe = exp.steps_per_epoch
    assert int(state.step) == spe

    options = ray_ps.PSOptions(mode="gba", num_workers=2, local_batch=config.train.batch_size // 2, num_batches=2 * spe, seed=1)
    ps = ray_ps.ParameterServer(config, state, options)
    start, _ = ps.state()
    assert int(start.step) == spe and _close(start.params, state.params) == 0 and _close(start.opt_state, state.opt_state) == 0
    ps.run()
    after, steps = ps.state()
    ps.close()
    assert [k for k, _ in steps] == [spe, spe] and int(after.step) == 2 * spe  # M = N: one step per 2 local batches
    assert _close(after.params, state.params) > 1e-4  # it trained
    ray_ps.save_for_trainer(latest, after, meta)
    latest.close()

    config.train.num_epochs = 3
    config.train.allow_config_change = True  # the workdir's run goes on for more epochs (jaxrec.train.workdir)
    result = loop.train_and_evaluate(config, tmp_path)
    assert result["steps"] == 3 * spe and [h["epoch"] for h in result["history"]] == [0, 2]
    resumed, _ = exp.checkpointer(tmp_path / "checkpoints").restore(exp.init_state(place=False), step=2 * spe)
    assert _close(resumed.params, after.params) == 0


def test_faults_worker_and_shard(cluster, experiment, tmp_path):
    """A worker killed mid-run: the others finish the data (its in-flight batch is lost) and a
    replacement joins. A shard killed mid-run: Ray restarts it from its last checkpoint and log,
    at the step it was killed at (nothing lost; tests/train/test_ray_ps_restart.py)."""
    config, exp = experiment
    every = 5
    options = ray_ps.PSOptions(mode="gba", num_workers=3, local_batch=64, num_batches=300, checkpoint_dir=str(tmp_path),
                               checkpoint_every=every)
    ps = ray_ps.ParameterServer(config, exp.init_state(place=False), options)
    while ray.get(ps.shards[1].version.remote()) < 2 * every + 2:
        time.sleep(0.05)
    ps.kill_worker(0)
    seen = ray.get(ps.shards[1].version.remote())
    ps.kill_shard(1)
    out = ps.run(replace_dead=True)
    state, steps = ps.state()
    ps.close()
    assert out["dead"] == [0] and set(out["batches"]) == {1, 2, 3}  # worker 3 replaced worker 0
    assert steps[1][1] >= seen > 0 and out["shards"][1]["restarted"], (steps, seen)  # back where it was killed
    assert out["handed_out"] == 300 and all(s["lost"] <= 1 for s in out["shards"]), out  # the dead worker's batch
    assert steps[0][0] >= (300 - 1) // 3 and abs(steps[0][0] - steps[1][0]) <= 1, steps
    assert np.isfinite(experiment_lib.evaluate(exp, state.params, "test")["logloss"])
