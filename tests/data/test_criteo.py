"""Tests of the Criteo TSV reader on small generated files."""

from __future__ import annotations

import numpy as np
import pytest

from jaxrec.data.criteo import CAT_COLUMNS, INT_COLUMNS, load_criteo
from jaxrec.data.dataset import LABELS, random_split, take
from jaxrec.data.encoding import encode, fit
from jaxrec.errors import ConfigError, DataError

N = 200
SPLIT = (0.8, 0.1, 0.1)
SEED = 2024


def make_rows(n: int, seed: int = 0) -> list[list[str]]:
    """n Criteo rows of 40 text fields: ~20% of I and ~10% of C values empty."""
    rng = np.random.default_rng(seed)
    pool = [f"{v:08x}" for v in rng.integers(0, 2**32, size=40)]
    rows = []
    for _ in range(n):
        row = [str(rng.integers(0, 2))]
        row += ["" if rng.random() < 0.2 else str(int(rng.integers(-3, 100_000))) for _ in INT_COLUMNS]
        row += ["" if rng.random() < 0.1 else pool[min(int(rng.zipf(1.3)), len(pool)) - 1] for _ in CAT_COLUMNS]
        rows.append(row)
    return rows


def write(path, rows) -> str:
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    return str(path)


def raw_columns(rows) -> dict[str, np.ndarray]:
    """The file's columns as encoding.fit/encode take them: I float64 (NaN = missing), C text."""
    cols = {}
    for j, name in enumerate(INT_COLUMNS, 1):
        cols[name] = np.array([float(r[j]) if r[j] else np.nan for r in rows])
    for j, name in enumerate(CAT_COLUMNS, 14):
        cols[name] = np.array([r[j] for r in rows], dtype=object)
    cols[LABELS] = np.array([float(r[0]) for r in rows], np.float32)
    return cols


@pytest.fixture
def rows():
    return make_rows(N)


@pytest.fixture
def tsv(tmp_path, rows):
    return write(tmp_path / "criteo.tsv", rows)


def assert_same(a, b):
    assert a.splits.keys() == b.splits.keys()
    for s in a.splits:
        assert a.splits[s].keys() == b.splits[s].keys()
        for k in a.splits[s]:
            np.testing.assert_array_equal(a.splits[s][k], b.splits[s][k], err_msg=f"{s}/{k}")


def test_splits_shapes_and_dtypes(tsv):
    ds = load_criteo(tsv, hash_buckets=1000)
    assert ds.name == "criteo" and ds.group_key is None
    assert {s: ds.num_rows(s) for s in ds.splits} == {"train": 160, "valid": 20, "test": 20}
    assert [f.name for f in ds.features] == list(INT_COLUMNS + CAT_COLUMNS)
    for split in ds.splits.values():
        assert set(split) == set(INT_COLUMNS + CAT_COLUMNS) | {LABELS}
        assert split[LABELS].dtype == np.float32 and set(np.unique(split[LABELS])) <= {0.0, 1.0}
        for name in INT_COLUMNS + CAT_COLUMNS:
            assert split[name].dtype == np.int32 and split[name].shape == split[LABELS].shape
    assert ds.feature("C1").vocab_size == 1000
    assert ds.feature("I1").vocab_size == 261


@pytest.mark.parametrize("encoding", ["hash", "vocab"])
@pytest.mark.parametrize("numeric", ["bucketize", "float"])
def test_matches_fit_and_encode_on_train_rows(tsv, rows, encoding, numeric):
    """The streamed result equals encoding.fit on the raw train rows + encode on each split."""
    ds = load_criteo(tsv, encoding=encoding, numeric=numeric, hash_buckets=500, min_count=3)
    raw = raw_columns(rows)
    idx = random_split(N, SPLIT, SEED)
    specs, vocabs = fit(ds.features, take(raw, idx["train"]))
    assert specs == ds.features
    for s in ds.splits:
        part = take(raw, idx[s])
        expected = encode(specs, vocabs, part)
        for name in INT_COLUMNS + CAT_COLUMNS:
            np.testing.assert_array_equal(ds.splits[s][name], expected[name], err_msg=f"{s}/{name}")
        np.testing.assert_array_equal(ds.splits[s][LABELS], part[LABELS])


def test_float_numeric_is_log1p(tsv, rows):
    ds = load_criteo(tsv, numeric="float")
    test_rows = random_split(N, SPLIT, SEED)["test"]
    raw = np.array([float(rows[r][1]) if rows[r][1] else np.nan for r in test_rows])
    want = np.where(np.isnan(raw), 0.0, np.log1p(np.maximum(np.nan_to_num(raw), 0.0)))
    assert ds.splits["test"]["I1"].dtype == np.float32
    np.testing.assert_allclose(ds.splits["test"]["I1"], want, rtol=1e-6)


def test_hash_ids_in_range_and_zero_iff_missing(tsv, rows):
    buckets = 50
    ds = load_criteo(tsv, hash_buckets=buckets)
    idx = random_split(N, SPLIT, SEED)
    for s, split in ds.splits.items():
        for j, name in enumerate(CAT_COLUMNS, 14):
            missing = np.array([rows[r][j] == "" for r in idx[s]])
            ids = split[name]
            np.testing.assert_array_equal(ids == 0, missing, err_msg=f"{s}/{name}")
            assert np.all((ids[~missing] >= 1) & (ids[~missing] < buckets))
        for j, name in enumerate(INT_COLUMNS, 1):  # bucketized: 0 iff missing too
            missing = np.array([rows[r][j] == "" for r in idx[s]])
            np.testing.assert_array_equal(split[name] == 0, missing)


def test_seed_determines_split(tsv):
    a, b = load_criteo(tsv), load_criteo(tsv)
    assert_same(a, b)
    c = load_criteo(tsv, split_seed=7)
    assert not np.array_equal(a.splits["train"]["C3"], c.splits["train"]["C3"])
    assert sorted(a.splits["train"][LABELS].tolist() + a.splits["test"][LABELS].tolist() + a.splits["valid"][LABELS].tolist()) == sorted(
        c.splits["train"][LABELS].tolist() + c.splits["test"][LABELS].tolist() + c.splits["valid"][LABELS].tolist()
    )


def test_vocab_is_fitted_on_train_rows_only(tmp_path, rows):
    idx = random_split(N, SPLIT, SEED)
    train, valid, test = (list(map(int, idx[s])) for s in ("train", "valid", "test"))
    for r in test:
        rows[r][14] = "feedface"  # C1: only in test, 20 times
    for r in train[:2]:
        rows[r][15] = "0badcafe"  # C2: twice in train, below min_count=3
    for r in train[2:5] + valid[:2]:
        rows[r][15] = "c0ffee00"  # C2: three times in train, also in valid
    ds = load_criteo(write(tmp_path / "criteo.tsv", rows), encoding="vocab", min_count=3)
    assert np.all(ds.splits["test"]["C1"] == 0)
    pos = {r: i for i, r in enumerate(train)}
    c2 = ds.splits["train"]["C2"]
    assert c2[pos[train[0]]] == 0 and c2[pos[train[1]]] == 0
    kept = c2[pos[train[2]]]
    assert kept > 0 and all(c2[pos[r]] == kept for r in train[2:5])
    assert np.all(ds.splits["valid"]["C2"][:2] == kept)  # valid rows keep the train id
    for s in ds.splits.values():
        for name in CAT_COLUMNS:
            assert s[name].min() >= 0 and s[name].max() < ds.feature(name).vocab_size


@pytest.mark.parametrize("encoding", ["hash", "vocab"])
def test_streaming_in_chunks_matches_one_chunk(tmp_path, encoding):
    path = write(tmp_path / "big.tsv", make_rows(3000, seed=1))  # ~200 KiB: several 64 KiB blocks
    small = load_criteo(path, encoding=encoding, chunk_rows=100, min_count=2)
    whole = load_criteo(path, encoding=encoding, min_count=2)
    assert_same(small, whole)
    assert small.num_rows("train") == 2400


def test_max_rows(tsv):
    ds = load_criteo(tsv, max_rows=50)
    assert sum(ds.num_rows(s) for s in ds.splits) == 50
    assert {s: ds.num_rows(s) for s in ds.splits} == {"train": 40, "valid": 5, "test": 5}


def test_missing_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="nope.tsv"):
        load_criteo(str(tmp_path / "nope.tsv"))
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(DataError, match="empty.tsv.*empty"):
        load_criteo(str(tmp_path / "empty.tsv"))


def test_wrong_field_count_names_the_line(tmp_path, rows):
    rows[56] = rows[56][:-1]  # line 57: 39 fields
    path = write(tmp_path / "criteo.tsv", rows)
    with pytest.raises(DataError) as e:
        load_criteo(path)
    assert str(e.value) == f"{path}:57: expected 40 tab-separated fields, got 39"


def test_non_integer_feature_names_line_and_column(tmp_path, rows):
    rows[122][5] = "12x"  # line 123, column I5
    path = write(tmp_path / "criteo.tsv", rows)
    with pytest.raises(DataError, match=r"criteo\.tsv:123: column I5 .*'12x'"):
        load_criteo(path)


def test_blank_lines_are_skipped(tmp_path, tsv, rows):
    lines = open(tsv).read().splitlines()
    path = tmp_path / "blank.tsv"
    path.write_text("\n".join(lines[:10] + [""] + lines[10:]) + "\n\n")
    assert_same(load_criteo(str(path)), load_criteo(tsv))


def test_bad_label_names_the_line_across_chunks(tmp_path):
    rows = make_rows(3000, seed=2)
    rows[2499][0] = "2"  # line 2500, far past the first chunk
    path = write(tmp_path / "big.tsv", rows)
    with pytest.raises(DataError, match=r"big\.tsv:2500: label"):
        load_criteo(path, chunk_rows=100)
    lines = open(path).read().splitlines()
    (tmp_path / "big.tsv").write_text("\n".join(lines[:7] + [""] + lines[7:]) + "\n")  # blank line 8
    with pytest.raises(DataError, match=r"big\.tsv:2501: label"):
        load_criteo(path, chunk_rows=100)
    rows[2499][0] = "yes"
    path = write(tmp_path / "big.tsv", rows)
    with pytest.raises(DataError, match=r"big\.tsv:2500: label 'yes'"):
        load_criteo(path, chunk_rows=100)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="encoding"):
        load_criteo("x.tsv", encoding="onehot")
    with pytest.raises(ConfigError, match="numeric"):
        load_criteo("x.tsv", numeric="raw")
    with pytest.raises(ConfigError, match="split"):
        load_criteo("x.tsv", split=(0.5, 0.1, 0.1))


def test_gzip_file(tmp_path, tsv, rows):
    import gzip

    with gzip.open(tmp_path / "criteo.tsv.gz", "wt") as f:
        f.write(open(tsv).read())
    assert_same(load_criteo(str(tmp_path / "criteo.tsv.gz")), load_criteo(tsv))
    rows[9][3] = "x"
    with gzip.open(tmp_path / "bad.tsv.gz", "wt") as f:
        f.write("".join("\t".join(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"bad\.tsv\.gz:10: column I3"):
        load_criteo(str(tmp_path / "bad.tsv.gz"))


def test_value_over_max_value_bytes_names_line_and_column(tmp_path, rows):
    rows[30][14 + 4] = "f" * 70_000  # line 31, column C5 (fits pyarrow's block: checked per chunk)
    path = write(tmp_path / "criteo.tsv", rows)
    with pytest.raises(DataError, match=r"criteo\.tsv:31: column C5 has a value of 70,000 bytes, over max_value_bytes=65,536"):
        load_criteo(path)
    assert load_criteo(path, max_value_bytes=None).num_rows("train") == 160
    rows[30][14 + 4] = "f" * (2 << 20)  # longer than a read block of chunk_rows=200 rows
    path = write(tmp_path / "criteo.tsv", rows)
    with pytest.raises(DataError, match=r"criteo\.tsv:31: column C5 has a value of 2,097,152 bytes"):
        load_criteo(path, chunk_rows=200)
    with pytest.raises(DataError, match=r"a line of 2,09\d,\d{3} bytes is longer than the read block; raise chunk_rows"):
        load_criteo(path, chunk_rows=200, max_value_bytes=None)
    assert load_criteo(path, max_value_bytes=None).num_rows("test") == 20
