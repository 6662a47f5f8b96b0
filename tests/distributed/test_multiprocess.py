"""Multi-process synchronous training (`jaxrec.distributed.launch`): 2 processes joined by
jax.distributed (gloo on CPU) train exactly what one process trains with the same global batch."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxrec.distributed import launch, runtime
from jaxrec.errors import ConfigError
from jaxrec.train import experiment
from jaxrec.train.cli import apply_overrides, load_config_file
from tests.distributed import ROOT

OVERRIDES = ["--config.model.embed_dim=8", "--config.model.hidden=(32,)", "--config.train.num_epochs=1",
             "--config.train.progress_bar=false", "--config.train.checkpoint_every_steps=20"]


def _train(tmp_path, name, ml100k_dir, processes=0, mesh=None):
    args = ["train.py", "--config", "configs/deepfm_rowwise_movielens.py", "--workdir", str(tmp_path / name),
            f"--config.dataset.data_dir={ml100k_dir}", *OVERRIDES] + ([f"--config.mesh.shape={mesh}"] if mesh else [])
    cmd = [sys.executable] + (["-m", "jaxrec.distributed.launch", "--processes", str(processes), "--devices_per_process", "2",
                               "--log_dir", str(tmp_path / "logs")] if processes else []) + args
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_two_processes_equal_one(tmp_path, ml100k_dir):
    """2 processes x 2 CPU devices, mesh (2, 2) (batch over 'data', tables row-sharded over all 4
    devices) against one process on one device: same metrics and same parameters within 1e-5."""
    out = _train(tmp_path, "multi", ml100k_dir, processes=2, mesh="(2,2)")
    assert "test  auc" in out
    assert "test  auc" in (tmp_path / "logs" / "process_1.log").read_text()  # process 1 ran the same program
    _train(tmp_path, "single", ml100k_dir)

    import json
    multi, single = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("multi", "single"))
    for split in ("valid", "test"):
        for key in ("auc", "logloss"):
            assert abs(multi[split][key] - single[split][key]) <= 1e-5, (split, key, multi[split], single[split])

    config = load_config_file(str(ROOT / "configs" / "deepfm_rowwise_movielens.py"))
    apply_overrides(config, [f"--config.dataset.data_dir={ml100k_dir}", *OVERRIDES])
    exp = experiment.build(config)
    states = [exp.checkpointer(tmp_path / n / "checkpoints").restore(exp.init_state(place=False))[0] for n in ("multi", "single")]
    assert int(states[0].step) == int(states[1].step) == exp.steps_per_epoch
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), states[0].params, states[1].params))
    assert max(diffs) <= 1e-5, max(diffs)


def test_two_processes_killed_mid_epoch_resume_through_the_launcher(tmp_path, ml100k_dir):
    """Calls of 10 steps (mid-epoch chunks and checkpoints), 2 processes x 2 devices on the default
    (4, 1) mesh, the launcher and both processes SIGKILLed mid-epoch 1, then the launcher rerun:
    it resumes from the mid-epoch checkpoint and ends where one uninterrupted process does.
    Before: mid-epoch chunks hung or aborted in gloo (device_put's cross-process check in the
    prefetch thread) and the rerun crashed placing the restored state (cross-host transfer)."""
    overrides = ["--config.model.embed_dim=8", "--config.model.hidden=(32,)", "--config.train.num_epochs=2",
                 "--config.train.progress_bar=false", "--config.train.steps_per_call=10",
                 "--config.train.checkpoint_every_steps=10", "--config.early_stopping.patience=0"]
    args = ["train.py", "--config", "configs/deepfm_movielens.py", f"--config.dataset.data_dir={ml100k_dir}", *overrides]
    launched = [sys.executable, "-m", "jaxrec.distributed.launch", "--processes", "2", "--devices_per_process", "2",
                "--log_dir", str(tmp_path / "logs"), *args, "--workdir", str(tmp_path / "multi")]
    proc = subprocess.Popen(launched, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt, deadline = tmp_path / "multi" / "checkpoints", time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in ckpt.glob("*") if p.name.isdigit()] if ckpt.exists() else []
        if any(s > 78 and s % 78 for s in steps):
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both processes, no clean-up
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished (or failed) before it could be killed mid-epoch"
    killed_at = max(int(p.name) for p in ckpt.glob("*") if p.name.isdigit())
    out = subprocess.run(launched, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert f"at step {killed_at}" in out.stderr and "test  auc" in out.stdout
    single = subprocess.run([sys.executable, *args, "--workdir", str(tmp_path / "single")], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    multi, one = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("multi", "single"))
    assert multi["steps"] == one["steps"] == 156
    for split in ("valid", "test"):
        for key in ("auc", "logloss"):
            assert abs(multi[split][key] - one[split][key]) <= 1e-5, (split, key, multi[split], one[split])


def test_launch_stops_the_others_when_one_fails(tmp_path):
    script = tmp_path / "fail_one.py"
    script.write_text("import os, sys, time\n"
                      f"if os.environ['{runtime.PROCESS_ID}'] == '1':\n    sys.exit(3)\n"
                      "time.sleep(120)\n")
    tic = time.perf_counter()
    assert launch.launch([str(script)], 3, log_dir=str(tmp_path / "logs")) == 3
    assert time.perf_counter() - tic < 60  # processes 0 and 2 were stopped, not waited for


def test_child_environment():
    env = launch.child_env(1, 4, 1234, 2)
    assert (env[runtime.COORDINATOR], env[runtime.NUM_PROCESSES], env[runtime.PROCESS_ID]) == ("127.0.0.1:1234", "4", "1")
    assert "--xla_force_host_platform_device_count=2" in env["XLA_FLAGS"]


def test_initialize_names_what_is_missing(monkeypatch):
    monkeypatch.setenv(runtime.NUM_PROCESSES, "2")
    monkeypatch.delenv(runtime.COORDINATOR, raising=False)
    monkeypatch.delenv(runtime.PROCESS_ID, raising=False)
    with pytest.raises(ConfigError, match="JAXREC_COORDINATOR=host:port"):
        runtime.initialize()
    monkeypatch.setenv(runtime.NUM_PROCESSES, "1")
    assert runtime.initialize() is False
