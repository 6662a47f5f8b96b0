"""Sample types, stream schemes and the hourly protocol on a hand-made log."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxrec.data.conversion_logs import DAY, HOUR, ConversionLog, DelaySpec, synthetic_conversions
from jaxrec.data.delayed_feedback import (DN, DP, FN, IP, RN, Protocol, Windows, build_stream, click_types,
                                          pretrain_targets, true_auxiliary, true_labels)
from jaxrec.data.features import Categorical
from jaxrec.errors import ConfigError, DataError

H = HOUR
# Four clicks: converts after 10 min (IP), after 5 h (FN), never (RN), after 40 days (RN:
# outside the 30-day attribution window).
CLICK = np.array([0.5, 1.2, 1.5, 2.0]) * H
PAY = CLICK + np.array([10 / 60 * H, 5 * H, np.nan, 40 * DAY])
LOG = ConversionLog("hand", (Categorical("x", encoding="identity", vocab_size=5),), {"x": np.arange(1, 5, dtype=np.int32)},
                    CLICK, PAY)
W = Windows(observation_hours=0.25, attribution_days=30)


def test_types_and_true_labels():
    np.testing.assert_array_equal(click_types(LOG, W), [IP, FN, RN, RN])
    np.testing.assert_array_equal(true_labels(LOG, W), [1, 1, 0, 0])


def rows_of(stream):
    return [(int(r), round(float(t / H), 4), float(y), int(k), float(d)) for r, t, y, k, d in
            zip(stream.rows, stream.sample_ts, stream.label, stream.kind, stream.duplicate)]


def test_vanilla_and_oracle():
    assert rows_of(build_stream(LOG, W, "vanilla")) == [
        (0, 0.75, 1, IP, 0), (1, 1.45, 0, FN, 0), (2, 1.75, 0, RN, 0), (3, 2.25, 0, RN, 0)]
    assert rows_of(build_stream(LOG, W, "vanilla", observed_at="click")) == [
        (0, 0.5, 1, IP, 0), (1, 1.2, 0, FN, 0), (2, 1.5, 0, RN, 0), (3, 2.0, 0, RN, 0)]
    assert rows_of(build_stream(LOG, W, "oracle")) == [
        (0, 0.5, 1, IP, 0), (1, 1.2, 1, FN, 0), (2, 1.5, 0, RN, 0), (3, 2.0, 0, RN, 0)]


def test_duplicate_inserts_delayed_positives_at_conversion():
    s = build_stream(LOG, W, "duplicate")
    assert rows_of(s) == [(0, 0.75, 1, IP, 0), (1, 1.45, 0, FN, 0), (2, 1.75, 0, RN, 0), (3, 2.25, 0, RN, 0),
                          (1, 6.2, 1, DP, 1)]
    np.testing.assert_allclose(s.elapsed, [0.25, 0.25, 0.25, 0.25, 5.0], rtol=1e-6)
    # w_o = 0 (FNW, FNC): every click starts negative, every conversion comes back.
    s0 = build_stream(LOG, Windows(0.0, 30), "duplicate")
    assert rows_of(s0) == [(0, 0.5, 0, FN, 0), (0, 0.6667, 1, DP, 1), (1, 1.2, 0, FN, 0), (2, 1.5, 0, RN, 0),
                           (3, 2.0, 0, RN, 0), (1, 6.2, 1, DP, 1)]


def test_defer_duplicates_every_click():
    s = build_stream(LOG, W, "defer")
    assert rows_of(s) == [(0, 0.6667, 1, DP, 1), (0, 0.75, 1, IP, 0), (1, 1.45, 0, FN, 0), (2, 1.75, 0, RN, 0),
                          (3, 2.25, 0, RN, 0), (1, 6.2, 1, DP, 1), (2, 721.5, 0, DN, 1), (3, 722.0, 0, DN, 1)]


def test_dfm_labels_what_is_seen_at_the_end_of_the_period():
    s = build_stream(LOG, W, "dfm", period_hours=1.0)
    assert rows_of(s) == [(0, 1.0, 1, IP, 0), (1, 2.0, 0, FN, 0), (2, 2.0, 0, RN, 0), (3, 2.0, 0, RN, 0)]
    np.testing.assert_allclose(s.elapsed, [0.5, 0.8, 0.5, 0.0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.delay, [1 / 6, 5.0, 0.0, 960.0], rtol=1e-5)


def test_between_is_left_open():
    s = build_stream(LOG, W, "oracle")
    assert list(s.between(0.5 * H, 1.5 * H).rows) == [1, 2]


def test_pretrain_targets_hindsight_and_censored():
    rows = np.arange(4)
    t = pretrain_targets(LOG, W, rows)
    np.testing.assert_array_equal(t["label"], [1, 1, 0, 0])
    np.testing.assert_array_equal(t["delayed"], [0, 1, 0, 0])
    c = pretrain_targets(LOG, W, rows, censor_at=3 * H)  # the FN's conversion (6.2 h) is not seen yet
    np.testing.assert_array_equal(c["label"], [1, 0, 0, 0])
    np.testing.assert_allclose(c["elapsed"], [2.5, 1.8, 1.5, 1.0], rtol=1e-6)


def test_protocol_periods_and_test_rows():
    p = Protocol(pretrain_days=1 / 24, end_day=3 / 24, period_hours=0.5)
    periods = list(p.periods())
    assert [(a / H, b / H, c / H) for a, b, c in periods] == [(1.0, 1.5, 2.0), (1.5, 2.0, 2.5), (2.0, 2.5, 3.0)]
    np.testing.assert_array_equal(p.pretrain_rows(LOG), [0])
    np.testing.assert_array_equal(p.test_rows(LOG, 1.0 * H, 1.5 * H), [1, 2])  # (1.0, 1.5]
    np.testing.assert_array_equal(p.test_rows(LOG, 1.5 * H, 2.0 * H), [3])


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="observation_hours"):
        Windows(observation_hours=-1)
    with pytest.raises(ConfigError, match="scheme='nope'"):
        build_stream(LOG, W, "nope")
    with pytest.raises(ConfigError, match="pretrain_days"):
        Protocol(pretrain_days=5, end_day=2)
    with pytest.raises(DataError, match="click_ts must be sorted"):
        ConversionLog("bad", (), {}, CLICK[::-1], PAY[::-1])
    with pytest.raises(DataError, match="column 'cvr' has 2 rows"):
        ConversionLog("bad", (), {}, CLICK, PAY, cvr=np.ones(2))


def test_delay_survival_by_hand():
    scale = np.array([2.0, 4.0])
    np.testing.assert_allclose(DelaySpec("exponential").survival(1.0, scale), np.exp([-0.5, -0.25]))
    np.testing.assert_allclose(DelaySpec("lognormal", sigma=1.0).survival(2.0, scale), [0.5, 0.5 * math.erfc(math.log(0.5) / math.sqrt(2))])


def test_true_auxiliary_matches_the_simulated_types():
    """On a synthetic log the true p_dp averages to the FN rate and the true p_rn, over the
    clicks negative at w_o, to their real-negative share (within 4 standard errors)."""
    log = synthetic_conversions(num_clicks=40_000, days=10, delay=DelaySpec(scale_hours=6.0, spread=1.5), seed=2)
    w = Windows(observation_hours=1.0, attribution_days=3)
    aux = true_auxiliary(log, w)
    kinds = click_types(log, w)
    fn = (kinds == FN).astype(float)
    assert abs(aux["p_dp"].mean() - fn.mean()) < 4 * fn.std() / math.sqrt(len(fn))
    neg = kinds != IP
    rn = (kinds[neg] == RN).astype(float)
    assert abs(aux["p_rn"][neg].mean() - rn.mean()) < 4 * rn.std() / math.sqrt(len(rn))
    with pytest.raises(ConfigError, match="true cvr and delay distribution"):
        true_auxiliary(LOG, W)
