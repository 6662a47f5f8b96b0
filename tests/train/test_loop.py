"""End to end: train, early-stop, checkpoint, resume after a kill, stop on NaN, eval, profile."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxrec.errors import TrainingDiverged
from jaxrec.train.checkpointing import Checkpointer
from jaxrec.train.experiment import evaluate_checkpoint
from jaxrec.train.loop import train_and_evaluate

ROOT = Path(__file__).resolve().parents[2]


def test_train_writes_metrics_summaries_and_evaluates(small_config, movielens, tmp_path):
    result = train_and_evaluate(small_config, tmp_path, dataset=movielens)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test"] == result["test"]
    assert result["test"]["auc"] > 0.75 and result["test"]["logloss"] < 0.6  # it learned
    assert 0.5 < result["test"]["gauc"] < result["test"]["auc"]
    assert result["epochs_run"] == 2 and result["best_epoch"] in (0, 1)
    assert result["train_examples_per_sec"] > 1000
    assert [h["epoch"] for h in result["history"]] == [0, 1]
    # TensorBoard scalars
    events = b"".join(p.read_bytes() for p in (tmp_path / "tb").glob("events.out.tfevents.*"))
    for tag in (b"train/loss", b"valid/auc", b"final_test/auc"):
        assert tag in events
    # eval of the best checkpoint reproduces the test metrics
    ev = evaluate_checkpoint(tmp_path, "test", "best", dataset=movielens)
    assert ev["auc"] == result["test"]["auc"] and ev["epoch"] == result["best_epoch"]


def test_early_stopping_restores_best_epoch(small_config, movielens, tmp_path):
    small_config.train.num_epochs = 5
    small_config.early_stopping.patience = 1
    small_config.early_stopping.min_delta = 1.0  # nothing after epoch 0 counts as better
    result = train_and_evaluate(small_config, tmp_path, dataset=movielens)
    assert result["stopped_early"] and result["epochs_run"] == 2 and result["best_epoch"] == 0
    assert result["valid"]["auc"] == result["history"][0]["valid"]["auc"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(small_config, movielens, tmp_path):
    small_config.train.num_epochs = 1
    train_and_evaluate(small_config, tmp_path, dataset=movielens)
    good = Checkpointer(tmp_path / "checkpoints").latest_step()
    assert good == 78
    small_config.train.num_epochs = 2
    small_config.train.allow_config_change = True  # more epochs and another lr on the same workdir
    small_config.optimizer.lr = 1e30  # explodes the MLP in a step or two
    with pytest.raises(TrainingDiverged, match=r"loss \S+ at step \d+ \(epoch 1\) (is not finite|is over).*step 78 in .*checkpoints"):
        train_and_evaluate(small_config, tmp_path, dataset=movielens)
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == good


def test_profile_writes_a_trace(small_config, movielens, tmp_path):
    small_config.train.num_epochs = 1
    small_config.train.steps_per_call = 26
    train_and_evaluate(small_config, tmp_path, profile=True, dataset=movielens)
    assert list((tmp_path / "profile").rglob("*.xplane.pb"))


def _train_cmd(workdir, data_dir):
    return [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/deepfm_movielens.py"),
            "--workdir", str(workdir), f"--config.dataset.data_dir={data_dir}", "--config.model.embed_dim=8",
            "--config.model.hidden=(32,)", "--config.train.num_epochs=2", "--config.train.steps_per_call=10",
            "--config.train.checkpoint_every_steps=10", "--config.early_stopping.patience=0",
            "--config.train.progress_bar=false"]


def test_killed_mid_epoch_resumes_to_the_same_result(ml100k_dir, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Uninterrupted run.
    subprocess.run(_train_cmd(tmp_path / "a", ml100k_dir), check=True, env=env, capture_output=True)
    # Run killed (SIGKILL, no clean-up) right after its first mid-epoch checkpoint of epoch 1.
    proc = subprocess.Popen(_train_cmd(tmp_path / "b", ml100k_dir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "b" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in ckpt.glob("*") if p.name.isdigit()] if ckpt.exists() else []
        if any(s > 78 and s % 78 for s in steps):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed mid-epoch"
    assert not (tmp_path / "b" / "metrics.json").exists()
    killed_at = max(int(p.name) for p in ckpt.glob("*") if p.name.isdigit())
    out = subprocess.run(_train_cmd(tmp_path / "b", ml100k_dir), check=True, env=env, capture_output=True, text=True)
    assert "resumed from" in out.stderr and f"at step {killed_at}" in out.stderr
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert b["test"] == a["test"] and b["valid"] == a["valid"] and b["steps"] == a["steps"] == 156
    # eval.py on the resumed run prints and writes the same test metrics
    ev = subprocess.run([sys.executable, str(ROOT / "eval.py"), "--workdir", str(tmp_path / "b"), "--split", "test"],
                        check=True, capture_output=True, text=True, env=env)
    printed = json.loads(ev.stdout)
    assert printed["auc"] == a["test"]["auc"]
    assert json.loads((tmp_path / "b" / "eval_best_test.json").read_text())["logloss"] == a["test"]["logloss"]
