"""Table and feature specs of the embedding engine, kept apart (as in jax-tpu-embedding).

A `TableSpec` says what a table *is* (rows, width, initializer, default pooling); a
`FeatureSpec` says how a batch field *reads* one (which table, one id or a bag / sequence of
up to `max_len` ids, pooled or not). Several features may read one table (a history and the
target item); the tables of one `EmbeddingLayer` are stacked into one array
(`StackLayout`), which is derived from the table specs, never written by hand.

`specs_from_features` derives both from the data-side feature specs
(`jaxrec.data.features`): one table per feature or per `group`, its rows the largest
`vocab_size` of the features that share it.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from jaxrec.data.features import Feature, Sequence, is_embedded


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """One logical embedding table `[rows, dim]`; row 0 is the unknown / padding id."""

    name: str
    rows: int
    dim: int
    initializer: Literal["normal", "uniform", "zeros"] = "normal"
    init_scale: float = 1e-4          # normal: std; uniform: half-width
    combiner: Literal["mean", "sum"] = "mean"  # pooling of bags that read this table, unless the feature says

    def __post_init__(self):
        if self.rows < 1 or self.dim < 1:
            raise ValueError(f"TableSpec {self.name!r}: rows={self.rows} and dim={self.dim} must be >= 1")
        if self.initializer not in ("normal", "uniform", "zeros"):
            raise ValueError(f"TableSpec {self.name!r}: unknown initializer {self.initializer!r}")


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
                        initializer: str = "normal") -> tuple[tuple[TableSpec, ...], tuple[FeatureSpec, ...]]:
    """Data feature specs (vocab sizes resolved) -> (tables in first-use order, feature specs).

    Numeric float features read no table and are left out.
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
    tables = tuple(TableSpec(n, r, dim, initializer, init_scale) for n, r in rows.items())
    return tables, tuple(feats)
