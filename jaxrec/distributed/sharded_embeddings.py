"""Training with row-sharded embedding tables on a `(data, model)` mesh, around an unchanged step.

`ShardedEmbeddings(mesh, kind)` is what the trainer needs to run the same train step on a
mesh (the architecture's rule: `distributed` wraps steps, it does not rewrite them). Every
stacked table is row-sharded over all devices, `mod` or `contiguous`: its own
`TableSpec.sharding` if its tables set one (`rows_for(layout)`), else `kind`.

* `lookups()`: a context in which every `EmbeddingLayer.lookup(table, ids, stack)` becomes
  `jaxrec.embedding.sharded.sharded_lookup` (a `shard_map` over the mesh) on that stack's
  physical, row-sharded table. Models are unchanged; the trainer traces its step inside it.
* `shard_state(state, layouts)`: the stacked tables, and every per-row optimizer slot of the
  same leading size, converted to physical row order and placed with rows over all devices;
  dense parameters that name their axes (`logical`: transformer weights, via
  `jaxrec.mesh.LOGICAL_RULES`: tensor parallelism), and the optimizer slots at the same path
  suffix and shape, placed by those names; everything else replicated.
* `physical_ids(ids, layout)`: logical stacked ids -> physical rows, with padding ids
  (>= V) sent out of range, for the row-wise sparse update.
* `batch_sharding()`: a chunk `[K, B, ...]` split over `data` on its batch dim.

Checkpoints stay logical: `jaxrec.train.checkpointing` converts physical tables back with
`RowSharding.to_logical` before unstacking, so a run saved on 8 devices restores on 1 or 4.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxrec.distributed import runtime
from jaxrec.mesh import DATA, logical_spec, replicated
from jaxrec.embedding.layer import EmbeddingLayer
from jaxrec.embedding.plan import StackLayout, stacked_layout_at
from jaxrec.embedding.sharded import RowSharding, sharded_lookup, table_sharding


@dataclasses.dataclass(frozen=True)
class ShardedEmbeddings:
    """Row sharding of every embedding table over all devices of `mesh` (`kind`: 'mod' | 'contiguous')."""

    mesh: Mesh
    kind: str = "mod"
    logical: Mapping[tuple[str, ...], tuple] = dataclasses.field(default_factory=dict)  # {dense param path: axis names}

    def rows_for(self, layout: StackLayout) -> RowSharding:
        """The row sharding of one stacked table: its tables' own (`TableSpec.sharding`) or `kind`."""
        return RowSharding(layout.sharding or self.kind, self.mesh.size)

    @contextlib.contextmanager
    def lookups(self) -> Iterator[None]:
        """Within this context, EmbeddingLayer lookups read row-sharded tables via shard_map."""

        def interceptor(next_fun, args, kwargs, context):
            if isinstance(context.module, EmbeddingLayer) and context.method_name == "lookup":
                table, ids, stack = args
                layout = context.module.plan.layouts[stack]
                return sharded_lookup(self.mesh, table, ids, layout.total_rows, self.rows_for(layout))
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(interceptor):
            yield

    def names_at(self, path: tuple[str, ...], ndim: int) -> tuple | None:
        """The logical axis names of the dense parameter whose path is the longest suffix of
        `path` (a parameter, or an optimizer slot mirroring one), if it has `ndim` names."""
        for i in range(len(path)):
            names = self.logical.get(tuple(path[i:]))
            if names is not None:
                return tuple(names) if len(names) == ndim else None
        return None

    def physical_ids(self, ids: jax.Array, layout: StackLayout) -> jax.Array:
        """Logical stacked ids `[N]` -> physical rows `[N]`; ids >= V (padding) -> S*R (dropped)."""
        rows, v = self.rows_for(layout), layout.total_rows
        return jnp.where(ids < v, rows.physical_index(ids, v), rows.padded_rows(v))

    def batch_sharding(self) -> NamedSharding:
        """Sharding of a chunk `[K, B, ...]`: the batch dim over `data`."""
        return NamedSharding(self.mesh, P(None, DATA))

    def shard_state(self, tree: Any, layouts: Mapping[tuple[str, ...], StackLayout]) -> Any:
        """Logical-stacked tables (and same-sized per-row slots) -> physical, placed on the mesh
        (from each process's host copy: a resumed multi-process run places its restored state)."""
        sd = serialization.to_state_dict(tree)

        def visit(node, path):
            if isinstance(node, Mapping):
                return {k: visit(v, path + (str(k),)) for k, v in node.items()}
            layout = stacked_layout_at(path, layouts)
            if layout is not None and getattr(node, "ndim", 0) >= 1 and node.shape[0] == layout.total_rows:
                return runtime.put(self.rows_for(layout).to_physical(np.asarray(node)), table_sharding(self.mesh))
            names = self.names_at(path, getattr(node, "ndim", 0))
            if names is not None:
                return runtime.put(node, NamedSharding(self.mesh, logical_spec(names, node.shape, self.mesh)))
            return runtime.put(node, replicated(self.mesh))

        return serialization.from_state_dict(tree, visit(sd, ()))

