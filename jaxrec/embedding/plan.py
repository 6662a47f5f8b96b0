"""The embedding plan: every stacked table of a model, as data, before any module runs.

`EmbeddingPlan` is the one owner of the sparse side's layout. A pure function of (data
feature specs, per-table `TableOptions` from config `tables`, the model's declared
embedding layers and their widths) builds it; the model's `EmbeddingLayer`s, the
optimizers (`jaxrec.train.optimizers.make_table_optimizers`), the row-wise update
(`jaxrec.embedding.rowwise`), dynamic vocabularies (`jaxrec.embedding.dynamic_features`),
row sharding (`jaxrec.distributed.sharded_embeddings`) and logical checkpoints
(`jaxrec.train.checkpointing`) all read it. Nothing traces the model to find it.

Keys are *stack paths*, as in the state: the layer's module path plus the stack name, e.g.
`('embedding', 'stacked')`, `('embedding', 'stacked_1')`, `('linear', 'stacked')` (DeepFM's
width-D embedding and its width-1 linear part are two layers, each with its stacks).

Per layer, a `LayerPlan` holds the layer's stacks (`{stack name: StackLayout}`) and its
*gathers*: the `(gather name, stack)` pairs of the lookups the layer makes (one per stack for
its single-id fields, one per sequence or compressed feature). A row-wise trainer reads the
perturbations and sown ids of a gather under its name and finds its stack in the plan; no
name is ever parsed.

A model class states its embedding layers as data, `EMBEDDING_LAYERS = {layer name: width}`,
the width being an int or the name of the model field that holds it (`'embed_dim'`), and
builds each with `jaxrec.embedding.layer.embedding_layer(self, name)`, which reads the
layer's plan from `embedding_plan(self)`: the declaration is the only place a width is
written.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import numpy as np

from jaxrec.data.features import Feature, Sequence, is_embedded
from jaxrec.embedding.specs import TableOptions, TableSpec, specs_from_features, table_name

STACKED = "stacked"          # name of a layer's run-default stacked table
ROWS = "rows"                # base name of the gathers (perturbations / sown ids)

StackPath = tuple[str, ...]  # layer module path + stack name, e.g. ('embedding', 'stacked')


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

    def unstack(self, stacked):
        """Stacked `[total_rows, D]` -> logical tables `{name: [V_t, D]}`."""
        return {n: stacked[o:o + s] for (n, o), s in zip(self.offsets.items(), self.sizes)}

    def stack(self, tables: Mapping[str, Any]):
        """Logical tables `{name: [V_t, D]}` -> stacked `[total_rows, D]`."""
        import jax.numpy as jnp

        return jnp.concatenate([tables[n] for n in self.names], axis=0)


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


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """One EmbeddingLayer's plan: its stacks and the gathers it makes.

    Attributes:
      features: the data feature specs it embeds, in field order.
      dim: its width D.
      stacks: `(stack name, StackLayout)` pairs.
      gathers: `(gather name, stack name)` pairs, one per lookup the layer makes.
    """

    features: tuple[Feature, ...]
    dim: int
    stacks: tuple[tuple[str, StackLayout], ...]
    gathers: tuple[tuple[str, str], ...]

    @property
    def layouts(self) -> dict[str, StackLayout]:
        return dict(self.stacks)

    @property
    def tables(self) -> tuple[TableSpec, ...]:
        return tuple(t for _, layout in self.stacks for t in layout.specs)

    @functools.cached_property
    def where(self) -> dict[str, tuple[str, int]]:
        """`{table: (stack name, row offset in the stack)}`."""
        return {t: (s, layout.offsets[t]) for s, layout in self.stacks for t in layout.names}

    def gather_name(self, stack: str, feature: str | None = None) -> str:
        """Name of the gather of `feature` (a sequence or compressed feature), or of the one gather
        of `stack`'s single-id fields (`feature=None`)."""
        base = ROWS if feature is None else f"{ROWS}_{feature}"
        return base if stack == STACKED else f"{base}:{stack}"  # unique within the layer; never parsed


def own_gather(feature: Feature, table: TableSpec) -> bool:
    """True when a feature is looked up by its own gather (a sequence, or a compressed table);
    the other single-id features of a stack share one."""
    return isinstance(feature, Sequence) or table.scheme is not None


@functools.lru_cache(maxsize=256)
def plan_layer(features: tuple[Feature, ...], dim: int, init_std: float = 1e-4,
               tables: tuple[tuple[str, TableOptions], ...] = ()) -> LayerPlan:
    """The plan of one embedding layer over `features` of width `dim` (pure; cached).

    `tables`: `(table name, TableOptions)` pairs (own optimizer, sharding, initializer,
    compression, AMTL); tables with their own optimizer or sharding get their own stack."""
    specs = specs_from_features(features, dim, init_std, options=dict(tables))[0]
    stacks = group_stacks(specs)
    by_name = {t.name: t for t in specs}
    stack_of = {t: s for s, layout in stacks.items() for t in layout.names}
    plan = LayerPlan(tuple(features), int(dim), tuple(stacks.items()), ())
    gathers, shared = [], set()
    for f in features:
        if not is_embedded(f):
            continue
        t = table_name(f)
        if own_gather(f, by_name[t]):
            gathers.append((plan.gather_name(stack_of[t], f.name), stack_of[t]))
        else:
            shared.add(stack_of[t])
    gathers += [(plan.gather_name(s), s) for s in stacks if s in shared]
    return dataclasses.replace(plan, gathers=tuple(sorted(gathers)))


@dataclasses.dataclass(frozen=True)
class EmbeddingPlan:
    """Every embedding layer of a model: `((layer path, LayerPlan), ...)` (module docstring)."""

    layers: tuple[tuple[tuple[str, ...], LayerPlan], ...]

    @functools.cached_property
    def layouts(self) -> dict[StackPath, StackLayout]:
        """`{stack path: StackLayout}`, e.g. `{('embedding', 'stacked'): ...}`."""
        return {path + (s,): layout for path, layer in self.layers for s, layout in layer.stacks}

    def layer(self, path: str | tuple[str, ...]) -> LayerPlan:
        path = (path,) if isinstance(path, str) else tuple(path)
        found = dict(self.layers).get(path)
        if found is None:
            raise KeyError(f"no embedding layer {'/'.join(path)!r} in the plan; declared: "
                           f"{['/'.join(p) for p, _ in self.layers]} (the model's EMBEDDING_LAYERS)")
        return found

    def gathers(self, stack: StackPath) -> tuple[str, ...]:
        """Names of the gathers that read the stacked table at `stack`, in name order."""
        layer = self.layer(stack[:-1])
        return tuple(n for n, s in layer.gathers if s == stack[-1])

    @property
    def amtl(self) -> dict:
        """`{table: AMTLOptions}` of the AMTL-masked tables (of any layer)."""
        return {t.name: t.amtl for _, layer in self.layers for t in layer.tables if t.amtl is not None}


def make_plan(features: tuple[Feature, ...], layers: Mapping[str | tuple[str, ...], int],
              tables: Mapping[str, TableOptions] | tuple = (), init_std: float = 1e-4) -> EmbeddingPlan:
    """The plan of embedding layers `{layer name or path: width}` over `features` (all layers
    embed every feature), with per-table options `tables` (`{name: TableOptions}` or pairs)."""
    options = tuple(dict(tables).items())
    return EmbeddingPlan(tuple(((n,) if isinstance(n, str) else tuple(n), plan_layer(tuple(features), int(d), init_std, options))
                               for n, d in layers.items()))


def declared_layers(model) -> dict[str, int]:
    """A model's `EMBEDDING_LAYERS` with every width resolved (a field name -> its value)."""
    decl = getattr(type(model), "EMBEDDING_LAYERS", None)
    if decl is None:
        raise TypeError(f"{type(model).__name__} does not declare its embedding layers: give the class "
                        "EMBEDDING_LAYERS = {layer name: width or the field holding it} (jaxrec.embedding.plan)")
    return {n: int(getattr(model, d) if isinstance(d, str) else d) for n, d in decl.items()}


def embedding_plan(model) -> EmbeddingPlan:
    """The plan of a model from its data fields (`features`, `tables`, `embed_init_std`) and its
    declared `EMBEDDING_LAYERS`; a model without embedding layers has an empty plan."""
    if getattr(type(model), "EMBEDDING_LAYERS", None) is None and not hasattr(model, "tables"):
        return EmbeddingPlan(())
    return make_plan(tuple(model.features), declared_layers(model), tuple(getattr(model, "tables", ())),
                     getattr(model, "embed_init_std", 1e-4))


def stack_path_in(path: tuple[str, ...], stacks) -> StackPath | None:
    """The stack path (a key of `stacks`) that state-dict `path` passes through, if any: the
    stacked table itself, or a per-row optimizer slot under it."""
    for stack in stacks:
        n = len(stack)
        for i in range(len(path) - n + 1):
            if tuple(path[i:i + n]) == stack:
                return stack
    return None


def stacked_layout_at(path: tuple[str, ...], layouts: Mapping[StackPath, StackLayout]) -> StackLayout | None:
    """The StackLayout of the array at state-dict `path`, if it lies under a stack path of
    `layouts`; None elsewhere."""
    return layouts.get(stack_path_in(path, layouts))
