"""Next-item recommendation data: each user's interactions in time order, split leave-one-out.

The protocol (RecBole's for sequential models: `eval_args = {split: {'LS': 'valid_and_test'},
order: 'TO', mode: 'full'}`):

  * each user's interactions are sorted by timestamp, ties broken by the (remapped) item id
    (a stable, stated order; RecBole keeps the file order among equal timestamps);
  * items are remapped to ids 1..N in the order of their raw ids (sorted; MovieLens's ids
    1..1682 stay as they are); id 0 is padding;
  * for a user with items i_1 .. i_n (n >= 3): the test example is (history i_1..i_{n-1},
    target i_n), the valid example (i_1..i_{n-2}, i_{n-1}), and every earlier prefix a train
    example (i_1..i_{t-1}, i_t) for t = 2 .. n-2. Histories keep their `max_history` most recent
    items. A user with fewer than 3 interactions cannot be split: dropped and counted
    (`Dataset.fitted.extra['dropped_users']`).

Columns of every split (N rows, L = `max_history`):
  history          int32 `[N, L]`  the history, oldest first, RIGHT-padded with 0: row r holds its
                                   items in positions 0 .. history_length[r] - 1 (RecBole's layout;
                                   a causal model reads the last real position, history_length - 1)
  history_length   int32 `[N]`     1 .. L
  target           int32 `[N]`     the next item's id (an input too: the ranking hook reads it)
  labels           int32 `[N]`     = target
  user             int32 `[N]`     the user's index among the users kept (0-based, sorted raw ids;
                                   not a batch key)
Side table `item_train_count` int64 `[N + 1]`: how often each item occurs among the users' train
interactions (all but their last two): the popularity baseline's scores.

Sources (`dataset.source`):
  'movielens'  MovieLens-100K's `u.data` through `jaxrec.data.movielens.read_raw` (`data_dir`,
               `verify` as there): 943 users, 1,682 items, 100,000 ratings (every rating is an
               interaction, whatever its value, as RecBole's ml-100k).
  'file'       `dataset.path`: a CSV (header row) or Parquet file with columns `dataset.columns`
               (default `('user_id', 'item_id', 'timestamp')`): user and item ids any strings or
               integers, timestamps integers (Parquet timestamps are read as seconds). Errors name
               the file and the row.
`max_users` > 0 keeps the first that many users (sorted raw ids) before the split: a small slice
for tests.
"""

from __future__ import annotations

import hashlib

import numpy as np

from jaxrec.data.dataset import LABELS, SPLITS, Dataset
from jaxrec.data.features import Sequence, lengths_key
from jaxrec.data.fitted import Fitted
from jaxrec.errors import ConfigError, DataError

HISTORY, TARGET, USER = "history", "target", "user"
ITEM_COUNT = "item_train_count"
SOURCES = ("movielens", "file")
MIN_INTERACTIONS = 3  # one train target, one valid, one test
DEFAULT_COLUMNS = ("user_id", "item_id", "timestamp")


def read_interactions(path: str, columns: tuple = DEFAULT_COLUMNS, format: str = "auto",
                      delimiter: str = ",") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users `[M]`, items `[M]`, timestamps int64 `[M]`) of a CSV / Parquet interactions file.

    Users and items come back as int64 if every id is a non-negative integer (so they sort as
    numbers), else as strings. DataError names the file (and the line of a CSV) for a missing
    column, an empty or non-integer timestamp, an empty id.
    """
    from jaxrec.data.tabular import _read  # the tabular reader's parsing and file:line errors

    if len(tuple(columns)) != 3:
        raise ConfigError(f"dataset.columns={tuple(columns)}: the (user, item, timestamp) column names, three")
    user_c, item_c, time_c = (str(c) for c in columns)
    cols, _, where = _read(str(path), format, delimiter, {user_c: "text", item_c: "text", time_c: "int"},
                           scalar={user_c, item_c})
    t = cols[time_c]
    if np.issubdtype(t.dtype, np.datetime64):
        t = t.astype("datetime64[s]").astype(np.int64)
    elif t.dtype.kind == "f":  # nulls (or a float Parquet column)
        bad = np.flatnonzero(~np.isfinite(t) | (t != np.round(t)))
        if len(bad):
            shown = "empty" if np.isnan(t[bad[0]]) else f"{float(t[bad[0]])!r}"
            raise DataError(f"{where(int(bad[0]))}: column {time_c!r} (the timestamp) is {shown}: expected an "
                            f"integer ({len(bad):,} row(s) are not)")
        t = t.astype(np.int64)
    elif t.dtype.kind not in "iu":
        raise DataError(f"{path}: column {time_c!r} (the timestamp) has type {t.dtype}: expected integers")
    out = []
    for name in (user_c, item_c):
        v = cols[name].astype(str)
        empty = np.flatnonzero(np.char.str_len(v) == 0)
        if len(empty):
            raise DataError(f"{where(int(empty[0]))}: column {name!r} is empty ({len(empty):,} row(s))")
        digits = np.char.isdigit(v)
        out.append(v.astype(np.int64) if digits.all() and np.char.str_len(v).max() < 19 else v)  # integer ids sort as numbers
    return out[0], out[1], t.astype(np.int64)


def leave_one_out(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, max_history: int = 50
                  ) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray, np.ndarray, int]:
    """The leave-one-out splits of interactions (module docstring).

    Args:
      users, items: raw ids `[M]` (any sortable dtype); timestamps: int `[M]`.
      max_history: L, the most recent items a history keeps.
    Returns:
      (splits {split: columns}, the raw item id of each id 1..N `[N]`, the raw user ids kept
      `[U]`, the number of users dropped for having fewer than 3 interactions).
    """
    L = int(max_history)
    if L < 1:
        raise ConfigError(f"dataset.max_history={max_history} must be >= 1")
    item_raw, item_ids = np.unique(items, return_inverse=True)
    item_ids = item_ids.reshape(-1).astype(np.int64) + 1
    user_raw, user_idx = np.unique(users, return_inverse=True)
    user_idx = user_idx.reshape(-1)
    order = np.lexsort((item_ids, np.asarray(timestamps, np.int64), user_idx))  # user, then time, then item id
    u, it = user_idx[order], item_ids[order]
    counts = np.bincount(u, minlength=len(user_raw))
    keep = counts >= MIN_INTERACTIONS
    dropped = int((~keep).sum())
    if not keep.any():
        raise DataError(f"no user has {MIN_INTERACTIONS} or more interactions ({len(user_raw):,} users, "
                        f"{len(items):,} interactions): leave-one-out needs a train, a valid and a test item per user")
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows = {s: [] for s in SPLITS}  # (user, position of the target in the user's sequence)
    for uid in np.flatnonzero(keep):
        n = counts[uid]
        rows["train"] += [(uid, t) for t in range(1, n - 2)]
        rows["valid"].append((uid, n - 2))
        rows["test"].append((uid, n - 1))
    counts_train = np.zeros(len(item_raw) + 1, np.int64)
    for uid in np.flatnonzero(keep):
        np.add.at(counts_train, it[start[uid]:start[uid] + counts[uid] - 2], 1)
    kept_index = np.cumsum(keep) - 1  # a user's row in the kept users
    splits = {}
    for s in SPLITS:
        pairs = np.asarray(rows[s], np.int64).reshape(-1, 2)
        uid, pos = pairs[:, 0], pairs[:, 1]
        length = np.minimum(pos, L)
        first = start[uid] + pos - length  # the oldest item kept
        idx = first[:, None] + np.arange(L)[None, :]
        hist = np.where(np.arange(L)[None, :] < length[:, None], it[np.minimum(idx, len(it) - 1)], 0)
        target = it[start[uid] + pos]
        splits[s] = {HISTORY: hist.astype(np.int32), lengths_key(HISTORY): length.astype(np.int32),
                     TARGET: target.astype(np.int32), LABELS: target.astype(np.int32), USER: kept_index[uid].astype(np.int32)}
    splits["__counts__"] = counts_train
    return splits, item_raw, user_raw[keep], dropped


def load_sequential(source: str = "movielens", path: str | None = None, data_dir: str | None = None,
                    verify: bool = True, max_history: int = 50, max_users: int = 0, columns: tuple = DEFAULT_COLUMNS,
                    format: str = "auto", delimiter: str = ",", *, fitted: Fitted | None = None) -> Dataset:
    """The next-item `Dataset` of a source (module docstring).

    Args:
      source: 'movielens' (ml-100k's u.data) or 'file' (`path`).
      path: the interactions file of source='file' (CSV or Parquet).
      data_dir, verify: where MovieLens lies and whether its files are checked (`jaxrec.data.movielens`).
      max_history: L, the history length kept (`[N, L]` columns).
      max_users: keep only the first this many users (0 = all).
      columns: the (user, item, timestamp) column names of a file.
      format, delimiter: of a file ('auto' | 'csv' | 'parquet'; the CSV delimiter).
      fitted: an earlier load's state: its item mapping must be this data's (DataError otherwise).
    Returns:
      Dataset 'sequential/<source>': feature `history` (`Sequence`, identity ids, vocab_size N + 1),
      inputs ('target',), splits as in the module docstring, side `item_train_count [N + 1]`.
    """
    if source not in SOURCES:
        raise ConfigError(f"dataset.source={source!r}: expected one of {SOURCES}")
    if source == "movielens":
        if path:
            raise ConfigError("dataset.path is the interactions file of dataset.source='file'; MovieLens is read "
                              "from dataset.data_dir")
        from jaxrec.data.movielens import find_data_dir, read_raw

        raw = read_raw(data_dir, verify=verify)
        users, items, times = raw["user_id"], raw["item_id"], raw["timestamp"]
        where = "MovieLens-100K u.data"
        data_dir = str(find_data_dir(data_dir))  # kept in the fitted state: item side data (titles) live there
    else:
        if not path:
            raise ConfigError("dataset.source='file' needs dataset.path (a CSV or Parquet file of user, item, timestamp)")
        users, items, times = read_interactions(path, tuple(columns), format, delimiter)
        where = str(path)
    if int(max_users) > 0:
        chosen = np.unique(users)[:int(max_users)]
        keep = np.isin(users, chosen)
        users, items, times = users[keep], items[keep], times[keep]
    splits, item_raw, user_raw, dropped = leave_one_out(users, items, times, max_history)
    counts = splits.pop("__counts__")
    raw_items = [x.item() if hasattr(x, "item") else x for x in item_raw]
    digest = hashlib.sha256(np.asarray(item_raw).astype(str).astype("U").tobytes()).hexdigest()
    if fitted is not None and fitted.extra.get("items_sha256") not in (None, digest):
        raise DataError(f"{where}: its items ({len(item_raw):,}) are not those of the fitted state "
                        f"({fitted.extra.get('num_items')} items, fitted on {fitted.extra.get('source')}): item ids would differ")
    spec = Sequence(HISTORY, max_len=int(max_history), encoding="identity", combiner=None, vocab_size=len(item_raw) + 1)
    extra = {"source": where, **({"data_dir": data_dir} if source == "movielens" else {}), "num_items": len(item_raw), "num_users": len(user_raw), "dropped_users": dropped,
             "items_sha256": digest, "items": [str(x) for x in raw_items]}
    return Dataset(name=f"sequential/{source}", features=(spec,), splits=splits, inputs=(TARGET,),
                   side={ITEM_COUNT: counts}, fitted=Fitted((spec,), {}, extra), label_names=(TARGET,))


__all__ = ["HISTORY", "ITEM_COUNT", "MIN_INTERACTIONS", "SOURCES", "TARGET", "USER", "leave_one_out",
           "load_sequential", "read_interactions"]
