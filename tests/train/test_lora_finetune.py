"""LoRA fine-tuning through train.py's loop: a base GPT, then `model.lora_rank` +
`optimizer.trainable='adapters'` + `train.init_from=<base>`: the orbax checkpoint holds the base
(unchanged) and the adapters (trained); merged for serving (`eval.py --export_merged`), the plain
model scores exactly what the adapted one does."""

import numpy as np
import pytest
from flax import traverse_util

from jaxrec.errors import ConfigError
from jaxrec.train import experiment
from jaxrec.train.loop import train_and_evaluate
from tests.train.test_lm_task import _config, corpus  # noqa: F401 (fixture)


def _best(workdir):
    config = experiment.load_config(workdir)
    exp = experiment.build(config)
    params, _ = exp.checkpointer(workdir / "best", keep=1).restore(exp.init_state(place=False).params)
    return traverse_util.flatten_dict(params["dense"], sep="/")


@pytest.mark.slow
def test_lora_fine_tune_checkpoints_base_and_adapters_and_merges(corpus, tmp_path):  # noqa: F811
    base_dir, tuned_dir, served_dir = tmp_path / "base", tmp_path / "tuned", tmp_path / "served"
    c = _config(corpus)
    c.train.num_epochs = 1
    train_and_evaluate(c, base_dir)

    tuned = _config(corpus)
    tuned.model.lora_rank, tuned.model.lora_alpha = 4, 8.0
    tuned.optimizer.trainable = "adapters"
    tuned.train.init_from = str(base_dir)
    tuned.train.num_epochs = 1
    result = train_and_evaluate(tuned, tuned_dir)

    base, adapted = _best(base_dir), _best(tuned_dir)
    adapters = {k for k in adapted if k.endswith(("lora_a", "lora_b"))}
    assert adapters and set(adapted) - adapters == set(base)
    for k in base:  # the base is frozen: bit for bit what the base run saved
        np.testing.assert_array_equal(adapted[k], base[k], err_msg=k)
    assert any(np.abs(adapted[k]).max() > 0 for k in adapters if k.endswith("lora_b"))  # B starts at 0 and trained

    served = experiment.export_merged(tuned_dir, served_dir)
    merged = _best(served)
    assert not any(k.endswith(("lora_a", "lora_b")) for k in merged)
    got = experiment.evaluate_checkpoint(served, "test", "best")
    assert got["perplexity"] == pytest.approx(result["test"]["perplexity"], rel=1e-5)
    assert got["perplexity"] < experiment.evaluate_checkpoint(base_dir, "test", "best")["perplexity"]
    with pytest.raises(ConfigError, match="nothing to merge"):
        experiment.export_merged(base_dir, tmp_path / "again")


def test_adapters_need_a_rank(corpus):  # noqa: F811
    c = _config(corpus)
    c.optimizer.trainable = "adapters"
    with pytest.raises(ConfigError, match="set model.lora_rank > 0"):
        experiment.build(c)
