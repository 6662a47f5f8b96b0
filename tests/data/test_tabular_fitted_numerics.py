"""Issue 19, item 8: numeric columns of a user's table get quantile buckets and standardization fitted
on the train split, stored in the fitted state; errors name the file row and column."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxrec.data.dataset import random_split
from jaxrec.data.fitted import apply_fitted, load_fitted, save_fitted
from jaxrec.data.tabular import load_tabular
from jaxrec.errors import ConfigError, DataError

QUANTILES = {"type": "numeric", "name": "x", "buckets": {"quantiles": 4}}
STANDARD = {"type": "numeric", "name": "y", "transform": "standardize", "fill_value": -1.0}


def write(path, header, rows) -> str:
    path.write_text("\n".join([",".join(header)] + [",".join("" if v is None else str(v) for v in r) for r in rows]) + "\n")
    return str(path)


@pytest.fixture
def files(tmp_path):
    # train x = 1..10; y = 2, 4, 4, 4, 5, 5, 7, 9 (mean 5, population std 2), then two empty cells.
    ys = [2, 4, 4, 4, 5, 5, 7, 9, None, None]
    train = write(tmp_path / "train.csv", ["x", "y", "click"], [(x, y, x % 2) for x, y in zip(range(1, 11), ys)])
    # Far-off test values that, were they fitted on, would move every boundary and the mean.
    test = write(tmp_path / "test.csv", ["x", "y", "click"],
                 [(0, 5, 0), (3.25, 9, 1), (5.5, 1, 0), (7.7, None, 1), (8, 5, 0), (None, 1000, 1), (1000, -1000, 0)])
    return train, test


def load(train, test, features=(QUANTILES, STANDARD), **kw):
    return load_tabular(train, label="click", features=list(features), valid_path=test, test_path=test, **kw)


def test_quantile_buckets_and_standardization_by_hand(files):
    ds = load(*files)
    x, y = ds.feature("x"), ds.feature("y")
    # numpy.quantile(1..10, [.25, .5, .75]) (linear): positions 2.25, 4.5, 6.75 -> 3.25, 5.5, 7.75.
    assert x.boundaries == (3.25, 5.5, 7.75) and x.vocab_size == 5 and x.is_sparse
    assert (y.mean, y.std) == (5.0, 2.0) and not y.is_sparse
    test = ds.splits["test"]
    # id = 1 + #{b <= x}: 0 -> 1, 3.25 -> 2 (a value on a boundary goes up), 5.5 -> 3, 7.7 -> 3, 8 -> 4, missing -> 0,
    # 1000 -> 4 (the top bucket).
    np.testing.assert_array_equal(test["x"], [1, 2, 3, 3, 4, 0, 4])
    # (y - 5) / 2; the empty cell -> fill_value -1.
    np.testing.assert_allclose(test["y"], [0.0, 2.0, -2.0, -1.0, 0.0, 497.5, -502.5])
    assert test["x"].dtype == np.int32 and test["y"].dtype == np.float32
    np.testing.assert_array_equal(ds.splits["train"]["x"], [1, 1, 1, 2, 2, 3, 3, 4, 4, 4])


def test_ties_are_merged_and_a_constant_column_has_std_one(tmp_path):
    train = write(tmp_path / "t.csv", ["x", "y", "click"], [(x, 3, i % 2) for i, x in enumerate([1, 1, 1, 1, 1, 1, 2, 3, 4, 5])])
    ds = load(train, train)
    # quantiles .25 -> 1, .5 -> 1, .75 -> position 6.75 between 2 and 3 -> 2.75: distinct (1, 2.75), 4 ids + missing.
    assert ds.feature("x").boundaries == (1.0, 2.75) and ds.feature("x").vocab_size == 4
    assert (ds.feature("y").mean, ds.feature("y").std) == (3.0, 1.0)
    np.testing.assert_array_equal(ds.splits["train"]["y"], np.zeros(10))


def test_transform_before_quantiles_and_random_split_fits_on_train_rows_only(tmp_path):
    rng = np.random.default_rng(0)
    values = np.round(rng.gamma(2.0, 10.0, 300), 2)
    path = write(tmp_path / "d.csv", ["x", "click"], [(v, i % 2) for i, v in enumerate(values)])
    ds = load_tabular(path, label="click", features=[{"type": "numeric", "name": "x", "transform": "log1p",
                                                       "buckets": {"quantiles": 10}}])
    train = values[random_split(300, (0.8, 0.1, 0.1), 2024)["train"]]
    expected = tuple(np.unique(np.quantile(np.log1p(train), np.arange(1, 10) / 10)))
    assert ds.feature("x").boundaries == expected and len(expected) == 9
    assert ds.feature("x").boundaries != tuple(np.unique(np.quantile(np.log1p(values), np.arange(1, 10) / 10)))
    # Deciles: each train bucket id 1..10 holds 24 of the 240 train rows.
    np.testing.assert_array_equal(np.bincount(ds.splits["train"]["x"], minlength=11), [0] + [24] * 10)


def test_fitted_values_are_saved_and_reapplied(files, tmp_path):
    train, test = files
    first = load(train, test)
    save_fitted(first.fitted, tmp_path / "fitted.json")
    doc = json.loads((tmp_path / "fitted.json").read_text())
    by_name = {f["name"]: f for f in doc["features"]}
    assert by_name["x"]["boundaries"] == [3.25, 5.5, 7.75] and by_name["x"]["quantiles"] == 4
    assert (by_name["y"]["mean"], by_name["y"]["std"]) == (5.0, 2.0)
    # The train file changes after training: refitting would move them, the saved state does not.
    write(tmp_path / "train.csv", ["x", "y", "click"], [(x, x, x % 2) for x in range(100, 120)])
    refit = load(train, test)
    assert refit.feature("x").boundaries != (3.25, 5.5, 7.75)
    again = load(train, test, fitted=load_fitted(tmp_path / "fitted.json"))
    assert again.features == first.features
    for k, v in first.splits["test"].items():
        np.testing.assert_array_equal(again.splits["test"][k], v, err_msg=k)
    # Another number of quantiles, or fixed boundaries where they were fitted: the state does not fit the config.
    state = load_fitted(tmp_path / "fitted.json")
    with pytest.raises(DataError, match=r"feature 'x' has quantiles=5 now, 4 when fitted"):
        load(train, test, features=[dict(QUANTILES, buckets={"quantiles": 5}), STANDARD], fitted=state)
    with pytest.raises(DataError, match=r"feature 'y' has transform='none' now, 'standardize' when fitted"):
        load(train, test, features=[QUANTILES, dict(STANDARD, transform="none")], fitted=state)
    # A damaged state (boundaries out of order, std 0) is named.
    by_name["x"]["boundaries"] = [5.5, 3.25, 7.75]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"bad\.json: numeric feature 'x': boundaries \[5\.5, 3\.25, 7\.75\] are not finite and strictly"):
        load_fitted(tmp_path / "bad.json")
    by_name["x"]["boundaries"], by_name["y"]["std"] = None, 0.0
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"numeric feature 'x' lacks its fitted boundaries"):
        load_fitted(tmp_path / "bad.json")
    fixed = first.fitted.features
    assert apply_fitted(first.fitted, fixed)[0] == fixed  # resolved specs match themselves


def test_given_mean_and_std_are_not_refitted(files):
    ds = load(*files, features=[dict(STANDARD, mean=1.0, std=4.0)])
    assert (ds.feature("y").mean, ds.feature("y").std) == (1.0, 4.0)
    np.testing.assert_allclose(ds.splits["test"]["y"][:3], [1.0, 2.0, 0.0])  # (5-1)/4, (9-1)/4, (1-1)/4


@pytest.mark.parametrize("feature, message", [
    (dict(QUANTILES, buckets={"quantile": 4}), r"features\[0\]: buckets=\{'quantile': 4\}; expected \{'quantiles': q\}"),
    (dict(QUANTILES, buckets={"quantiles": 1}), r"the number of quantile buckets must be an integer >= 2"),
    (dict(QUANTILES, boundaries=[1, 2]), r"give boundaries \(fixed buckets\) or buckets=\{'quantiles': q\}"),
    (dict(STANDARD, transform="zscore"), r"transform='zscore'; expected one of \['none', 'log1p', 'log_square', 'standardize'\]"),
    (dict(STANDARD, mean=1.0), r"give both mean and std"),
    (dict(STANDARD, mean=1.0, std=0), r"need a finite mean and a finite std > 0"),
    ({"type": "numeric", "name": "x", "column": "age", "boundaries": [18, 50, 30]},
     r"features\[0\] \(column 'age'\): boundaries=\[18\.0, 50\.0, 30\.0\] must be strictly increasing \(entry 2 = 30 is not above entry 1 = 50\)"),
])
def test_bad_numeric_options_are_config_errors(files, feature, message):
    with pytest.raises(ConfigError, match=message):
        load(*files, features=[feature])


def test_data_errors_name_the_file_row_and_column(tmp_path):
    # A train column with no finite value cannot be fitted.
    empty = write(tmp_path / "e.csv", ["x", "y", "click"], [(None, "nan", i % 2) for i in range(5)])
    with pytest.raises(DataError, match=r"e\.csv: numeric feature 'x' \(column 'x'\) has no finite value in the train split to fit quantile"):
        load(empty, empty)
    with pytest.raises(DataError, match=r"numeric feature 'y' \(column 'y'\) has no finite value .* to fit the standardization"):
        load(empty, empty, features=[STANDARD])
    # A text Parquet column read by a fitted numeric: the error names the row in the file (0-based), not the
    # row of the shuffled train split.
    values = [str(v) for v in range(50)]
    values[37] = "cheap"
    pq.write_table(pa.table({"x": values, "y": [1.0] * 50, "click": [i % 2 for i in range(50)]}), tmp_path / "p.parquet")
    train_rows = random_split(50, (0.8, 0.1, 0.1), 2024)["train"]
    assert 37 in train_rows and list(train_rows).index(37) != 37
    with pytest.raises(DataError, match=r"p\.parquet: row 37 \(0-based\): feature 'x' \(column 'x'\) expects a number, got 'cheap'"):
        load_tabular(str(tmp_path / "p.parquet"), label="click", features=[QUANTILES])


def test_specs_without_the_new_fields_repr_as_before():
    # A workdir's data identity hashes repr(features): a numeric spec that sets none of quantiles / mean /
    # std must read exactly as before they existed, or every older workdir would be "other data".
    from jaxrec.data.features import Numeric

    assert repr(Numeric("age", transform="log1p", boundaries=(18.0, 30.0))) == \
        "Numeric(name='age', column=None, transform='log1p', fill_value=0.0, boundaries=(18.0, 30.0))"
    assert repr(Numeric("y", transform="standardize", mean=5.0, std=2.0)).endswith("boundaries=None, mean=5.0, std=2.0)")
