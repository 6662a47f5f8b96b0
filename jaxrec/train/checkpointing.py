"""Orbax checkpoints of the TrainState plus the loop's own bookkeeping.

Two managers under the workdir:
  checkpoints/  the latest states (every epoch end, optionally mid-epoch) for resuming;
  best/         the parameters of the best validation epoch, for early stopping and eval.

Each step stores `state` (the TrainState pytree; embedding tables are whole logical
arrays, so a checkpoint restores on any device layout) and `meta` (JSON: epoch history,
early-stopping counters, timing), written atomically by orbax: a run killed mid-save
leaves the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores `(pytree, meta)` pairs at integer steps under `directory`."""

    def __init__(self, directory: str | Path, keep: int = 2):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False),
            item_names=("state", "meta"),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, tree: Any, meta: dict) -> None:
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)), force=True)
        self._manager.wait_until_finished()

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores the pytree shaped like `target` (arrays or ShapeDtypeStructs) and its meta."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out["state"], dict(out["meta"])

    def close(self) -> None:
        self._manager.close()
