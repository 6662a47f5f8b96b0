"""Conversion logs: the Criteo conversion-logs reader on a small fixture, and the
semi-synthetic MovieLens and synthetic generators."""

from __future__ import annotations

import numpy as np
import pytest

from jaxrec.data.conversion_logs import (CATEGORICAL_COLUMNS, HASH_BUCKETS, NUMERIC_BINS, NUMERIC_COLUMNS, DelaySpec,
                                         minmax_buckets, movielens_conversions, read_criteo_conversions,
                                         synthetic_conversions)
from jaxrec.data.encoding import stable_hash
from jaxrec.errors import ConfigError, DataError

# click_ts, pay_ts, n1..n8, c1..c9; out of time order, one row without a conversion and with
# missing values, one line blank.
FIXTURE = [
    ["200", "", "1", "", "3", "4", "5", "6", "7", "8", "a", "b", "", "d", "e", "f", "g", "h", "i"],
    ["100", "4000", "0", "2", "0", "0", "0", "0", "0", "0", "a", "x", "c", "d", "e", "f", "g", "h", "i"],
    [],
    ["300", "300", "9", "10", "11", "12", "13", "14", "15", "16", "z", "b", "c", "d", "e", "f", "g", "h", "i"],
]


def write(tmp_path, rows, name="data.txt"):
    p = tmp_path / name
    p.write_text("".join("\t".join(r) + "\n" for r in rows))
    return str(p)


def test_reader_parses_sorts_and_encodes(tmp_path):
    log = read_criteo_conversions(write(tmp_path, FIXTURE))
    np.testing.assert_array_equal(log.click_ts, [100, 200, 300])  # sorted by click time
    np.testing.assert_array_equal(log.pay_ts, [4000, np.nan, 300])
    np.testing.assert_array_equal(log.delay, [3900, np.nan, 0])
    assert [f.name for f in log.features] == list(NUMERIC_COLUMNS + CATEGORICAL_COLUMNS)
    assert [f.vocab_size for f in log.features] == [b + 1 for b in NUMERIC_BINS] + list(HASH_BUCKETS)
    # n1 = (0, 1, 9) after sorting, min-max over the file into 64 bins: ids 1 + floor(64 x), top clipped.
    np.testing.assert_array_equal(log.columns["n1"], [1, 1 + int(64 * 1 / 9), 64])
    assert log.columns["n2"][1] == 0  # missing numeric
    assert log.columns["c3"][1] == 0  # missing categorical
    # categorical: the stable hash into the column's buckets, same value -> same id.
    assert log.columns["c2"][1] == log.columns["c2"][2] != log.columns["c2"][0]
    h = int(stable_hash(np.array(["x"], dtype=object))[0] % np.uint64(HASH_BUCKETS[1] - 1)) + 1
    assert log.columns["c2"][0] == h


@pytest.mark.parametrize("row,message", [
    (["1", "2", "3"], r"data.txt:2: expected 19 tab-separated fields"),
    (["abc", ""] + ["0"] * 8 + ["a"] * 9, r"data.txt:2: column click_ts expects a number, got 'abc'"),
    (["10", ""] + ["0", "x"] + ["0"] * 6 + ["a"] * 9, r"data.txt:2: column n2 expects a number or nothing, got 'x'"),
    (["10", "5"] + ["0"] * 8 + ["a"] * 9, r"data.txt:2: pay_ts 5 is before click_ts 10"),
])
def test_reader_names_the_bad_line(tmp_path, row, message):
    with pytest.raises(DataError, match=message):
        read_criteo_conversions(write(tmp_path, [FIXTURE[1], row]))


def test_reader_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match="not downloaded automatically.*criteo"):
        read_criteo_conversions(str(tmp_path / "nope.txt"))


def test_minmax_buckets():
    np.testing.assert_array_equal(minmax_buckets(np.array([0.0, 0.5, 1.0, np.nan, 0.26]), 4), [1, 3, 4, 0, 2])
    np.testing.assert_array_equal(minmax_buckets(np.array([2.0, 2.0]), 4), [1, 1])


def test_movielens_stream(ml100k_dir):
    log = movielens_conversions(ml100k_dir, delay=DelaySpec(scale_hours=6.0, spread=1.5), days=60, seed=3)
    assert len(log) == 100_000 and np.all(np.diff(log.click_ts) >= 0)
    assert log.click_ts[-1] < 60 * 86400
    converted = ~np.isnan(log.pay_ts)
    assert converted.sum() == 55_375  # ratings >= 4 in u.data
    assert np.all(log.delay[converted] >= 0)
    # delays are drawn per item: items differ in delay far beyond sampling noise
    # (exponential delays: the mean of n has a CV of 1 / sqrt(n)).
    items, d = log.columns["item_id"][converted], log.delay[converted]
    counts = np.bincount(items)
    means = np.bincount(items, weights=d) / np.maximum(counts, 1)
    busy = counts >= 100
    assert np.std(np.log(means[busy])) > 1.0  # spread 1.5; noise alone gives about 0.1
    again = movielens_conversions(ml100k_dir, delay=DelaySpec(scale_hours=6.0, spread=1.5), days=60, seed=3)
    np.testing.assert_array_equal(again.pay_ts, log.pay_ts)


def test_synthetic_stream():
    log = synthetic_conversions(num_clicks=20_000, days=10, seed=1)
    assert len(log) == 20_000 and np.all(np.diff(log.click_ts) >= 0) and log.click_ts[-1] < 10 * 86400
    converted = ~np.isnan(log.pay_ts)
    # conversions follow the true CVR: the mean CVR of converters is above that of the rest.
    assert abs(converted.mean() - log.cvr.mean()) < 0.02
    assert log.cvr[converted].mean() > log.cvr[~converted].mean() + 0.1
    with pytest.raises(ConfigError, match="delay_fields"):
        synthetic_conversions(num_clicks=10, delay_fields=(9,))


def test_delay_spec_checks():
    with pytest.raises(ConfigError, match="delay.distribution"):
        DelaySpec(distribution="gamma")
    with pytest.raises(ConfigError, match="delay.scale_hours"):
        DelaySpec(scale_hours=0.0)
