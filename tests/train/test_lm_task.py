"""The 'lm' task: loss and eval outputs against a numpy reference, metrics by hand, config checks,
a tiny GPT trained through train_and_evaluate (metrics.json has held-out perplexity far below the
unigram baseline's), and configs/gpt_tiny.py through train.py resuming after SIGKILL to the same
metrics."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.text import TOKENS, load_text, unigram_perplexity
from jaxrec.errors import ConfigError
from jaxrec.train import experiment
from jaxrec.train import state as state_lib
from jaxrec.train.config import default_config
from jaxrec.train.loop import train_and_evaluate
from jaxrec.train.tasks import LMTask, make_task

ROOT = Path(__file__).resolve().parents[2]
WORDS = "in the beginning god created the heaven and the earth and the earth was without form and void".split()


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_loss_and_eval_outputs_match_numpy():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 7, (3, 6)).astype(np.int32)
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
    ref = np.take_along_axis(_log_softmax(logits.astype(np.float64)), tokens[:, 1:, None], -1)[..., 0]
    task = LMTask()
    assert float(task.loss(jnp.asarray(logits), jnp.asarray(tokens[:, 1:]))) == pytest.approx(-ref.mean(), rel=1e-6)
    out = np.asarray(task.eval_outputs(jnp.asarray(logits), {TOKENS: jnp.asarray(tokens)}))
    assert out.shape == (3, 5)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_metrics_hand_worked():
    # two targets with p = 1/2 and 1/8: nll = (ln 2 + ln 8) / 2 = 2 ln 2, perplexity 4;
    # bytes 3 + 1 = 4, bits = 1 + 3 = 4 -> 1 bit per byte
    task = LMTask(token_bytes=np.array([1, 3, 5]))
    m = task.metrics(np.array([[1, 0]]), np.log(np.array([[0.5, 0.125]])), None)
    assert m["nll"] == pytest.approx(2 * math.log(2)) and m["perplexity"] == pytest.approx(4.0)
    assert m["bits_per_byte"] == pytest.approx(1.0) and m["count"] == 2
    assert "bits_per_byte" not in LMTask().metrics(np.array([[1]]), np.array([[-1.0]]), None)


@pytest.fixture
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    # documents from a first-order Markov chain over WORDS: a bigram LM beats the unigram
    nxt = {w: rng.choice(WORDS, 2) for w in WORDS}
    docs = []
    for _ in range(60):
        w, out = WORDS[0], []
        for _ in range(60):
            out.append(w)
            w = nxt[w][rng.integers(2)]
        docs.append(" ".join(out))
    path.write_text("\n\n".join(docs))
    return path


def _config(path):
    c = default_config()
    c.dataset = {"name": "text", "corpus": "file", "path": str(path), "vocab_size": 300, "context": 16}
    c.model = {"name": "gpt", "vocab_size": 300, "width": 32, "depth": 1, "num_heads": 2, "mlp_width": 64, "max_len": 16}
    c.task.name = "lm"
    c.optimizer.lr = 0.03
    c.train.batch_size = 16
    c.train.num_epochs = 3
    c.train.eval_batch_size = 16
    c.train.progress_bar = False
    c.early_stopping.metric = "perplexity"
    c.early_stopping.mode = "min"
    return c


def test_config_checks(corpus):
    c = _config(corpus)
    dataset = load_text(corpus="file", path=str(corpus), vocab_size=300, context=16)
    c.model.vocab_size = 8
    with pytest.raises(ConfigError, match=r"model.vocab_size=8 is smaller than the tokenizer's \d+ ids"):
        make_task(c, dataset)
    c.model.vocab_size = 300
    c.early_stopping.metric, c.early_stopping.mode = "auc", "max"
    with pytest.raises(ConfigError, match=r"early_stopping.metric='auc'.*expected one of \['bits_per_byte', 'nll', 'perplexity'\]"):
        make_task(c, dataset)
    c.early_stopping.metric = "perplexity"
    with pytest.raises(ConfigError, match="set early_stopping.mode='min'"):
        make_task(c, dataset)


def test_predict_keeps_log_p_of_the_targets(corpus):
    """The task's eval_outputs inside the jitted predict: a split comes back as log p(target)
    `[N, T]`, not logits `[N, T, V]`, equal to the log-softmax of the model's logits."""
    c = _config(corpus)
    exp = experiment.build(c)
    tokens = exp.dataset.splits["valid"][TOKENS]
    init = jax.jit(lambda key, batch: exp.model.init(key, batch, train=False))  # (exp.init_state is eager: slow)
    params = {"dense": init(jax.random.PRNGKey(0), {TOKENS: tokens[:2]})["params"], "sparse": {}}
    out = experiment.predict_split(exp, params, "valid")
    assert out.shape == exp.dataset.splits["valid"]["labels"].shape
    logits = np.asarray(exp.model.apply(state_lib.variables(params), {TOKENS: tokens[:5]}), np.float64)
    ref = np.take_along_axis(_log_softmax(logits), tokens[:5, 1:, None], -1)[..., 0]
    np.testing.assert_allclose(out[:5], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_trains_through_the_loop_and_reports_held_out_perplexity(corpus, tmp_path):
    c = _config(corpus)
    result = train_and_evaluate(c, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test"] == result["test"] and saved["task"] == "lm"
    d = load_text(corpus="file", path=str(corpus), vocab_size=300, context=16)
    v = d.feature(TOKENS).vocab_size
    uni = unigram_perplexity(d.splits["train"]["labels"], d.splits["test"]["labels"], v)
    test = result["test"]
    assert test["count"] == d.splits["test"]["labels"].size
    assert test["perplexity"] == pytest.approx(math.exp(test["nll"]))
    assert test["perplexity"] < 0.5 * uni  # the bigram chain: far below the unigram baseline
    assert [h["valid"]["perplexity"] for h in result["history"]][-1] < result["history"][0]["valid"]["perplexity"] * 1.001
    # the workdir kept the tokenizer; eval reads it back
    ev = experiment.evaluate_checkpoint(tmp_path, "test", "best")
    assert ev["perplexity"] == test["perplexity"]


def _train_cmd(workdir):
    return [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/gpt_tiny.py"), "--workdir", str(workdir),
            "--config.dataset.max_documents=40", "--config.dataset.vocab_size=512", "--config.model.vocab_size=512",
            "--config.model.width=32", "--config.model.depth=1", "--config.model.mlp_width=64",
            "--config.train.num_epochs=2", "--config.train.steps_per_call=3", "--config.train.checkpoint_every_steps=3",
            "--config.early_stopping.patience=0", "--config.train.progress_bar=false"]


@pytest.mark.slow
def test_gpt_tiny_resumes_after_sigkill_to_the_same_metrics(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(_train_cmd(tmp_path / "a"), check=True, env=env, capture_output=True)
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    spe = a["steps"] // 2
    # killed (SIGKILL, no clean-up) right after a mid-epoch checkpoint of epoch 1
    proc = subprocess.Popen(_train_cmd(tmp_path / "b"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "b" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in ckpt.glob("*") if p.name.isdigit()] if ckpt.exists() else []
        if any(s > spe and s % spe for s in steps):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed mid-epoch"
    assert not (tmp_path / "b" / "metrics.json").exists()
    killed_at = max(int(p.name) for p in ckpt.glob("*") if p.name.isdigit())
    out = subprocess.run(_train_cmd(tmp_path / "b"), check=True, env=env, capture_output=True, text=True)
    assert f"at step {killed_at}" in out.stderr
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert b["test"] == a["test"] and b["valid"] == a["valid"] and b["steps"] == a["steps"]
    assert a["test"]["perplexity"] > 1 and a["test"]["count"] > 0
    # eval.py reads the workdir's tokenizer (fitted.json) and prints the same test perplexity
    ev = subprocess.run([sys.executable, str(ROOT / "eval.py"), "--workdir", str(tmp_path / "b"), "--split", "test"],
                        check=True, capture_output=True, text=True, env=env)
    assert json.loads(ev.stdout)["perplexity"] == a["test"]["perplexity"]
