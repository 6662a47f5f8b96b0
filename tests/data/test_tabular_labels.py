"""Issue 19, items 5 and 8: several label columns (labels [N, T]), text labels with `positive`, and label
errors that name the file, line (or Parquet row), column and value."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxrec.data.dataset import LABELS, random_split
from jaxrec.data.tabular import load_tabular
from jaxrec.errors import ConfigError, DataError

N = 100
FEATURES = [{"type": "categorical", "name": "user"}, {"type": "numeric", "name": "price"}]


def columns(n: int = N) -> dict[str, list]:
    return {"user": [f"u{i % 7}" for i in range(n)], "price": [float(i) for i in range(n)],
            "click": [int(i % 3 == 0) for i in range(n)], "buy": [int(i % 5 == 0) for i in range(n)],
            "answer": ["yes" if i % 4 == 0 else "no" for i in range(n)]}


def write_csv(path, cols) -> str:
    names = list(cols)
    rows = zip(*(cols[c] for c in names))
    path.write_text("\n".join([",".join(names)] + [",".join("" if v is None else str(v) for v in r) for r in rows]) + "\n")
    return str(path)


def write_parquet(path, cols) -> str:
    pq.write_table(pa.table(cols), path)
    return str(path)


def test_several_labels_give_n_by_t_in_the_given_order(tmp_path):
    cols = columns()
    ds = load_tabular(write_csv(tmp_path / "d.csv", cols), labels=["buy", "click"], features=FEATURES)
    idx = random_split(N, (0.8, 0.1, 0.1), 2024)
    for split in ("train", "valid", "test"):
        y = ds.splits[split][LABELS]
        assert y.shape == (len(idx[split]), 2) and y.dtype == np.float32
        np.testing.assert_array_equal(y[:, 0], np.array(cols["buy"])[idx[split]])
        np.testing.assert_array_equal(y[:, 1], np.array(cols["click"])[idx[split]])
        np.testing.assert_array_equal(ds.splits[split]["price"], np.array(cols["price"])[idx[split]])  # rows stay aligned
    assert ds.label_names == ("buy", "click") and ds.num_rows("train") == 80
    # select / columns keep the [N, T] labels.
    only = ds.select(["price"])
    assert set(only.columns("test")) == {"price", LABELS} and only.columns("test")[LABELS].shape == (10, 2)
    buy, click = (int(np.sum(np.array(cols[c])[idx["train"]])) for c in ("buy", "click"))
    assert (buy, click) == (17, 29)  # of 80: rates 0.2125 and 0.3625
    assert re.search(r"train positive rates buy 0\.21[23], click 0\.36[23]$", ds.summary())
    # One `label`: [N], as before; a one-column `labels` list: [N, 1].
    assert load_tabular(str(tmp_path / "d.csv"), label="click", features=FEATURES).splits["train"][LABELS].shape == (80,)
    assert load_tabular(str(tmp_path / "d.csv"), labels=["click"], features=FEATURES).splits["train"][LABELS].shape == (80, 1)


@pytest.mark.parametrize("writer", [write_csv, write_parquet])
def test_text_label_with_positive(tmp_path, writer):
    cols = columns()
    path = writer(tmp_path / ("d.csv" if writer is write_csv else "d.parquet"), cols)
    ds = load_tabular(path, label="answer", positive="yes", features=FEATURES)
    idx = random_split(N, (0.8, 0.1, 0.1), 2024)
    np.testing.assert_array_equal(ds.splits["test"][LABELS], (idx["test"] % 4 == 0).astype(np.float32))
    # A dict names the text label columns; the others hold 0 / 1.
    ds = load_tabular(path, labels=["answer", "click"], positive={"answer": "yes"}, features=FEATURES)
    np.testing.assert_array_equal(ds.splits["valid"][LABELS], np.stack([idx["valid"] % 4 == 0, idx["valid"] % 3 == 0], 1))
    # An integer positive is compared as text: 1 -> '1'.
    ds = load_tabular(path, label="click", positive=1, features=FEATURES)
    np.testing.assert_array_equal(ds.splits["test"][LABELS], (idx["test"] % 3 == 0).astype(np.float32))


def test_text_label_without_positive_names_file_row_column_and_value(tmp_path):
    cols = columns()
    with pytest.raises(DataError, match=r"d\.csv:2: column 'answer' expects a number or nothing, got 'yes'; "
                                        r"for a text label set dataset\.positive"):
        load_tabular(write_csv(tmp_path / "d.csv", cols), label="answer", features=FEATURES)
    with pytest.raises(DataError, match=r"d\.parquet: row 0 \(0-based\): label 'answer' = 'yes' is not in \{0, 1\} .*dataset\.positive"):
        load_tabular(write_parquet(tmp_path / "d.parquet", cols), label="answer", features=FEATURES)


def test_bad_label_of_a_second_task_names_the_file_line(tmp_path):
    cols = columns()
    cols["buy"][42] = 3  # data row 42 -> line 44 of the CSV, row 42 of the Parquet file, whatever the split
    assert 42 in random_split(N, (0.8, 0.1, 0.1), 2024)["train"]
    with pytest.raises(DataError, match=r"d\.csv:44: label 'buy' = 3\.0 is not in \{0, 1\} \(1 bad row\(s\) in all\)"):
        load_tabular(write_csv(tmp_path / "d.csv", cols), labels=["click", "buy"], features=FEATURES)
    with pytest.raises(DataError, match=r"d\.parquet: row 42 \(0-based\): label 'buy' = 3 is not in \{0, 1\}"):
        load_tabular(write_parquet(tmp_path / "d.parquet", cols), labels=["click", "buy"], features=FEATURES)
    # With explicit valid / test files, the line is that of the file it is in.
    good = write_csv(tmp_path / "good.csv", columns())
    with pytest.raises(DataError, match=r"d\.csv:44: label 'buy'"):
        load_tabular(good, labels=["click", "buy"], features=FEATURES, valid_path=good, test_path=str(tmp_path / "d.csv"))


def test_positive_errors(tmp_path):
    cols = columns()
    cols["answer"][9] = None
    with pytest.raises(DataError, match=r"d\.csv:11: label 'answer' is empty \(1 empty row\(s\) in all\); with dataset\.positive='yes'"):
        load_tabular(write_csv(tmp_path / "d.csv", cols), label="answer", positive="yes", features=FEATURES)
    with pytest.raises(DataError, match=r"d\.parquet: row 9 \(0-based\): label 'answer' is empty"):
        load_tabular(write_parquet(tmp_path / "d.parquet", cols), label="answer", positive="yes", features=FEATURES)
    with pytest.raises(DataError, match=r"e\.csv: no row of label 'answer' equals dataset\.positive='Yes' \(compared as text\); "
                                        r"values: \['no', 'yes'\]"):
        load_tabular(write_csv(tmp_path / "e.csv", columns()), label="answer", positive="Yes", features=FEATURES)


@pytest.mark.parametrize("kw, message", [
    ({}, r"give label='column' .* or labels=\['column', \.\.\.\] .* exactly one"),
    ({"label": "click", "labels": ["buy"]}, r"exactly one of them"),
    ({"labels": []}, r"dataset\.labels=\[\]: expected a non-empty list"),
    ({"labels": "click"}, r"dataset\.labels='click': expected a non-empty list"),
    ({"labels": ["click", "click"]}, r"a column is named more than once"),
    ({"label": "click", "positive": 1.0}, r"dataset\.positive=1\.0: expected the text"),
    ({"label": "click", "positive": {"buy": "1"}}, r"dataset\.positive names column\(s\) \['buy'\] that are not labels"),
])
def test_label_config_errors(tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message):
        load_tabular(write_csv(tmp_path / "d.csv", columns()), features=FEATURES, **kw)
