"""Training through dynamic vocabularies: MovieLens user and item ids as raw keys, admitted
and evicted while training, counted in the metrics, saved with the checkpoints."""

import numpy as np
import pytest

from jaxrec.data.movielens import load_movielens_100k
from jaxrec.train.experiment import evaluate_checkpoint
from jaxrec.train.loop import train_and_evaluate


@pytest.fixture(scope="module")
def dynamic_movielens(ml100k_dir):
    return load_movielens_100k(str(ml100k_dir), variant="dynamic")


def distinct(keys):
    return len(np.unique(keys, axis=0))


@pytest.mark.parametrize("rowwise", [True, False])
def test_train_admits_every_train_id_and_learns(small_config, dynamic_movielens, movielens, tmp_path, rowwise):
    small_config.dataset.variant = "dynamic"
    small_config.train.batch_size = 1000  # 80 steps cover all 80,000 train rows
    small_config.train.num_epochs = 1
    small_config.sparse_optimizer.rowwise = rowwise
    result = train_and_evaluate(small_config, tmp_path, dataset=dynamic_movielens)
    train = dynamic_movielens.splits["train"]
    c = result["train_counters"]
    for field, capacity in (("user_id", 2048), ("item_id", 4096)):
        n = distinct(train[field])
        assert c[f"vocab/{field}/admitted"] == n  # min_count=1: every distinct train id, once
        assert c[f"vocab/{field}/evicted"] == c[f"vocab/{field}/rejected"] == c[f"vocab/{field}/unknown"] == 0
        assert c[f"vocab/{field}/occupancy"] == pytest.approx(n / (capacity - 1))
    # As good as the same model over vocabularies fitted on train (rows differ, so not equal).
    small_config.dataset.variant = "default"
    fitted = train_and_evaluate(small_config, tmp_path / "fitted", dataset=movielens)
    print("dynamic", result["test"]["auc"], "fitted", fitted["test"]["auc"])
    assert abs(result["test"]["auc"] - fitted["test"]["auc"]) < 0.005
    # The vocabularies are saved with the best parameters: evaluation from disk reproduces the metrics.
    ev = evaluate_checkpoint(tmp_path, "test", "best", dataset=dynamic_movielens)
    assert ev["auc"] == result["test"]["auc"]


def test_admission_and_eviction_are_counted(small_config, ml100k_dir, tmp_path):
    ds = load_movielens_100k(str(ml100k_dir), variant="dynamic", dynamic_min_count=3, dynamic_steps_to_live=10)
    small_config.dataset.variant = "dynamic"
    small_config.train.num_epochs = 1
    result = train_and_evaluate(small_config, tmp_path, dataset=ds)
    c = result["train_counters"]
    for field in ("user_id", "item_id"):
        assert c[f"vocab/{field}/rejected"] > 0 and c[f"vocab/{field}/evicted"] > 0
        assert c[f"vocab/{field}/unknown"] >= c[f"vocab/{field}/rejected"]
        assert 0 < c[f"vocab/{field}/admitted"]
    assert result["test"]["auc"] > 0.7
