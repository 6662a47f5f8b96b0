"""Any CSV or Parquet table, described by feature specs in a config -> `Dataset`.

Format: one row per example, one column per raw field, plus one binary label column (`label`)
or several (`labels`, one per task).

* CSV (`.csv`, `.tsv`, `.txt`, optionally compressed, e.g. `.csv.gz`): the first line is a
  header naming the columns; `delimiter` separates fields, `"` quotes them. Empty cells
  are missing values; blank lines are skipped.
* Parquet (`.parquet`, `.pq`): any column types; sequence columns may be lists or
  separator-joined strings.

Each feature dict of the config (`{'type': 'categorical' | 'sequence' | 'numeric', 'name':
..., ...}`, see `jaxrec.data.features`) names the column it reads (`column`, default its
`name`). Categorical and sequence values are read as text (so `42` in a CSV and `42` in a
Parquet int column are the same value), numeric ones as float64, categorical features with
`encoding='identity'` as integers. Vocabularies, quantile bucket boundaries (numeric
`buckets={'quantiles': q}`) and standardization (numeric `transform='standardize'`) are fitted on
the train split only.

Labels: a label column holds 0 / 1 (numbers; anything else is a DataError naming the file, line
or row, column and value), or, with `positive`, any text: a cell equal to `positive` is 1, any
other 0 (an empty cell is an error). `label='click'` gives labels `[N]`; `labels=['click',
'buy']` gives `[N, T]`, column t from `labels[t]`.

Numeric values that cannot be used become missing (`fill_value`, or bucket id 0), counted per
feature and split in `Dataset.numeric_counts` and reported by `Dataset.summary()`: empty cells
(in a CSV also pyarrow's NA spellings: NA, NaN, nan, null, N/A, #N/A ...), NaN values (e.g.
`NAN` in a CSV, NaN in Parquet) and +-inf (`inf`, `-inf`, `Infinity`).

Example config entry (`dataset.features`):

    [{'type': 'categorical', 'name': 'user_id', 'encoding': 'hash', 'hash_buckets': 100_000},
     {'type': 'sequence', 'name': 'genres', 'max_len': 4, 'separator': '|'},
     {'type': 'numeric', 'name': 'price', 'transform': 'log1p'},
     {'type': 'numeric', 'name': 'age', 'buckets': {'quantiles': 10}},
     {'type': 'numeric', 'name': 'dwell', 'transform': 'standardize'}]
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jaxrec.data.dataset import LABELS, Dataset, random_split, take
from jaxrec.data.encoding import MAX_VALUE_BYTES, RowLocator, check_binary_labels, encode, fit, numeric_counts
from jaxrec.data.fitted import Fitted, apply_fitted
from jaxrec.data.features import Categorical, Feature, Numeric, Sequence, from_dict, lengths_key
from jaxrec.errors import ConfigError, DataError

_CSV_EXTENSIONS = (".csv", ".tsv", ".txt")
_PARQUET_EXTENSIONS = (".parquet", ".pq")
_COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")
_BLOCK_BYTES = 1 << 20  # pyarrow's default CSV block; grown when a line is longer


def load_tabular(
    path: str,
    *,
    label: str | None = None,
    features: list[dict],
    labels: list[str] | tuple[str, ...] | None = None,
    positive: str | int | dict | None = None,
    format: str = "auto",
    delimiter: str = ",",
    valid_path: str | None = None,
    test_path: str | None = None,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    split_seed: int = 2024,
    group_key: str | None = None,
    name: str = "tabular",
    max_value_bytes: int | None = MAX_VALUE_BYTES,
    fitted: Fitted | None = None,
) -> Dataset:
    """Reads a CSV or Parquet file (or three, one per split) into an encoded `Dataset`.

    Args:
      path: the data file; the train split when `valid_path`/`test_path` are given.
      label: name of the binary label column (values 0 / 1, or see `positive`); labels `[N]`.
      features: feature config dicts, each turned into a spec with
        `jaxrec.data.features.from_dict`.
      labels: instead of `label`, the label columns of several tasks; labels `[N, T]` in this order.
      positive: the label columns hold text: a cell equal to `str(positive)` is 1, any other 0;
        a dict `{column: value}` does so for the label columns it names (the others hold 0 / 1).
      format: 'csv', 'parquet', or 'auto' (by each file's extension: .csv/.tsv/.txt ->
        csv, .parquet/.pq -> parquet).
      delimiter: CSV field separator (e.g. '\\t' for TSV).
      valid_path, test_path: give both to use these files as the valid and test splits;
        otherwise `path` is split at random.
      split: train/valid/test fractions of the seeded random split of `path`.
      split_seed: seed of that split.
      group_key: name of a categorical feature to group by for GAUC (e.g. 'user_id'), or
        None. Its encoded ids are the groups; with `encoding='vocab'` users unseen in train
        all share id 0, so prefer 'hash' or 'identity' for it.
      name: dataset name (for logs).
      max_value_bytes: the longest categorical or sequence cell accepted, in UTF-8 bytes
        (default 64 KiB; None: no limit). A longer one is a DataError naming the file, line
        (or row), column and length: ids are short, and a huge cell is most often an
        unclosed quote or a file of another format. Memory stays bounded by the data either
        way (values are never copied into fixed-width arrays).
      fitted: the state of an earlier load (`Dataset.fitted`, or `jaxrec.data.fitted.load_fitted`):
        its vocabularies encode every split instead of ones fitted on this train split (eval
        encodes exactly as training did). Must match `features` (DataError naming the feature).

    Returns:
      `Dataset` whose splits hold, for N_split rows: categorical and bucketized numeric
      features int32 `[N]`; sequence features int32 `[N, max_len]` plus int32 lengths `[N]`
      under `lengths_key(name)`; numeric features float32 `[N]`; float32 labels `[N]` under
      `LABELS` (`[N, T]` with `labels`; `Dataset.label_names` are the label columns).

    Raises:
      ConfigError: a feature dict or an argument is invalid.
      DataError: a file is missing, empty or malformed, lacks a column, has a label
        outside {0, 1} (without `positive`; with it, an empty label or no label equal to it) or a
        value longer than `max_value_bytes`; the message names the file and line (CSV, 1-based,
        the header is line 1) or row (Parquet, 0-based) in the file, whatever the split.
    """
    specs = tuple(from_dict(d, where=f"dataset.features[{i}]") for i, d in enumerate(features))
    names, positive = _label_columns(label, labels, positive)
    _check_config(specs, group_key, format, delimiter, valid_path, test_path, max_value_bytes)
    types = _column_types(specs, names, text_labels=set(positive))
    scalar = {f.source for f in specs if isinstance(f, Categorical)}  # a list column there is an error
    read = lambda p: _read(p, format, delimiter, types, max_value_bytes, scalar, set(names) - set(positive))

    if valid_path is None:
        try:
            random_split(0, split, split_seed)  # validates the fractions before reading
        except ValueError as e:
            raise ConfigError(f"load_tabular: {e}") from None
        columns, nulls, where = read(path)
        y = _labels(columns, names, positive, where, path, stacked=labels is not None)
        rows = random_split(len(y), split, split_seed)
        raw = {s: (take(columns, idx), y[idx], _sub_locator(where, idx), take(nulls, idx)) for s, idx in rows.items()}
    else:
        raw = {}
        for s, p in (("train", path), ("valid", valid_path), ("test", test_path)):
            columns, nulls, where = read(p)
            raw[s] = (columns, _labels(columns, names, positive, where, p, stacked=labels is not None), where, nulls)

    if len(raw["train"][1]) == 0:
        raise DataError(f"{path}: the train split has no rows (split={split})")
    specs, vocabs = (fit(specs, raw["train"][0], raw["train"][2], origin=path) if fitted is None
                     else apply_fitted(fitted, specs))
    splits, counts = {}, {}
    for s, (columns, labels, where, nulls) in raw.items():
        splits[s] = encode(specs, vocabs, columns, where)
        splits[s][LABELS] = labels
        counts[s] = numeric_counts(specs, columns, nulls)
    return Dataset(name=name, features=specs, splits=splits, group_key=group_key, numeric_counts=counts,
                   fitted=Fitted(specs, vocabs), label_names=tuple(names))


def _label_columns(label: str | None, labels, positive) -> tuple[list[str], dict[str, str]]:
    """(The label column names, {text label column: its positive value as text}); ConfigError naming
    dataset.label / labels / positive if they are wrong."""
    if (label is None) == (labels is None):
        raise ConfigError("dataset: give label='column' (one task, labels [N]) or labels=['column', ...] (several, "
                          f"labels [N, T]), exactly one of them (label={label!r}, labels={labels!r})")
    names = [label] if labels is None else labels
    if isinstance(names, str) or not len(names) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"dataset.labels={labels!r}: expected a non-empty list of column names")
    names = list(names)
    if len(set(names)) != len(names):
        raise ConfigError(f"dataset.labels={names}: a column is named more than once")
    given = {} if positive is None else dict(positive) if hasattr(positive, "keys") else {c: positive for c in names}
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(f"dataset.positive names column(s) {unknown} that are not labels (labels: {names})")
    for c, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError(f"dataset.positive={positive!r}: expected the text (or integer) of the label value that means 1, "
                              f"e.g. 'yes' (got {value!r} for {c!r})")
    return names, {c: str(v) for c, v in given.items()}


_POSITIVE_HINT = "; for a text label set dataset.positive to the value that means 1 (e.g. 'yes')"


def _labels(columns: dict[str, np.ndarray], names: list[str], positives: dict[str, str], where: RowLocator, path: str,
            stacked: bool) -> np.ndarray:
    """Label columns of one file -> float32 `[N]` (one `label`) or `[N, T]` (`labels`, `stacked`).

    A column not in `positives` must hold 0 / 1 (`check_binary_labels`); for one in it, y = 1 where
    the cell's text equals `positives[column]`, else 0. Errors name the file row (`where`), column, value."""
    out = []
    for c in names:
        positive = positives.get(c)
        if positive is None:
            out.append(check_binary_labels(columns[c], where, field=f"label {c!r}", hint=_POSITIVE_HINT))
            continue
        text = np.asarray(columns[c], dtype=object)
        empty = np.array([v is None or v == "" for v in text.tolist()], bool)
        if empty.any():
            raise DataError(f"{where(int(np.argmax(empty)))}: label {c!r} is empty ({int(empty.sum())} empty row(s) in all); "
                            f"with dataset.positive={positive!r} every row needs a label")
        y = text == positive
        if not y.any():
            seen = sorted({str(v) for v in text.tolist()})
            raise DataError(f"{path}: no row of label {c!r} equals dataset.positive={positive!r} (compared as text); "
                            f"values: {seen[:10]}{' ...' if len(seen) > 10 else ''}")
        out.append(y.astype(np.float32))
    return np.stack(out, axis=1) if stacked else out[0]


def _check_config(specs: tuple[Feature, ...], group_key: str | None, format: str, delimiter: str, valid_path, test_path,
                  max_value_bytes: int | None) -> None:
    if not specs:
        raise ConfigError("dataset.features: give at least one feature")
    keys = [LABELS] + [f.name for f in specs] + [lengths_key(f.name) for f in specs if isinstance(f, Sequence)]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ConfigError(f"dataset.features: duplicate feature / batch key(s) {duplicates} ({LABELS!r} is reserved for labels)")
    if group_key is not None:
        by_name = {f.name: f for f in specs}
        if not isinstance(by_name.get(group_key), Categorical):
            raise ConfigError(f"dataset.group_key: {group_key!r} must be the name of a categorical feature; features: {sorted(by_name)}")
    if format not in ("auto", "csv", "parquet"):
        raise ConfigError(f"dataset.format: must be 'auto', 'csv' or 'parquet', got {format!r}")
    if len(delimiter) != 1:
        raise ConfigError(f"dataset.delimiter: must be one character, got {delimiter!r}")
    if max_value_bytes is not None and (isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int) or max_value_bytes < 1):
        raise ConfigError(f"dataset.max_value_bytes: must be a positive integer or None (no limit), got {max_value_bytes!r}")
    if (valid_path is None) != (test_path is None):
        raise ConfigError("dataset: give both valid_path and test_path, or neither (then the file is split at random)")


def _column_types(specs: tuple[Feature, ...], labels: list[str], text_labels: set[str] = frozenset()) -> dict[str, str]:
    """Raw column -> how it is read: 'text', 'int' (identity ids) or 'float'; labels as 'float', those
    in `text_labels` (dataset.positive) as 'text'."""
    kinds: dict[str, dict[str, str]] = {c: {"text" if c in text_labels else "float": f"label {c!r}"} for c in labels}
    for f in specs:
        if isinstance(f, Numeric):
            kind = "float"
        elif isinstance(f, Categorical) and f.encoding == "identity":
            kind = "int"
        else:
            kind = "text"
        kinds.setdefault(f.source, {})[kind] = f"feature {f.name!r}"
    for column, users in kinds.items():
        if len(users) > 1:
            raise ConfigError(
                f"dataset.features: column {column!r} is read as {' and as '.join(f'{k} (by {u})' for k, u in users.items())}; "
                "a column can be read one way only (copy it under another name in the file)"
            )
    return {column: next(iter(users)) for column, users in kinds.items()}


def _detect_format(path: str, format: str) -> str:
    if format != "auto":
        return format
    stem = path.lower()
    for ext in _COMPRESSED:
        stem = stem.removesuffix(ext)
    if stem.endswith(_CSV_EXTENSIONS):
        return "csv"
    if stem.endswith(_PARQUET_EXTENSIONS):
        return "parquet"
    raise ConfigError(f"{path}: cannot tell the format from the extension; set dataset.format to 'csv' or 'parquet'")


def _read(path: str, format: str, delimiter: str, types: dict[str, str],
          max_value_bytes: int | None = MAX_VALUE_BYTES,
          scalar: set[str] = frozenset(),
          labels: set[str] = frozenset()) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], RowLocator]:
    """Reads the columns named in `types` from one file -> ({column: [N]}, {numeric column with
    nulls: bool null mask [N]}, row locator).

    Text columns become object arrays of Python `str` (or lists of them): memory is bounded
    by the data, whatever the length of its longest value. `scalar`: columns read by categorical
    features, which must not be lists (a Parquet list column is read by a sequence feature).
    `labels`: numeric label columns (a CSV error there hints at dataset.positive)."""
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a data file")
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty")
    if _detect_format(path, format) == "csv":
        try:
            table, where = _read_csv(path, delimiter, types, max_value_bytes, labels), _csv_locator(path)
        except OSError as e:  # pyarrow's decompression errors (a damaged or mislabelled .gz, .bz2 ...)
            hint = (": damaged, or not compressed as its extension says?" if path.lower().endswith(_COMPRESSED) else "")
            raise DataError(f"{path}: cannot be read ({e}){hint}") from None
    else:
        table, where = _read_parquet(path, types, scalar), (lambda i: f"{path}: row {i} (0-based)")
    if table.num_rows == 0:
        raise DataError(f"{path}: no data rows")
    if max_value_bytes is not None:
        _check_lengths(table, types, max_value_bytes, where)
    nulls = {c: table.column(c).is_null().to_numpy(zero_copy_only=False) for c, kind in types.items()
             if kind == "float" and table.column(c).null_count}
    return {c: _to_numpy(table.column(c)) for c in types}, nulls, where


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """Column -> numpy `[N]`; a list column becomes an object array of Python lists (None = null)."""
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        return column.to_numpy()
    out = np.empty(len(column), dtype=object)
    for i, value in enumerate(column.to_pylist()):
        out[i] = value
    return out


def _read_csv(path: str, delimiter: str, types: dict[str, str], max_value_bytes: int | None,
              labels: set[str] = frozenset()) -> pa.Table:
    """Parses the CSV with pyarrow in blocks of 1 MiB, or, when a line is longer (pyarrow: "straddling
    object"), of twice the longest line, once the file has been scanned for a real error first."""
    header = _csv_header(path, delimiter)
    _check_columns(path, header, types, delimiter)
    twice = sorted(c for c in types if header.count(c) > 1)
    if twice:
        raise DataError(f"{path}:1: the header names column(s) {twice} more than once (fields "
                        f"{[i + 1 for i, h in enumerate(header) if h == twice[0]]} for {twice[0]!r}); which one to read is ambiguous")
    arrow = {"text": pa.string(), "int": pa.int64(), "float": pa.float64()}
    block = _BLOCK_BYTES
    while True:
        try:
            return pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=block),
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(
                    include_columns=list(types), column_types={c: arrow[k] for c, k in types.items()}, strings_can_be_null=False
                ),
            )
        except pa.ArrowInvalid as e:
            error, longest = _scan_csv(path, delimiter, header, types, max_value_bytes, labels)
            if error is None and "straddl" in str(e) and longest + 2 > block:
                block = max(2 * block, 1 << (2 * longest + 2).bit_length())
                continue
            if error is None and "invalid UTF8" in str(e):
                error = _utf8_error(path, header, delimiter)
            raise (error or DataError(f"{path}: not a valid CSV file: {e}")) from None


def _read_parquet(path: str, types: dict[str, str], scalar: set[str] = frozenset()) -> pa.Table:
    try:
        schema = pq.read_schema(path)
        _check_columns(path, schema.names, types)
        table = pq.read_table(path, columns=list(types))
    except pa.ArrowException as e:
        raise DataError(f"{path}: not a readable Parquet file: {e}") from None
    columns = {}
    for c, kind in types.items():
        t = table.column(c).type
        if c in scalar and (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            raise DataError(f"{path}: column {c!r} holds lists ({t}), but a categorical feature reads it (one value per "
                            "row); read it with a 'sequence' feature")
        try:
            columns[c] = _as_text(table.column(c)) if kind == "text" else table.column(c)
        except pa.ArrowException:
            raise DataError(f"{path}: column {c!r} of type {table.column(c).type} cannot be read as categorical text") from None
    return pa.table(columns)


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Categorical / sequence Parquet column -> strings (lists of strings), as a CSV reads them."""
    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.cast(t.value_type), t.value_type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return column.cast(pa.list_(pa.string()))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return column
    return column.cast(pa.string())


def _check_columns(path: str, available: list[str], types: dict[str, str], delimiter: str | None = None) -> None:
    missing = [c for c in types if c not in available]
    if missing:
        hint = ""
        if delimiter is not None and len(available) == 1:
            hint = f"; the header has a single column: is delimiter={delimiter!r} right?"
        raise DataError(f"{path}: missing column(s) {missing}; the file has columns {list(available)}{hint}")


def _utf8_error(path: str, header: list[str], delimiter: str) -> DataError | None:
    """DataError naming the first line (and column) that is not valid UTF-8, or None."""
    with pa.input_stream(path, compression="detect") as stream:
        for line_no, raw in enumerate(io.BufferedReader(stream), 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                fields = _csv_fields(raw.decode("utf-8", "replace").rstrip("\r\n"), delimiter)
                column = next((header[i] for i, f in enumerate(fields) if "\ufffd" in f and i < len(header)), None)
                where = f"column {column!r}, " if column else ""
                return DataError(f"{path}:{line_no}: not valid UTF-8 ({where}byte {e.start + 1} of the line: {raw[e.start:e.start + 4]!r}); "
                                 "save the file as UTF-8")
    return None


def _text_lines(path: str):
    """Yields (1-based line number, line without its line break) of a (maybe compressed) text file."""
    with pa.input_stream(path, compression="detect") as stream:
        for line_no, raw in enumerate(io.TextIOWrapper(io.BufferedReader(stream), encoding="utf-8-sig", errors="replace", newline=""), 1):
            yield line_no, raw.rstrip("\n").rstrip("\r")


def _csv_fields(line: str, delimiter: str) -> list[str]:
    """One CSV line -> its fields; any field length (the csv module's own limit, 128 KiB by
    default, is raised for this call and restored)."""
    limit = csv.field_size_limit()
    if len(line) < limit:
        return next(csv.reader([line], delimiter=delimiter))
    csv.field_size_limit(len(line) + 1)
    try:
        return next(csv.reader([line], delimiter=delimiter))
    finally:
        csv.field_size_limit(limit)


def _csv_header(path: str, delimiter: str) -> list[str]:
    for _, line in _text_lines(path):
        return _csv_fields(line, delimiter)
    raise DataError(f"{path}: the file is empty")


def _csv_locator(path: str) -> RowLocator:
    """Row index -> 'path:LINE'. Lines are counted on demand (only errors need them),
    skipping the header and blank lines as pyarrow does."""

    def where(row: int) -> str:
        data_rows = (line_no for line_no, line in _text_lines(path) if line_no > 1 and line)
        for i, line_no in enumerate(data_rows):
            if i == row:
                return f"{path}:{line_no}"
        return f"{path}: row {row}"

    return where


def _sub_locator(where: RowLocator, rows: np.ndarray) -> RowLocator:
    return lambda i: where(int(rows[i]))


def _scan_csv(path: str, delimiter: str, header: list[str], types: dict[str, str],
              max_value_bytes: int | None, labels: set[str] = frozenset()) -> tuple[DataError | None, int]:
    """pyarrow could not parse the CSV: re-reads it line by line with the csv module.

    Returns (the error of the first bad line, or None if every line is good; the longest
    line in UTF-8 bytes). A bad line has another number of fields than the header, a text
    value over `max_value_bytes`, or a non-number in a numeric column."""
    position = {c: header.index(c) for c, k in types.items() if k != "text"}
    text = {c: header.index(c) for c, k in types.items() if k == "text"}
    longest = 0
    for line_no, line in _text_lines(path):
        if line_no == 1 or not line:
            continue
        longest = max(longest, len(line.encode("utf-8", "surrogatepass")) if len(line) > 1024 else 4 * len(line))
        fields = _csv_fields(line, delimiter)
        if len(fields) != len(header):
            return DataError(f"{path}:{line_no}: expected {len(header)} fields (as in the header), got {len(fields)}"), longest
        if max_value_bytes is not None:
            for column, i in text.items():
                if len(fields[i]) * 4 > max_value_bytes and (n := len(fields[i].encode("utf-8", "surrogatepass"))) > max_value_bytes:
                    return _too_long(f"{path}:{line_no}", column, n, max_value_bytes), longest
        for column, i in position.items():
            if not _parses(fields[i], types[column]):
                want = "an integer id" if types[column] == "int" else "a number"
                shown = fields[i] if len(fields[i]) <= 80 else f"{fields[i][:80]!r}... ({len(fields[i]):,} characters)"
                hint = _POSITIVE_HINT if column in labels else ""
                return DataError(f"{path}:{line_no}: column {column!r} expects {want} or nothing, got {shown!r}{hint}"), longest
    return None, longest


def _too_long(where: str, column: str, size: int, limit: int) -> DataError:
    return DataError(f"{where}: column {column!r} has a value of {size:,} bytes, over max_value_bytes={limit:,} "
                     "(an unclosed quote, or a file of another format?); raise dataset.max_value_bytes, "
                     "or set it to None, if such values are meant")


def _check_lengths(table: pa.Table, types: dict[str, str], limit: int, where: RowLocator) -> None:
    """DataError naming the first row whose text (or sequence) cell is over `limit` UTF-8 bytes."""
    for c, kind in types.items():
        if kind != "text":
            continue
        column = table.column(c).combine_chunks() if table.column(c).num_chunks != 1 else table.column(c).chunk(0)
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            rows, column = pc.list_parent_indices(column).to_numpy(), pc.list_flatten(column)
        else:
            rows = None
        lengths = pc.binary_length(column)
        top = pc.max(lengths).as_py()
        if top is not None and top > limit:
            i = int(np.argmax(pc.fill_null(lengths, 0).to_numpy(zero_copy_only=False) > limit))
            raise _too_long(where(int(rows[i]) if rows is not None else i), c, int(lengths[i].as_py()), limit)


def _parses(value: str, kind: str) -> bool:
    if value in pacsv.ConvertOptions().null_values:
        return True
    try:
        int(value) if kind == "int" else float(value)
    except ValueError:
        return False
    return True
