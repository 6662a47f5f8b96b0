"""Restart safety of the Ray parameter server (issue 18, item 8): the checkpoint directory is
created, claimed by one run (another run's is refused; `resume=True` continues it), and a
killed shard -- shard 0 with the dense parameters and the data cursor included -- comes back
at its exact step from its checkpoint and log: no batch handed out twice, no step lost.
One small Ray cluster for the module; no Ray process is left behind."""

import json
import time

import jax
import numpy as np
import pytest

ray = pytest.importorskip("ray")

from jaxrec.train import ray_ps  # noqa: E402
from jaxrec.errors import ConfigError  # noqa: E402
from tests.conftest import ray_cluster  # noqa: E402
from jaxrec.train import experiment as experiment_lib  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster(num_cpus=2):
        yield


@pytest.fixture
def experiment(small_config):
    small_config.sparse_optimizer.rowwise = True
    small_config.sparse_optimizer.bias_correction = "row"
    return small_config, experiment_lib.build(small_config)


def _options(path, **kw):  # few actors (each builds the experiment): 1 worker, 1 shard unless asked
    return ray_ps.PSOptions(**{"mode": "gba", "num_workers": 1, "num_shards": 1, "local_batch": 64, "num_batches": 6,
                               "checkpoint_dir": str(path), "checkpoint_every": 2, **kw})


def _max_diff(a, b):
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)))


# ---- the directory claim, driver side (no Ray) ----------------------------------------------------

def test_claim_refuses_another_runs_dir_and_checks_resume(tmp_path):
    d = tmp_path / "a" / "b"
    ident = {"num_shards": 2, "config.seed": 0, "start_state_sha256": "x"}
    run_id = ray_ps.claim_checkpoint_dir(d, ident)  # created, parents too
    assert json.loads((d / ray_ps.RUN_FILE).read_text())["run_id"] == run_id
    with pytest.raises(ConfigError, match=f"checkpoint_dir '{d}' already holds another run's.*resume=True"):
        ray_ps.claim_checkpoint_dir(d, ident)
    assert ray_ps.claim_checkpoint_dir(d, ident, resume=True) == run_id
    with pytest.raises(ConfigError, match=r"cannot resume run .* num_shards: 2 -> 3; start_state_sha256: 'x' -> 'y'"):
        ray_ps.claim_checkpoint_dir(d, {**ident, "num_shards": 3, "start_state_sha256": "y"}, resume=True)
    with pytest.raises(ConfigError, match="holds no run.json"):
        ray_ps.claim_checkpoint_dir(tmp_path / "fresh", ident, resume=True)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "shard_0.msgpack").write_bytes(b"")
    with pytest.raises(ConfigError, match="shard_0.msgpack, of a run that recorded no run.json"):
        ray_ps.claim_checkpoint_dir(legacy, ident)


# ---- on Ray -------------------------------------------------------------------------------------

@pytest.mark.slow  # a Ray server start each (the claim logic itself: test_claim_refuses_another_runs_dir_and_checks_resume)
def test_missing_checkpoint_dir_is_created(cluster, experiment, tmp_path):
    """Was: FileNotFoundError ... shard_1.tmp at the first checkpoint (the worker died with it)."""
    config, exp = experiment
    d = tmp_path / "runs" / "ps"
    ps = ray_ps.ParameterServer(config, exp.init_state(place=False), _options(d, num_batches=4))
    out = ps.run(timeout=120)
    ps.close()
    assert out["dead"] == [] and out["batches"] == {0: 4}
    assert [p.name for p in d.glob("shard_*.msgpack")] == ["shard_0.msgpack"] and out["shards"][0]["step"] == 4


@pytest.mark.slow
def test_reused_checkpoint_dir_is_refused_unless_resumed(cluster, experiment, tmp_path):
    """Was: a new server in a used directory silently returned the previous run's parameters."""
    config, exp = experiment
    first = exp.init_state(place=False)
    ps = ray_ps.ParameterServer(config, first, _options(tmp_path))
    ps.run(timeout=120)
    trained, _ = ps.state()
    ps.close()

    other = first.replace(params=jax.tree.map(lambda x: x + 1.0, first.params))
    with pytest.raises(ConfigError, match=f"checkpoint_dir '{tmp_path}' already holds another run's"):
        ray_ps.ParameterServer(config, other, _options(tmp_path))
    with pytest.raises(ConfigError, match="differs from it in start_state_sha256"):
        ray_ps.ParameterServer(config, other, _options(tmp_path), resume=True)

    ps = ray_ps.ParameterServer(config, first, _options(tmp_path, num_batches=8), resume=True)  # deliberately: 2 more
    out = ps.run(timeout=120)
    resumed, steps = ps.state()
    ps.close()
    assert out["handed_out"] == 8 and out["batches"] == {0: 2} and steps == [(8, 6)]  # back where run 1 ended
    assert _max_diff(resumed.params, trained.params) > 0


def test_killed_shard_0_resumes_exactly(cluster, experiment, tmp_path):
    """Was: shard 0 (dense parameters, data cursor) rewound to its checkpoint: 206 batches for 200
    and shards at different steps. Now: its log is replayed; each batch is handed out once and
    every shard ends at num_batches / N steps (N = 1 here)."""
    config, exp = experiment
    n, every = 40, 5
    ps = ray_ps.ParameterServer(config, exp.init_state(place=False),
                                _options(tmp_path, num_shards=2, num_batches=n, checkpoint_every=every))
    while (seen := ray.get(ps.shards[0].version.remote())) < every + 2:
        time.sleep(0.02)
    ps.kill_shard(0)
    out = ps.run(timeout=120)
    _, steps = ps.state()
    ps.close()
    assert out["dead"] == [] and sum(out["batches"].values()) == n and out["handed_out"] == n, out
    zero = out["shards"][0]
    assert zero["restarted"] and zero["resumed_at"] >= seen and zero["replayed"] > 0, zero
    assert [s["step"] for s in out["shards"]] == [n, n] and [s["lost"] for s in out["shards"]] == [0, 0], out
