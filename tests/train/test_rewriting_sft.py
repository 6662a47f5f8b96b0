"""VALUE's SFT stage through train.py: the rewriting rows (jaxrec.data.bidwords.encode_rewriting) by
hand, the 'lm' task's loss over kept labels equal to the continuation NLL the benchmark trains on
(`generate.token_logprobs` after left-padded prompts), and train.py / eval.py end to end."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.bidwords import IGNORE, encode_rewriting, load_rewriting
from jaxrec.data.dataset import LABELS
from jaxrec.data.text import TOKENS, train_tokenizer, unigram_perplexity
from jaxrec.errors import DataError
from jaxrec.generate import prepare_prompts, token_logprobs
from jaxrec.models.text.gpt import GPT
from jaxrec.train.cli import eval_main, train_main
from jaxrec.train.tasks import LMTask
from tests.conftest import ROOT


def test_rows_by_hand():
    tok = train_tokenizer(["toy story", "heat", "watch heat"], 300)
    sep = tok.get_vocab_size()
    q, b = tok.encode("watch heat").ids, tok.encode("heat").ids
    tokens, labels = encode_rewriting(tok, ["watch heat"], ["heat"], context=len(q) + len(b) + 3)
    row = q + [sep] + b + [0]
    assert tokens.shape == (1, len(row) + 2) and labels.shape == (1, len(row) + 1)
    np.testing.assert_array_equal(tokens[0, :len(row)], row)
    assert (tokens[0, len(row):] == 0).all()
    # labels: IGNORE over the query (and its SEP target), the bidword + EOS where they are predicted, IGNORE after
    want = [IGNORE] * len(q) + b + [0] + [IGNORE] * 2
    np.testing.assert_array_equal(labels[0], want)
    with pytest.raises(DataError, match=r"row 0 \('watch heat' -> 'heat'\) has \d+ tokens, more than dataset.context"):
        encode_rewriting(tok, ["watch heat"], ["heat"], context=2)


def test_lm_loss_over_kept_labels_is_the_continuation_nll(ml100k_dir):
    data = load_rewriting(data_dir=str(ml100k_dir), vocab_size=300, max_queries=16)
    cols = data.splits["valid"]
    tokens, labels = cols[TOKENS], cols[LABELS]
    model = GPT(vocab_size=data.features[0].vocab_size, width=32, depth=1, num_heads=2, max_len=tokens.shape[1])
    variables = nn.unbox(model.init(jax.random.key(0), {TOKENS: jnp.asarray(tokens[:2])}))
    loss = float(LMTask().loss(model.apply(variables, {TOKENS: jnp.asarray(tokens)}), jnp.asarray(labels)))
    # the benchmark's objective: prompt = query + SEP (left-padded), continuation = bidword + EOS
    sep = data.fitted.extra["sep_id"]
    prompts, conts = [], []
    for row, lab in zip(tokens, labels):
        start = int(np.flatnonzero(row == sep)[0]) + 1
        n = int((lab >= 0).sum())
        prompts.append(row[:start].tolist())
        conts.append(row[start:start + n].tolist())
    width = max(map(len, conts))
    p, v = prepare_prompts(model, prompts, width)
    c = np.zeros((len(conts), width), np.int32)
    for i, x in enumerate(conts):
        c[i, :len(x)] = x
    lengths = jnp.asarray([len(x) for x in conts])
    logp = token_logprobs(model, variables, jnp.asarray(p), jnp.asarray(v), jnp.asarray(c), lengths)
    np.testing.assert_allclose(loss, -float(logp.sum()) / float(lengths.sum()), rtol=1e-5)


def test_sft_config_trains_and_evaluates(ml100k_dir, tmp_path):
    work = tmp_path / "sft"
    result = train_main(["train.py", "--config", str(ROOT / "configs" / "value_sft_movielens.py"), "--workdir", str(work),
                         f"--config.dataset.data_dir={ml100k_dir}", "--config.dataset.max_queries=3000",
                         "--config.train.num_epochs=3", "--config.train.progress_bar=false"])
    data = load_rewriting(data_dir=str(ml100k_dir), max_queries=3000)
    kept = lambda s: data.splits[s][LABELS][data.splits[s][LABELS] >= 0]  # noqa: E731
    unigram = np.log(unigram_perplexity(kept("train"), kept("test"), data.features[0].vocab_size))
    assert result["test"]["nll"] < unigram - 1.0               # the continuation is learned, not just its token counts
    evaluated = eval_main(["eval.py", "--workdir", str(work), "--split", "test"])
    assert evaluated["nll"] == pytest.approx(result["test"]["nll"], abs=1e-6)
