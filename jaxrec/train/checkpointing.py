"""Orbax checkpoints of the TrainState plus the loop's own bookkeeping, with logical tables.

Two managers under the workdir:
  checkpoints/  the latest states (every epoch end, optionally mid-epoch) for resuming;
  best/         the parameters of the best validation epoch, for early stopping and eval.

Each step stores `state` and `meta` (JSON: epoch history, early-stopping counters), written
atomically by orbax: a run killed mid-save leaves the previous checkpoint intact.

Embedding tables are stored *logically*: every stacked `[sum_t V_t, D]` array of an
EmbeddingLayer (the table, and any per-row optimizer slot with the same leading dim, e.g.
Adam moments) is saved as one array per logical table under `.../<stack>/tables/<table name>`,
whatever the stacking (and, later, the row sharding) of the run that wrote it. Restoring
re-stacks them for the layout of the run that reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from jaxrec.distributed import runtime
from jaxrec.embedding.layer import StackLayout, stacked_layout_at
from jaxrec.embedding.sharded import RowSharding

LOGICAL = "tables"  # a split array is saved as {LOGICAL: {table name: rows}}
Layouts = Mapping[tuple[str, ...], StackLayout]


RowsFor = Callable[[StackLayout], RowSharding]  # a stack's row sharding (`ShardedEmbeddings.rows_for`)


def to_logical(tree: Any, layouts: Layouts, rows_for: RowsFor | None = None, path: tuple[str, ...] = ()) -> Any:
    """State dict -> the same with every stacked table-shaped array (physical, if `rows_for`
    says the run shards its tables) split into logical tables."""
    if isinstance(tree, Mapping):
        return {k: to_logical(v, layouts, rows_for, path + (str(k),)) for k, v in tree.items()}
    layout = stacked_layout_at(path, layouts)
    rows = rows_for(layout) if rows_for is not None and layout is not None else None
    if layout is not None and len(getattr(tree, "shape", ())) >= 1 and tree.shape[0] == layout.stored_rows(rows):
        if isinstance(tree, jax.ShapeDtypeStruct):  # restore targets: shapes only
            return {LOGICAL: {n: jax.ShapeDtypeStruct((v,) + tree.shape[1:], tree.dtype) for n, v in zip(layout.names, layout.sizes)}}
        if rows is not None:
            tree = rows.to_logical(np.asarray(tree), layout.total_rows)
        return {LOGICAL: layout.unstack(tree)}
    return tree


def from_logical(saved: Any, like: Any, layouts: Layouts, path: tuple[str, ...] = ()) -> Any:
    """Inverse of `to_logical`, guided by `like` (a state dict of the reading run's layout)."""
    if isinstance(like, Mapping):
        return {k: from_logical(saved[k], v, layouts, path + (str(k),)) for k, v in like.items()}
    if isinstance(saved, Mapping) and set(saved) == {LOGICAL}:
        return stacked_layout_at(path, layouts).stack({n: np.asarray(t) for n, t in saved[LOGICAL].items()})
    return saved


class Checkpointer:
    """Saves and restores `(pytree, meta)` pairs at integer steps under `directory`.

    `layouts` (from `jaxrec.embedding.embedding_layouts`) tells which arrays are stacked
    embedding tables, to be stored as logical tables; `rows_for` gives the row sharding of
    each stacked table (None: unsharded). `restore` returns logical stacked tables; a sharded run
    places them with `ShardedEmbeddings.shard_state`.
    """

    def __init__(self, directory: str | Path, keep: int = 2, layouts: Layouts | None = None, rows_for: RowsFor | None = None):
        self.directory = Path(directory).absolute()
        self.layouts = dict(layouts or {})
        self.rows_for = rows_for
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False),
            item_names=("state", "meta"),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, tree: Any, meta: dict) -> None:
        """Every process of a multi-process run calls it (the state is gathered to each host)."""
        if jax.process_count() > 1:
            tree = runtime.to_host(tree)
        logical = to_logical(serialization.to_state_dict(tree), self.layouts, self.rows_for)
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(logical), meta=ocp.args.JsonSave(meta)), force=True)
        self._manager.wait_until_finished()

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores into the structure (and stacking) of `target`, an unsharded state
        (arrays or ShapeDtypeStructs) of the reading run."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        like = serialization.to_state_dict(target)
        abstract = to_logical(jax.tree.map(ocp.utils.to_shape_dtype_struct, like), self.layouts)
        out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        restored = from_logical(out["state"], like, self.layouts)
        return serialization.from_state_dict(target, jax.tree.map(jax.numpy.asarray, restored)), dict(out["meta"])

    def restore_matching(self, target: Any, step: int | None = None) -> tuple[Any, list[str], list[str]]:
        """Warm start: the saved arrays (of any run's layout) where a logical path and shape of
        `target` match, `target`'s own elsewhere. Returns (tree, restored paths, kept paths)."""
        from flax import traverse_util

        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        saved = traverse_util.flatten_dict(self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))["state"])
        like = serialization.to_state_dict(target)
        logical = traverse_util.flatten_dict(to_logical(jax.tree.map(np.asarray, like), self.layouts))
        restored, kept, merged = [], [], {}
        for path, value in logical.items():
            old = saved.get(path)
            ok = old is not None and np.shape(old) == np.shape(value)
            merged[path] = np.asarray(old, dtype=np.asarray(value).dtype) if ok else value
            (restored if ok else kept).append("/".join(path))
        tree = from_logical(traverse_util.unflatten_dict(merged), like, self.layouts)
        return serialization.from_state_dict(target, jax.tree.map(jax.numpy.asarray, tree)), restored, kept

    def close(self) -> None:
        self._manager.close()
