"""Multi-task data: the MMoE construction's task correlation, and MovieLens multi-task labels."""

import numpy as np
import pytest

from jaxrec.data.dataset import LABELS
from jaxrec.data.movielens import load_movielens_100k
from jaxrec.data.multitask import load_synthetic_multitask, mmoe_weights
from jaxrec.errors import ConfigError


def test_weights_have_the_chosen_cosine():
    for p in (-0.5, 0.0, 0.5, 0.9):
        w = mmoe_weights(50, p, 2.0, np.random.default_rng(1))
        np.testing.assert_allclose(np.linalg.norm(w, axis=1), [2.0, 2.0], rtol=1e-6)
        np.testing.assert_allclose(w[0] @ w[1] / 4.0, p, atol=1e-6)


def test_label_correlation_grows_with_the_knob():
    corr = [np.corrcoef(load_synthetic_multitask(rows=20_000, dim=20, correlation=p, seed=3).splits["train"][LABELS].T)[0, 1]
            for p in (-0.5, 0.0, 0.5, 0.9, 1.0)]
    assert np.all(np.diff(corr) > 0), corr
    assert corr[-1] > 0.99  # p = 1: the same task up to noise


def test_classification_and_errors():
    ds = load_synthetic_multitask(rows=1000, dim=5, correlation=0.5, kind="classification", seed=0)
    y = ds.splits["train"][LABELS]
    assert set(np.unique(y)) == {0.0, 1.0} and abs(y.mean() - 0.5) < 0.05
    assert sum(ds.num_rows(s) for s in ("train", "valid", "test")) == 1000
    with pytest.raises(ConfigError, match="correlation must be in"):
        load_synthetic_multitask(rows=10, correlation=1.5)
    with pytest.raises(ConfigError, match="dataset.kind"):
        load_synthetic_multitask(rows=10, kind="ranking")


def test_movielens_multitask_labels(ml100k_dir, movielens):
    ds = load_movielens_100k(str(ml100k_dir), labels="multitask")
    y = ds.splits["train"][LABELS]
    assert y.shape == (80_000, 3)
    np.testing.assert_array_equal(y[:, 0], movielens.splits["train"][LABELS])  # like = the default CTR label
    assert np.all(y[:, 1] <= y[:, 0]) and set(np.unique(y[:, 2])) == {1.0, 2.0, 3.0, 4.0, 5.0}
    np.testing.assert_array_equal(y[:, 1], (y[:, 2] == 5).astype(np.float32))
    with pytest.raises(ConfigError, match="dataset.labels"):
        load_movielens_100k(str(ml100k_dir), labels="stars")
