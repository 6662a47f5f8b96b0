"""Exact metrics against scikit-learn (test oracle) and hand-computed cases."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from jaxrec.train import metrics


def test_auc_hand_case_with_ties():
    # positives at 0.8 and 0.5, negatives at 0.5 and 0.1: pairs (0.8>0.5, 0.8>0.1, 0.5=0.5 -> 1/2, 0.5>0.1) = 3.5/4
    assert metrics.auc(np.array([1, 1, 0, 0]), np.array([0.8, 0.5, 0.5, 0.1])) == pytest.approx(0.875)
    assert np.isnan(metrics.auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_auc_matches_sklearn_with_heavy_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 20_000)
    s = np.round(rng.normal(size=20_000) + y * 0.5, 1)  # many ties
    assert metrics.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_average_precision_hand_case_and_sklearn_with_ties():
    # ranked: 0.9 (pos), 0.5 (pos, neg tied), 0.1 (neg): precision 1 at recall 1/2, 2/3 at recall 1.
    assert metrics.average_precision(np.array([1, 1, 0, 0]), np.array([0.9, 0.5, 0.5, 0.1])) == pytest.approx(0.5 + 0.5 * 2 / 3)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 20_000)
    s = np.round(rng.normal(size=20_000) + y * 0.5, 1)
    assert metrics.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert np.isnan(metrics.average_precision(np.zeros(3), np.ones(3)))


def test_gauc_is_impression_weighted_mean_of_group_aucs():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 50, 5000)
    y = rng.integers(0, 2, 5000)
    s = np.round(rng.normal(size=5000) + y * 0.3, 1)
    num = den = 0.0
    for k in np.unique(g):
        m = g == k
        if 0 < y[m].sum() < m.sum():
            num += roc_auc_score(y[m], s[m]) * m.sum()
            den += m.sum()
    assert metrics.gauc(y, s, g) == pytest.approx(num / den, abs=1e-12)
    # groups with one class only are left out
    assert metrics.gauc(np.array([1, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.9]), np.array([0, 0, 1, 1])) == 1.0


def test_logloss_from_logits_matches_sklearn_and_is_stable():
    rng = np.random.default_rng(2)
    z = rng.normal(size=1000) * 3
    y = rng.integers(0, 2, 1000)
    p = 1 / (1 + np.exp(-z))
    assert metrics.logloss(y, z) == pytest.approx(log_loss(y, p), rel=1e-9)
    assert metrics.logloss(np.array([1.0]), np.array([-800.0])) == pytest.approx(800.0)


def test_binary_metrics_keys():
    m = metrics.binary_metrics(np.array([0, 1, 1, 0]), np.array([-1.0, 2.0, 0.5, 0.1]), np.array([0, 0, 1, 1]))
    assert set(m) == {"auc", "logloss", "gauc", "positive_rate", "mean_prediction", "count"}
    assert m["auc"] == 1.0 and m["count"] == 4
