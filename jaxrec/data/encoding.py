"""Turns raw columns into the id / float arrays a model eats, as the feature specs say.

`fit(features, train_columns)` learns vocabularies, numeric quantile boundaries and mean / std
on the train split only and returns the specs with them resolved; `encode(features, vocabs,
columns)` applies them to any split. Both work on numpy column dicts, so every reader (MovieLens, Criteo, CSV/Parquet)
shares them. Hashing is stable across runs and machines (splitmix64 for integers, BLAKE2b
for strings), never Python's salted `hash`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jaxrec.data.features import Categorical, Feature, Numeric, Sequence, lengths_key
from jaxrec.errors import DataError

RowLocator = Callable[[int], str]  # row index -> "file:line" for error messages
MAX_VALUE_BYTES = 1 << 16  # readers' default longest categorical / sequence value, in UTF-8 bytes
log = logging.getLogger("jaxrec")


def _default_where(i: int) -> str:
    return f"row {i}"


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Stable 64-bit mix of integer ids `[...]` -> uint64 `[...]` (Steele et al., SplitMix64)."""
    z = np.asarray(x).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stable_hash(values: np.ndarray) -> np.ndarray:
    """Stable uint64 hash of integer or string values `[N]` -> `[N]`.

    Integers: `splitmix64` of the int64 value. Anything else: BLAKE2b-8 of the UTF-8 text of
    the value (little-endian), each distinct value hashed once. Strings are never copied into
    a fixed-width numpy array, so memory is bounded by the data, not by its longest value.
    """
    values = np.asarray(values)
    if values.dtype.kind in "iub":
        return splitmix64(values.astype(np.int64).view(np.uint64))
    if len(values) == 0:
        return np.zeros(0, np.uint64)
    coded = pc.dictionary_encode(_arrow_text(_to_text(values)))
    digests = np.fromiter(
        (int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8).digest(), "little") for u in coded.dictionary.to_pylist()),
        dtype=np.uint64, count=len(coded.dictionary),
    )
    return digests[coded.indices.to_numpy()]


def _objects(items: list) -> np.ndarray:
    """List -> 1-D object array `[N]` (never a 2-D array, whatever the items are)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _to_text(values: np.ndarray) -> np.ndarray:
    """Any array `[N]` -> object array of Python `str` `[N]` (`str(v)` of each value).

    Numbers go through numpy's own text (short, so a fixed-width copy is bounded); strings
    stay the Python objects they are, without a fixed-width copy.
    """
    if values.dtype.kind == "O":
        return _objects([v if type(v) is str else str(v) for v in values.tolist()])
    if values.dtype.kind == "U":
        return values.astype(object)
    return values.astype(str).astype(object)


def _arrow_text(tokens: np.ndarray) -> pa.Array:
    """Object array of `str` `[N]` -> pyarrow large_string array `[N]` (one copy of the bytes)."""
    return pa.array(tokens, type=pa.large_string())


def _missing_mask(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind in "OUS":
        return np.array([v is None or v == "" or (isinstance(v, float) and np.isnan(v)) for v in values.tolist()], bool)
    return np.zeros(values.shape, bool)


def _as_tokens(values: np.ndarray) -> np.ndarray:
    """Normalises a raw column `[N]` to int64 `[N]` or an object array of Python `str` `[N]`
    ('' = missing). Never a fixed-width unicode array: its memory would be N x the longest
    value x 4 bytes (one 10 MB id in a 1M-row column: 40 TB)."""
    values = np.asarray(values)
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        filled = np.where(np.isnan(values), 0, values)
        if np.all(filled == np.round(filled)):
            return filled.astype(np.int64)
        return values.astype(str).astype(object)  # float text is short
    if values.dtype.kind == "U":
        return values.astype(object)
    items = values.tolist()
    if items and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        return np.array(items, np.int64)
    return _objects(["" if v is None else v if type(v) is str else str(v) for v in items])


def _split_sequences(values: np.ndarray, sep: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw list-valued column `[N]` -> flat tokens `[T]` and per-row counts `[N]`."""
    lists = []
    for v in np.asarray(values, dtype=object).tolist():
        if isinstance(v, str):
            lists.append(v.split(sep) if v else [])
        elif v is None or (isinstance(v, float) and np.isnan(v)):
            lists.append([])
        else:
            lists.append(list(v))
    counts = np.array([len(x) for x in lists], np.int64)
    flat = [t for x in lists for t in x]
    return _as_tokens(_objects(flat) if flat else np.zeros(0, np.int64)), counts


def _fit_vocab(tokens: np.ndarray, min_count: int) -> np.ndarray:
    """Tokens `[T]` -> the sorted distinct non-missing values seen >= `min_count` times `[V]`.

    Strings sort in code-point order (numpy's unicode order; pyarrow sorts UTF-8 bytes,
    which is the same order), so ids are those of `np.unique` on the values.
    """
    if tokens.dtype.kind != "O":
        uniq, counts = np.unique(tokens, return_counts=True)
        return uniq[counts >= min_count]
    tokens = tokens[~_missing_mask(tokens)]
    if len(tokens) == 0:
        return _objects([])
    vc = pc.value_counts(_arrow_text(tokens))
    values, counts = vc.field("values"), vc.field("counts").to_numpy()
    keep = values.filter(pa.array(counts >= min_count))
    return _objects(keep.take(pc.sort_indices(keep)).to_pylist())


def _lookup(vocab: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Id of each token `[N]` in the sorted vocabulary `[V]`: 1 + its position, 0 if absent."""
    if len(vocab) == 0 or len(tokens) == 0:
        return np.zeros(len(tokens), np.int32)
    if vocab.dtype.kind == "O" or tokens.dtype.kind == "O":  # strings (or ints in train, strings elsewhere)
        index = pc.index_in(_arrow_text(_to_text(tokens)), value_set=_arrow_text(_to_text(vocab)))
        return (pc.fill_null(index, -1).to_numpy() + 1).astype(np.int32)
    pos = np.clip(np.searchsorted(vocab, tokens), 0, len(vocab) - 1)
    return np.where(vocab[pos] == tokens, pos + 1, 0).astype(np.int32)


def split_uint64(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint64 hashes `[...]` -> (hi, lo) uint32 `[...]` (JAX runs with x64 off)."""
    h = np.asarray(h).astype(np.uint64)
    return (h >> np.uint64(32)).astype(np.uint32), (h & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def dynamic_keys(tokens: np.ndarray) -> np.ndarray:
    """Raw values `[N]` (ints, or strings with ''/None missing) -> keys uint32 `[N, 2]` (hi, lo of
    `stable_hash`), the input of a dynamic vocabulary; missing values -> (0, 0)."""
    keys = np.stack(split_uint64(stable_hash(tokens) if len(tokens) else np.zeros(0, np.uint64)), axis=1)
    if tokens.dtype.kind in "OUS":
        keys[_missing_mask(tokens)] = 0
    return keys


def _ids(feature: Categorical | Sequence, vocab, tokens: np.ndarray, where: RowLocator, rows: np.ndarray) -> np.ndarray:
    if feature.encoding == "dynamic":
        return dynamic_keys(tokens)
    if feature.encoding == "vocab":
        return _lookup(vocab, tokens)
    if feature.encoding == "hash":
        ids = (stable_hash(tokens) % np.uint64(feature.hash_buckets - 1)).astype(np.int64) + 1
        if tokens.dtype.kind in "OUS":
            ids[_missing_mask(tokens)] = 0
        return ids.astype(np.int32)
    # identity: the column already holds ids; anything outside [0, vocab_size) is an error.
    if tokens.dtype.kind not in "iu":
        values = tokens.tolist()
        i = next((i for i, v in enumerate(values) if not (isinstance(v, str) and v.lstrip("-").isdigit())), 0)
        at = f"{where(int(rows[i]))}: " if len(values) else ""
        raise DataError(f"{at}feature {feature.name!r}: encoding='identity' needs integer ids, got {values[i] if values else tokens.dtype!r} "
                        "(the column must hold integers: floats or text cannot be read as ids)")
    bad = np.flatnonzero((tokens < 0) | (tokens >= feature.vocab_size))
    if len(bad):
        i = bad[0]
        raise DataError(
            f"{where(int(rows[i]))}: feature {feature.name!r} has id {int(tokens[i])} outside "
            f"[0, {feature.vocab_size}) (encoding='identity', hashing off); raise vocab_size or use encoding='hash'"
        )
    return tokens.astype(np.int32)


def _check(feature: Feature) -> None:
    if isinstance(feature, Numeric):
        return
    if feature.encoding == "hash" and not (feature.hash_buckets and feature.hash_buckets >= 2):
        raise DataError(f"feature {feature.name!r}: encoding='hash' needs hash_buckets >= 2")
    if feature.encoding == "identity" and not feature.vocab_size:
        raise DataError(f"feature {feature.name!r}: encoding='identity' needs vocab_size")
    if feature.encoding == "dynamic":
        if isinstance(feature, Sequence):
            raise DataError(f"feature {feature.name!r}: encoding='dynamic' is for categorical features only; "
                            "use 'hash' for sequences")
        if not (feature.vocab_size and feature.vocab_size >= 2):
            raise DataError(f"feature {feature.name!r}: encoding='dynamic' needs vocab_size >= 2 (the table's capacity)")
    if feature.encoding not in ("vocab", "hash", "identity", "dynamic"):
        raise DataError(f"feature {feature.name!r}: unknown encoding {feature.encoding!r}; "
                        "expected vocab, hash, identity or dynamic")


def _column(columns: Mapping[str, np.ndarray], feature: Feature) -> np.ndarray:
    if feature.source not in columns:
        raise DataError(f"feature {feature.name!r} reads column {feature.source!r}, which is not in the data; columns: {sorted(columns)}")
    return np.asarray(columns[feature.source])


def fit(features: tuple[Feature, ...], train: Mapping[str, np.ndarray], where: RowLocator | None = None,
        origin: str = "the train split") -> tuple[tuple[Feature, ...], dict[str, np.ndarray]]:
    """Learns vocabularies, and the numeric features' quantile boundaries and mean / std, from the train split.

    Args:
      features: specs, `vocab_size` possibly unresolved.
      train: raw train columns, each `[N]`.
      where: names train row i in errors (e.g. "clicks.csv:17").
      origin: names the train data in errors (e.g. its file).
    Returns:
      (features with `vocab_size` set, and for numeric ones `boundaries` (from `quantiles`) and
      `mean` / `std` (transform='standardize') as `fit_numeric` computes them; {feature name:
      sorted vocabulary array}); vocab id of `vocab[k]` is `k + 1`, id 0 is out-of-vocabulary.
    Raises:
      DataError: a numeric feature to fit has no finite train value (naming `origin`, feature and
        column), or a non-number (naming the row).
    """
    resolved, vocabs = [], {}
    for f in features:
        _check(f)
        if isinstance(f, Numeric):
            resolved.append(fit_numeric(f, _column(train, f), where or _default_where, origin) if f.needs_fit else f)
            continue
        if f.encoding == "vocab":
            raw = _column(train, f)
            tokens = _split_sequences(raw, f.separator)[0] if isinstance(f, Sequence) else _as_tokens(raw)
            vocabs[f.name] = _fit_vocab(tokens, f.min_count)
            f = dataclasses.replace(f, vocab_size=len(vocabs[f.name]) + 1)
        elif f.encoding == "hash":
            f = dataclasses.replace(f, vocab_size=f.hash_buckets)
        resolved.append(f)
    return tuple(resolved), vocabs


def fit_numeric(f: Numeric, raw: np.ndarray, where: RowLocator | None = None, origin: str = "the train split") -> Numeric:
    """The spec `f` with its train-fitted values set, from its raw train column `[N]`.

    Let v be the finite train values after 'log1p' / 'log_square' (missing ones left out).
    transform='standardize' (mean unset): mean = mean(v), std = sqrt(mean((v - mean)^2)) (1.0 if
    that is 0). quantiles=q (boundaries unset): boundaries = the distinct values, ascending, of
    `numpy.quantile(v', [k / q for k = 1..q-1])` (linear interpolation), v' = v standardized if
    the transform is 'standardize'. E.g. v = 1..10, q = 4: (3.25, 5.5, 7.75).
    """
    x, missing = _numeric_values(f, raw, where or _default_where)
    v = x[~missing]
    if len(v) == 0:
        raise DataError(f"{origin}: numeric feature {f.name!r} (column {f.source!r}) has no finite value in the train split "
                        f"to fit {'quantile buckets' if f.quantiles is not None else 'the standardization'} on")
    if f.transform == "standardize" and f.mean is None:
        mean, std = float(np.mean(v)), float(np.std(v))
        f = dataclasses.replace(f, mean=mean, std=std if std > 0 else 1.0)
    if f.quantiles is not None and f.boundaries is None:
        if f.transform == "standardize":
            v = (v - f.mean) / f.std
        cuts = np.quantile(v, np.arange(1, f.quantiles) / f.quantiles)
        f = dataclasses.replace(f, boundaries=tuple(float(b) for b in np.unique(cuts)))
    return f


def _numeric_values(f: Numeric, raw: np.ndarray, where: RowLocator) -> tuple[np.ndarray, np.ndarray]:
    """Raw numeric column `[N]` -> (float64 values `[N]` after 'log1p' / 'log_square' (not 'standardize'),
    missing mask `[N]`: empty, NaN or +-inf; those values are 0)."""
    if raw.dtype.kind in "OUS":
        raw = np.array([np.nan if v is None or v == "" else v for v in raw.tolist()], dtype=object)
    try:
        x = raw.astype(np.float64)
    except ValueError:
        for i, v in enumerate(raw.tolist()):
            try:
                float("nan" if v in (None, "") else v)
            except ValueError:
                raise DataError(f"{where(i)}: feature {f.name!r} (column {f.source!r}) expects a number, got {v!r}") from None
        raise
    missing = ~np.isfinite(x)
    x = np.where(missing, 0.0, x)
    if f.transform == "log1p":
        x = np.log1p(np.maximum(x, 0.0))
    elif f.transform == "log_square":
        x = np.where(x > 2, np.floor(np.log(np.maximum(x, 1.0)) ** 2), x)
    return x, missing


def _numeric(f: Numeric, raw: np.ndarray, where: RowLocator) -> np.ndarray:
    """Raw column `[N]` -> float32 `[N]` (missing: `fill_value`), or with boundaries int32 bucket ids `[N]` (missing: 0)."""
    if f.needs_fit:
        raise DataError(f"feature {f.name!r}: quantile boundaries / mean and std are not fitted yet (encoding.fit fits them)")
    x, missing = _numeric_values(f, raw, where)
    if f.transform == "standardize":
        x = (x - f.mean) / f.std
    if f.boundaries is not None:
        ids = np.digitize(x, np.asarray(f.boundaries)) + 1
        return np.where(missing, 0, ids).astype(np.int32)
    return np.where(missing, f.fill_value, x).astype(np.float32)


def numeric_counts(
    features: tuple[Feature, ...],
    columns: Mapping[str, np.ndarray],
    nulls: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict[str, int]]:
    """How many values of each numeric feature's raw column `[N]` `encode` treats as missing, by cause.

    Args:
      features: specs; only `Numeric` ones are counted.
      columns: raw columns `[N]` (float, int, or text).
      nulls: optional {column: bool `[N]`}, the cells known to be empty (nulls of a file read
        with pyarrow: empty cells and NA spellings such as NA, nan, null); in a float column
        they read as NaN and would otherwise count as NaN.
    Returns:
      {feature name: {'missing': m, 'nan': n, 'inf': k}}: m = empty cells (the `nulls` mask;
      None or '' in a text column), n = NaN values among the rest, k = +inf or -inf values.
      All of them encode as missing (`fill_value`, or bucket id 0): the counts make it visible.
    """
    out = {}
    for f in features:
        if not isinstance(f, Numeric):
            continue
        raw = _column(columns, f)
        empty = np.zeros(len(raw), bool)
        if raw.dtype.kind in "OUS":
            items = raw.tolist()
            empty = np.array([v is None or v == "" for v in items], bool)
            x = np.full(len(raw), 0.0)
            for i, v in enumerate(items):
                if not empty[i]:
                    try:
                        x[i] = float(v)
                    except (TypeError, ValueError):
                        pass  # `encode` names it
        else:
            x = raw.astype(np.float64)
        if nulls is not None and f.source in nulls:
            empty |= np.asarray(nulls[f.source], bool)
        out[f.name] = {"missing": int(empty.sum()), "nan": int((np.isnan(x) & ~empty).sum()),
                       "inf": int((np.isinf(x) & ~empty).sum())}
    return out


def encode(
    features: tuple[Feature, ...],
    vocabs: Mapping[str, np.ndarray],
    columns: Mapping[str, np.ndarray],
    where: RowLocator | None = None,
) -> dict[str, np.ndarray]:
    """Encodes raw columns `[N]` with fitted specs.

    Returns a dict: categorical and bucketized numeric -> int32 `[N]` (encoding='dynamic': keys
    uint32 `[N, 2]`, see `dynamic_keys`); sequences -> int32
    `[N, max_len]` plus int32 lengths `[N]` under `lengths_key(name)`; numeric -> float32 `[N]`.
    `where(i)` names row i in errors (e.g. "ratings.csv:17").
    """
    where = where or _default_where
    out: dict[str, np.ndarray] = {}
    for f in features:
        raw = _column(columns, f)
        if isinstance(f, Numeric):
            out[f.name] = _numeric(f, raw, where)
        elif isinstance(f, Categorical):
            out[f.name] = _ids(f, vocabs.get(f.name), _as_tokens(raw), where, np.arange(len(raw)))
        else:
            tokens, counts = _split_sequences(raw, f.separator)
            rows = np.repeat(np.arange(len(raw)), counts)
            ids = _ids(f, vocabs.get(f.name), tokens, where, rows)
            out[f.name], out[lengths_key(f.name)] = pack_sequences(ids, counts, f.max_len, f.truncate)
            long = counts > f.max_len
            if long.any():
                log.warning("feature %r: %d of %d rows have more than max_len=%d ids; %d ids dropped (truncate=%r)",
                            f.name, int(long.sum()), len(counts), f.max_len, int((counts - f.max_len)[long].sum()), f.truncate)
    return out


def pack_sequences(flat: np.ndarray, counts: np.ndarray, max_len: int, truncate: str = "head") -> tuple[np.ndarray, np.ndarray]:
    """Flat ids `[T]` with per-row counts `[N]` -> padded `[N, max_len]` int32 and lengths `[N]`.

    Rows longer than `max_len` keep their first (`truncate='head'`) or last ('tail') tokens.
    """
    n = len(counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    lengths = np.minimum(counts, max_len)
    offset = np.where(counts > max_len, counts - max_len, 0) if truncate == "tail" else np.zeros(n, np.int64)
    pos = np.arange(max_len)[None, :]
    src = starts[:, None] + offset[:, None] + pos
    valid = pos < lengths[:, None]
    padded = np.where(valid, flat[np.where(valid, src, 0)] if len(flat) else 0, 0)
    return padded.astype(np.int32), lengths.astype(np.int32)


def check_binary_labels(labels: np.ndarray, where: RowLocator | None = None, field: str = "label", hint: str = "") -> np.ndarray:
    """Validates labels `[N]` are in {0, 1}; returns float32 `[N]`. Errors name the first bad row
    (`where(i)`), `field` and the value, and end with `hint`."""
    where = where or _default_where
    try:
        y = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError):  # e.g. a Parquet label column of strings 'yes' / 'no'
        values = np.asarray(labels, dtype=object).tolist()
        i = next(i for i, v in enumerate(values) if not _is_number(v))
        raise DataError(f"{where(i)}: {field} = {values[i]!r} is not in {{0, 1}} (the label column must hold numbers){hint}") from None
    bad = np.flatnonzero(~np.isin(y, (0.0, 1.0)))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{where(i)}: {field} = {np.asarray(labels)[i].item()!r} is not in {{0, 1}} ({len(bad)} bad row(s) in all){hint}")
    return y.astype(np.float32)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
