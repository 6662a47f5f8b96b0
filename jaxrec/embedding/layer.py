"""The one embedding layer every model uses: feature specs in, `[B, F, D]` field embeddings out.

Tables live in their own Flax variable collection, `EMBEDDING` (the "sparse" side of the
TrainState), apart from the dense `params`, so the trainer can update them with their own
optimizer. A logical table exists per feature, or per `group` when several features share
one (e.g. a history and the target item); row 0 of each is the "unknown / padding" id.

Storage is *stacked*: all logical tables of a layer are rows of one `[sum_t V_t, D]` array
(table t starts at `offsets[t]`), as jax-tpu-embedding stacks small tables. One gather, one
scatter-add in the backward pass and one optimizer update then serve every field instead
of one per table, which matters on CPU and for many small tables. `StackLayout` maps
between the stacked array and the logical tables (`unstack` / `stack`).

Row-wise sparse training: every gather is followed by `self.perturb(ROWS...)` and
`self.sow(LOOKUP_IDS, ...)` of its stacked row ids. Both are no-ops in a plain `apply`; a
trainer that passes zero 'perturbations' and makes `LOOKUP_IDS` mutable gets the gradient
w.r.t. each gathered row and the ids it came from, so it can update only the touched rows
(`jaxrec.train.state`), with no `[V, D]` gradient ever formed.

A table with AMTL options (`TableSpec.amtl`) has its looked-up vectors masked to a learned
per-value size (`jaxrec.embedding.amtl`; tokens of a sequence before pooling), read from the
batch's frequency columns, and its size penalty sown into `AUX_LOSSES`, which the trainer adds
to the loss.

Sequence (multi-hot) features are pooled over their first `length` tokens with the
feature's combiner; sequences with `combiner=None` (behaviours for attention) are not fields:
with `return_sequences=True` the layer also returns their token embeddings `[B, L, D]`; numeric float features are embedded as `value * v_field` (one learned
vector per field), so every field becomes one `D`-vector token.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.data.features import Feature, Sequence, is_embedded, lengths_key
from jaxrec.embedding.amtl import AMTLMask, frequency_key, mask_name
from jaxrec.embedding.compressed import fuse
from jaxrec.embedding.specs import TableOptions, specs_from_features, table_name

EMBEDDING = "embedding"      # Flax collection holding the tables
STACKED = "stacked"          # name of the stacked table inside a layer's collection
ROWS = "rows"                # perturbation names of the gathered rows (row-wise sparse training)
LOOKUP_IDS = "lookup_ids"    # collection the layer sows its looked-up row ids into
COUNTERS = "counters"        # collection of per-step counts a trainer reports (overflow ids)
AUX_LOSSES = "losses"        # collection of scalar terms a trainer adds to the loss (AMTL's size penalty)


@dataclasses.dataclass(frozen=True)
class StackLayout:
    """Where each logical table sits in the stacked array.

    Attributes:
      names: logical table names, in stacking order.
      sizes: rows of each table (the largest `vocab_size` of the features sharing it).
      specs: their `TableSpec`s (empty for a layout given by names and sizes only).
    """

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    specs: tuple = dataclasses.field(default=(), compare=False)  # TableSpecs (initializers of re-drawn rows)

    @classmethod
    def from_tables(cls, tables) -> "StackLayout":
        """Layout of `TableSpec`s stacked in the given order."""
        return cls(tuple(t.name for t in tables), tuple(int(t.rows) for t in tables), tuple(tables))

    @classmethod
    def from_features(cls, features: tuple[Feature, ...]) -> "StackLayout":
        """Layout of the tables that data feature specs read (`specs_from_features`)."""
        return cls.from_tables(specs_from_features(features, dim=1)[0])

    @property
    def optimizer(self):
        """The stack's own sparse optimizer config items (None: the run's)."""
        return self.specs[0].optimizer if self.specs else None

    @property
    def sharding(self) -> str | None:
        """The stack's own row sharding, 'mod' | 'contiguous' (None: the run's)."""
        return self.specs[0].sharding if self.specs else None

    @property
    def offsets(self) -> dict[str, int]:
        starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int)
        return dict(zip(self.names, starts.tolist()))

    @property
    def total_rows(self) -> int:
        return int(sum(self.sizes))

    def stored_rows(self, rows=None) -> int:
        """Rows of the stacked array as stored: `total_rows`, or `S * R` when row-sharded by
        `rows` (a `jaxrec.embedding.sharded.RowSharding`)."""
        return self.total_rows if rows is None else rows.padded_rows(self.total_rows)

    def unstack(self, stacked: jnp.ndarray) -> dict[str, jnp.ndarray]:
        """Stacked `[total_rows, D]` -> logical tables `{name: [V_t, D]}`."""
        return {n: stacked[o:o + s] for (n, o), s in zip(self.offsets.items(), self.sizes)}

    def stack(self, tables: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
        """Logical tables `{name: [V_t, D]}` -> stacked `[total_rows, D]`."""
        return jnp.concatenate([tables[n] for n in self.names], axis=0)


def _initializer(spec) -> Callable:
    if spec.initializer == "normal":
        return nn.initializers.normal(spec.init_scale)
    if spec.initializer == "uniform":
        return nn.initializers.uniform(2 * spec.init_scale)  # then shifted to [-scale, scale)
    return nn.initializers.zeros


def draw_rows(spec, rng, num_rows: int) -> jnp.ndarray:
    """`num_rows` fresh rows `[num_rows, spec.dim]` from a `TableSpec`'s initializer."""
    x = _initializer(spec)(rng, (num_rows, spec.dim), jnp.float32)
    return x - spec.init_scale if spec.initializer == "uniform" else x


def init_stacked(rng, tables) -> jnp.ndarray:
    """Initial stacked table `[sum rows, dim]` for `TableSpec`s: one draw when they share an
    initializer, else one per table, concatenated."""
    if len({(t.initializer, t.init_scale) for t in tables}) == 1:
        return draw_rows(tables[0], rng, sum(t.rows for t in tables))
    keys = jax.random.split(rng, len(tables))
    return jnp.concatenate([draw_rows(t, k, t.rows) for t, k in zip(tables, keys)])


def pool(emb: jnp.ndarray, lengths: jnp.ndarray, combiner: str) -> jnp.ndarray:
    """Pools token embeddings `[B, L, D]` over the first `lengths[b]` tokens -> `[B, D]`.

    'sum' adds them, 'mean' divides by max(length, 1) (an empty list pools to zeros).
    """
    mask = (jnp.arange(emb.shape[1])[None, :] < lengths[:, None]).astype(emb.dtype)
    total = jnp.einsum("bld,bl->bd", emb, mask)
    if combiner == "sum":
        return total
    if combiner == "mean":
        return total / jnp.maximum(lengths, 1).astype(emb.dtype)[:, None]
    raise ValueError(f"unknown combiner {combiner!r}; expected 'mean' or 'sum'")


def apply_capacity(lengths: jnp.ndarray, capacity: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Static per-batch id capacity: lengths `[B]` -> (kept lengths `[B]`, ids dropped `[]`).

    Bags keep their ids in row order until `capacity` ids of the batch are used; later ids
    are dropped (jax-tpu-embedding's static capacities), and their number is returned so it
    is reported, never silent.
    """
    start = jnp.cumsum(lengths) - lengths
    kept = jnp.clip(capacity - start, 0, lengths).astype(lengths.dtype)
    return kept, jnp.sum(lengths - kept)


def is_field(feature: Feature) -> bool:
    """True for the features `EmbeddingLayer` returns as fields (all but the unpooled sequences,
    `combiner=None`, which it returns apart with `return_sequences`)."""
    return not (isinstance(feature, Sequence) and feature.combiner is None)


def field_names(features: tuple[Feature, ...]) -> list[str]:
    """Names of the features that are fields of `EmbeddingLayer`'s output, in its field order."""
    return [f.name for f in features if is_field(f)]


def rows_name(base: str, stack: str) -> str:
    """Perturbation / sown-id name of a gather from `stack` (plain `base` for the default stack)."""
    return base if stack == STACKED else f"{base}:{stack}"


def stack_of(rows_name_: str) -> str:
    """The stack a perturbation / sown-id name (`rows_name`) gathered from."""
    return rows_name_.split(":", 1)[1] if ":" in rows_name_ else STACKED


def is_stack(key: str) -> bool:
    """True for the collection key of a stacked table (`stacked`, `stacked_1`, ...)."""
    return key == STACKED or (key.startswith(STACKED + "_") and key[len(STACKED) + 1:].isdigit())


def group_stacks(tables) -> dict[str, StackLayout]:
    """TableSpecs -> `{stack name: StackLayout}`: tables with one `stack_key` (width, optimizer,
    sharding) share a stack. The run-default stack (no own optimizer or sharding) is `STACKED`;
    the others follow in first-use order as `stacked_1`, `stacked_2`, ..."""
    groups: dict[tuple, list] = {}
    for t in tables:
        groups.setdefault(t.stack_key, []).append(t)
    own = [k for k in groups if k[1:] != (None, None)]
    names = {k: STACKED for k in groups if k[1:] == (None, None)} | {k: f"{STACKED}_{i}" for i, k in enumerate(own, 1)}
    return {n: StackLayout.from_tables(groups[k]) for k, n in names.items()}


class EmbeddingLayer(nn.Module):
    """Looks up every field of a batch: `batch -> [B, F, D]`, F = len(features).

    Attributes:
      features: resolved feature specs (`vocab_size` set), in field order.
      dim: embedding width D.
      init_std: std of the normal initializer of the tables.
      tables: per-table overrides, `(table name, TableOptions)` pairs (own optimizer, row
        sharding, initializer); tables with their own optimizer or sharding get their own stack.
      return_sequences: also return the unpooled sequences (`combiner=None`): `(fields
        [B, F, D], {name: tokens [B, L, D]})`, F counting only the other features.
    """

    features: tuple[Feature, ...]
    dim: int
    init_std: float = 1e-4
    tables: tuple[tuple[str, TableOptions], ...] = ()
    return_sequences: bool = False

    @property
    def specs(self):
        """(TableSpecs, FeatureSpecs) this layer derives from its features (`jaxrec.embedding.specs`)."""
        return specs_from_features(self.features, self.dim, self.init_std, options=dict(self.tables))

    @property
    def stacks(self) -> dict[str, StackLayout]:
        """`{stack name: StackLayout}` of this layer's tables (`group_stacks`)."""
        return group_stacks(self.specs[0])

    def lookup(self, table: jnp.ndarray, ids: jnp.ndarray, stack: str = STACKED) -> jnp.ndarray:
        """`table[ids]`: rows `[..., D]` of ids `[...]` into stack `stack`. The one gather of the
        layer, and the hook a trainer intercepts to read row-sharded tables (jaxrec.distributed)."""
        return jnp.take(table, ids, axis=0)

    def _gather(self, table: jnp.ndarray, ids: jnp.ndarray, name: str, stack: str) -> jnp.ndarray:
        """`lookup(table, ids, stack)`, observable by a row-wise sparse trainer (module docstring)."""
        rows = self.lookup(table, ids, stack)
        if self.is_initializing():  # init returns only the parameters and tables
            return rows
        name = rows_name(name, stack)
        self.sow(LOOKUP_IDS, name, ids)
        return self.perturb(name, rows)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
        """batch: ids `[B]` / `[B, L]` (+ lengths `[B]`), floats `[B]` -> `[B, F, D]` (module docstring;
        with `return_sequences`, also `{name: [B, L, D]}` of the unpooled sequences)."""
        stacks = self.stacks
        arrays = {s: self.variable(EMBEDDING, s, lambda l=l: init_stacked(self.make_rng("params"), l.specs)).value
                  for s, l in stacks.items()}
        where = {t: (s, l.offsets[t]) for s, l in stacks.items() for t in l.names}  # table -> (stack, offset)
        init = nn.initializers.normal(self.init_std)  # numeric-field vectors
        single = [f for f in self.features if is_embedded(f) and not isinstance(f, Sequence)]
        schemes = {t.name: t.scheme for l in stacks.values() for t in l.specs if t.scheme is not None}
        masks = {t.name: (AMTLMask(self.dim, t.amtl.hidden, t.amtl.start, name=mask_name(t.name)), t.amtl.size_penalty)
                 for l in stacks.values() for t in l.specs if t.amtl is not None and self.dim > 1}  # width 1: nothing to mask

        def masked(f, vectors):  # AMTL: each value keeps its learned number of dimensions
            if table_name(f) not in masks:
                return vectors
            module, penalty = masks[table_name(f)]
            mask, size = module.mask_and_size(batch[frequency_key(f.name)])
            if not self.is_initializing() and penalty:
                self.sow(AUX_LOSSES, f"amtl_size/{f.name}", penalty * jnp.mean(size) / self.dim)
            return vectors * mask

        def compressed(f, ids):  # a compressed table: K rows per id, fused
            scheme = schemes[table_name(f)]
            s, offset = where[table_name(f)]
            rows = self._gather(arrays[s], scheme.indices(ids) + offset, f"{ROWS}_{f.name}", s)
            return fuse(rows, scheme.combine)

        # One gather per stack for all its single-token fields: [B, S_k, D].
        columns = {f.name: compressed(f, batch[f.name]) for f in single if table_name(f) in schemes}
        single = [f for f in single if table_name(f) not in schemes]
        for s in stacks:
            fs = [f for f in single if where[table_name(f)][0] == s]
            if fs:
                ids = jnp.stack([batch[f.name] + where[table_name(f)][1] for f in fs], axis=1)
                gathered = self._gather(arrays[s], ids, ROWS, s)
                if len(fs) == len(self.features) and not masks:
                    return (gathered, {}) if self.return_sequences else gathered
                columns.update({f.name: gathered[:, i] for i, f in enumerate(fs)})
        fields, sequences = [], {}
        for f in self.features:
            if not is_embedded(f):
                v = self.param(f"numeric_{f.name}", init, (self.dim,))
                fields.append(batch[f.name].astype(jnp.float32)[:, None] * v)
            elif isinstance(f, Sequence):
                s, offset = where[table_name(f)]
                tokens = (compressed(f, batch[f.name]) if table_name(f) in schemes else
                          self._gather(arrays[s], batch[f.name] + offset, f"{ROWS}_{f.name}", s))
                if not is_field(f):  # a sequence for attention
                    sequences[f.name] = masked(f, tokens)
                    continue
                lengths = batch[lengths_key(f.name)]
                if f.batch_capacity is not None:
                    lengths, dropped = apply_capacity(lengths, f.batch_capacity)
                    if not self.is_initializing():
                        self.sow(COUNTERS, f"overflow_ids/{f.name}", dropped)
                fields.append(pool(masked(f, tokens), lengths, f.combiner))
            else:
                fields.append(masked(f, columns[f.name]))
        fields = jnp.stack(fields, axis=1)
        return (fields, sequences) if self.return_sequences else fields


def embedding_layouts(model: nn.Module, example_batch: Mapping[str, jnp.ndarray]) -> dict[tuple[str, ...], StackLayout]:
    """`{stack path: StackLayout}` of every stacked table a model's EmbeddingLayers hold, the
    path being the layer's module path plus the stack name, e.g. `('embedding', 'stacked')`
    (found by tracing `model.init` abstractly with a method interceptor; nothing is computed)."""
    found: dict[tuple[str, ...], StackLayout] = {}

    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, EmbeddingLayer) and context.method_name == "__call__":
            for s, layout in context.module.stacks.items():
                found[tuple(context.module.path) + (s,)] = layout
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), example_batch))
    return found


def stacked_layout_at(path: tuple[str, ...], layouts: Mapping[tuple[str, ...], StackLayout]) -> StackLayout | None:
    """The StackLayout of the array at state-dict `path`, if it lies under a stack path of
    `layouts` (the stacked table itself, or a per-row optimizer slot of one); None elsewhere."""
    return layouts.get(stack_path_in(path, layouts))


def stack_path_in(path: tuple[str, ...], layouts: Mapping[tuple[str, ...], StackLayout]) -> tuple[str, ...] | None:
    """The key of `layouts` (a stack path) that `path` passes through, if any."""
    for i, key in enumerate(path):
        if is_stack(key):
            for stack in layouts:
                if len(stack) <= i + 1 and tuple(path[i + 1 - len(stack):i + 1]) == stack:
                    return stack
    return None
