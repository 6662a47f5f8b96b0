"""Table and feature specs of the embedding engine, kept apart (as in jax-tpu-embedding).

A `TableSpec` says what a table *is* (rows, width, initializer, default pooling, its own
optimizer and row sharding, if any); a `FeatureSpec` says how a batch field *reads* one
(which table, one id or a bag / sequence of up to `max_len` ids, pooled or not). Several
features may read one table (a history and the target item); the tables of one
`EmbeddingLayer` that share an optimizer and a sharding are stacked into one array
(`StackLayout`, as jax-tpu-embedding stacks tables with one optimizer), derived from the
table specs, never written by hand.

`specs_from_features` derives both from the data-side feature specs
(`jaxrec.data.features`): one table per feature or per `group`, its rows the largest
`vocab_size` of the features that share it; `TableOptions` per table name (from the
config's `tables` section) override the run-wide defaults.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Mapping

from jaxrec.data.features import Feature, Sequence, is_embedded
from jaxrec.embedding.compressed import IndexScheme
from jaxrec.errors import ConfigError


SHARDINGS = ("mod", "contiguous")  # row placements of a table on a mesh (`jaxrec.embedding.sharded.RowSharding`)
Sharding = Literal["mod", "contiguous"]
STARTS = ("full", "uniform")       # AMTL starting points
OptimizerItems = tuple[tuple[str, Any], ...]  # a sparse optimizer config as sorted (key, value) pairs


def optimizer_items(cfg: Mapping[str, Any] | OptimizerItems | None) -> OptimizerItems | None:
    """A sparse optimizer config dict (keys of `sparse_optimizer`, e.g. {'name': 'ftrl',
    'lr': 0.05}) -> hashable sorted (key, value) pairs; None stays None."""
    if cfg is None:
        return None
    items = cfg.items() if isinstance(cfg, Mapping) else cfg
    return tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in items))


@dataclasses.dataclass(frozen=True)
class AMTLOptions:
    """A table's AMTL settings (config `tables.<name>.amtl`; the mask is `jaxrec.embedding.amtl`).

    Attributes:
      hidden: hidden widths of each twin MLP.
      size_penalty: lambda of the size penalty (`jaxrec.embedding.amtl` docstring).
      start: 'full' (start with every value at size D) | 'uniform'.
    """

    hidden: tuple[int, ...] = (32,)
    size_penalty: float = 1e-2
    start: str = "full"

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.start not in STARTS:
            raise ConfigError(f"amtl.start={self.start!r}: expected one of {STARTS}")
        if not (self.size_penalty >= 0 and math.isfinite(self.size_penalty)):
            raise ConfigError(f"amtl.size_penalty={self.size_penalty!r}: expected a finite number >= 0")

    @classmethod
    def from_items(cls, items) -> "AMTLOptions":
        """From a config dict or sorted (key, value) pairs; unknown keys raise ConfigError."""
        opts = dict(items or {})
        known = {f.name for f in dataclasses.fields(cls)}
        if set(opts) - known:
            raise ConfigError(f"unknown amtl option(s) {sorted(set(opts) - known)}; valid: {sorted(known)}")
        return cls(**opts)


@dataclasses.dataclass(frozen=True)
class TableOptions:
    """Per-table settings that override the run's defaults; None keeps the default.

    Attributes:
      optimizer: keys of the `sparse_optimizer` config section that this table changes,
        e.g. {'name': 'ftrl', 'lr': 0.05} (a dict, stored as sorted pairs).
      sharding: row placement on a mesh, 'mod' or 'contiguous' (else `mesh.table_sharding`).
      initializer, init_scale: as in `TableSpec`.
      compression: a compressed table instead of one row per id: `IndexScheme` options
        without `vocab_size` (`jaxrec.embedding.compressed`), e.g. {'kind': 'binary_code',
        'num_blocks': 4} or {'kind': 'hash', 'buckets': 1000} (a dict, stored as sorted pairs).
      amtl: an AMTL per-value size mask after the lookup (`jaxrec.embedding.amtl.AMTLOptions`
        keys, e.g. {'size_penalty': 0.01}; {} for the defaults); None: no mask.
    """

    optimizer: OptimizerItems | None = None
    sharding: Sharding | None = None
    initializer: Literal["normal", "uniform", "zeros"] | None = None
    init_scale: float | None = None
    compression: OptimizerItems | None = None
    amtl: Any = None

    def __post_init__(self):
        object.__setattr__(self, "optimizer", optimizer_items(self.optimizer))
        object.__setattr__(self, "compression", optimizer_items(self.compression))
        if self.amtl is not None and not isinstance(self.amtl, AMTLOptions):
            object.__setattr__(self, "amtl", AMTLOptions.from_items(self.amtl))
        if self.sharding is not None and self.sharding not in SHARDINGS:
            raise ValueError(f"TableOptions.sharding={self.sharding!r}: expected one of {SHARDINGS}")


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """One logical embedding table `[rows, dim]`; row 0 is the unknown / padding id.

    `optimizer` (sparse optimizer config items that differ from the run's `sparse_optimizer`)
    and `sharding` ('mod' | 'contiguous' row placement) are None for the run's defaults;
    tables that differ in either are stacked apart, so each stack has one of each.
    """

    name: str
    rows: int
    dim: int
    initializer: Literal["normal", "uniform", "zeros"] = "normal"
    init_scale: float = 1e-4          # normal: std; uniform: half-width
    combiner: Literal["mean", "sum"] = "mean"  # pooling of bags that read this table, unless the feature says
    optimizer: OptimizerItems | None = None
    sharding: Sharding | None = None
    scheme: Any = None  # an IndexScheme: ids -> K rows of this (compressed) table, fused; None: row = id
    amtl: Any = None    # AMTLOptions: a per-value size mask after the lookup (jaxrec.embedding.amtl)

    def __post_init__(self):
        if self.rows < 1 or self.dim < 1:
            raise ValueError(f"TableSpec {self.name!r}: rows={self.rows} and dim={self.dim} must be >= 1")
        if self.initializer not in ("normal", "uniform", "zeros"):
            raise ValueError(f"TableSpec {self.name!r}: unknown initializer {self.initializer!r}")
        if self.sharding is not None and self.sharding not in SHARDINGS:
            raise ValueError(f"TableSpec {self.name!r}: sharding={self.sharding!r}, expected one of {SHARDINGS}")
        object.__setattr__(self, "optimizer", optimizer_items(self.optimizer))

    @property
    def stack_key(self) -> tuple:
        """Tables with equal keys are stacked together: same width, optimizer and sharding."""
        return (self.dim, self.optimizer, self.sharding)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """How one batch field reads a table.

    Attributes:
      name: the batch key (ids `[B]`, or `[B, max_len]` with lengths for bags/sequences).
      table: the `TableSpec.name` it reads.
      max_len: 1 for one id per example, else the padded bag / sequence length.
      pooled: bags are pooled into one vector; False keeps the `[B, L, D]` sequence.
      combiner: pooling ('mean' | 'sum'); None takes the table's.
      batch_capacity: static cap on this feature's ids per batch (overflow dropped and counted).
    """

    name: str
    table: str
    max_len: int = 1
    pooled: bool = True
    combiner: Literal["mean", "sum"] | None = None
    batch_capacity: int | None = None


def table_name(feature: Feature) -> str:
    """Logical table a feature reads: its `group` if set, else its own name."""
    return getattr(feature, "group", None) or feature.name


def specs_from_features(features: tuple[Feature, ...], dim: int, init_scale: float = 1e-4,
                        initializer: str = "normal", options: Mapping[str, TableOptions] | None = None,
                        ) -> tuple[tuple[TableSpec, ...], tuple[FeatureSpec, ...]]:
    """Data feature specs (vocab sizes resolved) -> (tables in first-use order, feature specs).

    `options` maps table names to `TableOptions` overriding `init_scale` / `initializer` and
    the run's optimizer and sharding. Numeric float features read no table and are left out.
    """
    rows: dict[str, int] = {}
    feats = []
    for f in features:
        if not is_embedded(f):
            continue
        if not f.vocab_size:
            raise ValueError(f"feature {f.name!r} has no vocab_size; fit the encoders first (jaxrec.data.encoding.fit)")
        table = table_name(f)
        rows[table] = max(rows.get(table, 0), int(f.vocab_size))
        if isinstance(f, Sequence):
            feats.append(FeatureSpec(f.name, table, f.max_len, f.combiner is not None, f.combiner, f.batch_capacity))
        else:
            feats.append(FeatureSpec(f.name, table))
    options = dict(options or {})
    unknown = sorted(set(options) - set(rows))
    if unknown:
        raise ValueError(f"table options for {unknown}, which no feature reads; tables: {sorted(rows)}")
    tables = []
    for n, r in rows.items():
        o = options.get(n, TableOptions())
        scheme = compression_scheme(n, r, o.compression)
        tables.append(TableSpec(n, scheme.num_rows if scheme else r, dim, o.initializer or initializer,
                                init_scale if o.init_scale is None else o.init_scale, optimizer=o.optimizer,
                                sharding=o.sharding, scheme=scheme, amtl=o.amtl))
    return tuple(tables), tuple(feats)


def compression_scheme(table: str, vocab_size: int, items: OptimizerItems | None):
    """Table `table`'s `IndexScheme` from its `compression` options (None: uncompressed)."""
    if not items:
        return None
    opts = dict(items)
    if "vocab_size" in opts:
        raise ValueError(f"tables.{table}.compression: vocab_size comes from the data, do not set it")
    try:
        scheme = IndexScheme(vocab_size=vocab_size, **opts)
    except TypeError as e:
        raise ValueError(f"tables.{table}.compression: {e}") from None
    if scheme.combine == "concat":
        raise ValueError(f"tables.{table}.compression: fusion 'concat' changes the width; the embedding layer needs sum, mean or prod")
    return scheme
