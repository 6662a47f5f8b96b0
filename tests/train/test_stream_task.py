"""Issue 19, item 5: the delayed-feedback streaming protocol trains through train.py. The
resumable driver (units, checkpoints) equals the protocol functions the benchmark runs
(`pretrain` + `run_stream`), a run killed mid-stream resumes to the same metrics, and eval.py
reproduces them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from jaxrec.data.conversion_logs import DelaySpec, load_conversion_log, synthetic_conversions
from jaxrec.data.delayed_feedback import Protocol, Windows
from jaxrec.errors import ConfigError
from jaxrec.train import delayed_feedback as tdf
from jaxrec.train.cli import load_config_file
from jaxrec.train.loop import train_and_evaluate
from tests.conftest import ROOT

DATASET = {"name": "synthetic_conversions", "num_clicks": 6000, "days": 3.0, "seed": 0,
           "delay": {"scale_hours": 6.0, "spread": 1.0}}
TASK = {"name": "delayed_feedback", "method": "defuse", "observation_hours": 0.5, "attribution_days": 30.0,
        "pretrain_days": 1.5, "end_day": 3.0, "period_hours": 2.0, "pretrain_epochs": 2, "checkpoint_every_periods": 3}


def _config():
    c = load_config_file(str(ROOT / "configs/defuse_movielens.py"))
    c.dataset, c.task = dict(DATASET), dict(TASK)
    c.train.batch_size = 256
    c.optimizer.lr = 2e-3
    c.train.progress_bar = False
    return c


def test_driver_equals_the_protocol_functions(tmp_path):
    result = train_and_evaluate(_config(), tmp_path)
    log = synthetic_conversions(num_clicks=6000, days=3.0, delay=DelaySpec(scale_hours=6.0, spread=1.0), seed=0)
    w, p = Windows(0.5, 30.0), Protocol(1.5, 3.0, 2.0)
    o = tdf.TrainOptions(lr=2e-3, batch_size=256, pretrain_epochs=2, embed_dim=8)
    pre = {f: tdf.pretrain(log, f, w, p, o, seed=0) for f in ("cvr", "aux")}
    ref = tdf.run_stream(log, "defuse", pre["cvr"], w, p, o, 0, aux=tdf.auxiliary_predictions(log, pre["aux"], o))
    assert result["test"] == pytest.approx(tdf.stream_metrics(ref), rel=1e-6, abs=1e-7)
    assert result["units"] == 2 + 2 + p.num_periods and result["test"]["count"] == len(ref["label"])
    assert json.loads((tmp_path / "metrics.json").read_text())["test"] == result["test"]


def test_bad_stream_configs_name_the_key(tmp_path):
    c = _config()
    c.task.method = "defusee"
    with pytest.raises(ConfigError, match=r"task.method='defusee': expected one of"):
        train_and_evaluate(c, tmp_path / "a")
    c = _config()
    c.task.window = 1.0
    with pytest.raises(ConfigError, match=r"unknown config key 'task.window' for task 'delayed_feedback'"):
        train_and_evaluate(c, tmp_path / "b")
    c = _config()
    c.model.hidden = (8,)
    with pytest.raises(ConfigError, match=r"model.name='multi_head_dnn' and at most model.embed_dim; not \['model.hidden'\]"):
        train_and_evaluate(c, tmp_path / "c")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['dataset.delay.scale'\]"):
        load_conversion_log("synthetic_conversions", delay={"scale": 1.0})
    with pytest.raises(ConfigError, match="reads a conversion log"):
        load_conversion_log("movielens100k")


def test_killed_stream_resumes_to_the_same_metrics_and_eval_reproduces_them(tmp_path):
    config_file = tmp_path / "defuse_small.py"
    config_file.write_text(f'''
from jaxrec.train.config import default_config

def get_config():
    c = default_config()
    c.dataset = {DATASET!r}
    c.task = {{**{TASK!r}, "checkpoint_every_periods": 1}}
    c.model = {{"name": "multi_head_dnn", "embed_dim": 8}}
    c.optimizer.lr = 2e-3
    c.train.batch_size = 256
    c.train.progress_bar = False
    c.eval_splits = ("test",)
    return c
''')
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = lambda w: [sys.executable, str(ROOT / "train.py"), "--config", str(config_file), "--workdir", str(w)]  # noqa: E731
    subprocess.run(cmd(tmp_path / "a"), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(cmd(tmp_path / "b"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "b" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # killed inside the streamed periods
        if ckpt.exists() and any(p.name.isdigit() and int(p.name) > 6 for p in ckpt.iterdir()):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    out = subprocess.run(cmd(tmp_path / "b"), check=True, env=env, capture_output=True, text=True)
    assert "resumed from" in out.stderr and "test  auc" in out.stdout
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert b == a and a["test"]["auc"] > 0.52  # (6,000 clicks: it learns a little)
    ev = subprocess.run([sys.executable, str(ROOT / "eval.py"), "--workdir", str(tmp_path / "b")],
                        check=True, capture_output=True, text=True, env=env)
    printed = json.loads(ev.stdout)
    assert {k: printed[k] for k in a["test"]} == a["test"] and printed["method"] == "defuse"
