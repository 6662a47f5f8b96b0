"""The configs of the models with data-derived constants (GIN's graph, CiUBM's content vectors,
PCF-GNN's cross features) train with train.py and evaluate with eval.py to the same metrics:
eval.py rebuilds the constants identically. One epoch each; every config file is built in
tests/models/test_fat.py, and the models train in their own tests (kept out of here for the
suite's time)."""

import json

import pytest

from jaxrec.train.cli import eval_main, train_main
from tests.conftest import ROOT

CONFIGS = {"gin": [], "ciubm": ["--config.model.content_steps=(20, 40)"], "pcf_gnn": ["--config.cross_features.steps=20"]}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_trains_and_evaluates(name, ml100k_dir, tmp_path, capsys):
    workdir = tmp_path / name
    result = train_main(["train.py", "--config", str(ROOT / "configs" / f"{name}_movielens.py"), "--workdir", str(workdir),
                         f"--config.dataset.data_dir={ml100k_dir}", "--config.train.num_epochs=1",
                         "--config.train.progress_bar=false", *CONFIGS[name]])
    assert result["test"]["auc"] > 0.70 and result["test"]["gauc"] > 0.65
    evaluated = eval_main(["eval.py", "--workdir", str(workdir), "--split", "test"])
    assert evaluated["auc"] == pytest.approx(result["test"]["auc"], abs=1e-6)
    assert json.loads((workdir / "eval_best_test.json").read_text())["gauc"] == pytest.approx(result["test"]["gauc"], abs=1e-6)
