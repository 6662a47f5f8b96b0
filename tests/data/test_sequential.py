"""Next-item data (`jaxrec.data.sequential`): leave-one-out by hand, the MovieLens-100K split
against u.data read directly, the interactions-file reader (CSV, Parquet) and its errors."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxrec.data import DATASETS
from jaxrec.data.sequential import HISTORY, ITEM_COUNT, TARGET, leave_one_out, load_sequential, read_interactions
from jaxrec.errors import ConfigError, DataError
from jaxrec.train.config import default_config, validate


def test_leave_one_out_by_hand():
    # user 7: items 30 (t=1), 10 and 20 tied at t=2 (item id order: 10 first), 40 (t=5), 50 (t=9)
    # user 8: two interactions -> dropped; user 9: 3 interactions (one train target? no: n=3 -> 0 train rows)
    users = np.array([7, 7, 7, 7, 7, 8, 8, 9, 9, 9])
    items = np.array([40, 20, 10, 30, 50, 10, 20, 50, 30, 10])
    times = np.array([5, 2, 2, 1, 9, 1, 2, 3, 1, 2])
    splits, item_raw, user_raw, dropped = leave_one_out(users, items, times, max_history=2)
    np.testing.assert_array_equal(item_raw, [10, 20, 30, 40, 50])  # ids 1..5
    assert dropped == 1 and list(user_raw) == [7, 9]
    # user 7's order: 30, 10, 20, 40, 50 = ids 3, 1, 2, 4, 5; train targets at positions 1, 2
    tr = splits["train"]
    np.testing.assert_array_equal(tr[HISTORY], [[3, 0], [3, 1]])  # right-padded
    np.testing.assert_array_equal(tr["history_length"], [1, 2])
    np.testing.assert_array_equal(tr[TARGET], [1, 2])
    np.testing.assert_array_equal(tr["labels"], tr[TARGET])
    # valid: history (1, 2) of (3, 1, 2) truncated to the 2 most recent -> target 4; user 9 (30, 10, 50): history (3,) -> 1
    np.testing.assert_array_equal(splits["valid"][HISTORY], [[1, 2], [3, 0]])
    np.testing.assert_array_equal(splits["valid"][TARGET], [4, 1])
    np.testing.assert_array_equal(splits["test"][HISTORY], [[2, 4], [3, 1]])
    np.testing.assert_array_equal(splits["test"][TARGET], [5, 5])
    np.testing.assert_array_equal(splits["test"]["user"], [0, 1])
    # train interactions (all but the last two of each kept user): 3, 1, 2 of user 7; 3 of user 9
    np.testing.assert_array_equal(splits["__counts__"], [0, 1, 1, 2, 0, 0])


def test_movielens_split_against_u_data(ml100k_dir):
    ds = DATASETS["sequential"](data_dir=str(ml100k_dir))
    assert ds.name == "sequential/movielens" and ds.inputs == (TARGET,)
    assert (ds.num_rows("train"), ds.num_rows("valid"), ds.num_rows("test")) == (100_000 - 3 * 943, 943, 943)
    assert ds.feature(HISTORY).vocab_size == 1683 and ds.fitted.extra["dropped_users"] == 0
    assert ds.side[ITEM_COUNT].sum() == 100_000 - 2 * 943 and ds.side[ITEM_COUNT][0] == 0
    raw = np.loadtxt(ml100k_dir / "u.data", dtype=np.int64)
    for user in (1, 500, 943):
        mine = raw[raw[:, 0] == user]
        mine = mine[np.lexsort((mine[:, 1], mine[:, 3]))]  # time, then item id
        row = int(np.flatnonzero(ds.splits["test"]["user"] == user - 1)[0])
        assert ds.splits["test"][TARGET][row] == mine[-1, 1] and ds.splits["valid"][TARGET][row] == mine[-2, 1]
        n = min(len(mine) - 1, 50)
        assert ds.splits["test"]["history_length"][row] == n
        np.testing.assert_array_equal(ds.splits["test"][HISTORY][row, :n], mine[-1 - n:-1, 1])
        assert not ds.splits["test"][HISTORY][row, n:].any()


def _write_csv(path, rows, header="user_id,item_id,timestamp"):
    path.write_text(header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return path


ROWS = [("u1", "m9", 3), ("u1", "m2", 1), ("u1", "m5", 2), ("u2", "m2", 1), ("u2", "m9", 2), ("u3", "m5", 1),
        ("u3", "m2", 2), ("u3", "m9", 3), ("u3", "m5", 4)]


def test_file_source_csv_and_parquet(tmp_path):
    csv = _write_csv(tmp_path / "inter.csv", ROWS)
    table = pa.table({"user_id": [r[0] for r in ROWS], "item_id": [r[1] for r in ROWS], "timestamp": [r[2] for r in ROWS]})
    pq.write_table(table, tmp_path / "inter.parquet")
    a = load_sequential(source="file", path=str(csv), max_history=3)
    b = load_sequential(source="file", path=str(tmp_path / "inter.parquet"), max_history=3)
    assert a.fitted.extra["items"] == ["m2", "m5", "m9"] and a.fitted.extra["dropped_users"] == 1  # u2: 2 interactions
    for s in ("train", "valid", "test"):
        for k in a.splits[s]:
            np.testing.assert_array_equal(a.splits[s][k], b.splits[s][k])
    # u1: m2 m5 m9 -> valid (m2 -> m5), test (m2 m5 -> m9); u3: m5 m2 m9 m5 -> train (m5 -> m2)
    np.testing.assert_array_equal(a.splits["test"][TARGET], [3, 2])
    np.testing.assert_array_equal(a.splits["train"][HISTORY], [[2, 0, 0]])
    # through a config
    c = default_config()
    c.dataset = {"name": "sequential", "source": "file", "path": str(csv), "max_history": 3}
    c.task.name, c.model.name = "next_item", "sasrec"
    c.early_stopping.metric, c.early_stopping.mode = "ndcg@10", "max"
    validate(c)


@pytest.mark.parametrize("header,rows,match", [
    ("user_id,item,timestamp", [("u", "i", 1)], r"missing column\(s\) \['item_id'\]"),
    ("user_id,item_id,timestamp", [("u", "i", 1), ("u", "j", "noon")], r"inter.csv:3: column 'timestamp' expects an integer"),
    ("user_id,item_id,timestamp", [("u", "i", 1), ("u", "j", "")], r"inter.csv:3: column 'timestamp' \(the timestamp\) is empty: expected an integer"),
    ("user_id,item_id,timestamp", [("u", "i", 1), ("u", "j", 1.5)], r"'timestamp'.*(expects an integer|expected an integer)"),
])
def test_file_errors(tmp_path, header, rows, match):
    path = _write_csv(tmp_path / "inter.csv", rows, header)
    with pytest.raises(DataError, match=match):
        read_interactions(str(path))


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs dataset.path"):
        load_sequential(source="file")
    with pytest.raises(ConfigError, match="dataset.source='netflix'"):
        load_sequential(source="netflix")
    with pytest.raises(DataError, match="no such file"):
        load_sequential(source="file", path=str(tmp_path / "none.csv"))
    with pytest.raises(DataError, match="no user has 3 or more"):
        load_sequential(source="file", path=str(_write_csv(tmp_path / "few.csv", ROWS[3:5])))
