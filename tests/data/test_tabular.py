"""Tests of the config-driven CSV / Parquet reader on small generated files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxrec.data.dataset import LABELS, random_split
from jaxrec.data.features import lengths_key
from jaxrec.data.tabular import load_tabular
from jaxrec.errors import ConfigError, DataError

N = 200
SPLIT = (0.8, 0.1, 0.1)
SEED = 2024
FEATURES = [
    {"type": "categorical", "name": "user_id", "encoding": "hash", "hash_buckets": 1000},
    {"type": "categorical", "name": "item"},
    {"type": "sequence", "name": "genres", "max_len": 3},
    {"type": "numeric", "name": "price", "transform": "log1p"},
    {"type": "numeric", "name": "age", "boundaries": [18, 30, 50]},
]
COLUMNS = ["user_id", "item", "genres", "price", "age", "click"]


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """n rows; None marks a missing value (an empty CSV cell, a Parquet null)."""
    rng = np.random.default_rng(seed)
    genres = ["action", "comedy", "drama", "horror"]
    rows = []
    for _ in range(n):
        k = int(rng.integers(0, 5))
        rows.append(
            {
                "user_id": int(rng.integers(1, 31)),
                "item": None if rng.random() < 0.1 else f"i{rng.integers(0, 40)}",
                "genres": None if k == 0 else "|".join(rng.choice(genres, size=k)),
                "price": None if rng.random() < 0.1 else round(float(rng.uniform(0, 100)), 2),
                "age": int(rng.integers(10, 70)),
                "click": int(rng.integers(0, 2)),
            }
        )
    return rows


def write_csv(path, rows, delimiter=",", columns=COLUMNS) -> str:
    cell = lambda v: "" if v is None else str(v)
    lines = [delimiter.join(columns)] + [delimiter.join(cell(r[c]) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def write_parquet(path, rows, list_genres=False) -> str:
    table = pa.table(
        {
            "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
            "item": pa.array([r["item"] for r in rows], pa.string()),
            "genres": pa.array([r["genres"].split("|") if r["genres"] else [] for r in rows], pa.list_(pa.string()))
            if list_genres
            else pa.array([r["genres"] for r in rows], pa.string()),
            "price": pa.array([r["price"] for r in rows], pa.float64()),
            "age": pa.array([r["age"] for r in rows], pa.int64()),
            "click": pa.array([r["click"] for r in rows], pa.int64()),
        }
    )
    pq.write_table(table, path)
    return str(path)


def load(path, **kw):
    kw.setdefault("label", "click")
    kw.setdefault("features", FEATURES)
    return load_tabular(path, **kw)


def assert_same(a, b):
    assert a.features == b.features
    assert a.splits.keys() == b.splits.keys()
    for s in a.splits:
        assert a.splits[s].keys() == b.splits[s].keys()
        for k in a.splits[s]:
            np.testing.assert_array_equal(a.splits[s][k], b.splits[s][k], err_msg=f"{s}/{k}")


@pytest.fixture
def rows():
    return make_rows(N)


@pytest.fixture
def csv_path(tmp_path, rows):
    return write_csv(tmp_path / "data.csv", rows)


def test_splits_shapes_and_dtypes(csv_path, rows):
    ds = load(csv_path, group_key="user_id", name="toy")
    assert ds.name == "toy" and ds.group_key == "user_id"
    assert {s: ds.num_rows(s) for s in ds.splits} == {"train": 160, "valid": 20, "test": 20}
    for split in ds.splits.values():
        n = len(split[LABELS])
        assert set(split) == {"user_id", "item", "genres", lengths_key("genres"), "price", "age", LABELS}
        assert split[LABELS].dtype == np.float32
        assert split["genres"].shape == (n, 3) and split["genres"].dtype == np.int32
        assert split["price"].dtype == np.float32 and split["age"].dtype == np.int32
    assert ds.feature("user_id").vocab_size == 1000 and ds.feature("age").vocab_size == 5
    idx = random_split(N, SPLIT, SEED)
    test = [rows[r] for r in idx["test"]]
    got = ds.splits["test"]
    np.testing.assert_array_equal(got[LABELS], [r["click"] for r in test])
    np.testing.assert_array_equal(got[lengths_key("genres")], [min(3, len(r["genres"].split("|"))) if r["genres"] else 0 for r in test])
    np.testing.assert_allclose(got["price"], [np.log1p(r["price"]) if r["price"] is not None else 0.0 for r in test], rtol=1e-6)
    np.testing.assert_array_equal(got["age"], [np.digitize(r["age"], [18, 30, 50]) + 1 for r in test])
    train_items = {rows[r]["item"] for r in idx["train"]} - {None}
    np.testing.assert_array_equal(got["item"] == 0, [r["item"] not in train_items for r in test])


def test_csv_and_parquet_give_identical_arrays(tmp_path, csv_path, rows):
    from_csv = load(csv_path)
    assert_same(from_csv, load(write_parquet(tmp_path / "data.parquet", rows)))
    assert_same(from_csv, load(write_parquet(tmp_path / "lists.pq", rows, list_genres=True)))
    tsv = write_csv(tmp_path / "data.tsv", rows, delimiter="\t")
    assert_same(from_csv, load(tsv, delimiter="\t"))


def test_seed_determines_split(csv_path):
    a, b = load(csv_path), load(csv_path)
    assert_same(a, b)
    c = load(csv_path, split_seed=1)
    assert not np.array_equal(a.splits["train"]["user_id"], c.splits["train"]["user_id"])
    assert c.num_rows("train") == 160


def test_hash_ids_in_range(csv_path):
    ds = load(csv_path)
    for split in ds.splits.values():
        assert split["user_id"].min() >= 1 and split["user_id"].max() < 1000


def test_vocab_from_train_only_with_min_count(tmp_path, rows):
    idx = random_split(N, SPLIT, SEED)
    train, test = list(map(int, idx["train"])), list(map(int, idx["test"]))
    for r in test:
        rows[r]["item"] = "only_in_test"
    rows[train[0]]["item"] = "rare"  # once in train
    features = [dict(FEATURES[1], min_count=2)]
    ds = load(write_csv(tmp_path / "data.csv", rows), features=features)
    assert np.all(ds.splits["test"]["item"] == 0)
    assert ds.splits["train"]["item"][0] == 0
    counts = {}
    for r in train:
        counts[rows[r]["item"]] = counts.get(rows[r]["item"], 0) + 1
    kept = {v for v, c in counts.items() if v is not None and c >= 2}
    assert ds.feature("item").vocab_size == len(kept) + 1
    np.testing.assert_array_equal(ds.splits["train"]["item"] > 0, [rows[r]["item"] in kept for r in train])


def test_identity_encoding_keeps_ids(tmp_path, rows):
    rows[0]["user_id"] = None
    ds = load(write_csv(tmp_path / "data.csv", rows), features=[{"name": "user_id", "encoding": "identity", "vocab_size": 31}])
    train = random_split(N, SPLIT, SEED)["train"]
    np.testing.assert_array_equal(ds.splits["train"]["user_id"], [rows[r]["user_id"] or 0 for r in train])


def test_given_valid_and_test_files(tmp_path, rows):
    rows[150]["item"] = "only_in_test"
    train = write_csv(tmp_path / "train.csv", rows[:120])
    valid = write_parquet(tmp_path / "valid.parquet", rows[120:150])
    test = write_csv(tmp_path / "test.csv", rows[150:])
    ds = load(train, valid_path=valid, test_path=test, group_key="user_id")
    assert {s: ds.num_rows(s) for s in ds.splits} == {"train": 120, "valid": 30, "test": 50}
    assert ds.splits["test"]["item"][0] == 0
    np.testing.assert_array_equal(ds.splits["valid"][LABELS], [r["click"] for r in rows[120:150]])
    with pytest.raises(ConfigError, match="valid_path and test_path"):
        load(train, valid_path=valid)


def test_group_key_must_be_a_categorical_feature(csv_path):
    with pytest.raises(ConfigError, match="group_key.*'session'"):
        load(csv_path, group_key="session")
    with pytest.raises(ConfigError, match="group_key.*'genres'"):
        load(csv_path, group_key="genres")


def test_bad_feature_config(csv_path):
    bad = [FEATURES[0], {"type": "embedding", "name": "x"}]
    with pytest.raises(ConfigError, match=r"dataset\.features\[1\].*embedding"):
        load(csv_path, features=bad)
    with pytest.raises(ConfigError, match="'labels'"):
        load(csv_path, features=[{"name": "labels", "column": "item"}])
    with pytest.raises(ConfigError, match="column 'age'"):
        load(csv_path, features=[FEATURES[4], {"name": "age_id", "column": "age"}])


def test_missing_column_lists_available(tmp_path, csv_path, rows):
    features = FEATURES + [{"name": "country"}]
    with pytest.raises(DataError, match=r"data\.csv: missing column\(s\) \['country'\]; the file has columns \['user_id'"):
        load(csv_path, features=features)
    with pytest.raises(DataError, match=r"data\.parquet: missing column\(s\) \['country'\]"):
        load(write_parquet(tmp_path / "data.parquet", rows), features=features)
    with pytest.raises(DataError, match=r"missing column\(s\) \['clicked'\]"):
        load(csv_path, label="clicked")
    with pytest.raises(DataError, match="delimiter"):
        load(write_csv(tmp_path / "data.tsv", rows, delimiter="\t"))  # read with ','


def test_malformed_row_names_the_line(tmp_path, rows):
    path = write_csv(tmp_path / "data.csv", rows)
    lines = open(path).read().splitlines()
    lines[41] += ",extra"  # line 42
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        load(path)
    assert str(e.value) == f"{path}:42: expected 6 fields (as in the header), got 7"


def test_non_number_in_numeric_column_names_the_line(tmp_path, rows):
    rows[28]["price"] = "cheap"  # data row 28 -> line 30
    with pytest.raises(DataError, match=r"data\.csv:30: column 'price' expects a number.*'cheap'"):
        load(write_csv(tmp_path / "data.csv", rows))


def test_bad_label_names_the_line(tmp_path, rows):
    rows[15]["click"] = 2  # data row 15 -> line 17
    path = write_csv(tmp_path / "data.csv", rows)
    with pytest.raises(DataError, match=r"data\.csv:17: label 'click'"):
        load(path)
    lines = open(path).read().splitlines()
    (tmp_path / "data.csv").write_text("\n".join(lines[:5] + [""] + lines[5:]) + "\n")  # a blank line 6
    with pytest.raises(DataError, match=r"data\.csv:18: label 'click'"):
        load(path)
    with pytest.raises(DataError, match=r"data\.parquet: row 15 \(0-based\): label 'click'"):
        load(write_parquet(tmp_path / "data.parquet", rows))


def test_missing_empty_and_header_only_files(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        load(str(tmp_path / "nope.csv"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        load(str(tmp_path / "empty.csv"))
    (tmp_path / "header.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(DataError, match=r"header\.csv: no data rows"):
        load(str(tmp_path / "header.csv"))
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"junk\.parquet: not a readable Parquet file"):
        load(str(tmp_path / "junk.parquet"))
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(ConfigError, match="format"):
        load(str(tmp_path / "data.json"))


def test_non_finite_numerics_are_counted_per_feature_and_split(tmp_path, rows):
    # Before: NaN / inf became missing silently.
    for i, v in ((3, "inf"), (4, "-inf"), (5, "NAN"), (6, "nan"), (7, "Infinity")):
        rows[i]["price"] = v
    path = write_csv(tmp_path / "data.csv", rows, columns=COLUMNS)
    ds = load(path, valid_path=path, test_path=write_csv(tmp_path / "test.csv", make_rows(10, seed=1)))
    empty = sum(r["price"] is None for r in rows)
    want = {"missing": empty + 1, "nan": 1, "inf": 3}  # 'nan' is one of pyarrow's NA spellings: empty
    assert ds.numeric_counts["train"]["price"] == want and ds.numeric_counts["valid"]["price"] == want
    assert ds.numeric_counts["train"]["age"] == {"missing": 0, "nan": 0, "inf": 0}
    np.testing.assert_array_equal(ds.splits["train"]["price"][3:8], 0.0)  # still encoded as missing
    assert ds.summary().endswith(f"; treated as missing: price 2 NaN, 6 inf, {2 * empty + 2} empty "
                                 f"(train 1/3/{empty + 1}, valid 1/3/{empty + 1}, test 0/0/0 NaN/inf/empty)")
    # Parquet: real NaN and nulls told apart; the random split counts each split's own rows.
    rows[5]["price"] = float("nan")
    for i in (3, 4, 6, 7):
        rows[i]["price"] = float("inf")
    ds = load(write_parquet(tmp_path / "data.parquet", rows))
    total = {k: sum(ds.numeric_counts[s]["price"][k] for s in ds.splits) for k in ("missing", "nan", "inf")}
    assert total == {"missing": empty, "nan": 1, "inf": 4}
    from jaxrec.data import encoding
    from jaxrec.data.features import Numeric
    assert encoding.numeric_counts((Numeric("x"),), {"x": np.array(["1", "", None, "nan", "-inf"], dtype=object)}) == \
        {"x": {"missing": 2, "nan": 1, "inf": 1}}


def test_bad_sequence_length_and_boundaries_are_config_errors(csv_path):
    # Before: max_len=0 was accepted (empty sequences), unsorted boundaries a numpy ValueError.
    with pytest.raises(ConfigError, match=r"dataset\.features\[0\]: max_len=0 must be an integer >= 1"):
        load(csv_path, features=[{"type": "sequence", "name": "genres", "max_len": 0}])
    with pytest.raises(ConfigError, match=r"boundaries=\[18\.0, 50\.0, 30\.0\] must be strictly increasing"):
        load(csv_path, features=[{"type": "numeric", "name": "age", "boundaries": [18, 50, 30]}])


def test_unreadable_compressed_csv_and_a_directory(tmp_path, rows):
    # Before: OSError tracebacks from pyarrow's decompression; a directory was "no such file".
    import gzip

    plain = tmp_path / "plain.csv.gz"
    plain.write_text(open(write_csv(tmp_path / "data.csv", rows)).read())
    with pytest.raises(DataError, match=r"plain\.csv\.gz: cannot be read \(.*\): damaged, or not compressed"):
        load(str(plain))
    blob = gzip.compress(open(tmp_path / "data.csv", "rb").read() * 20)
    (tmp_path / "cut.csv.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"cut\.csv\.gz: cannot be read"):
        load(str(tmp_path / "cut.csv.gz"))
    with pytest.raises(DataError, match="is a directory, not a data file"):
        load(str(tmp_path))


def test_duplicate_header_column_is_named(tmp_path, rows):
    # Before: pyarrow read one of the two 'item' columns, silently.
    for r in rows:
        r["item2"] = "x"
    path = write_csv(tmp_path / "data.csv", rows, columns=COLUMNS + ["item2"])
    lines = open(path).read().splitlines()
    (tmp_path / "data.csv").write_text("\n".join([lines[0].replace("item2", "item")] + lines[1:]) + "\n")
    with pytest.raises(DataError, match=r"data\.csv:1: the header names column\(s\) \['item'\] more than once \(fields \[2, 7\]"):
        load(path)


def test_parquet_string_labels_and_list_categoricals(tmp_path, rows):
    # Before: string labels were a numpy ValueError; a list column read by a categorical feature was
    # silently encoded as the text of each list.
    path = write_parquet(tmp_path / "data.parquet", rows)
    table = pq.read_table(path)
    labels = pa.array(["yes" if r["click"] else "no" for r in rows])
    pq.write_table(table.set_column(table.schema.get_field_index("click"), "click", labels), tmp_path / "s.parquet")
    with pytest.raises(DataError, match=r"s\.parquet: row 0 \(0-based\): label 'click' = '(yes|no)' is not in \{0, 1\}"):
        load(str(tmp_path / "s.parquet"))
    items = pa.array([[r["item"]] for r in rows], pa.list_(pa.string()))
    pq.write_table(table.set_column(table.schema.get_field_index("item"), "item", items), tmp_path / "l.parquet")
    with pytest.raises(DataError, match=r"l\.parquet: column 'item' holds lists .* read it with a 'sequence' feature"):
        load(str(tmp_path / "l.parquet"))


def test_invalid_utf8_and_float_identity_ids_name_the_line(tmp_path, rows):
    # Before: "not a valid CSV file: In CSV column #0: ... invalid UTF8 data" without a line; float ids
    # named neither the file nor the row.
    path = write_csv(tmp_path / "data.csv", rows)
    data = open(path, "rb").read().splitlines(keepends=True)
    data[9] = data[9].replace(b",", b"\xff,", 1).replace(b",", b",", 1)  # line 10, first column
    (tmp_path / "data.csv").write_bytes(b"".join(data))
    with pytest.raises(DataError, match=r"data\.csv:10: not valid UTF-8 \(column 'user_id', byte"):
        load(path, features=[{"name": "user_id"}])
    table = pq.read_table(write_parquet(tmp_path / "data.parquet", rows))
    floats = pa.array([r["user_id"] + 0.5 for r in rows], pa.float64())
    pq.write_table(table.set_column(0, "user_id", floats), tmp_path / "f.parquet")
    with pytest.raises(DataError, match=r"f\.parquet: row \d+ \(0-based\): feature 'user_id': encoding='identity' needs integer ids"):
        load(str(tmp_path / "f.parquet"), features=[{"name": "user_id", "encoding": "identity", "vocab_size": 100}])
