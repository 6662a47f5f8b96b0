"""Criteo display-advertising click logs (Kaggle DAC / Terabyte format) -> `Dataset`.

Format: a headerless, tab-separated text file (plain, or compressed with an extension
pyarrow recognises, e.g. `.gz`, `.bz2`), one ad impression per line, 40 fields:

    label <TAB> I1 ... I13 <TAB> C1 ... C26

* label: 1 = clicked, 0 = not clicked.
* I1..I13: integer features (mostly counts; I2 can be negative). Empty = missing.
* C1..C26: categorical features, anonymised by Criteo to 8 hex digits. Empty = missing.

The file is streamed in chunks with pyarrow and every chunk is encoded at once into
compact int32 arrays, so memory stays about rows x 40 x 4 bytes however large the file is
(plus, for `encoding='vocab'`, one dictionary of the distinct values of each C column).
Then a seeded random permutation of the rows splits them into train / valid / test
(`dataset.random_split`), and vocabularies are built from the train rows only.

Blank lines are skipped. Errors name the file and the 1-based line.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from jaxrec.data.encoding import MAX_VALUE_BYTES, check_binary_labels, encode, fit
from jaxrec.data.dataset import LABELS, Dataset, random_split
from jaxrec.data.features import Categorical, Feature, Numeric
from jaxrec.data.fitted import Fitted, apply_fitted
from jaxrec.errors import ConfigError, DataError

INT_COLUMNS = tuple(f"I{i}" for i in range(1, 14))
CAT_COLUMNS = tuple(f"C{i}" for i in range(1, 27))
COLUMNS = ("label",) + INT_COLUMNS + CAT_COLUMNS

# numeric='bucketize': x -> floor(log(x)^2) for x > 2 (the usual Criteo transform; values
# <= 2, including I2's negatives, are kept), then one bucket per integer value in
# [-3, 255]. Ids: 0 = missing, 1 = below -3, 2 + (v + 3) for v in [-3, 255), and the top id
# for v >= 255 (x >= e^16, about 8.9 million). vocab_size = 261.
LOG_SQUARE_BOUNDARIES = tuple(float(b) for b in range(-3, 256))

_BYTES_PER_ROW = 256  # generous estimate of a Criteo line, to size pyarrow read blocks
_MIN_BLOCK = 1 << 16  # a block must hold at least one whole line
_MAX_BLOCK = 1 << 30
_INT = re.compile(r"[+-]?[0-9]+")


def load_criteo(
    path: str,
    *,
    encoding: str = "hash",
    hash_buckets: int = 1_000_000,
    min_count: int = 10,
    numeric: str = "bucketize",
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    split_seed: int = 2024,
    chunk_rows: int = 1_000_000,
    max_rows: int | None = None,
    max_value_bytes: int | None = MAX_VALUE_BYTES,
    fitted: Fitted | None = None,
) -> Dataset:
    """Reads a Criteo-format TSV file into an encoded train/valid/test `Dataset`.

    Args:
      path: the TSV file (see the module docstring for the format).
      encoding: how C1..C26 become ids. 'hash': stable hash into `[1, hash_buckets)`, 0 =
        missing, one pass over the file. 'vocab': one id per value seen at least
        `min_count` times in the train split (ids `1..V` in sorted value order), 0 = missing,
        rare or unseen in train.
      hash_buckets: embedding rows per C feature for 'hash' (id 0 included).
      min_count: 'vocab' threshold.
      numeric: how I1..I13 are fed. 'bucketize' (default): `floor(log(x)^2)` for x > 2,
        bucketized with `LOG_SQUARE_BOUNDARIES` into int32 ids, 0 = missing (embedded like
        the C features, vocab_size 261). 'float': `log1p(max(x, 0))` as float32, missing = 0.
      split: train/valid/test fractions of a seeded random permutation of the rows.
      split_seed: seed of that permutation.
      chunk_rows: about how many rows are parsed and encoded at a time (sets pyarrow's
        block size); bounds the memory of the raw text, not the result.
      max_rows: read only the first `max_rows` rows (for quick experiments).
      max_value_bytes: the longest C value accepted, in UTF-8 bytes (default 64 KiB; None:
        no limit); a longer one is a DataError naming `path:LINE`, the column and the length
        (Criteo values are 8 hex digits: a huge one means a damaged file).
      fitted: the state of an earlier load (`Dataset.fitted` / `jaxrec.data.fitted.load_fitted`):
        with encoding='vocab', its vocabularies are used instead of ones counted on this train
        split; it must match the features (DataError naming the feature).

    Returns:
      `Dataset` named 'criteo' with `group_key=None`. Each split holds, for N_split rows:
      `I1..I13` int32 `[N]` (float32 `[N]` with numeric='float'), `C1..C26` int32 `[N]`,
      and float32 labels `[N]` under `LABELS`.

    Raises:
      ConfigError: an argument is invalid.
      DataError: the file is missing, empty or malformed; the message names `path:LINE`.

    (~75 lines of code on purpose: a third are the argument checks above; the rest is one
    streaming pass whose per-chunk state, parts, line offsets and vocabulary counts, the
    encoding step reads back.)
    """
    if encoding not in ("hash", "vocab"):
        raise ConfigError(f"load_criteo: encoding must be 'hash' or 'vocab', got {encoding!r}")
    if numeric not in ("bucketize", "float"):
        raise ConfigError(f"load_criteo: numeric must be 'bucketize' or 'float', got {numeric!r}")
    if encoding == "hash" and hash_buckets < 2:
        raise ConfigError(f"load_criteo: hash_buckets must be >= 2, got {hash_buckets}")
    if encoding == "vocab" and min_count < 1:
        raise ConfigError(f"load_criteo: min_count must be >= 1, got {min_count}")
    if max_value_bytes is not None and (isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int) or max_value_bytes < 1):
        raise ConfigError(f"load_criteo: max_value_bytes must be a positive integer or None, got {max_value_bytes!r}")
    if chunk_rows < 1 or (max_rows is not None and max_rows < 1):
        raise ConfigError(f"load_criteo: chunk_rows and max_rows must be >= 1, got {chunk_rows}, {max_rows}")
    try:
        random_split(0, split, split_seed)  # validates the fractions before the long read
    except ValueError as e:
        raise ConfigError(f"load_criteo: {e}") from None
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such Criteo file")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty")

    features = _features(encoding, hash_buckets, min_count, numeric)
    given = None if fitted is None else apply_fitted(fitted, features)  # checked before the long read
    int_specs = tuple(f for f in features if f.name in INT_COLUMNS)
    cat_specs = tuple(f for f in features if f.name in CAT_COLUMNS)
    # vocab mode: per C column, value -> provisional id (1, 2, ... in order of first sight).
    seen: dict[str, dict[str, int]] = {f.name: {} for f in cat_specs}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}

    types = {"label": pa.int64(), **{c: pa.int64() for c in INT_COLUMNS}, **{c: pa.string() for c in CAT_COLUMNS}}
    line_error = lambda fields: _dac_line_error(fields, max_value_bytes)
    for start, batch in _batches(path, types, line_error, chunk_rows, max_rows):
        labels = batch.column("label").to_numpy(zero_copy_only=False)
        parts["label"].append(check_binary_labels(labels, where=lambda i, s=start: _locate(path, s + i)))
        ints = {c: batch.column(c).to_numpy(zero_copy_only=False) for c in INT_COLUMNS}
        for name, ids in encode(int_specs, {}, ints).items():
            parts[name].append(ids)
        for f in cat_specs:
            if max_value_bytes is not None:
                _check_length(path, start, f.name, batch.column(f.name), max_value_bytes)
            parts[f.name].append(_encode_categorical(f, batch.column(f.name), seen[f.name]))

    if not parts["label"]:
        raise DataError(f"{path}: no rows (only blank lines)")
    columns = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    del parts
    n = len(columns["label"])
    rows = random_split(n, split, split_seed)

    vocabs: dict[str, np.ndarray] = {}
    if given is not None:  # provisional ids -> ids of the given vocabularies
        features, vocabs = given
        for f in features:
            if f.name in seen and f.name in vocabs:
                columns[f.name] = _lut(f, vocabs[f.name], seen.pop(f.name))[columns[f.name]]
    elif encoding == "vocab":  # provisional ids -> ids of a vocabulary of the train rows only
        resolved = []
        for f in features:
            if f.name in seen:
                vocab, lut = _train_vocab(f, columns[f.name], rows["train"], seen.pop(f.name))
                columns[f.name] = lut[columns[f.name]]
                vocabs[f.name] = vocab
                f = dataclasses.replace(f, vocab_size=len(vocab) + 1)
            resolved.append(f)
        features = tuple(resolved)
    else:
        features, _ = fit(features, {})  # hash / numeric specs need no data

    splits: dict[str, dict[str, np.ndarray]] = {s: {} for s in rows}
    for name in COLUMNS:  # one column at a time, so peak memory stays ~ one copy
        column = columns.pop(name)
        for s, idx in rows.items():
            splits[s][LABELS if name == "label" else name] = column[idx]
    return Dataset(name="criteo", features=features, splits=splits, group_key=None, fitted=Fitted(features, vocabs))


def _features(encoding_: str, hash_buckets: int, min_count: int, numeric: str) -> tuple[Feature, ...]:
    if numeric == "bucketize":
        ints = [Numeric(name=c, transform="log_square", boundaries=LOG_SQUARE_BOUNDARIES) for c in INT_COLUMNS]
    else:
        ints = [Numeric(name=c, transform="log1p") for c in INT_COLUMNS]
    if encoding_ == "hash":
        cats = [Categorical(name=c, encoding="hash", hash_buckets=hash_buckets) for c in CAT_COLUMNS]
    else:
        cats = [Categorical(name=c, encoding="vocab", min_count=min_count) for c in CAT_COLUMNS]
    return tuple(ints + cats)


def _encode_categorical(f: Categorical, column: pa.Array, seen: dict[str, int]) -> np.ndarray:
    """One chunk of a C column `[n]` -> int32 `[n]`: final hash ids, or provisional vocab ids.

    Each distinct value of the chunk is encoded once (pyarrow dictionary-encodes the
    column), then looked up per row; null (empty) -> 0.
    """
    coded = pc.dictionary_encode(column)
    values = coded.dictionary.to_numpy(zero_copy_only=False)
    if f.encoding == "hash":
        value_ids = encode((f,), {}, {f.name: values})[f.name]
    else:
        value_ids = np.fromiter((seen.setdefault(v, len(seen) + 1) for v in values.tolist()), np.int32, len(values))
    lut = np.concatenate([[0], value_ids]).astype(np.int32)
    return lut[pc.fill_null(coded.indices, -1).to_numpy() + 1]


def _train_vocab(f: Categorical, ids: np.ndarray, train_rows: np.ndarray, seen: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Vocabulary of the values seen >= min_count times in the train rows, and a table
    provisional id `[len(seen) + 1]` -> final id (0 = missing / rare / not in train).

    Same vocabulary `jaxrec.data.encoding.fit` builds from the raw train column (sorted values), counted
    on the compact ids instead of the strings.
    """
    values = np.empty(len(seen), dtype=object)  # values[k - 1] has provisional id k
    values[:] = list(seen)
    counts = np.bincount(ids[train_rows], minlength=len(values) + 1)[1:]
    vocab = np.empty(int((counts >= f.min_count).sum()), dtype=object)
    vocab[:] = sorted(values[counts >= f.min_count].tolist())  # code-point order, as np.sort of text
    return vocab, _lut(f, vocab, seen)


def _lut(f: Categorical, vocab: np.ndarray, seen: dict[str, int]) -> np.ndarray:
    """Table provisional id `[len(seen) + 1]` -> id in the sorted vocabulary `vocab` (0 = not in it)."""
    values = np.empty(len(seen), dtype=object)
    values[:] = list(seen)
    final = encode((f,), {f.name: vocab}, {f.name: values})[f.name]
    return np.concatenate([[0], final]).astype(np.int32)


def _batches(path: str, types: dict, line_error, chunk_rows: int, max_rows: int | None) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Yields (0-based index of the batch's first row, batch of typed columns) of a headerless
    TSV file with the columns (and pyarrow types) of `types`. On a parse error, names the first
    line `line_error(fields)` (a message, or None for a good line) rejects."""
    block = int(min(max(chunk_rows * _BYTES_PER_ROW, _MIN_BLOCK), _MAX_BLOCK))
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=list(types), block_size=block),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True),
        )
    except pa.ArrowInvalid as e:
        raise _malformed(path, e, line_error) from None
    start = 0
    while max_rows is None or start < max_rows:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as e:
            raise _malformed(path, e, line_error) from None
        if max_rows is not None:
            batch = batch.slice(0, max_rows - start)
        yield start, batch
        start += batch.num_rows


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    """Yields (1-based line number, line without its line break) of the non-blank lines."""
    with pa.input_stream(path, compression="detect") as stream:
        for line_no, raw in enumerate(io.BufferedReader(stream), 1):
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if line:
                yield line_no, line


def _locate(path: str, row: int) -> str:
    """'path:LINE' of 0-based data row `row` (blank lines are not rows). Only errors call it."""
    for i, (line_no, _) in enumerate(_lines(path)):
        if i == row:
            return f"{path}:{line_no}"
    return f"{path}: row {row}"


def _malformed(path: str, error: Exception, line_error) -> DataError:
    """pyarrow could not parse the file: re-reads it line by line to name the first bad line."""
    for line_no, raw in _lines(path):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return DataError(f"{path}:{line_no}: not valid UTF-8")
        message = line_error(line.split("\t"))
        if message:
            return DataError(f"{path}:{line_no}: {message}")
    if "straddl" in str(error):
        longest = max(len(raw) for _, raw in _lines(path))
        return DataError(f"{path}: a line of {longest:,} bytes is longer than the read block; raise chunk_rows "
                         f"(the block holds chunk_rows x {_BYTES_PER_ROW} bytes)")
    return DataError(f"{path}: not a valid TSV file of this format: {error}")


def _check_length(path: str, start: int, column: str, values: pa.Array, limit: int) -> None:
    """DataError naming `path:LINE` of the first value of a chunk's column over `limit` bytes."""
    lengths = pc.binary_length(values)
    top = pc.max(lengths).as_py()
    if top is not None and top > limit:
        i = int(np.argmax(pc.fill_null(lengths, 0).to_numpy(zero_copy_only=False) > limit))
        raise DataError(f"{_locate(path, start + i)}: {_too_long(column, int(lengths[i].as_py()), limit)}")


def _too_long(column: str, size: int, limit: int) -> str:
    return (f"column {column} has a value of {size:,} bytes, over max_value_bytes={limit:,} (a damaged file?); "
            "raise max_value_bytes, or set it to None, if such values are meant")


def _dac_line_error(fields: list[str], max_value_bytes: int | None = MAX_VALUE_BYTES) -> str | None:
    """What is wrong with one split line of a display-advertising file, or None."""
    if len(fields) != len(COLUMNS):
        return f"expected {len(COLUMNS)} tab-separated fields, got {len(fields)}"
    if not _is_int64(fields[0]):
        return f"label {fields[0]!r} is not 0 or 1"
    for name, value in zip(INT_COLUMNS, fields[1:]):
        if value and not _is_int64(value):
            return f"column {name} expects an integer or nothing, got {value if len(value) <= 80 else value[:80] + '...'!r}"
    if max_value_bytes is not None:
        for name, value in zip(CAT_COLUMNS, fields[1 + len(INT_COLUMNS):]):
            if len(value) * 4 > max_value_bytes and len(value.encode()) > max_value_bytes:
                return _too_long(name, len(value.encode()), max_value_bytes)
    return None


def _is_int64(text: str) -> bool:
    return bool(_INT.fullmatch(text)) and -(2**63) <= int(text) < 2**63
