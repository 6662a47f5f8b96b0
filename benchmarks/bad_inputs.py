"""Bad inputs, probed as a demanding user would: each gives a clear error or a documented, counted handling.

Issue 18 (acceptance): "the table of ~74 bad inputs (config, tabular, MovieLens, eval) gives a
clear error or a documented, counted handling for every one". Each case below feeds one bad
input to the public entry points (`jaxrec.train.cli.apply_overrides` / `load_config_file`,
`jaxrec.train.config.validate`, `jaxrec.train.experiment.build` / `train_and_evaluate` /
`evaluate_checkpoint`, `jaxrec.data.tabular.load_tabular`, `jaxrec.data.movielens.load_movielens_100k`
on an edited copy of ml-100k, `eval.py`'s `eval_main`) and records the outcome:

* `error`: a jaxrec error class (`jaxrec.errors`: ConfigError, DataError, WorkdirConflict,
  CheckpointDamaged, TrainingDiverged) with its message; `train.py` / `eval.py` print it as
  `error: <message>` and exit 2. `usage`: argparse's own error (exit 2) for a flag value
  outside its choices.
* `handled`: the input is accepted as documented and the handling is visible (e.g. non-finite
  numerics counted in `Dataset.numeric_counts` and the data summary); the case checks the count.
* failures: `traceback` (any other exception) or `accepted` (no error and no visible handling).

Tiers: `fast` cases read no MovieLens and train nothing (run by tests/test_bad_inputs.py),
`data` cases read MovieLens (an edited copy, or the real one to build a model), `train` cases
need a trained workdir (one 1-epoch DeepFM run, dim 8, MLP 32, shared by the eval and workdir
cases) or train themselves (divergence).

    python benchmarks/bad_inputs.py                  # all cases, JSON + docs/results/bad_inputs.md
    python benchmarks/bad_inputs.py --tier fast      # a subset, printed only

Exits 1 if any case is a traceback or a silent acceptance.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import io
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.common import DOCS, claims_table, command, default_data_dir, machine, machine_line, write_json  # noqa: E402
from jaxrec.errors import CheckpointDamaged, ConfigError, DataError, TrainingDiverged, WorkdirConflict  # noqa: E402

JAXREC_ERRORS = (WorkdirConflict, CheckpointDamaged, ConfigError, DataError, TrainingDiverged)
CATEGORIES = ("config", "tabular CSV", "Parquet", "MovieLens", "eval", "workdir", "text", "semantic IDs",
              "rewriting", "generative fine-tuning")


class Handled(str):
    """Returned by a case whose input is accepted with a documented, visible handling (the text says which)."""


@dataclasses.dataclass
class Case:
    category: str
    input: str
    fn: Callable[["Context"], object]
    tier: str = "fast"          # fast | data | train
    expect: str = "error"       # error | handled


CASES: list[Case] = []


def case(category: str, input: str, tier: str = "fast", expect: str = "error"):
    assert category in CATEGORIES and tier in ("fast", "data", "train") and expect in ("error", "handled")

    def register(fn):
        CASES.append(Case(category, input, fn, tier, expect))
        return fn

    return register


# ----------------------------------------------------------------------------- context

class Context:
    """Temporary files of one run: CSV / Parquet files, ml-100k copies, the trained reference workdir."""

    def __init__(self, root: Path, ml100k: str):
        self.root, self.ml100k = Path(root), Path(ml100k)
        self._n = 0
        self._movielens = None
        self._reference = None

    def path(self, name: str) -> Path:
        self._n += 1
        p = self.root / f"{self._n:03d}_{name}"
        return p

    # -- MovieLens
    def movielens(self):
        """The real ml-100k, loaded once (for cases that build a model from a bad config)."""
        if self._movielens is None:
            from jaxrec.data.movielens import load_movielens_100k

            self._movielens = load_movielens_100k(str(self.ml100k))
        return self._movielens

    def ml_copy(self, name: str, edit: Callable[[Path], None] | None = None) -> Path:
        d = self.path(name)
        shutil.copytree(self.ml100k, d)
        if edit:
            edit(d)
        return d

    def config(self, data_dir=None, **train):
        from jaxrec.train.config import default_config

        c = default_config()
        c.dataset.data_dir = str(data_dir or self.ml100k)
        c.model.name, c.model.embed_dim, c.model.hidden = "deepfm", 8, (32,)
        c.train.num_epochs, c.train.progress_bar = 1, False
        for k, v in train.items():
            c.train[k] = v
        return c

    # -- the trained reference workdir (1 epoch on a copy of ml-100k read with verify=False)
    def reference(self):
        if self._reference is None:
            from jaxrec.train.loop import train_and_evaluate

            data = self.ml_copy("ml_reference")
            c = self.config(data)
            c.dataset.verify = False  # so that the "other data" case can edit a copy of it
            work = self.root / "reference_workdir"
            train_and_evaluate(c, work)  # protocol: an error drill, no metric is reported
            self._reference = (c, work)
        return self._reference

    def workdir(self, name: str) -> tuple:
        """A copy of the reference workdir and a copy of its config."""
        c, work = self.reference()
        d = self.path(name)
        shutil.copytree(work, d)
        return c.copy_and_resolve_references(), d


def edit_lines(path: Path, fn: Callable[[list[str]], list[str]], encoding="latin-1") -> None:
    lines = path.read_text(encoding=encoding).splitlines(keepends=True)
    path.write_text("".join(fn(lines)), encoding=encoding)


# ----------------------------------------------------------------------------- tabular fixtures

HEADER = ["user", "item", "price", "tags", "label"]
FEATURES = [
    {"type": "categorical", "name": "user"},
    {"type": "categorical", "name": "item", "encoding": "hash", "hash_buckets": 100},
    {"type": "numeric", "name": "price", "transform": "log1p"},
    {"type": "sequence", "name": "tags", "max_len": 3},
]


def rows(n: int = 60) -> list[list[str]]:
    return [[f"u{i % 7}", f"i{i % 11}", f"{(i * 37) % 100 / 10:.1f}", "|".join(f"t{j}" for j in range(i % 4)), str(i % 2)]
            for i in range(n)]


def write_csv(ctx: Context, name: str, data: list[list[str]] | None = None, header=HEADER, sep=",", suffix=".csv") -> Path:
    p = ctx.path(name + suffix)
    data = rows() if data is None else data
    p.write_text("\n".join(sep.join(r) for r in [header] + data) + "\n", encoding="utf-8")
    return p


def load(path, features=None, label="label", **kw):
    from jaxrec.data.tabular import load_tabular

    return load_tabular(str(path), label=label, features=FEATURES if features is None else features, **kw)


def with_cell(row: int, column: str, value: str) -> list[list[str]]:
    data = rows()
    data[row][HEADER.index(column)] = value
    return data


def write_parquet(ctx: Context, name: str, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = ctx.path(name + ".parquet")
    pq.write_table(pa.table(columns), p)
    return p


def parquet_columns(n: int = 60) -> dict:
    r = rows(n)
    return {c: [x[i] for x in r] for i, c in enumerate(HEADER)} | {
        "price": [float(x[2]) for x in r], "label": [int(x[4]) for x in r]}


# ----------------------------------------------------------------------------- config cases

def override(*args, config=None):
    from jaxrec.train.cli import apply_overrides
    from jaxrec.train.config import default_config

    c = config or default_config()
    apply_overrides(c, list(args))
    return c


def built(ctx: Context, *args):
    """apply_overrides, then `build` against the real MovieLens (model and optimizer construction)."""
    from jaxrec.train.experiment import build

    c = ctx.config()
    override(*args, config=c)
    build(c, ctx.movielens())


def config_file(ctx: Context, body: str):
    from jaxrec.train.cli import load_config_file

    p = ctx.path("config.py")
    p.write_text(body)
    c = load_config_file(str(p))
    from jaxrec.train.config import validate

    validate(c)
    return c


for _arg in ("--config.train.batchsize=512", "--config.optimiser.lr=0.01", "--config.train.batch_size=abc",
             "--config.train.batch_size=1.5", "--config.train.progress_bar=maybe", "--config.train.batch_size",
             "--config.seed=abc", "--config.model.embedding_dim=8", "--config.dataset.data_dirr=/data",
             "--config.model.name=deepfn", "--config.dataset.name=movielens",
             "--config.optimizer.lr=0", "--config.optimizer.lr=-1", "--config.optimizer.lr=nan", "--config.optimizer.lr=inf",
             "--config.sparse_optimizer.lr=0", "--config.train.batch_size=0", "--config.train.num_epochs=0",
             "--config.train.keep_checkpoints=0", "--config.train.steps_per_call=-1", "--config.train.divergence_factor=-1",
             "--config.early_stopping.metric=accuracy", "--config.early_stopping.metric=aucc",
             "--config.early_stopping.mode=maximize", "--config.early_stopping.metric=logloss",
             "--config.early_stopping.patience=-1", "--config.model.embed_dim=0", "--config.model.embed_dim=-8",
             "--config.mesh.shape=(2,)", "--config.mesh.shape=(0, 1)", "--config.mesh.shape=abc",
             "--config.mesh.table_sharding=rows", "--config.eval_splits=('valid', 'tset')", "--config.eval_splits=test"):
    case("config", _arg)(lambda ctx, a=_arg: override(a))

case("config", "--config.model.embed_dim=8.5", "data")(lambda ctx: built(ctx, "--config.model.embed_dim=8.5"))
case("config", "--config.model.hidden=(0,)", "data")(lambda ctx: built(ctx, "--config.model.hidden=(0,)"))
case("config", "--config.mesh.shape=(4, 1) on 1 device", "data")(lambda ctx: built(ctx, "--config.mesh.shape=(4, 1)"))
case("config", "--config.optimizer.name=adamm", "data")(lambda ctx: built(ctx, "--config.optimizer.name=adamm"))
case("config", "--config.optimizer.schedule=cosin", "data")(lambda ctx: built(ctx, "--config.optimizer.schedule=cosin"))
case("config", "--config.tables.user_idd.optimizer.lr=0.1", "data")(lambda ctx: built(ctx, "--config.tables.user_idd.optimizer.lr=0.1"))
case("config", "--config.fields=('user_id', 'nope')", "data")(lambda ctx: built(ctx, "--config.fields=('user_id', 'nope')"))
case("config", "--config.train.batch_size=200000 (> train rows)", "data")(lambda ctx: built(ctx, "--config.train.batch_size=200000"))


@case("config", "--config file that does not exist")
def _no_config_file(ctx):
    from jaxrec.train.cli import load_config_file

    return load_config_file(str(ctx.path("none.py")))



case("config", "config file without get_config()")(lambda ctx: config_file(ctx, "x = 1\n"))
case("config", "config file with a syntax error")(lambda ctx: config_file(
    ctx, "from jaxrec.train.config import default_config\ndef get_config():\n    c = default_config(\n    return c\n"))
case("config", "config file: c.train.batch_size = 'big' (wrong type)")(lambda ctx: config_file(
    ctx, "from jaxrec.train.config import default_config\ndef get_config():\n    c = default_config()\n"
         "    c.train.batch_size = 'big'\n    return c\n"))
case("config", "config file: c.train.batchsize = 512 (misspelt key)")(lambda ctx: config_file(
    ctx, "from jaxrec.train.config import default_config\ndef get_config():\n    c = default_config()\n"
         "    c.train.batchsize = 512\n    return c\n"))


@case("config", "--config.train.init_from=/nonexistent", "data")
def _init_from(ctx):
    from jaxrec.train.loop import train_and_evaluate

    c = ctx.config()
    override("--config.train.init_from=/nonexistent/run", config=c)
    train_and_evaluate(c, ctx.path("workdir"), dataset=ctx.movielens())  # protocol: an error drill, no metric is reported


@case("config", "--config.optimizer.name=sgd --config.optimizer.lr=1e4 (finite, diverges)", "train")
def _diverges(ctx):
    from jaxrec.train.loop import train_and_evaluate

    c = ctx.config()
    override("--config.optimizer.name=sgd", "--config.optimizer.lr=1e4", config=c)
    return train_and_evaluate(c, ctx.path("workdir"), dataset=ctx.movielens())  # protocol: an error drill, no metric is reported


# ----------------------------------------------------------------------------- tabular CSV cases

case("tabular CSV", "missing file")(lambda ctx: load(ctx.path("nope.csv")))
case("tabular CSV", "a directory instead of a file")(lambda ctx: load(ctx.root))
case("tabular CSV", "empty file (0 bytes)")(lambda ctx: (p := ctx.path("empty.csv"), p.write_bytes(b""), load(p)))
case("tabular CSV", "header only")(lambda ctx: load(write_csv(ctx, "header_only", [])))
case("tabular CSV", "missing column (label named 'clicked')")(lambda ctx: load(write_csv(ctx, "nolabel", header=HEADER[:-1] + ["clicked"])))
case("tabular CSV", "wrong delimiter (file uses ';')")(lambda ctx: load(write_csv(ctx, "semicolon", sep=";")))
case("tabular CSV", "ragged line (an extra field)")(lambda ctx: load(write_csv(ctx, "ragged", with_cell(5, "label", "1,extra"))))
case("tabular CSV", "unclosed quote")(lambda ctx: load(write_csv(ctx, "quote", with_cell(5, "user", '"u5'))))
case("tabular CSV", "non-numeric value in a numeric column ('cheap')")(lambda ctx: load(write_csv(ctx, "cheap", with_cell(5, "price", "cheap"))))
case("tabular CSV", "label 2")(lambda ctx: load(write_csv(ctx, "label2", with_cell(5, "label", "2"))))
case("tabular CSV", "label 'yes'")(lambda ctx: load(write_csv(ctx, "labelyes", with_cell(5, "label", "yes"))))
case("tabular CSV", "label empty")(lambda ctx: load(write_csv(ctx, "labelempty", with_cell(5, "label", ""))))
case("tabular CSV", "10 MB value in a categorical column")(lambda ctx: load(write_csv(ctx, "huge", with_cell(5, "user", "x" * 10_000_000))))
case("tabular CSV", "categorical column with an id of 100 KB (limit 64 KiB) in a sequence")(
    lambda ctx: load(write_csv(ctx, "longtag", with_cell(5, "tags", "t1|" + "y" * 100_000))))


@case("tabular CSV", "invalid UTF-8 bytes in a categorical column")
def _bad_utf8(ctx):
    p = write_csv(ctx, "utf8", with_cell(5, "user", "UTFX"))
    p.write_bytes(p.read_bytes().replace(b"UTFX", b"u\xff\xfe"))
    return load(p)


@case("tabular CSV", "NaN / inf / -inf / empty numerics", expect="handled")
def _nonfinite(ctx):
    data = rows()
    for i, v in zip((1, 2, 3, 4, 5), ("NAN", "inf", "-inf", "", "nan")):  # nan: a pyarrow NA spelling, counted as empty
        data[i][2] = v
    ds = load(write_csv(ctx, "nonfinite", data), split=(1.0, 0.0, 0.0))
    counts = ds.numeric_counts["train"]["price"]
    if counts != {"missing": 2, "nan": 1, "inf": 2} or "treated as missing: price" not in ds.summary():
        return None  # not counted as documented: a silent acceptance
    return Handled(f"counted in Dataset.numeric_counts and the summary: {ds.summary().split('; treated as missing: ')[1]}")


@case("tabular CSV", "sequence longer than max_len", expect="handled")
def _long_sequence(ctx):
    data = rows()
    data[5][3] = "a|b|c|d|e|f"
    caught = []

    class Grab(logging.Handler):
        def emit(self, record):
            caught.append(record.getMessage())

    h, logger = Grab(level=logging.WARNING), logging.getLogger("jaxrec")
    level = logger.level
    logger.addHandler(h)
    logger.setLevel(logging.WARNING)
    try:
        load(write_csv(ctx, "longseq", data), split=(1.0, 0.0, 0.0))
    finally:
        logger.removeHandler(h)
        logger.setLevel(level)
    said = [m for m in caught if "max_len" in m]
    return Handled(f"truncated, count logged: {said[0]}") if said else None


case("tabular CSV", "duplicate feature names")(lambda ctx: load(write_csv(ctx, "dup"), features=FEATURES + [{"type": "categorical", "name": "user"}]))
case("tabular CSV", "identity id out of range (vocab_size 5, id 9)")(lambda ctx: load(
    write_csv(ctx, "identity", [[str(i % 10), *r[1:]] for i, r in enumerate(rows())]),
    features=[{"type": "categorical", "name": "user", "encoding": "identity", "vocab_size": 5}]))
case("tabular CSV", "identity id not an integer ('u3')")(lambda ctx: load(
    write_csv(ctx, "identity_str"), features=[{"type": "categorical", "name": "user", "encoding": "identity", "vocab_size": 5}]))
case("tabular CSV", "hash_buckets 1")(lambda ctx: load(write_csv(ctx, "hash1"), features=[{"type": "categorical", "name": "item", "encoding": "hash", "hash_buckets": 1}]))
case("tabular CSV", "unknown feature type 'categorial'")(lambda ctx: load(write_csv(ctx, "ftype"), features=[{"type": "categorial", "name": "user"}]))
case("tabular CSV", "feature without a name")(lambda ctx: load(write_csv(ctx, "fname"), features=[{"type": "categorical", "column": "user"}]))
case("tabular CSV", "unknown feature key 'max_length'")(lambda ctx: load(write_csv(ctx, "fkey"), features=[{"type": "sequence", "name": "tags", "max_length": 3}]))
case("tabular CSV", "unknown encoding 'onehot'")(lambda ctx: load(write_csv(ctx, "fenc"), features=[{"type": "categorical", "name": "user", "encoding": "onehot"}]))
case("tabular CSV", "sequence max_len 0")(lambda ctx: load(write_csv(ctx, "maxlen0"), features=[{"type": "sequence", "name": "tags", "max_len": 0}]))
case("tabular CSV", "numeric boundaries not sorted (1, 5, 2)")(lambda ctx: load(write_csv(ctx, "bounds"), features=[{"type": "numeric", "name": "price", "boundaries": [1, 5, 2]}]))
case("tabular CSV", "one column read as numeric and as categorical")(lambda ctx: load(write_csv(ctx, "twoways"), features=[
    {"type": "numeric", "name": "price"}, {"type": "categorical", "name": "price_id", "column": "price"}]))
case("tabular CSV", "split fractions (0.5, 0.5, 0.5)")(lambda ctx: load(write_csv(ctx, "split"), split=(0.5, 0.5, 0.5)))
case("tabular CSV", "valid_path without test_path")(lambda ctx: load(write_csv(ctx, "vonly"), valid_path=str(ctx.path("v.csv"))))
case("tabular CSV", "unknown extension (.dat)")(lambda ctx: load(write_csv(ctx, "ext", suffix=".dat")))
case("tabular CSV", "delimiter of two characters (',,')")(lambda ctx: load(write_csv(ctx, "delim2"), delimiter=",,"))
case("tabular CSV", "group_key not a feature")(lambda ctx: load(write_csv(ctx, "group"), group_key="session"))
case("tabular CSV", "duplicate column name in the header")(lambda ctx: load(write_csv(ctx, "duphdr", [r + ["x"] for r in rows()], header=HEADER + ["user"])))


@case("tabular CSV", ".csv.gz that is not gzip-compressed")
def _not_gzip(ctx):
    p = write_csv(ctx, "plain", suffix=".csv.gz")
    return load(p)


@case("tabular CSV", "truncated .csv.gz")
def _truncated_gzip(ctx):
    p = ctx.path("cut.csv.gz")
    blob = gzip.compress(("\n".join(",".join(r) for r in [HEADER] + rows(3000)) + "\n").encode())
    p.write_bytes(blob[: len(blob) // 2])
    return load(p)


@case("tabular CSV", "valid split with one class only (train.py)", "data")
def _one_class_valid(ctx):
    from jaxrec.train.loop import train_and_evaluate

    train, valid = write_csv(ctx, "train"), write_csv(ctx, "valid", [r[:-1] + ["0"] for r in rows(20)])
    return train_and_evaluate(tabular_config(train, valid), ctx.path("workdir"))  # protocol: an error drill, no metric is reported


@case("tabular CSV", "numeric value 1e30 without a transform (train.py)", "train")
def _huge_numeric(ctx):
    from jaxrec.train.loop import train_and_evaluate

    data = rows(400)
    for i in range(0, 400, 7):
        data[i][2] = "1e30"
    c = tabular_config(write_csv(ctx, "huge_numeric", data))
    c.dataset.features = [f | {"transform": "none"} if f["name"] == "price" else f for f in FEATURES]
    return train_and_evaluate(c, ctx.path("workdir"))  # protocol: an error drill, no metric is reported


def tabular_config(train, valid=None):
    from jaxrec.train.config import default_config

    c = default_config()
    c.dataset = {"name": "tabular", "path": str(train), "label": "label", "features": FEATURES}
    if valid is not None:
        c.dataset.valid_path = c.dataset.test_path = str(valid)
    c.model.embed_dim, c.model.hidden = 4, (8,)
    c.train.batch_size, c.train.num_epochs, c.train.progress_bar = 16, 1, False
    return c


# ----------------------------------------------------------------------------- Parquet cases

@case("Parquet", "not a Parquet file (a CSV named .parquet)")
def _not_parquet(ctx):
    p = ctx.path("fake.parquet")
    p.write_text(",".join(HEADER) + "\nu1,i1,1.0,t1,1\n")
    return load(p)


@case("Parquet", "truncated Parquet file")
def _truncated_parquet(ctx):
    p = write_parquet(ctx, "cut", parquet_columns())
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return load(p)


case("Parquet", "numeric column of strings ('cheap')")(lambda ctx: load(write_parquet(ctx, "strprice", parquet_columns() | {
    "price": ["cheap"] + [str(x) for x in parquet_columns()["price"][1:]]})))
case("Parquet", "label column of strings ('yes' / 'no')")(lambda ctx: load(write_parquet(ctx, "strlabel", parquet_columns() | {
    "label": ["yes" if y else "no" for y in parquet_columns()["label"]]})))
case("Parquet", "label column of floats with 0.5")(lambda ctx: load(write_parquet(ctx, "halflabel", parquet_columns() | {
    "label": [0.5] + [float(y) for y in parquet_columns()["label"][1:]]})))
case("Parquet", "categorical column of lists (not a sequence feature)")(lambda ctx: load(write_parquet(ctx, "listcat", parquet_columns() | {
    "user": [[u] for u in parquet_columns()["user"]]})))
case("Parquet", "categorical column of structs")(lambda ctx: load(write_parquet(ctx, "structcat", parquet_columns() | {
    "user": [{"a": 1, "b": u} for u in parquet_columns()["user"]]})))
case("Parquet", "identity column of floats (1.5)")(lambda ctx: load(write_parquet(ctx, "floatid", parquet_columns() | {
    "user": [1.5] + [float(i % 5) for i in range(59)]}), features=[{"type": "categorical", "name": "user", "encoding": "identity", "vocab_size": 5}]))
case("Parquet", "missing column")(lambda ctx: load(write_parquet(ctx, "nocol", {k: v for k, v in parquet_columns().items() if k != "price"})))
case("Parquet", "zero rows")(lambda ctx: load(write_parquet(ctx, "zero", {k: v[:0] for k, v in parquet_columns().items()})))


@case("Parquet", "NaN / inf numerics", expect="handled")
def _parquet_nonfinite(ctx):
    cols = parquet_columns()
    cols["price"] = [math.nan, math.inf, -math.inf, None] + cols["price"][4:]
    ds = load(write_parquet(ctx, "nonfinite", cols), split=(1.0, 0.0, 0.0))
    counts = ds.numeric_counts["train"]["price"]
    if counts != {"missing": 1, "nan": 1, "inf": 2}:
        return None
    return Handled(f"counted in Dataset.numeric_counts and the summary: {ds.summary().split('; treated as missing: ')[1]}")


# ----------------------------------------------------------------------------- MovieLens cases

def ml_load(d, **kw):
    from jaxrec.data.movielens import load_movielens_100k

    return load_movielens_100k(str(d), **kw)


def replace_line(name: str, lineno: int, fn: Callable[[str], str]):
    def edit(d: Path):
        def change(lines):
            lines[lineno - 1] = fn(lines[lineno - 1])
            return lines
        edit_lines(d / name, change)
    return edit


def set_field(line: str, i: int, value: str, sep="\t") -> str:
    parts = line.rstrip("\n").split(sep)
    parts[i] = value
    return sep.join(parts) + "\n"


case("MovieLens", "data_dir does not exist")(lambda ctx: ml_load(ctx.path("no_such_dir")))
case("MovieLens", "data_dir is a file", "data")(lambda ctx: ml_load(ctx.ml100k / "u.data"))
case("MovieLens", "u.item missing", "data")(lambda ctx: ml_load(ctx.ml_copy("noitem", lambda d: (d / "u.item").unlink())))
case("MovieLens", "u.user empty", "data")(lambda ctx: ml_load(ctx.ml_copy("emptyuser", lambda d: (d / "u.user").write_text(""))))
case("MovieLens", "u.data truncated to 60,000 lines", "data")(lambda ctx: ml_load(ctx.ml_copy("trunc", lambda d: edit_lines(d / "u.data", lambda l: l[:60_000]))))
case("MovieLens", "u.data: one line duplicated", "data")(lambda ctx: ml_load(ctx.ml_copy("dupline", lambda d: edit_lines(d / "u.data", lambda l: l + l[-1:]))))
case("MovieLens", "u.data: a rating of 7", "data")(lambda ctx: ml_load(ctx.ml_copy("rating7", replace_line("u.data", 1234, lambda s: set_field(s, 2, "7")))))
case("MovieLens", "u.data: a rating of 0", "data")(lambda ctx: ml_load(ctx.ml_copy("rating0", replace_line("u.data", 99, lambda s: set_field(s, 2, "0")))))
case("MovieLens", "u.data: a non-integer user id ('abc')", "data")(lambda ctx: ml_load(ctx.ml_copy("abcid", replace_line("u.data", 500, lambda s: set_field(s, 0, "abc")))))
case("MovieLens", "u.data: a rating 4.5", "data")(lambda ctx: ml_load(ctx.ml_copy("rating45", replace_line("u.data", 77, lambda s: set_field(s, 2, "4.5")))))
case("MovieLens", "u.data: an extra field on a line", "data")(lambda ctx: ml_load(ctx.ml_copy("extra", replace_line("u.data", 321, lambda s: s.rstrip("\n") + "\t9\n"))))
case("MovieLens", "u.data: an item id not in u.item (9999)", "data")(lambda ctx: ml_load(ctx.ml_copy("unknownitem", replace_line("u.data", 42, lambda s: set_field(s, 1, "9999")))))
case("MovieLens", "u.data: one rating changed (4 -> 3), same line count", "data")(lambda ctx: ml_load(ctx.ml_copy("changed", replace_line(
    "u.data", 10, lambda s: set_field(s, 2, "3" if s.split("\t")[2] != "3" else "4")))))
case("MovieLens", "u.item: a non-integer item id", "data")(lambda ctx: ml_load(ctx.ml_copy("itemid", replace_line("u.item", 5, lambda s: set_field(s, 0, "five", "|")))))
case("MovieLens", "u.item: a title edited (checksum)", "data")(lambda ctx: ml_load(ctx.ml_copy("title", replace_line("u.item", 1, lambda s: s.replace("Toy Story", "Toy Stroy")))))
case("MovieLens", "dataset.variant='bogus'", "data")(lambda ctx: ml_load(ctx.ml100k, variant="bogus"))
case("MovieLens", "dataset.labels='bogus'")(lambda ctx: ml_load(ctx.ml100k, labels="bogus"))


@case("MovieLens", "u.data truncated, read with verify=False (documented opt-out)", "data", expect="handled")
def _verify_off(ctx):
    ds = ml_load(ctx.ml_copy("trunc_ok", lambda d: edit_lines(d / "u.data", lambda l: l[:60_000])), verify=False)
    n = sum(ds.num_rows(s) for s in ds.splits)
    if n != 60_000:
        return None
    return Handled(f"verify=False: the edited copy is used as documented; the summary shows its size: {ds.summary()}")


# ----------------------------------------------------------------------------- eval cases

def evaluate(work, split="test", which="best", config=None):
    from jaxrec.train.experiment import evaluate_checkpoint

    return evaluate_checkpoint(work, split, which, config)  # protocol: an error drill, no metric is reported


def flip_byte(step_dir: Path) -> None:
    files = sorted((p for p in step_dir.rglob("*") if p.is_file() and p.name != "manifest.json"), key=lambda p: p.stat().st_size)
    data = bytearray(files[-1].read_bytes())
    data[len(data) // 2] ^= 0x40
    files[-1].write_bytes(bytes(data))


def eval_cli(*argv):
    from jaxrec.train.cli import eval_main

    return eval_main(["eval.py", *argv])


case("eval", "--workdir that does not exist")(lambda ctx: evaluate(ctx.path("no_workdir")))
case("eval", "--workdir: a directory that is not a workdir")(lambda ctx: (d := ctx.path("plain"), d.mkdir(), evaluate(d)))


@case("eval", "best/ missing", "train")
def _no_best(ctx):
    c, w = ctx.workdir("nobest")
    shutil.rmtree(w / "best")
    return evaluate(w)


@case("eval", "checkpoints/ missing (--checkpoint latest)", "train")
def _no_latest(ctx):
    c, w = ctx.workdir("nolatest")
    shutil.rmtree(w / "checkpoints")
    return evaluate(w, which="latest")


@case("eval", "best checkpoint damaged (one byte flipped)", "train")
def _damaged_best(ctx):
    c, w = ctx.workdir("damaged")
    step = next(p for p in (w / "best").iterdir() if p.name.isdigit())
    flip_byte(step)
    return evaluate(w)


@case("eval", "--split tset (eval.py)", "train")
def _split_cli(ctx):
    c, w = ctx.workdir("split_cli")
    return eval_cli("--workdir", str(w), "--split", "tset")


@case("eval", "split='tset' (evaluate_checkpoint)", "train")
def _split_api(ctx):
    c, w = ctx.workdir("split_api")
    return evaluate(w, split="tset")


@case("eval", "which='newest' (evaluate_checkpoint)", "train")
def _which_api(ctx):
    c, w = ctx.workdir("which")
    return evaluate(w, which="newest")


@case("eval", "config.json not JSON", "train")
def _config_json(ctx):
    c, w = ctx.workdir("badjson")
    (w / "config.json").write_text("{not json")
    return evaluate(w)


@case("eval", "config.json edited: an unknown key", "train")
def _config_key(ctx):
    c, w = ctx.workdir("badkey")
    doc = json.loads((w / "config.json").read_text())
    doc["train"]["batchsize"] = 7
    (w / "config.json").write_text(json.dumps(doc))
    return evaluate(w)


@case("eval", "fitted.json damaged", "train")
def _fitted(ctx):
    c, w = ctx.workdir("badfitted")
    (w / "fitted.json").write_text((w / "fitted.json").read_text()[:100])
    return evaluate(w)


@case("eval", "data moved: --data_dir that does not exist", "train")
def _data_moved(ctx):
    c, w = ctx.workdir("moved")
    return eval_cli("--workdir", str(w), "--data_dir", str(ctx.path("gone")))


@case("eval", "--mesh_shape '(4, 1)' on 1 device", "train")
def _eval_mesh(ctx):
    c, w = ctx.workdir("mesh")
    return eval_cli("--workdir", str(w), "--mesh_shape", "(4, 1)")


# ----------------------------------------------------------------------------- workdir cases

def rerun(config, work, **kw):
    from jaxrec.train.loop import train_and_evaluate

    return train_and_evaluate(config, work, **kw)  # protocol: an error drill, no metric is reported


@case("workdir", "rerun with another config (batch_size 512)", "train")
def _other_config(ctx):
    c, w = ctx.workdir("bs")
    c.train.batch_size = 512
    return rerun(c, w)


@case("workdir", "rerun with another seed", "train")
def _other_seed(ctx):
    c, w = ctx.workdir("seed")
    c.seed = 1
    return rerun(c, w)


@case("workdir", "rerun with another embed_dim", "train")
def _other_dim(ctx):
    c, w = ctx.workdir("dim")
    c.model.embed_dim = 16
    return rerun(c, w)


@case("workdir", "rerun with more epochs, no allow_config_change", "train")
def _more_epochs(ctx):
    c, w = ctx.workdir("epochs")
    c.train.num_epochs = 3
    return rerun(c, w)


@case("workdir", "rerun on other data (edited copy, verify=False)", "train")
def _other_data(ctx):
    c, w = ctx.workdir("data")

    def edit(d):
        edit_lines(d / "u.data", lambda lines: [set_field(s, 2, "1") if i % 10 == 0 else s for i, s in enumerate(lines)])
    c.dataset.data_dir = str(ctx.ml_copy("ml_other", edit))
    return rerun(c, w)


@case("workdir", "workdir in use by another live process (lock)", "train")
def _locked(ctx):
    c, w = ctx.workdir("locked")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nos.ftruncate(fd, 0)\nos.pwrite(fd, b'process %d (bad_inputs lock holder)' % os.getpid(), 0)\n"
         "print('locked', flush=True)\ntime.sleep(300)\n", str(w / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()
        return rerun(c, w)
    finally:
        holder.kill()
        holder.wait()


@case("workdir", "config.json in the workdir not JSON", "train")
def _workdir_json(ctx):
    c, w = ctx.workdir("wjson")
    (w / "config.json").write_text("{oops")
    return rerun(c, w)


@case("workdir", "every kept checkpoint damaged (resume)", "train")
def _all_damaged(ctx):
    c, w = ctx.workdir("alldamaged")
    for step in (w / "checkpoints").iterdir():
        if step.name.isdigit():
            flip_byte(step)
    c.train.num_epochs, c.train.allow_config_change = 2, True
    return rerun(c, w)


@case("workdir", "--workdir is an existing file")
def _workdir_file(ctx):
    p = ctx.path("a_file")
    p.write_text("not a directory")
    return rerun(ctx.config(), p)


# ----------------------------------------------------------------------------- text (issue 21)

def _tiny_gpt(**kw):
    from jaxrec.models.text import GPT

    return GPT(**{"vocab_size": 50, "width": 32, "depth": 1, "num_heads": 4, "max_len": 16, **kw})


def _generate(ctx, prompts, max_new_tokens=4):
    import flax.linen as nn
    import jax

    from jaxrec.generate import generate

    model = _tiny_gpt()
    params = nn.unbox(model.init(jax.random.key(0), {"tokens": np.zeros((1, 4), np.int32)}))
    return generate(model, params, prompts, max_new_tokens)


def _text_config(ctx, **model):
    p = ctx.path("corpus.txt")
    p.write_text("\n\n".join(f"document {i} has a few words in it" for i in range(30)))
    return override("--config.dataset.name=text", "--config.dataset.corpus=file", f"--config.dataset.path={p}",
                    "--config.dataset.vocab_size=300", "--config.dataset.context=8", "--config.model.name=gpt",
                    "--config.model.vocab_size=300", "--config.task.name=lm", "--config.early_stopping.metric=perplexity",
                    "--config.early_stopping.mode=min", *[f"--config.model.{k}={v}" for k, v in model.items()])


@case("text", "gpt: model.num_heads=5 does not divide model.width=128")
def _heads(ctx):
    from jaxrec.train.experiment import build

    return build(_text_config(ctx, width=128, num_heads=5))


@case("text", "gpt: model.num_kv_heads=3 does not divide model.num_heads=4")
def _kv_heads(ctx):
    from jaxrec.train.experiment import build

    return build(_text_config(ctx, num_kv_heads=3))


case("text", "generate: a prompt with an unknown token id (50 >= model.vocab_size)")(
    lambda ctx: _generate(ctx, [[1, 2, 50]]))
case("text", "generate: a prompt longer than the context (14 tokens + 4 new > model.max_len=16)")(
    lambda ctx: _generate(ctx, [list(range(1, 15))]))
case("text", "generate: an empty prompt row")(lambda ctx: _generate(ctx, [[1, 2], []]))


def _weights_folder(ctx, drop=None, reshape=None):
    import dataclasses as dc

    from safetensors.numpy import save_file

    from jaxrec.models.text.bert import BertConfig
    from jaxrec.models.text.hf import bert_tensor_map, load_bert_params

    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                        max_position_embeddings=16)
    tensors = {t.hf_name: np.zeros(t.hf_shape, np.float32) for t in bert_tensor_map(config)}
    if drop:
        del tensors[drop]
    if reshape:
        tensors[reshape] = np.zeros((3, 3), np.float32)
    folder = ctx.path("hf_model")
    folder.mkdir(exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({**dc.asdict(config), "model_type": "bert"}))
    return load_bert_params(folder)


case("text", "Hugging Face weights folder with a missing tensor")(
    lambda ctx: _weights_folder(ctx, drop="encoder.layer.0.output.dense.weight"))
case("text", "Hugging Face weights folder with a mis-shaped tensor")(
    lambda ctx: _weights_folder(ctx, reshape="embeddings.LayerNorm.weight"))


@case("text", "Hugging Face folder that does not exist")
def _no_folder(ctx):
    from jaxrec.models.text.hf import default_minilm_dir

    return default_minilm_dir(ctx.path("no_model_here"))


@case("text", "text corpus: dataset.path does not exist")
def _no_corpus(ctx):
    from jaxrec.data.text import load_text

    return load_text(corpus="file", path=str(ctx.path("missing.txt")))


@case("text", "token file with an id >= dataset.vocab_size")
def _token_file(ctx):
    from jaxrec.data.text import load_text

    p = ctx.path("tokens.npy")
    np.save(p, np.array([1, 2, 3, 999] * 100, np.int64))
    return load_text(token_file=str(p), vocab_size=300, context=8)


@case("text", "dataset.context longer than the valid split")
def _context(ctx):
    from jaxrec.data.text import load_text

    p = ctx.path("short.txt")
    p.write_text("\n\n".join(f"doc {i}" for i in range(5)))
    return load_text(corpus="file", path=str(p), vocab_size=300, context=64)


def _sid_vectors(n: int = 40, d: int = 4) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, d)).astype(np.float32) + 0.01


def _sid(x, **kw):
    from jaxrec.pretrain.semantic_ids import semantic_ids

    return semantic_ids(x, **kw)


case("semantic IDs", "K^L = 2^3 < 40 items without the unique level (codes cannot be unique)")(
    lambda ctx: _sid(_sid_vectors(), num_levels=3, codebook_size=2, unique=False))


@case("semantic IDs", "an item vector with NaN (row 5)")
def _sid_nan(ctx):
    x = _sid_vectors()
    x[5, 2] = np.nan
    return _sid(x, num_levels=2, codebook_size=4)


@case("semantic IDs", "an item with no features (all-zero vector, row 3)")
def _sid_zero(ctx):
    x = _sid_vectors()
    x[3] = 0.0
    return _sid(x, num_levels=2, codebook_size=4)


@case("semantic IDs", "an item with no features (empty text, row 1)")
def _sid_empty_text(ctx):
    from jaxrec.pretrain.semantic_ids import item_vectors

    return item_vectors("text", texts=["Toy Story. Year: 1995.", " ", "GoldenEye."])


case("semantic IDs", "codebook_size K=1")(lambda ctx: _sid(_sid_vectors(), num_levels=3, codebook_size=1))
case("semantic IDs", "num_levels L=0")(lambda ctx: _sid(_sid_vectors(), num_levels=0, codebook_size=4))
case("semantic IDs", "more codes than items at a level (K=64 > 40 items)")(
    lambda ctx: _sid(_sid_vectors(), num_levels=2, codebook_size=64))


def _sid_codes_file(ctx, name: str, edit: Callable[[np.ndarray], np.ndarray]):
    """The generative models' pre-training stage over a codes file (model.sid_path) edited by `edit`."""
    from jaxrec.data.sequential import load_sequential
    from jaxrec.pretrain.semantic_ids import sid_constants

    data = load_sequential(data_dir=str(ctx.ml100k), max_history=5, max_users=30)
    n = data.fitted.extra["num_items"]
    codes = np.stack([np.arange(n) % 7, np.arange(n) // 7], 1)
    p = ctx.path(name + ".npy")
    np.save(p, edit(codes))
    return sid_constants(data, {"sid_source": "file", "sid_path": str(p)})


case("semantic IDs", "codes file: two items share a code (model.sid_path)", "data")(
    lambda ctx: _sid_codes_file(ctx, "dup", lambda c: np.concatenate([c[:1], c[:-1]])))
case("semantic IDs", "codes file: one row short of the catalogue", "data")(
    lambda ctx: _sid_codes_file(ctx, "short", lambda c: c[:-1]))
case("semantic IDs", "codes file: float codes", "data")(
    lambda ctx: _sid_codes_file(ctx, "float", lambda c: c.astype(np.float32)))
case("semantic IDs", "codes file: a negative code", "data")(
    lambda ctx: _sid_codes_file(ctx, "neg", lambda c: c - (np.arange(len(c)) == 4)[:, None]))



def _rewrite_file(ctx, name: str, text: str, suffix: str = ".tsv"):
    """VALUE's reader of a user's (query, bidword, value[, window]) file (`jaxrec.data.bidwords`)."""
    from jaxrec.data.bidwords import read_rewrite_file

    p = ctx.path(name + suffix)
    p.write_text(text, encoding="utf-8")
    return read_rewrite_file(p)


REWRITE_OK = "query\tbidword\tvalue\twindow\nwatch heat\theat\t1.5\t0\nheat film\theat\t1.5\t0\n"
for _name, _input, _text, _suffix in (
        ("empty", "an empty file", "", ".tsv"),
        ("json", "a .json file", REWRITE_OK, ".json"),
        ("no_value", "header without the value column", "query\tbidword\nwatch heat\theat\n", ".tsv"),
        ("unknown_col", "header with an unknown column 'price'", "query\tbidword\tvalue\tprice\nq\tb\t1\t2\n", ".tsv"),
        ("fields", "a row with 2 of 4 fields (line 4)", REWRITE_OK + "only two\tfields\n", ".tsv"),
        ("empty_query", "an empty query (line 2)", "query,bidword,value\n ,heat,1\n", ".csv"),
        ("nan_text", "value 'cheap' is not a number (line 2)", "query,bidword,value\nq,heat,cheap\n", ".csv"),
        ("negative", "value -3 (line 2)", "query,bidword,value\nq,heat,-3\n", ".csv"),
        ("inf", "value inf (line 2)", "query,bidword,value\nq,heat,inf\n", ".csv"),
        ("window", "window '1.5' is not an integer (line 2)", "query,bidword,value,window\nq,heat,1,1.5\n", ".csv"),
        ("disagree", "the same bidword and window with two values (lines 2, 3)",
         "query,bidword,value\nq,heat,1\nr,heat,2\n", ".csv"),
        ("header_only", "a header and no data rows", "query,bidword,value\n", ".csv")):
    case("rewriting", _input)(lambda ctx, n=_name, t=_text, x=_suffix: _rewrite_file(ctx, n, t, x))


def _rewriting(ctx, **kw):
    """`dataset.name='rewriting'` (VALUE's SFT data, `jaxrec.data.bidwords.load_rewriting`)."""
    from jaxrec.data.bidwords import load_rewriting

    return load_rewriting(data_dir=str(ctx.ml100k), **kw)


case("rewriting", "dataset.source='s3'")(lambda ctx: _rewriting(ctx, source="s3"))
case("rewriting", "dataset.source='file' without dataset.path")(lambda ctx: _rewriting(ctx, source="file"))
case("rewriting", "dataset.vocab_size=100 (< 257 byte-level ids)")(lambda ctx: _rewriting(ctx, vocab_size=100))
case("rewriting", "dataset.context=8, shorter than a query + bidword row", "data")(
    lambda ctx: _rewriting(ctx, context=8, max_queries=50))


def _gflowgr(**kw):
    from jaxrec.generate.gflowgr import GFlowGRConfig

    return GFlowGRConfig(**kw)


for _kw, _input in (({"objective": "ppo"}, "GFlowGR objective 'ppo'"), ({"eps": 0.0}, "GFlowGR reward eps = 0 (log R = -inf)"),
                    ({"num_samples": 1}, "GFlowGR 1 trajectory per user with the positive in slot 0"),
                    ({"cf_start": 1.5}, "GFlowGR CF share 1.5"), ({"schedule": "cosine"}, "GFlowGR schedule 'cosine'"),
                    ({"temperature": 0.0}, "GFlowGR sampling temperature 0")):
    case("generative fine-tuning", _input)(lambda ctx, kw=_kw: _gflowgr(**kw))

# ----------------------------------------------------------------------------- running

def _short(text: str, n: int = 160) -> str:
    text = " / ".join(line.strip() for line in str(text).splitlines() if line.strip())
    return text if len(text) <= n else text[: n - 1] + "…"


def run_case(c: Case, ctx: Context) -> dict:
    """Runs one case -> {outcome: error | usage | handled | traceback | accepted, error, message, where, seconds}."""
    out: dict = {"category": c.category, "input": c.input, "tier": c.tier, "expect": c.expect}
    stderr = io.StringIO()
    tic = time.perf_counter()
    try:
        with contextlib.redirect_stderr(stderr):
            value = c.fn(ctx)
    except JAXREC_ERRORS as e:
        out.update(outcome="error", error=type(e).__name__, message=str(e))
    except SystemExit as e:  # eval.py: argparse (usage) or cli._fail (a jaxrec error printed as "error: ...")
        text = stderr.getvalue().strip()
        line = next((l for l in text.splitlines() if l.startswith("error:") or ": error:" in l), text[-300:])
        cause = e.__context__
        if isinstance(cause, JAXREC_ERRORS):
            out.update(outcome="error", error=f"{type(cause).__name__} (eval.py exit {e.code})", message=str(cause))
        elif e.code == 2 and ": error:" in line:
            out.update(outcome="usage", error="argparse (exit 2)", message=line)
        else:
            out.update(outcome="traceback", error=f"SystemExit({e.code})", message=line)
    except Exception as e:  # noqa: BLE001 -- anything else is a failure of the table
        tb = traceback.extract_tb(e.__traceback__)
        frame = tb[-1] if tb else None
        out.update(outcome="traceback", error=type(e).__name__, message=str(e)[:2000],
                   where=f"{os.path.relpath(frame.filename, ROOT)}:{frame.lineno}" if frame else "")
    else:
        if isinstance(value, Handled):
            out.update(outcome="handled", error="", message=str(value))
        elif isinstance(value, tuple) and value and isinstance(value[-1], Handled):
            out.update(outcome="handled", error="", message=str(value[-1]))
        else:
            out.update(outcome="accepted", error="", message="no error, no visible handling")
    out["seconds"] = round(time.perf_counter() - tic, 3)
    out["message"] = out["message"].replace(str(ctx.root), "<tmp>")[:4000]  # stable across runs
    return out


FAILURES = ("traceback", "accepted")


def run(cases: list[Case], root: Path, ml100k: str, verbose: bool = True) -> list[dict]:
    ctx = Context(root, ml100k)
    results = []
    for i, c in enumerate(cases, 1):
        r = run_case(c, ctx)
        results.append(r)
        if verbose:
            flag = "FAIL " if r["outcome"] in FAILURES else ""
            print(f"{i:3d} {flag}[{c.category}] {c.input}: {r['outcome']} {r['error']} {_short(r['message'], 140)} "
                  f"({r['seconds']:.1f}s)", flush=True)
    return results


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_page(results: list[dict], m: dict, seconds: float) -> Path:
    counts = {k: sum(r["outcome"] == k for r in results) for k in ("error", "usage", "handled", "traceback", "accepted")}
    lines = [
        "# Bad inputs: a clear error or a documented, counted handling for each",
        "",
        f"`{command()}` — {machine_line(m)}; {len(results)} cases in {seconds:.0f} s.",
        "",
        "Issue 18's acceptance table. Each row feeds one bad input to a public entry point (config overrides and files, "
        "`load_tabular` on CSV and Parquet files, `load_movielens_100k` on an edited copy of ml-100k, `evaluate_checkpoint` "
        "/ `eval.py` on a damaged workdir, `train_and_evaluate` rerun on a trained workdir). Outcome: the jaxrec error class "
        "raised (`train.py` / `eval.py` print its message as `error: ...` and exit 2), `usage` for argparse's own "
        "error, `handled` for an input accepted with its documented handling made visible (checked by the case), or a "
        "failure: **traceback** (any other exception) or **accepted** (no error, nothing visible).",
        "",
        f"**{counts['error']} clear errors, {counts['usage']} usage error(s), {counts['handled']} documented handlings, "
        f"{counts['traceback']} tracebacks, {counts['accepted']} silent acceptances.** Messages are shortened to 160 "
        "characters (full text in `benchmarks/results/bad_inputs.json`). "
        "`tests/test_bad_inputs.py` reruns the cases that need no MovieLens read and no training.",
        "",
        "| # | category | input | outcome | message |",
        "|---:|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        outcome = {"error": r["error"], "usage": "usage (argparse)", "handled": "handled"}.get(
            r["outcome"], f"**{r['outcome']}** {r['error']}")
        lines.append(f"| {i} | {r['category']} | {_cell(r['input'])} | {_cell(outcome)} | {_cell(_short(r['message']))} |")
    bad = counts["traceback"] + counts["accepted"]
    lines += ["", *claims_table([{
        "claim": "every bad input gets a clear error naming what is wrong, or a documented handling made visible",
        "figure": f"{len(results) - bad} of {len(results)} cases; {counts['traceback']} tracebacks, {counts['accepted']} silent",
        "seeds": f"{len(results)} cases", "rule": "every case", "verdict": "met" if bad == 0 else "not met"}])]
    path = DOCS / "bad_inputs.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default=default_data_dir(), help="the GroupLens ml-100k folder")
    p.add_argument("--tier", choices=["fast", "data", "train"], default="train", help="run cases up to this tier")
    p.add_argument("--category", choices=CATEGORIES, help="only this category")
    args = p.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("jaxrec").setLevel(logging.ERROR)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    order = ("fast", "data", "train")
    cases = [c for c in CASES if order.index(c.tier) <= order.index(args.tier) and args.category in (None, c.category)]
    full = len(cases) == len(CASES)
    tic = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bad_inputs_") as root:
        results = run(cases, Path(root), args.data_dir)
    seconds = time.perf_counter() - tic
    failures = [r for r in results if r["outcome"] in FAILURES]
    counts = {k: sum(r["outcome"] == k for r in results) for k in ("error", "usage", "handled", "traceback", "accepted")}
    print(f"{len(results)} cases in {seconds:.0f} s: {counts}")
    if full:
        m = machine()
        write_json("bad_inputs", {"command": command(), "machine": m, "seconds": round(seconds, 1), "counts": counts,
                                  "cases": [{"n": i, **r} for i, r in enumerate(results, 1)]})
        write_page(results, m, seconds)
    for r in failures:
        print(f"FAILED: [{r['category']}] {r['input']}: {r['outcome']} {r['error']} {r.get('where', '')} {_short(r['message'])}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
