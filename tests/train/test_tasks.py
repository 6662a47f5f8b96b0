"""Issue 19, item 5: the task seam. Multi-task models train through the one loop (train.py, a
config file, checkpoints, resume after SIGKILL, eval.py), with the combiners of
`jaxrec.optim.multitask`, per-task metrics and early stopping on a named task's metric."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxrec.errors import ConfigError, DataError
from jaxrec.optim import multitask as mt
from jaxrec.train import multitask as reference
from jaxrec.train import tasks
from jaxrec.train.config import default_config
from jaxrec.train.experiment import build
from tests.conftest import ROOT

FEATURES = [{"type": "categorical", "name": "user"}, {"type": "categorical", "name": "item"},
            {"type": "numeric", "name": "price", "transform": "standardize"}]


def _table(path, n: int = 3000, seed: int = 0) -> str:
    """A two-label Parquet table: `click` 0/1 and `answer` 'yes'/'no', both depending on user and item."""
    rng = np.random.default_rng(seed)
    user, item = rng.integers(0, 50, n), rng.integers(0, 80, n)
    price = rng.gamma(2.0, 10.0, n)
    taste = np.sin(user * 1.3) + np.cos(item * 0.7)
    click = (taste + rng.normal(0, 0.7, n) > 0).astype(np.int64)
    answer = np.where(taste + 0.02 * price + rng.normal(0, 0.7, n) > 0.4, "yes", "no")
    pq.write_table(pa.table({"user": [f"u{u}" for u in user], "item": [f"i{i}" for i in item], "price": price,
                             "click": click, "answer": answer}), path)
    return str(path)


def _config(path: str) -> ml_collections.ConfigDict:
    c = default_config()
    c.dataset = ml_collections.ConfigDict({"name": "tabular", "path": path, "labels": ["click", "answer"],
                                           "positive": {"answer": "yes"}, "features": FEATURES, "group_key": "user"})
    c.task.name = "multitask"
    c.model = ml_collections.ConfigDict({"name": "mmoe", "embed_dim": 4, "expert": (16,), "tower": (8,)})
    c.optimizer.multitask = "gradops"
    c.early_stopping.metric = "answer/auc"
    c.train.batch_size = 128
    c.train.num_epochs = 2
    c.train.progress_bar = False
    return c


def test_losses_and_metrics_by_hand():
    task = tasks.MultiTask(("a", "r"), ("binary", "regression"), mt.linear())
    z = jnp.array([[0.0, 1.0], [2.0, 3.0]])
    y = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    bce = np.mean([np.log(2.0), np.log1p(np.exp(2.0))])  # -log sigmoid(0), -log(1 - sigmoid(2))
    np.testing.assert_allclose(task.loss(z, y), [bce, (1.0 + 4.0) / 2], rtol=1e-6)
    m = task.metrics(np.asarray(y), np.asarray(z), None)
    assert m["a/auc"] == 0.0 and m["r/mse"] == pytest.approx(2.5) and m["count"] == 2
    assert task.metric_names == ("a/auc", "a/logloss", "r/mse")


def test_bad_task_configs_name_the_key(tmp_path):
    path = _table(tmp_path / "t.parquet", n=600)
    c = _config(path)
    c.early_stopping.metric = "answer/acu"
    with pytest.raises(ConfigError, match=r"early_stopping.metric='answer/acu' \(did you mean 'answer/auc'\?\)"):
        build(c)
    c.early_stopping.metric = "answer/logloss"
    with pytest.raises(ConfigError, match="set early_stopping.mode='min'"):
        build(c)
    c = _config(path)
    c.optimizer.multitask, c.optimizer.alpha = "pcgrad", -1.0
    with pytest.raises(ConfigError, match="optimizer.alpha=-1.0 is GradOPS's weighting exponent"):
        build(c)
    c = _config(path)
    c.task.name, c.early_stopping.metric = "binary", "auc"
    c.optimizer.multitask = "linear"
    with pytest.raises(ConfigError, match="has 2 label columns: task.name='binary' reads one"):
        build(c)
    c = _config(path)
    c.model = ml_collections.ConfigDict({"name": "deepfm"})
    with pytest.raises(ConfigError, match="needs a multi-task model"):
        build(c)
    c = _config(path)
    c.task.kinds = ("binary", "binary", "binary")
    with pytest.raises(ConfigError, match="one distinct name and one kind per task"):
        build(c)
    c = _config(path)
    c.dataset.positive = {}
    with pytest.raises(DataError, match="answer"):  # text labels without `positive`
        build(c)


@pytest.mark.parametrize("combiner", ["gradops"])
def test_step_equals_the_reference_multitask_trainer(tmp_path, combiner):
    """Per-task gradients of the dense and table parameters combined jointly, then Adam per side,
    equal `jaxrec.train.multitask` (one Adam over all variables after `multitask_transform`) step
    for step."""
    c = _config(_table(tmp_path / "t.parquet", n=1200))
    c.optimizer.multitask = combiner
    exp = build(c)
    state = exp.init_state()
    chunk = {k: jnp.asarray(v[:4 * 128].reshape(4, 128, *v.shape[1:])) for k, v in exp.dataset.columns("train").items()}
    variables = jax.tree.map(jnp.copy, {"params": state.params["dense"], "embedding": state.params["sparse"]})
    new, out = exp.train_steps(state, chunk)  # donates `state`

    tx = optax.chain(mt.multitask_transform(mt.make_combiner(combiner), mt.is_shared), optax.adam(1e-3))
    epoch = reference.make_train_epoch(exp.model, tx, ["binary", "binary"])
    want, _, losses = epoch(variables, tx.init(variables), chunk)
    np.testing.assert_allclose(out["loss"], np.asarray(losses).sum(axis=1), rtol=1e-5)
    for side, key in (("dense", "params"), ("sparse", "embedding")):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), new.params[side], want[key])


def _train_cmd(config_file, workdir):
    return [sys.executable, str(ROOT / "train.py"), "--config", str(config_file), "--workdir", str(workdir)]


@pytest.mark.slow  # ~2 min, three train.py processes. In the default suite: SIGKILL mid-epoch + resume through
# train.py to the same metrics: tests/train/test_loop.py::test_killed_mid_epoch_resumes_to_the_same_result; a multi-task
# config through train.py and eval.py (per-task metrics printed and saved, eval agrees):
# test_movielens_mmoe_config_trains_and_evaluates; text labels with `positive` + the multitask step: test_step_equals_*.
def test_two_label_table_trains_resumes_after_sigkill_and_evaluates(tmp_path):
    """A user's two-label Parquet table (one label text 'yes'/'no') trains MMoE from a config
    file; a run killed mid-epoch resumes to the uninterrupted run's metrics; eval.py reproduces them."""
    data = _table(tmp_path / "clicks.parquet")
    config_file = tmp_path / "mmoe_mine.py"
    config_file.write_text(f'''
from jaxrec.train.config import default_config

def get_config():
    c = default_config()
    c.dataset.name = "tabular"
    c.dataset.path = {data!r}
    c.dataset.labels = ["click", "answer"]
    c.dataset.positive = {{"answer": "yes"}}
    c.dataset.features = {FEATURES!r}
    c.dataset.group_key = "user"
    c.task.name = "multitask"
    c.model.name = "mmoe"
    c.model.embed_dim = 4
    c.model.expert = (16,)
    c.model.tower = (8,)
    c.optimizer.multitask = "gradops"
    c.optimizer.alpha = -1.0
    c.early_stopping.metric = "answer/auc"
    c.early_stopping.patience = 0
    c.train.batch_size = 64
    c.train.num_epochs = 3
    c.train.checkpoint_every_steps = 5
    c.train.progress_bar = False
    return c
''')
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(_train_cmd(config_file, tmp_path / "a"), check=True, env=env, capture_output=True)
    spe = 2400 // 64  # 37 steps an epoch
    proc = subprocess.Popen(_train_cmd(config_file, tmp_path / "b"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "b" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in ckpt.glob("*") if p.name.isdigit()] if ckpt.exists() else []
        if any(s > spe and s % spe for s in steps):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed mid-epoch"
    out = subprocess.run(_train_cmd(config_file, tmp_path / "b"), check=True, env=env, capture_output=True, text=True)
    assert "resumed from" in out.stderr
    assert "answer/auc" in out.stdout and "click/auc" in out.stdout  # the printed per-task metrics
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert b["test"] == a["test"] and b["valid"] == a["valid"] and b["steps"] == a["steps"] == 3 * spe
    assert a["task"] == "multitask" and a["test"]["answer/auc"] > 0.6 and a["test"]["click/auc"] > 0.6  # it learned
    best = max(a["history"], key=lambda h: h["valid"]["answer/auc"])  # early stopping read the named task's metric
    assert a["best_epoch"] == best["epoch"] and a["valid"] == best["valid"]
    ev = subprocess.run([sys.executable, str(ROOT / "eval.py"), "--workdir", str(tmp_path / "b"), "--split", "test"],
                        check=True, capture_output=True, text=True, env=env)
    printed = json.loads(ev.stdout)
    assert {k: printed[k] for k in a["test"]} == a["test"]


def test_movielens_mmoe_config_trains_and_evaluates(ml100k_dir, tmp_path):
    """configs/mmoe_movielens.py: like / love / rating, per-task metrics in metrics.json, eval.py agrees."""
    from jaxrec.train.cli import eval_main, train_main

    workdir = tmp_path / "mmoe"
    result = train_main(["train.py", "--config", str(ROOT / "configs/mmoe_movielens.py"), "--workdir", str(workdir),
                         f"--config.dataset.data_dir={ml100k_dir}", "--config.train.num_epochs=1",
                         "--config.train.progress_bar=false", "--config.optimizer.multitask=pcgrad"])
    test = result["test"]
    assert test["like/auc"] > 0.72 and test["love/auc"] > 0.72 and test["rating/mse"] < 1.1
    saved = json.loads((workdir / "metrics.json").read_text())
    assert saved["test"] == test and saved["history"][0]["valid"]["like/auc"] == result["valid"]["like/auc"]
    evaluated = eval_main(["eval.py", "--workdir", str(workdir), "--split", "test"])
    assert {k: evaluated[k] for k in test} == pytest.approx(test, abs=1e-6)
