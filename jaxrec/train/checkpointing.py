"""Orbax checkpoints of the TrainState plus the loop's own bookkeeping, with logical tables.

Two managers under the workdir:
  checkpoints/  the latest states (every epoch end, optionally mid-epoch) for resuming;
  best/         the parameters of the best validation epoch, for early stopping and eval.

Each step stores `state` and `meta` (JSON: epoch history, early-stopping counters), written
atomically by orbax: a run killed mid-save leaves the previous checkpoint intact. Then a
manifest `<step>/jaxrec_manifest.json` records the size and SHA-256 of every file of the step,
so that damage after the write (a flipped byte, a truncated or deleted file) is detected when
the step is read back. Crash safety, with a kill at any instant:

* `save` is idempotent: a step that exists already (a replay after a kill between two saves,
  e.g. `best/<epoch>` written but not yet `checkpoints/<step>`) is replaced, not refused.
* `restore()` of the latest step falls back to the newest older step that verifies and reads;
  a damaged step is moved to `<directory>-damaged/<step>-<time>` (nothing is deleted) and
  named in a warning. A step without a manifest (written before manifests existed, or killed
  between the orbax write and the manifest) is read unverified.

Embedding tables are stored *logically*: every stacked `[sum_t V_t, D]` array of an
EmbeddingLayer (the table, and any per-row optimizer slot with the same leading dim, e.g.
Adam moments) is saved as one array per logical table under `.../<stack>/tables/<table name>`,
whatever the stacking (and, later, the row sharding) of the run that wrote it. Restoring
re-stacks them for the layout of the run that reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from jaxrec.distributed import runtime
from jaxrec.embedding.plan import StackLayout, stacked_layout_at
from jaxrec.embedding.sharded import RowSharding
from jaxrec.errors import CheckpointDamaged

log = logging.getLogger("jaxrec")
MANIFEST = "jaxrec_manifest.json"

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
    if isinstance(like, Mapping):  # (an empty subtree, e.g. no tables, is not in a flattened save)
        return {k: {} if isinstance(v, Mapping) and not v else from_logical(saved[k], v, layouts, path + (str(k),))
                for k, v in like.items()}
    if isinstance(saved, Mapping) and set(saved) == {LOGICAL}:
        return stacked_layout_at(path, layouts).stack({n: np.asarray(t) for n, t in saved[LOGICAL].items()})
    return saved


def file_digests(directory: Path) -> dict[str, list]:
    """`{relative path: [size in bytes, sha256 hex]}` of every file under `directory` (the
    manifest itself excluded)."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out[path.relative_to(directory).as_posix()] = [path.stat().st_size, h.hexdigest()]
    return out


def write_manifest(step_dir: Path) -> None:
    """Records the digests of a finished step in `<step_dir>/jaxrec_manifest.json` (atomically)."""
    tmp = step_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"version": 1, "files": file_digests(step_dir)}))
    os.replace(tmp, step_dir / MANIFEST)


def verify_manifest(step_dir: Path) -> bool:
    """True if `step_dir` matches its manifest, False if it has none; raises CheckpointDamaged
    naming the first file that is missing, extra, of another size or another content."""
    path = step_dir / MANIFEST
    if not path.is_file():
        return False
    try:
        want = json.loads(path.read_text())["files"]
    except (ValueError, KeyError) as e:
        raise CheckpointDamaged(f"{path}: unreadable manifest ({e})") from None
    have = file_digests(step_dir)
    for name in sorted(set(want) | set(have)):
        if name not in have:
            raise CheckpointDamaged(f"{step_dir}: file {name} is missing")
        if name not in want:
            raise CheckpointDamaged(f"{step_dir}: file {name} was not part of the checkpoint")
        if have[name][0] != want[name][0]:
            raise CheckpointDamaged(f"{step_dir}: file {name} has {have[name][0]} bytes, {want[name][0]} were written")
        if have[name][1] != want[name][1]:
            raise CheckpointDamaged(f"{step_dir}: file {name} has other bytes than were written (SHA-256 differs)")
    return True


class Checkpointer:
    """Saves and restores `(pytree, meta)` pairs at integer steps under `directory`.

    `layouts` (`EmbeddingPlan.layouts`, `jaxrec.embedding.plan`) tells which arrays are stacked
    embedding tables, to be stored as logical tables; `rows_for` gives the row sharding of
    each stacked table (None: unsharded). `restore` returns logical stacked tables; a sharded run
    places them with `ShardedEmbeddings.shard_state`.
    """

    def __init__(self, directory: str | Path, keep: int = 2, layouts: Layouts | None = None, rows_for: RowsFor | None = None):
        if int(keep) < 1:
            raise ValueError(f"keep={keep}: at least one checkpoint must be kept to resume from")
        self.directory = Path(directory).absolute()
        self.layouts = dict(layouts or {})
        self.rows_for = rows_for
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False,
                                                 cleanup_tmp_directories=True),
            item_names=("state", "meta"),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, tree: Any, meta: dict) -> None:
        """Writes step `step` (replacing it if it exists), then its manifest. Every process of a
        multi-process run calls it (the state is gathered to each host)."""
        if jax.process_count() > 1:
            tree = runtime.to_host(tree)
        logical = to_logical(serialization.to_state_dict(tree), self.layouts, self.rows_for)
        if step in self._manager.all_steps():  # a replay after a kill: same step, same content
            self._manager.delete(step)
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(logical), meta=ocp.args.JsonSave(meta)), force=True)
        self._manager.wait_until_finished()
        if runtime.is_main():
            write_manifest(self.step_dir(step))

    def step_dir(self, step: int) -> Path:
        return self.directory / str(step)

    def _restore_step(self, target: Any, step: int) -> tuple[Any, dict]:
        verified = verify_manifest(self.step_dir(step))
        like = serialization.to_state_dict(target)
        abstract = to_logical(jax.tree.map(ocp.utils.to_shape_dtype_struct, like), self.layouts)
        try:
            out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                      meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax/tensorstore raise many types for unreadable files
            raise CheckpointDamaged(f"{self.step_dir(step)}: cannot be read ({type(e).__name__}: {str(e)[:300]})") from e
        if not verified:
            log.info("%s has no manifest (an older checkpoint, or killed before its manifest): read unverified",
                     self.step_dir(step))
        restored = from_logical(out["state"], like, self.layouts)
        return serialization.from_state_dict(target, jax.tree.map(jax.numpy.asarray, restored)), dict(out["meta"])

    def restore(self, target: Any, step: int | None = None, fallback: bool = False) -> tuple[Any, dict]:
        """Restores into the structure (and stacking) of `target`, an unsharded state
        (arrays or ShapeDtypeStructs) of the reading run.

        `step=None` reads the latest step; with `fallback=True` (resuming a run) the newest
        step that verifies and reads, damaged newer steps being moved aside (module docstring).
        Raises FileNotFoundError without any step, CheckpointDamaged naming the damage."""
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if step is not None or not fallback:
            return self._restore_step(target, steps[-1] if step is None else step)
        damaged = []
        for s in reversed(steps):
            try:
                out = self._restore_step(target, s)
            except CheckpointDamaged as e:
                damaged.append(str(e))
                log.warning("checkpoint step %d is damaged: %s; %s", s, e,
                            "trying the previous one" if s != steps[0] else "no older checkpoint")
                self._set_aside(s)
                continue
            if damaged:
                log.warning("resuming from step %d of %s instead (damaged steps moved to %s)", s, self.directory,
                            self._aside_dir())
            return out
        raise CheckpointDamaged(f"every checkpoint in {self.directory} is damaged (moved to {self._aside_dir()}):\n  "
                                + "\n  ".join(damaged))

    def _aside_dir(self) -> Path:
        return self.directory.with_name(self.directory.name + "-damaged")

    def _set_aside(self, step: int) -> None:
        """Moves a damaged step out of the manager's directory (kept for inspection)."""
        if runtime.is_main():
            dest = self._aside_dir() / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(self.step_dir(step)), str(dest))
        runtime.barrier(f"set_aside_{self.directory.name}_{step}")
        self._manager.reload()

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
