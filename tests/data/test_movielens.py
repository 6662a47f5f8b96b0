"""The default MovieLens-100K task is built exactly as movielens-task.md specifies."""

import datetime
import shutil
import urllib.request

import numpy as np
import pytest

from jaxrec.data import movielens as ml
from jaxrec.data.dataset import LABELS
from jaxrec.errors import DataError


def test_rows_split_label_and_fields(movielens, ml100k_dir):
    ds = movielens
    assert [ds.num_rows(s) for s in ("train", "valid", "test")] == [80_000, 10_000, 10_000]
    assert [f.name for f in ds.features] == list(ml.FIELDS)
    assert round(float(ds.splits["train"][LABELS].mean()), 3) == 0.555
    assert ds.group_key == "user_id"

    # Rebuild row 0 of the train split by hand from the raw files.
    perm = np.random.default_rng(2024).permutation(100_000)
    line = (ml100k_dir / "u.data").read_text().splitlines()[perm[0]].split("\t")
    user, item, rating, ts = map(int, line)
    assert ds.splits["train"][LABELS][0] == float(rating >= 4)
    raw = ml.read_raw(str(ml100k_dir))
    t = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    assert raw["hour"][perm[0]] == t.hour and raw["weekday"][perm[0]] == t.weekday()
    assert raw["user_id"][perm[0]] == user and raw["item_id"][perm[0]] == item


def test_derived_fields_against_hand_values(ml100k_dir):
    raw = ml.read_raw(str(ml100k_dir))
    lines = (ml100k_dir / "u.data").read_text().splitlines()
    i = next(k for k, l in enumerate(lines) if l.split("\t")[1] == "1")  # Toy Story (1995)
    assert raw["release_year"][i] == "1995"
    assert raw["genre_first"][i] == "Animation"  # flags: Animation, Children's, Comedy
    assert list(raw["genres"][i]) == ["Animation", "Children's", "Comedy"]
    users = {int(l.split("|")[0]): l.split("|") for l in (ml100k_dir / "u.user").read_text().splitlines()}
    u = users[int(lines[i].split("\t")[0])]
    age = int(u[1])
    expected = "<18" if age < 18 else "18-24" if age < 25 else "25-34" if age < 35 else "35-44" if age < 45 else "45-49" if age < 50 else "50-55" if age < 56 else "56+"
    assert raw["age_bucket"][i] == expected and raw["zip_prefix"][i] == u[4][:2] and raw["gender"][i] == u[2]


def test_vocabulary_from_train_only(movielens, ml100k_dir):
    raw = ml.read_raw(str(ml100k_dir))
    perm = np.random.default_rng(2024).permutation(100_000)
    train_items = set(raw["item_id"][perm[:80_000]].tolist())
    test_items = raw["item_id"][perm[90_000:]]
    unseen = ~np.isin(test_items, list(train_items))
    assert unseen.sum() > 0
    np.testing.assert_array_equal(movielens.splits["test"]["item_id"] == 0, unseen)
    assert movielens.feature("item_id").vocab_size == len(train_items) + 1


def test_genres_variant(ml100k_dir):
    ds = ml.load_movielens_100k(str(ml100k_dir), variant="genres")
    g, n = ds.splits["train"]["genres"], ds.splits["train"]["genres_length"]
    assert g.shape == (80_000, ml.MAX_GENRES) and n.min() >= 1 and n.max() <= 6
    assert np.all(g[np.arange(ml.MAX_GENRES)[None, :] >= n[:, None]] == 0)  # padding is 0
    assert np.all(g[np.arange(ml.MAX_GENRES)[None, :] < n[:, None]] > 0)


def test_download_offline_fails_clearly(monkeypatch, tmp_path):
    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=r"files\.grouplens\.org.*offline.*data_dir"):
        ml.download(tmp_path)


def test_find_data_dir_uses_env(monkeypatch, tmp_path, ml100k_dir):
    (tmp_path / "ml-100k").symlink_to(ml100k_dir)
    monkeypatch.setenv("JAXREC_DATA_DIR", str(tmp_path))
    assert ml.find_data_dir(None) == tmp_path / "ml-100k"


def test_missing_and_empty_data_dir(tmp_path, ml100k_dir):
    with pytest.raises(DataError, match="does not exist"):
        ml.load_movielens_100k(str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"lacks \['u.data'"):
        ml.load_movielens_100k(str(tmp_path))
    with pytest.raises(DataError, match=r"u\.data is not a directory \(dataset\.data_dir\)"):  # was: "does not exist"
        ml.load_movielens_100k(str(ml100k_dir / "u.data"))
    for f in ml.FILES:
        shutil.copy(ml100k_dir / f, tmp_path / f)
    (tmp_path / "u.data").write_text("")
    with pytest.raises(DataError, match="empty"):
        ml.load_movielens_100k(str(tmp_path))


def test_malformed_row_names_file_and_line(tmp_path, ml100k_dir):
    for f in ml.FILES:
        shutil.copy(ml100k_dir / f, tmp_path / f)
    lines = (ml100k_dir / "u.data").read_text().splitlines()
    lines[41] = "196\t242\t3"  # line 42 lost a field
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"u\.data:42: expected 4"):
        ml.load_movielens_100k(str(tmp_path))
    lines[41] = "196\t99999\t3\t881250949"  # unknown item
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"u\.data:42: item 99999 not in u\.item"):
        ml.load_movielens_100k(str(tmp_path))



def _copy(ml100k_dir, tmp_path):
    for f in ml.FILES:
        shutil.copy(ml100k_dir / f, tmp_path / f)
    return (ml100k_dir / "u.data").read_text().splitlines()


def test_checksums_of_local_files(tmp_path, ml100k_dir):
    ml.verify_files(ml100k_dir)  # the reference copy passes
    lines = _copy(ml100k_dir, tmp_path)
    (tmp_path / "u.data").write_text("\n".join(lines[:60_000]) + "\n")  # truncated: trained on 48k rows before
    with pytest.raises(DataError, match=r"u\.data: not the GroupLens ml-100k file: .*60,000 lines, 100,000 expected \(truncated\?\).*verify=False"):
        ml.load_movielens_100k(str(tmp_path))
    assert ml.load_movielens_100k(str(tmp_path), verify=False).num_rows("train") == 48_000  # opted out
    u, i, r, t = lines[10].split("\t")
    lines[10] = "\t".join([u, i, "5" if r != "5" else "4", t])  # one rating changed
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"same line count: values edited\?"):
        ml.read_raw(str(tmp_path))
    shutil.copy(ml100k_dir / "u.data", tmp_path / "u.data")
    with open(tmp_path / "u.user", "a") as fh:
        fh.write("944|30|M|other|12345\n")
    with pytest.raises(DataError, match=r"u\.user: .*944 lines, 943 expected \(lines added\?\)"):
        ml.read_raw(str(tmp_path))


def test_rating_outside_one_to_five_and_bad_ints_name_the_line(tmp_path, ml100k_dir):
    lines = _copy(ml100k_dir, tmp_path)
    u, i, _, t = lines[99].split("\t")
    lines[99] = "\t".join([u, i, "7", t])  # line 100
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    for verify in (True, False):  # named before the checksum, and with verify off
        with pytest.raises(DataError, match=r"u\.data:100: rating 7 is not in 1\.\.5"):
            ml.load_movielens_100k(str(tmp_path), verify=verify)
    lines[99] = "\t".join([u, i, "3", "yesterday"])
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"u\.data:100: field 'timestamp' = 'yesterday' is not an integer"):
        ml.read_raw(str(tmp_path), verify=False)
    shutil.copy(ml100k_dir / "u.data", tmp_path / "u.data")
    users = (ml100k_dir / "u.user").read_text().splitlines()
    users[4] = users[4].replace("|", "|x", 1)  # line 5: age 'x33'
    (tmp_path / "u.user").write_text("\n".join(users) + "\n")
    with pytest.raises(DataError, match=r"u\.user:5: field 'age' = 'x\d+' is not an integer"):
        ml.read_raw(str(tmp_path), verify=False)
