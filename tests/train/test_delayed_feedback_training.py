"""The streaming delayed-feedback trainer on a small synthetic log."""

from __future__ import annotations

import numpy as np
import pytest

from jaxrec.data.conversion_logs import DelaySpec, synthetic_conversions
from jaxrec.data.delayed_feedback import Protocol, Windows, true_labels
from jaxrec.errors import ConfigError
from jaxrec.losses.delayed_feedback import probability
from jaxrec.train import delayed_feedback as tdf

LOG = synthetic_conversions(num_clicks=12_000, days=4, delay=DelaySpec(scale_hours=6.0, spread=1.0), seed=0)
W = Windows(observation_hours=0.5, attribution_days=30)
PROTOCOL = Protocol(pretrain_days=2, end_day=4, period_hours=2)
OPTIONS = tdf.TrainOptions(batch_size=256, pretrain_epochs=2, lr=2e-3)


@pytest.fixture(scope="module")
def pretrained():
    return {f: tdf.pretrain(LOG, f, W, PROTOCOL, OPTIONS, seed=0) for f in ("cvr", "aux")}


@pytest.fixture(scope="module")
def aux(pretrained):
    return tdf.auxiliary_predictions(LOG, pretrained["aux"], OPTIONS)


def test_every_test_click_is_scored_once_and_pretrain_is_the_pretrained_model(pretrained):
    r = tdf.run_stream(LOG, "pretrain", pretrained["cvr"], W, PROTOCOL, OPTIONS, seed=0)
    first_test = PROTOCOL.pretrain_days * 86400 + PROTOCOL.period_hours * 3600
    rows = np.flatnonzero((LOG.click_ts > first_test) & (LOG.click_ts <= PROTOCOL.end_day * 86400))
    assert len(r["prob"]) == len(rows)
    np.testing.assert_array_equal(r["label"], true_labels(LOG, W)[rows])
    assert r["period"][0] == 0 and r["period"][-1] == PROTOCOL.num_periods - 1
    model = tdf.make_model(LOG, "cvr", OPTIONS)
    direct = tdf.predict(model, pretrained["cvr"], LOG, rows, lambda o: probability(o, "vanilla"))
    np.testing.assert_allclose(r["prob"], direct, rtol=1e-5)


def test_delayed_labels_bias_vanilla_and_defuse_corrects_it(pretrained, aux):
    """Most conversions come after w_o: trained on fake negatives, vanilla's predicted rate
    falls far below the true rate; DEFUSE's stays near the oracle's."""
    mean_pred = {}
    for m in ("vanilla", "oracle", "defuse"):
        r = tdf.run_stream(LOG, m, pretrained["cvr"], W, PROTOCOL, OPTIONS, seed=0, aux=aux)
        metrics = tdf.stream_metrics(r)
        mean_pred[m] = metrics["mean_prediction"]
        rate = metrics["positive_rate"]
    assert mean_pred["vanilla"] < 0.7 * rate
    assert abs(mean_pred["defuse"] - mean_pred["oracle"]) < 0.1 * rate


def test_stream_metrics_pool_and_weight_by_hour():
    r = {"prob": np.array([0.9, 0.2, 0.6, 0.4, 0.3]), "label": np.array([1.0, 0.0, 1.0, 0.0, 1.0]),
         "period": np.array([0, 0, 1, 1, 1])}
    m = tdf.stream_metrics(r)
    assert m["auc"] == pytest.approx(5 / 6)
    # hour 0: AUC 1 (2 clicks), hour 1: AUC 1/2 (3 clicks)
    assert m["auc_hourly"] == pytest.approx((2 * 1.0 + 3 * 0.5) / 5)
    nll = -np.mean(np.log([0.9, 0.8, 0.6, 0.6, 0.3]))
    assert m["nll"] == pytest.approx(nll, rel=1e-6) and m["nll_hourly"] == pytest.approx(nll, rel=1e-6)
    assert tdf.relative_improvement(0.75, 0.7, 0.8) == pytest.approx(0.5)


def test_bad_method_and_missing_aux(pretrained):
    with pytest.raises(ConfigError, match="method='nope'"):
        tdf.run_stream(LOG, "nope", pretrained["cvr"], W, PROTOCOL, OPTIONS, seed=0)
    with pytest.raises(ConfigError, match="needs the auxiliary"):
        tdf.run_stream(LOG, "defuse", pretrained["cvr"], W, PROTOCOL, OPTIONS, seed=0)
    with pytest.raises(ConfigError, match="streams a 'bidefuse' network"):
        tdf.run_stream(LOG, "bidefuse", pretrained["cvr"], W, PROTOCOL, OPTIONS, seed=0)
    with pytest.raises(ConfigError, match="batch_size >= 1"):
        tdf.TrainOptions(batch_size=0)
