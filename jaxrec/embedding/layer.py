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

The layer's stacks and gathers come from its `LayerPlan` (`jaxrec.embedding.plan`), a pure
function of its fields that the trainer computes too, without tracing the model
(`embedding_plan`). A model builds its layers with `embedding_layer(self, name)`, the widths
coming from the model's `EMBEDDING_LAYERS` declaration.

Row-wise sparse training: every gather is followed by `self.perturb(name, ...)` and
`self.sow(LOOKUP_IDS, name, ...)` of its stacked row ids, `name` being the gather's name in
the plan. Both are no-ops in a plain `apply`; a trainer that passes zero 'perturbations' and
makes `LOOKUP_IDS` mutable gets the gradient w.r.t. each gathered row and the ids it came
from, so it can update only the touched rows (`jaxrec.embedding.rowwise`), with no `[V, D]`
gradient ever formed.

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

from typing import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.data.features import Feature, Sequence, is_embedded, lengths_key
from jaxrec.embedding.amtl import AMTLMask, frequency_key, mask_name
from jaxrec.embedding.compressed import fuse
from jaxrec.embedding.plan import (STACKED, LayerPlan, StackLayout, declared_layers, embedding_plan, plan_layer)
from jaxrec.embedding.specs import TableOptions, table_name
from jaxrec.nn.layers import AUX_LOSSES  # re-exported: the trainer adds these terms to the loss

EMBEDDING = "embedding"      # Flax collection holding the tables
LOOKUP_IDS = "lookup_ids"    # collection the layer sows its looked-up row ids into
COUNTERS = "counters"        # collection of per-step counts a trainer reports (overflow ids)


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
    def plan(self) -> LayerPlan:
        """This layer's stacks and gathers (`jaxrec.embedding.plan.plan_layer` of its fields)."""
        return plan_layer(tuple(self.features), self.dim, self.init_std, tuple(self.tables))

    @property
    def stacks(self) -> dict[str, StackLayout]:
        """`{stack name: StackLayout}` of this layer's tables."""
        return self.plan.layouts

    def lookup(self, table: jnp.ndarray, ids: jnp.ndarray, stack: str = STACKED) -> jnp.ndarray:
        """`table[ids]`: rows `[..., D]` of ids `[...]` into stack `stack`. The one gather of the
        layer, and the hook a trainer intercepts to read row-sharded tables (jaxrec.distributed)."""
        return jnp.take(table, ids, axis=0)

    def _gather(self, table: jnp.ndarray, ids: jnp.ndarray, stack: str, feature: str | None = None) -> jnp.ndarray:
        """`lookup(table, ids, stack)`, observable by a row-wise sparse trainer under the plan's
        name of the gather (module docstring)."""
        rows = self.lookup(table, ids, stack)
        if self.is_initializing():  # init returns only the parameters and tables
            return rows
        name = self.plan.gather_name(stack, feature)
        self.sow(LOOKUP_IDS, name, ids)
        return self.perturb(name, rows)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
        """batch: ids `[B]` / `[B, L]` (+ lengths `[B]`), floats `[B]` -> `[B, F, D]` (module docstring;
        with `return_sequences`, also `{name: [B, L, D]}` of the unpooled sequences)."""
        plan = self.plan
        stacks = plan.layouts
        arrays = {s: self.variable(EMBEDDING, s, lambda l=l: init_stacked(self.make_rng("params"), l.specs)).value
                  for s, l in stacks.items()}
        where = plan.where  # table -> (stack, offset)
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
            rows = self._gather(arrays[s], scheme.indices(ids) + offset, s, f.name)
            return fuse(rows, scheme.combine)

        # One gather per stack for all its single-token fields: [B, S_k, D].
        columns = {f.name: compressed(f, batch[f.name]) for f in single if table_name(f) in schemes}
        single = [f for f in single if table_name(f) not in schemes]
        for s in stacks:
            fs = [f for f in single if where[table_name(f)][0] == s]
            if fs:
                ids = jnp.stack([batch[f.name] + where[table_name(f)][1] for f in fs], axis=1)
                gathered = self._gather(arrays[s], ids, s)
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
                          self._gather(arrays[s], batch[f.name] + offset, s, f.name))
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


def embedding_layer(model: nn.Module, name: str, **kwargs) -> EmbeddingLayer:
    """The embedding layer `name` of `model`, as its `EMBEDDING_LAYERS` declares it (width) over
    the model's `features`, `tables` and `embed_init_std`: the layer whose plan is
    `embedding_plan(model).layer(name)`. kwargs: `return_sequences`."""
    return EmbeddingLayer(tuple(model.features), declared_layers(model)[name], getattr(model, "embed_init_std", 1e-4),
                          tables=tuple(getattr(model, "tables", ())), name=name, **kwargs)


def embedding_layouts(model: nn.Module, example_batch: Mapping[str, jnp.ndarray] | None = None) -> dict[tuple[str, ...], StackLayout]:
    """`{stack path: StackLayout}` of a model: `embedding_plan(model).layouts` (nothing is traced;
    `example_batch` is ignored, kept for old callers)."""
    return embedding_plan(model).layouts
