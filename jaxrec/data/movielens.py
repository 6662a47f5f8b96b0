"""MovieLens-100K in the GroupLens layout, as the default jaxrec CTR task.

The task (`shared/specs/movielens-task.md`): the 100,000 lines of `u.data` in file order,
joined with `u.user` and `u.item`; split `perm = default_rng(2024).permutation(100000)`,
train = perm[:80000], valid = perm[80000:90000], test = perm[90000:]; label rating >= 4;
ten categorical fields with vocabularies from train (0 = not seen in train). The
`genres` variant adds the multi-hot field of all genre flags.

The `history` variant adds behaviours and item content:
  * `hist_item` `[N, 50]` (+ `hist_item_length`): the user's earlier rated items, oldest
    first, the 50 most recent kept. Leakage-free: only events with a timestamp strictly
    before the row's (ties excluded), whatever split they are in (which items a user rated
    before is known at serving time; their ratings, the labels, are never used). Items are
    ids of the `item_id` vocabulary (0 = not in train) and read its table (`group='item_id'`);
    `combiner=None`, a sequence for attention models.
  * content of the target item: `genres` (multi-hot) and `title` (word tokens, the year
    removed; `release_year` is already a field);
  * side tables by item row id (`Dataset.side`): `item_title`, `item_genres` (+ `_length`)
    and `item_year`, the content of every item a history can hold; each split also keeps
    its rows' `timestamp` (not a feature), for builders such as the item graph.

Local files are checked against the SHA-256 of the GroupLens files (`SHA256`) after parsing
(so a malformed line is named first); a mismatch is a DataError naming the file and its line
count against the expected one ("truncated?"). Users who edit their copy on purpose pass
`verify=False` (`--config.dataset.verify=False`); ratings must still be in 1..5 and ids and
timestamps integers, errors naming `file:line`.

Where the data comes from, in order: the `data_dir` argument, `$JAXREC_DATA_DIR/ml-100k`,
then `~/.cache/jaxrec/ml-100k`, downloaded there from the official URL and checked
against the published MD5 if missing.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from jaxrec.data import encoding
from jaxrec.data.dataset import LABELS, Dataset, random_split, take
from jaxrec.data.features import Categorical, Sequence
from jaxrec.data.fitted import Fitted, apply_fitted
from jaxrec.errors import ConfigError, DataError

URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ZIP_MD5 = "0e33842e24a9c977be4e0107933c0723"  # published at URL + ".md5"
U_DATA_SHA256 = "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"
FILES = ("u.data", "u.user", "u.item", "u.genre")
# SHA-256 and line counts of the GroupLens files (u.data's as published; the others computed from
# a copy whose u.data matches it). `read_raw(verify=True)` checks them.
SHA256 = {
    "u.data": U_DATA_SHA256,
    "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
    "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    "u.genre": "48c0197cf7aa88ff61797dfe07ed2ffd3c5555c8b9f9430b738c053525461061",
}
LINES = {"u.data": 100_000, "u.user": 943, "u.item": 1_682, "u.genre": 19}
RATINGS = (1, 5)
FIELDS = ("user_id", "item_id", "age_bucket", "gender", "occupation", "zip_prefix",
          "release_year", "genre_first", "hour", "weekday")
AGE_EDGES = (18, 25, 35, 45, 50, 56)
AGE_NAMES = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
MAX_GENRES = 6  # the most genre flags any ml-100k movie has
MAX_TITLE = 8   # title words kept (longer titles keep their first 8)
MAX_HISTORY = 50


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jaxrec"


def download(dest: str | os.PathLike | None = None) -> Path:
    """Downloads and unpacks ml-100k into `dest` (default `~/.cache/jaxrec`); returns the
    `ml-100k` folder. Checks the archive's MD5 and `u.data`'s SHA-256."""
    dest = Path(dest or default_cache_dir())
    try:
        with urllib.request.urlopen(URL, timeout=30) as r:
            blob = r.read()
    except OSError as e:
        raise DataError(
            f"could not download MovieLens-100K from {URL} ({e}). This machine may be offline: "
            f"put a copy of the GroupLens ml-100k folder somewhere and pass "
            f"--config.dataset.data_dir=/path/to/ml-100k or set JAXREC_DATA_DIR=/path/containing/ml-100k"
        ) from None
    if hashlib.md5(blob).hexdigest() != ZIP_MD5:
        raise DataError(f"{URL}: MD5 {hashlib.md5(blob).hexdigest()} != published {ZIP_MD5}; refusing a changed archive")
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        z.extractall(dest)
    return dest / "ml-100k"


def find_data_dir(data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """Resolves the ml-100k folder (see module docstring); DataError if absent or incomplete."""
    if data_dir is not None:
        candidates = [Path(data_dir)]
    else:
        candidates = [Path(os.environ["JAXREC_DATA_DIR"]) / "ml-100k"] if "JAXREC_DATA_DIR" in os.environ else []
        candidates.append(default_cache_dir() / "ml-100k")
    for d in candidates:
        if d.is_dir():
            missing = [f for f in FILES if not (d / f).is_file()]
            if missing:
                raise DataError(f"MovieLens data dir {d} lacks {missing}; expected the GroupLens ml-100k layout ({', '.join(FILES)})")
            empty = [f for f in FILES if (d / f).stat().st_size == 0]
            if empty:
                raise DataError(f"MovieLens data dir {d}: file(s) {empty} are empty")
            return d
    if data_dir is not None and Path(data_dir).exists():
        raise DataError(f"MovieLens data dir {data_dir} is not a directory (dataset.data_dir); point it at the GroupLens ml-100k folder")
    if data_dir is not None:
        raise DataError(f"MovieLens data dir {data_dir} does not exist (dataset.data_dir); point it at the GroupLens ml-100k folder")
    if not allow_download:
        raise DataError(f"MovieLens-100K not found in {[str(c) for c in candidates]}")
    return download()


def _read_rows(path: Path, sep: str, ncols: int, encoding_: str = "utf-8") -> list[list[str]]:
    """Non-blank lines split into `ncols` fields; each row ends with its 1-based line number (int)."""
    rows = []
    with open(path, encoding=encoding_) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            parts = line.split(sep)
            if len(parts) != ncols:
                raise DataError(f"{path}:{lineno}: expected {ncols} {sep!r}-separated fields, got {len(parts)}: {line[:80]!r}")
            rows.append(parts + [lineno])
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _int(path: Path, row: list, col: int, name: str) -> int:
    try:
        return int(row[col])
    except ValueError:
        raise DataError(f"{path}:{row[-1]}: field {name!r} = {row[col][:80]!r} is not an integer") from None


def _ints(path: Path, rows: list[list], col: int, name: str) -> np.ndarray:
    return np.fromiter((_int(path, r, col, name) for r in rows), np.int64, len(rows))


def verify_files(data_dir: str | os.PathLike) -> None:
    """Checks the GroupLens files of `data_dir` against `SHA256`; DataError naming the first
    file that differs, with its line count against the expected one."""
    d = Path(data_dir)
    for name, expected in SHA256.items():
        digest = hashlib.sha256((d / name).read_bytes()).hexdigest()
        if digest == expected:
            continue
        with open(d / name, "rb") as fh:
            lines = sum(1 for _ in fh)
        want = LINES[name]
        how = ("truncated?" if lines < want else "lines added?") if lines != want else "same line count: values edited?"
        raise DataError(
            f"{d / name}: not the GroupLens ml-100k file: SHA-256 {digest[:16]}... instead of {expected[:16]}...; "
            f"{lines:,} lines, {want:,} expected ({how}). Restore the original (or delete the folder to download it), "
            "or pass verify=False (--config.dataset.verify=False) to use an edited copy on purpose"
        )


def read_raw(data_dir: str | os.PathLike | None = None, verify: bool = True) -> dict[str, np.ndarray]:
    """Reads and joins the GroupLens files into raw columns, one entry per `u.data` line.

    Checks every line (fields, integer ids / ratings / timestamps, ratings in 1..5, known users
    and items; errors name `file:line`), then, with `verify`, the files' SHA-256 (`verify_files`).

    Returns columns `[100000]`: the ten FIELDS (strings or ints), 'rating' (int),
    'timestamp' (int), 'genres' and 'title' (object arrays of genre-name / title-word lists).
    """
    d = find_data_dir(data_dir)
    ratings = _read_rows(d / "u.data", "\t", 4)
    cols = {n: _ints(d / "u.data", ratings, i, n) for i, n in enumerate(("user_id", "item_id", "rating", "timestamp"))}
    bad = np.flatnonzero((cols["rating"] < RATINGS[0]) | (cols["rating"] > RATINGS[1]))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{d / 'u.data'}:{ratings[i][-1]}: rating {int(cols['rating'][i])} is not in "
                        f"{RATINGS[0]}..{RATINGS[1]} ({len(bad)} such line(s))")
    genre_names = [r[0] for r in _read_rows(d / "u.genre", "|", 2)]

    users = {}
    for r in _read_rows(d / "u.user", "|", 5):
        age = _int(d / "u.user", r, 1, "age")
        users[_int(d / "u.user", r, 0, "user_id")] = (AGE_NAMES[int(np.searchsorted(AGE_EDGES, age, side="right"))], r[2], r[3], r[4][:2])
    items = {}
    for r in _read_rows(d / "u.item", "|", 5 + len(genre_names), encoding_="latin-1"):
        m = re.search(r"\((\d{4})\)\s*$", r[1])
        flags = [g for g, f in zip(genre_names, r[5:-1]) if f == "1"]
        words = re.findall(r"[a-z0-9]+", re.sub(r"\(\d{4}\)\s*$", "", r[1]).lower())
        items[_int(d / "u.item", r, 0, "item_id")] = (m.group(1) if m else "unk", flags[0] if flags else "unknown", flags, words)

    for r, u, it in zip(ratings, cols["user_id"], cols["item_id"]):
        if u not in users or it not in items:
            which = f"user {u} not in u.user" if u not in users else f"item {it} not in u.item"
            raise DataError(f"{d / 'u.data'}:{r[-1]}: {which}")
    if verify:
        verify_files(d)
    ufeat = [users[u] for u in cols["user_id"]]
    ifeat = [items[i] for i in cols["item_id"]]
    for k, name in enumerate(("age_bucket", "gender", "occupation", "zip_prefix")):
        cols[name] = np.array([f[k] for f in ufeat])
    cols["release_year"] = np.array([f[0] for f in ifeat])
    cols["genre_first"] = np.array([f[1] for f in ifeat])
    for k, name in ((2, "genres"), (3, "title")):
        cols[name] = np.empty(len(ifeat), dtype=object)
        cols[name][:] = [f[k] for f in ifeat]
    ts = cols["timestamp"]
    cols["hour"] = (ts // 3600) % 24
    cols["weekday"] = (ts // 86400 + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return cols


VARIANTS = ("default", "genres", "dynamic", "history")
# 'dynamic' variant: hash-table capacity of the user and item vocabularies (about twice the
# 943 users and 1,682 items, the load an open-addressing table wants).
DYNAMIC_CAPACITY = {"user_id": 2048, "item_id": 4096}


def features(variant: str = "default", dynamic_min_count: int = 1, dynamic_steps_to_live: int = 0) -> tuple:
    """The feature specs of the task: ten categorical fields (+ multi-hot `genres`). The
    'dynamic' variant reads `user_id` and `item_id` as raw ids through dynamic vocabularies
    (admitted after `dynamic_min_count` sightings, evicted after `dynamic_steps_to_live`
    steps unseen; `jaxrec.embedding.dynamic_vocab`) instead of a vocabulary fitted on train."""
    if variant not in VARIANTS:
        raise DataError(f"dataset.variant={variant!r}: expected one of {VARIANTS}")
    fs = tuple(Categorical(n) for n in FIELDS)
    if variant == "genres":
        return fs + (Sequence("genres", max_len=MAX_GENRES, combiner="mean"),)
    if variant == "history":  # + hist_item, added after encoding (`user_histories`)
        return fs + (Sequence("genres", max_len=MAX_GENRES, combiner="mean"), Sequence("title", max_len=MAX_TITLE, combiner="mean"))
    if variant == "dynamic":
        return tuple(Categorical(f.name, encoding="dynamic", vocab_size=DYNAMIC_CAPACITY[f.name], min_count=dynamic_min_count,
                                 steps_to_live=dynamic_steps_to_live) if f.name in DYNAMIC_CAPACITY else f for f in fs)
    return fs


MULTITASK_LABELS = ("like", "love", "rating")  # rating >= 4, rating == 5, the rating itself (regression)


def load_movielens_100k(data_dir: str | None = None, variant: str = "default", split_seed: int = 2024,
                        dynamic_min_count: int = 1, dynamic_steps_to_live: int = 0, labels: str = "click",
                        verify: bool = True, *, fitted: Fitted | None = None) -> Dataset:
    """The default MovieLens-100K CTR task (see module docstring) as a `Dataset`.

    Args:
      data_dir: the GroupLens `ml-100k` folder (None: env / cache / download).
      variant: 'default' (ten fields), 'genres' (plus multi-hot genres, max_len 6) or
        'dynamic' (user and item ids through dynamic vocabularies, see `features`).
      split_seed: seed of the row permutation (2024 is the reference split).
      dynamic_min_count, dynamic_steps_to_live: admission and eviction of the 'dynamic' variant.
      labels: 'click' (rating >= 4) or 'multitask': `[N, 3]` = (rating >= 4, rating == 5, rating),
        two binary tasks and a regression (`MULTITASK_LABELS`).
      verify: check the files against the GroupLens SHA-256 (`verify_files`); False for a copy
        edited on purpose (every line is still checked).
      fitted: the state of an earlier load (`Dataset.fitted` / `jaxrec.data.fitted.load_fitted`):
        its vocabularies are used instead of ones fitted on this train split; DataError naming
        the feature if it was fitted for another variant.
    Returns:
      Dataset with splits of 80,000 / 10,000 / 10,000 rows, grouped by `user_id` for GAUC.
    """
    if labels not in ("click", "multitask"):
        raise ConfigError(f"dataset.labels={labels!r}: expected 'click' or 'multitask'")
    raw = read_raw(data_dir, verify=verify)
    idx = random_split(len(raw["rating"]), (0.8, 0.1, 0.1), split_seed)
    specs = features(variant, dynamic_min_count, dynamic_steps_to_live)
    specs, vocabs = encoding.fit(specs, take(raw, idx["train"])) if fitted is None else apply_fitted(fitted, specs)
    state = Fitted(specs, vocabs)
    splits = {}
    for name, rows in idx.items():
        part = take(raw, rows)
        enc = encoding.encode(specs, vocabs, part, where=lambda i, rows=rows: f"u.data:{int(rows[i]) + 1}")
        r = part["rating"].astype(np.float32)
        enc[LABELS] = (r >= 4).astype(np.float32) if labels == "click" else np.stack([r >= 4, r == 5, r], axis=1).astype(np.float32)
        splits[name] = enc
    side = {}
    if variant == "history":
        items = encoding.encode(specs[1:2], vocabs, raw)["item_id"]  # every event's item row id
        hist, lengths = user_histories(raw["user_id"], raw["timestamp"], items)
        for name, rows in idx.items():  # timestamps ride along (not a feature), for graph builders
            splits[name].update(hist_item=hist[rows], hist_item_length=lengths[rows], timestamp=raw["timestamp"][rows])
        specs += (Sequence("hist_item", max_len=MAX_HISTORY, encoding="identity", vocab_size=specs[1].vocab_size,
                           group="item_id", combiner=None),)
        side = item_side_tables(specs, vocabs, raw, items)
    name = f"movielens100k{'' if variant == 'default' else '_' + variant}{'' if labels == 'click' else '_multitask'}"
    return Dataset(name=name, features=specs, splits=splits, group_key="user_id", side=side, fitted=state,
                   label_names=() if labels == "click" else MULTITASK_LABELS)


def user_histories(users: np.ndarray, timestamps: np.ndarray, items: np.ndarray,
                   max_len: int = MAX_HISTORY) -> tuple[np.ndarray, np.ndarray]:
    """Each event's behaviour sequence: the items `[N]` of the same user's events with a strictly
    earlier timestamp, oldest first, the `max_len` most recent kept.

    Args: users, timestamps, items: `[N]` per event (any order).
    Returns: (ids `[N, max_len]` int32, 0-padded at the end; lengths `[N]` int32).
    """
    order = np.lexsort((timestamps, users))  # by user, then time (stable: file order within a second)
    u, t = users[order].astype(np.int64), timestamps[order].astype(np.int64)
    starts = np.searchsorted(u, u, side="left")                # each event's user block start
    key = (u - u.min()) * (int(t.max() - t.min()) + 1) + (t - t.min())  # (user, time) as one sorted key
    earlier = np.searchsorted(key, key, side="left") - starts  # the user's events strictly before
    lengths = np.minimum(earlier, max_len)
    pos = np.arange(max_len)[None, :]
    src = starts[:, None] + (earlier - lengths)[:, None] + pos
    valid = pos < lengths[:, None]
    sorted_items = items[order]
    hist = np.where(valid, sorted_items[np.where(valid, src, 0)], 0)
    out, out_len = np.empty_like(hist), np.empty_like(lengths)
    out[order], out_len[order] = hist, lengths
    return out.astype(np.int32), out_len.astype(np.int32)


def item_side_tables(specs: tuple, vocabs: dict, raw: dict, items: np.ndarray) -> dict[str, np.ndarray]:
    """Content of every `item_id` row (0 = unknown: empty): `item_title [V, MAX_TITLE]`,
    `item_genres [V, MAX_GENRES]` (+ `_length`) and `item_year [V]`, ids of the train vocabularies."""
    by_name = {f.name: f for f in specs}
    vocab_size = by_name["item_id"].vocab_size
    first = np.full(vocab_size, -1)
    first[items[::-1]] = np.arange(len(items))[::-1]  # one event per item row
    rows = first[1:][first[1:] >= 0]
    enc = encoding.encode((by_name["title"], by_name["genres"], by_name["release_year"]), vocabs,
                          {k: raw[k][rows] for k in ("title", "genres", "release_year")})
    out = {}
    for name, key in (("item_title", "title"), ("item_genres", "genres"), ("item_year", "release_year")):
        table = np.zeros((vocab_size,) + enc[key].shape[1:], np.int32)
        table[items[rows]] = enc[key]
        out[name] = table
        if key != "release_year":
            length = np.zeros(vocab_size, np.int32)
            length[items[rows]] = enc[f"{key}_length"]
            out[f"{name}_length"] = length
    return out
