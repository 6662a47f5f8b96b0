"""The 'lm' task: loss and eval outputs against a numpy reference, metrics by hand, config checks,
and a small LM trained through train_and_evaluate (metrics.json has held-out perplexity)."""

import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.text import TOKENS, load_text, unigram_perplexity
from jaxrec.errors import ConfigError
from jaxrec.models import MODELS
from jaxrec.train import experiment
from jaxrec.train.config import default_config
from jaxrec.train.loop import train_and_evaluate
from jaxrec.train.tasks import LMTask, make_task

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


class StandIn(nn.Module):
    """A bigram LM (logits of the next token from an embedding of the current one), for the
    task seam's tests only: tokens [B, T+1] -> logits [B, T, V]."""

    features: tuple = ()
    vocab_size: int = 0

    @nn.compact
    def __call__(self, batch, train: bool = False):
        return nn.Embed(self.vocab_size, self.vocab_size, embedding_init=nn.initializers.zeros)(batch[TOKENS][:, :-1])


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


def _config(path, **model):
    c = default_config()
    c.dataset = {"name": "text", "corpus": "file", "path": str(path), "vocab_size": 300, "context": 16}
    c.model = {"name": "stand_in", "vocab_size": 300, **model}
    c.task.name = "lm"
    c.optimizer.lr = 0.1
    c.train.batch_size = 16
    c.train.num_epochs = 3
    c.train.eval_batch_size = 16
    c.train.progress_bar = False
    c.early_stopping.metric = "perplexity"
    c.early_stopping.mode = "min"
    return c


def test_config_checks(corpus, monkeypatch):
    monkeypatch.setitem(MODELS, "stand_in", StandIn)
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


def test_trains_through_the_loop_and_reports_held_out_perplexity(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS, "stand_in", StandIn)
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
    # the predict hook: a split comes back as log p(target) [N, T], not logits [N, T, V]
    exp = experiment.build(c)
    out = experiment.predict_split(exp, exp.init_state().params, "valid")
    assert out.shape == d.splits["valid"]["labels"].shape
    np.testing.assert_allclose(out, -math.log(300), rtol=1e-5)  # zero-initialised logits: uniform over model.vocab_size
    # the workdir kept the tokenizer; eval reads it back
    ev = experiment.evaluate_checkpoint(tmp_path, "test", "best")
    assert ev["perplexity"] == test["perplexity"]
