"""Orbax checkpoints of the TrainState plus the loop's own bookkeeping, with logical tables.

Two managers under the workdir:
  checkpoints/  the latest states (every epoch end, optionally mid-epoch) for resuming;
  best/         the parameters of the best validation epoch, for early stopping and eval.

Each step stores `state` and `meta` (JSON: epoch history, early-stopping counters), written
atomically by orbax: a run killed mid-save leaves the previous checkpoint intact.

Embedding tables are stored *logically*: every stacked `[sum_t V_t, D]` array of an
EmbeddingLayer (the table, and any per-row optimizer slot with the same leading dim, e.g.
Adam moments) is saved as one array per logical table under `.../stacked/tables/<table name>`,
whatever the stacking (and, later, the row sharding) of the run that wrote it. Restoring
re-stacks them for the layout of the run that reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from jaxrec.embedding import STACKED, StackLayout

LOGICAL = "tables"  # a split array is saved as {LOGICAL: {table name: rows}}
Layouts = Mapping[tuple[str, ...], StackLayout]


def _layout_at(path: tuple[str, ...], layouts: Layouts) -> StackLayout | None:
    """The layout of a stacked array at `path` (..., *layer, STACKED, ...), if any."""
    for i, key in enumerate(path):
        if key == STACKED:
            for layer, layout in layouts.items():
                if layer and tuple(path[i - len(layer):i]) == tuple(layer):
                    return layout
    return None


def to_logical(tree: Any, layouts: Layouts, path: tuple[str, ...] = ()) -> Any:
    """State dict -> the same with every stacked table-shaped array split into logical tables."""
    if isinstance(tree, Mapping):
        return {k: to_logical(v, layouts, path + (str(k),)) for k, v in tree.items()}
    layout = _layout_at(path, layouts)
    if layout is not None and getattr(tree, "ndim", 0) >= 1 and tree.shape[0] == layout.total_rows:
        return {LOGICAL: layout.unstack(tree)}
    return tree


def from_logical(saved: Any, like: Any, layouts: Layouts, path: tuple[str, ...] = ()) -> Any:
    """Inverse of `to_logical`, guided by `like` (a state dict of the reading run's layout)."""
    if isinstance(like, Mapping):
        out = {}
        return {k: from_logical(saved[k], v, layouts, path + (str(k),)) for k, v in like.items()}
    if isinstance(saved, Mapping) and set(saved) == {LOGICAL}:
        return _layout_at(path, layouts).stack({n: np.asarray(t) for n, t in saved[LOGICAL].items()})
    return saved


class Checkpointer:
    """Saves and restores `(pytree, meta)` pairs at integer steps under `directory`.

    `layouts` (from `jaxrec.embedding.embedding_layouts`) tells which arrays are stacked
    embedding tables, to be stored as logical tables.
    """

    def __init__(self, directory: str | Path, keep: int = 2, layouts: Layouts | None = None):
        self.directory = Path(directory).absolute()
        self.layouts = dict(layouts or {})
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False),
            item_names=("state", "meta"),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, tree: Any, meta: dict) -> None:
        logical = to_logical(serialization.to_state_dict(tree), self.layouts)
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(logical), meta=ocp.args.JsonSave(meta)), force=True)
        self._manager.wait_until_finished()

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores into the structure (and stacking) of `target` (arrays or ShapeDtypeStructs)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        like = serialization.to_state_dict(target)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, to_logical(like, self.layouts))
        out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        restored = from_logical(out["state"], like, self.layouts)
        return serialization.from_state_dict(target, jax.tree.map(jax.numpy.asarray, restored)), dict(out["meta"])

    def close(self) -> None:
        self._manager.close()
