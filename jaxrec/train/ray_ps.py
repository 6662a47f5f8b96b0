"""GBA over a Ray parameter server: row-sharded server actors, non-blocking JAX workers.

The runtime of `jaxrec.optim.gba` on real processes (Ray actors; `pip install jaxrec[ray]`).
Synchronous all-reduce training is `train.py` (multi-process: `jaxrec.distributed.launch`).

  ServerShard s of S  the rows r = s (mod S) of every embedding table with their row-wise
                      optimizer state; shard 0 also the dense parameters and their optimizer
                      state, and the data: the index of each worker's next local batch. Every
                      shard keeps its own GBA accumulator and global step k_s, and hands out
                      k_s as the token of each pull. After M pushes it applies their mean with
                      the trainer's own update (`make_apply_fn`).
  Worker              pulls every shard (parameters + tokens), computes the local gradient with
                      the trainer's `make_gradient_fn`, splits the row gradients by shard and
                      pushes (gradient, token) to each without waiting for them to be applied.

Modes: 'gba' (M = N, the synchronous global batch; stale gradients decayed), 'async' (M = 1,
every gradient applied), 'sync' (M = N, and a worker pulls again only once its step is applied:
a barrier, i.e. synchronous training on the parameter server).

Faults and restarts (with `checkpoint_dir`; it is created, parents too):
  * The driver records the run's identity in `checkpoint_dir/run.json` (shard count, mode,
    workers, local batch, seed, aggregation, the config, a SHA-256 of the start state). A new
    `ParameterServer` refuses a directory that holds another run's files (it would otherwise
    start from them, not from the state it is given); `resume=True` continues that run
    deliberately, and refuses too if the identity differs (the differing keys are named).
    `num_batches` and `checkpoint_every` may change on resume.
  * Shards are Ray actors with up to `MAX_RESTARTS` restarts. Each writes its state (with the
    cursor, the ids of the batches it has taken and the last hand-out per worker) every
    `checkpoint_every` of its steps, atomically, and between checkpoints appends every request
    that changes it (a hand-out of a batch index; a push: batch id, token, gradient) to a log
    `shard_<s>.<k>.log` before acting on it. A restarted shard reloads its checkpoint and
    replays the log: it is back at the exact step, accumulator, cursor and data position it
    had when killed. The request in flight is retried by Ray and answered idempotently (a
    push whose batch id the shard has already taken is ignored; a worker asking again for the
    same hand-out gets the same index). So a killed shard (shard 0 with the dense parameters
    and the cursor included) loses no step and no batch, hands out no batch twice, and every
    shard ends at the step a run without the fault would reach.
  * What can still be lost: a killed *worker*'s in-flight batch (handed out, then pushed to
    some shards or none: its token is dropped, as the paper describes); `run()` reports per
    shard how many of the handed-out batches it never received (`lost`). Without
    `checkpoint_dir` a restarted shard starts over from the start state (everything it had
    applied is lost). The log is not fsynced: a process kill loses nothing, a machine crash
    may lose the log's unsynced tail (checkpoints are fsynced before their rename).
A killed worker's gradient never arrives; the others go on and `add_worker` can join a
replacement. Stragglers: `slowdowns[i]` makes worker i sleep (slowdown - 1) x the time its
batch took (pull + gradient) before pushing it.

Per-shard tokens and steps (each shard applies on its own; their steps can differ by the
pushes in flight) are our reading of a sharded PS [I].
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Sequence

import jax
import numpy as np
from flax import serialization, traverse_util

from jaxrec.errors import ConfigError
from jaxrec.optim import gba

MODES = ("gba", "async", "sync")
RUN_FILE = "run.json"  # the run identity in checkpoint_dir
MAX_RESTARTS = 10  # per shard: enough for drills, finite so a shard that cannot start fails the run
# Actors share this machine's cores: one XLA thread each, so N workers do not fight over the cores.
ACTOR_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1", "JAX_PLATFORMS": "cpu"}


def require_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("the parameter-server runtime needs Ray: pip install 'jaxrec[ray]'") from None
    return ray


def init_ray(num_cpus: int | None = None) -> None:
    """A local Ray cluster without the dashboard, if none is running (`ray.shutdown()` stops it)."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus or max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False,
                 configure_logging=False, runtime_env={"env_vars": ACTOR_ENV})


# ---- splitting a TrainState by rows (pure numpy) ------------------------------------------------

def _stacks(tables) -> dict[tuple, int]:
    return {path: t.shape[0] for path, t in traverse_util.flatten_dict(tables).items()}


def _split_rows(x, rows: int, shard: int, num_shards: int):
    x = np.asarray(x)
    return x[shard::num_shards] if x.ndim and x.shape[0] == rows else x


def shard_state(params: dict, opt_state: dict, shard: int, num_shards: int) -> tuple[dict, dict]:
    """Shard `shard`'s part: rows r = shard (mod S) of every table and of its per-row optimizer
    slots (leaves with the table's row count); shard 0 also the dense side."""
    stacks = _stacks(params["sparse"])
    tables = traverse_util.unflatten_dict({p: _split_rows(t, stacks[p], shard, num_shards)
                                           for p, t in traverse_util.flatten_dict(params["sparse"]).items()})
    opt = {p: jax.tree.map(lambda x, v=stacks[p]: _split_rows(x, v, shard, num_shards), s)
           for p, s in traverse_util.flatten_dict(opt_state["sparse"], is_leaf=lambda p, x: tuple(p) in stacks).items()}
    dense = shard == 0
    return ({"dense": jax.tree.map(np.asarray, params["dense"]) if dense else {}, "sparse": tables},
            {"dense": jax.tree.map(np.asarray, opt_state["dense"]) if dense else None, "sparse": traverse_util.unflatten_dict(opt)})


def interleave(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Row r of the result is row r // S of part r % S: the inverse of the row split."""
    out = np.empty((sum(p.shape[0] for p in parts),) + parts[0].shape[1:], parts[0].dtype)
    for i, p in enumerate(parts):
        out[i::len(parts)] = p
    return out


def merge_state(parts: Sequence[tuple[dict, dict]], like_params: dict, like_opt: dict) -> tuple[dict, dict]:
    """Inverse of `shard_state` over all shards, into the structure of `like_*` (a full state)."""
    stacks = _stacks(like_params["sparse"])

    def merge(leaves, rows):
        leaves = [np.asarray(x) for x in leaves]
        split = leaves[0].ndim and sum(x.shape[0] for x in leaves) == rows and rows > 1
        return interleave(leaves) if split else leaves[0]

    tables = traverse_util.unflatten_dict({p: merge([traverse_util.flatten_dict(q[0]["sparse"])[p] for q in parts], v)
                                           for p, v in stacks.items()})
    flat_opts = [traverse_util.flatten_dict(q[1]["sparse"], is_leaf=lambda p, x: tuple(p) in stacks) for q in parts]
    opt = traverse_util.unflatten_dict({p: jax.tree.map(lambda *xs, v=v: merge(list(xs), v), *[f[p] for f in flat_opts])
                                        for p, v in stacks.items()})
    params = {**like_params, "dense": parts[0][0]["dense"], "sparse": tables}
    return params, {**like_opt, "dense": parts[0][1]["dense"], "sparse": opt}


def split_rows(rows: dict, shard: int, num_shards: int, local_rows: dict) -> dict:
    """A worker's row gradients `{stack: (ids [C], grads [C, D])}` -> shard `shard`'s, in its local
    row numbering (id // S); other shards' ids become its padding id (dropped)."""
    out = {}
    for stack, (ids, grads) in rows.items():
        ids, grads = np.asarray(ids), np.asarray(grads)
        mine = ids % num_shards == shard
        out[stack] = (np.where(mine, ids // num_shards, local_rows[stack]).astype(np.int32), np.where(mine[:, None], grads, 0))
    return out


# ---- actors -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PSOptions:
    """mode: 'gba' | 'async' | 'sync'; num_workers: N; num_shards: S; local_batch: b; num_batches:
    local batches to process in all; gba: the decay options ('gba' mode); checkpoint_dir /
    checkpoint_every: each shard's state every that many of its steps; seed: data order."""

    mode: str
    num_workers: int
    local_batch: int
    num_batches: int
    num_shards: int = 2
    gba: gba.GBAConfig | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 20
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"parameter-server mode {self.mode!r}: expected one of {MODES}")
        if self.num_workers < 1 or self.num_shards < 1 or self.local_batch < 1:
            raise ConfigError("parameter server: need num_workers, num_shards and local_batch >= 1")

    @property
    def aggregation(self) -> gba.GBAConfig:
        return gba.mode_aggregation(self.mode, self.num_workers, gba_config=self.gba)


def _build(config):
    from jaxrec.train import experiment

    exp = experiment.build(config)
    if not exp.optimizers.rowwise:
        raise ConfigError("the parameter server updates tables row by row: set sparse_optimizer.rowwise=true")
    return exp


def _write(path: Path, record: dict) -> None:
    """A shard's state `record` ({'k', 'next_batch', 'params', 'opt_state', ...}) as msgpack,
    written atomically (temp file, fsync, rename): a process killed mid-write leaves the old file."""
    blob = serialization.msgpack_serialize({**record, "params": serialization.to_state_dict(record["params"]),
                                            "opt_state": serialization.to_state_dict(record["opt_state"])})
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---- the run identity in checkpoint_dir -----------------------------------------------------------

def _flatten(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for k, v in tree.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def run_identity(config, options: PSOptions, start_blobs: Sequence[bytes], start_step: int) -> dict:
    """What a run's checkpoints belong to: `{key: JSON value}` (flat) over the options that shape
    the computation and the data order (not `num_batches` / `checkpoint_every`, which a resume
    may change), `config.<dotted key>` for every config field, and `start_state_sha256`, the
    SHA-256 of the shards' start files (params and optimizer state, split by rows) with
    `start_step`, the start state's step."""
    h = hashlib.sha256()
    for blob in start_blobs:
        h.update(hashlib.sha256(blob).digest())
    to_json = getattr(config, "to_json_best_effort", None)
    cfg = json.loads(to_json(sort_keys=True)) if to_json else {"repr": repr(config)}
    ident = {"num_shards": options.num_shards, "mode": options.mode, "num_workers": options.num_workers,
             "local_batch": options.local_batch, "seed": options.seed,
             **{f"aggregation.{k}": v for k, v in dataclasses.asdict(options.aggregation).items()},
             "start_step": int(start_step), "start_state_sha256": h.hexdigest(),
             **{f"config.{k}": v for k, v in _flatten(cfg).items()}}
    return json.loads(json.dumps(ident, sort_keys=True, default=str))  # as it reads back from run.json


def claim_checkpoint_dir(directory: str | os.PathLike, identity: dict, resume: bool = False) -> str:
    """Makes `directory` (parents too) this run's and returns the run id its shards' files carry.

    A fresh directory: writes `run.json` {run_id, identity}. One that holds another run's files
    (`run.json` or `shard_*`): refused unless `resume`, which continues the recorded run if its
    identity equals `identity` (else the differing keys are named). Raises ConfigError.
    """
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"parameter server: cannot create checkpoint_dir {str(d)!r}: {e}") from None
    run_file = d / RUN_FILE
    leftovers = sorted(p.name for p in d.glob("shard_*"))
    recorded = json.loads(run_file.read_text()) if run_file.exists() else None
    if not resume:
        if recorded is not None or leftovers:
            what = (f"run {recorded.get('run_id')} started {recorded.get('created')}" if recorded
                    else f"{', '.join(leftovers[:4])}, of a run that recorded no {RUN_FILE}")
            raise ConfigError(
                f"parameter server: checkpoint_dir {str(d)!r} already holds another run's checkpoints ({what}); its shards "
                "would restart from them, not from the state this server is given. Use a fresh checkpoint_dir (or delete "
                "this one), or pass resume=True to ParameterServer to continue that run deliberately.")
        run_id = uuid.uuid4().hex
        try:
            with open(run_file, "x") as f:  # exclusive: two drivers cannot both claim the directory
                json.dump({"run_id": run_id, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "identity": identity}, f,
                          indent=1, sort_keys=True)
        except FileExistsError:
            raise ConfigError(f"parameter server: checkpoint_dir {str(d)!r} was just claimed by another run") from None
        return run_id
    if recorded is None:
        raise ConfigError(f"parameter server: resume=True but checkpoint_dir {str(d)!r} holds no {RUN_FILE}, so no run "
                          "to resume" + (f" (its {', '.join(leftovers[:4])} recorded no identity: use a fresh "
                                         "checkpoint_dir)" if leftovers else ": drop resume=True to start one"))
    old = recorded["identity"]
    diffs = [f"{k}: {old.get(k, '<unset>')!r} -> {identity.get(k, '<unset>')!r}"
             for k in sorted(set(old) | set(identity)) if old.get(k) != identity.get(k)]
    if diffs:
        raise ConfigError(f"parameter server: cannot resume run {recorded['run_id']} in checkpoint_dir {str(d)!r}: this "
                          f"server differs from it in {'; '.join(diffs[:8])}{' ...' if len(diffs) > 8 else ''} (recorded "
                          "-> now). Give it the run's config, options and start state, or use a fresh checkpoint_dir.")
    return recorded["run_id"]


def _restore_opt(exp, saved: dict) -> dict:
    """A shard's saved optimizer state (msgpack: plain dicts) -> the optimizers' pytree types."""
    like = exp.init_state(place=False)
    stacks = _stacks(like.params["sparse"])
    sparse = traverse_util.flatten_dict(like.opt_state["sparse"], is_leaf=lambda p, x: tuple(p) in stacks)
    saved_sparse = traverse_util.flatten_dict(saved["sparse"], is_leaf=lambda p, x: tuple(p) in stacks)
    dense = None if saved.get("dense") is None else serialization.from_state_dict(like.opt_state["dense"], saved["dense"])
    return {"dense": dense, "sparse": traverse_util.unflatten_dict(
        {p: serialization.from_state_dict(v, saved_sparse[p]) for p, v in sparse.items()})}


def _example_rows(exp, local_batch: int) -> dict:
    """Zero row gradients shaped like one push: `{stack: (ids [C], grads [C, D])}`."""
    from jaxrec.train import state as state_lib

    state = exp.init_state(place=False)
    batch = {k: v[:local_batch] for k, v in exp.dataset.columns("train").items()}
    out = jax.eval_shape(lambda p: state_lib.make_gradient_fn(exp.model, exp.optimizers)(p, batch, state.rng)[2][1], state.params)
    return {k: (np.zeros(i.shape, np.int32), np.zeros(g.shape, g.dtype)) for k, (i, g) in out.items()}


class ServerShard:
    """One parameter-server shard (module docstring). Ray actor; see `ParameterServer`.

    `run_id`: the run its checkpoint and log belong to (`claim_checkpoint_dir`); a checkpoint of
    another run is refused. Requests that change the shard go through `_record` (the log) first.
    """

    def __init__(self, config, shard: int, options: PSOptions, start: str, run_id: str | None = None):
        from jaxrec.train import state as state_lib

        exp = _build(config)
        self.shard, self.options, self.cfg, self.run_id = shard, options, options.aggregation, run_id
        self.dir = Path(options.checkpoint_dir) if options.checkpoint_dir else None
        self.path = self.dir / f"shard_{shard}.msgpack" if self.dir else None
        # A restarted shard reloads its last checkpoint, a new one its part of the start state
        # (files, not actor arguments: Ray cannot restart an actor from large arguments).
        restart = self.path is not None and self.path.exists()
        saved = serialization.msgpack_restore((self.path if restart else Path(start)).read_bytes())
        if restart and saved.get("run_id") != run_id:
            raise ConfigError(f"parameter server: {self.path} belongs to run {saved.get('run_id')}, not to this run "
                              f"{run_id}: use a fresh checkpoint_dir")
        self.k, self.next_batch_index = int(saved["k"]), int(saved["next_batch"])
        self.params, self.opt_state = saved["params"], _restore_opt(exp, saved["opt_state"])
        self.seen = set(np.asarray(saved.get("seen", np.zeros(0, np.int64))).tolist())  # batch ids taken
        self.handouts = {int(w): (int(q), int(i)) for w, q, i in np.asarray(saved.get("handouts", np.zeros((0, 3), np.int64)))}
        self.count = 0
        self.local_rows = {p: t.shape[0] for p, t in traverse_util.flatten_dict(self.params["sparse"]).items()}
        example_rows = _example_rows(exp, options.local_batch)
        self._row_keys = {repr(k): k for k in example_rows}
        apply = state_lib.make_apply_fn(exp.optimizers)
        self._apply = jax.jit(lambda p, o, acc: apply(p, o, gba.global_gradient(acc, self.cfg)))
        self._accumulate = jax.jit(lambda acc, token, dense, rows: gba.accumulate(acc, token, dense, rows, self.cfg))
        dense_like = {"dense": self.params["dense"]} if shard == 0 else {}
        self._dense_zero = jax.tree.map(np.zeros_like, dense_like)
        self.acc = gba.init(dense_like, example_rows, self.cfg, self.local_rows)._replace(step=np.int32(self.k))
        self._empty = self.acc
        jax.block_until_ready(self._apply(self.params, self.opt_state, self._accumulate(self.acc, np.int32(0), self._dense_zero,
                                                                                        example_rows)))  # compile before the first push
        self._log, self.log_path, self.replayed = None, None, 0
        if self.dir is not None:
            self.log_path = self.dir / f"shard_{shard}.{self.k}.log"
            self.replayed = self._replay()  # (its last push may have made a checkpoint and a new log)
            for stale in self.dir.glob(f"shard_{shard}.*.log"):  # of checkpoints since superseded
                if stale != self.log_path:
                    stale.unlink(missing_ok=True)
            if self._log is None:
                self._log = open(self.log_path, "ab", buffering=0)
        self.restored_step = self.k
        self.reconstructed = bool(require_ray().get_runtime_context().was_current_actor_reconstructed)

    # -- the log: one length-prefixed msgpack record per request, since the last checkpoint ----

    def _record(self, rec: dict) -> None:
        if self._log is not None:
            blob = serialization.msgpack_serialize(rec)
            self._log.write(len(blob).to_bytes(8, "little") + blob)  # one write: a kill leaves a whole or torn record

    def _replay(self) -> int:
        """Re-applies the log of the loaded checkpoint (a torn last record, never acknowledged, is
        cut off); returns how many records it replayed."""
        path = self.log_path
        if not path.exists():
            return 0
        data, pos, n = path.read_bytes(), 0, 0
        while pos + 8 <= len(data):
            size = int.from_bytes(data[pos:pos + 8], "little")
            if pos + 8 + size > len(data):
                break
            rec = serialization.msgpack_restore(data[pos + 8:pos + 8 + size])
            pos, n = pos + 8 + size, n + 1
            if rec["op"] == "next":
                self._hand_out(int(rec["w"]), int(rec["q"]), int(rec["i"]))
            else:
                rows = {self._row_keys[k]: (v["ids"], v["grads"]) for k, v in rec["rows"].items()}
                self._push(serialization.from_state_dict(self._dense_zero, rec["dense"]), rows, int(rec["token"]),
                           int(rec["id"]))
        if pos < len(data) and path.exists():
            os.truncate(path, pos)
        return n

    # -- requests ---------------------------------------------------------------------------------

    def next_batch(self, worker: int = -1, seq: int = -1) -> int:
        """Shard 0: the next local batch index, or -1 when all have been handed out. Idempotent per
        (worker, seq): a retried request (after a restart) gets the index it was given."""
        if worker >= 0 and self.handouts.get(worker, (None,))[0] == seq:
            return self.handouts[worker][1]
        i = self.next_batch_index
        if i >= self.options.num_batches:
            return -1
        self._record({"op": "next", "w": worker, "q": seq, "i": i})
        self._hand_out(worker, seq, i)
        return i

    def _hand_out(self, worker: int, seq: int, i: int) -> None:
        self.next_batch_index = max(self.next_batch_index, i + 1)
        if worker >= 0:
            self.handouts[worker] = (seq, i)

    def pull(self) -> tuple[dict, int]:
        return self.params, self.k

    def version(self) -> int:
        return self.k

    def push(self, dense: dict, rows: dict, token: int, batch_id: int = -1) -> None:
        """Adds a worker's gradient of local batch `batch_id` computed at this shard's step `token`;
        after M of them applies their mean. A batch id already taken (a push retried after a
        restart) is ignored."""
        if batch_id >= 0 and batch_id in self.seen:
            return
        if self._log is not None:
            self._record({"op": "push", "id": int(batch_id), "token": int(token), "dense": serialization.to_state_dict(dense),
                          "rows": {repr(k): {"ids": np.asarray(i), "grads": np.asarray(g)} for k, (i, g) in rows.items()}})
        self._push(dense, rows, token, batch_id)

    def _push(self, dense, rows, token: int, batch_id: int) -> None:
        self.acc = self._accumulate(self.acc, np.int32(token), dense, rows)
        self.count += 1
        if batch_id >= 0:
            self.seen.add(batch_id)
        if self.count == self.cfg.num_aggregate:
            self.params, self.opt_state = jax.device_get(self._apply(self.params, self.opt_state, self.acc))
            self.k, self.count = self.k + 1, 0
            self.acc = self._empty._replace(step=np.int32(self.k))
            if self.path is not None and self.k % self.options.checkpoint_every == 0:
                self.save()

    def save(self) -> None:
        """The state, atomically (a shard killed mid-write keeps its previous checkpoint), then a
        fresh log for it; the previous log goes (on the next start if killed before)."""
        handouts = np.array([(w, q, i) for w, (q, i) in sorted(self.handouts.items())], np.int64).reshape(-1, 3)
        _write(self.path, {"k": self.k, "next_batch": self.next_batch_index, "params": self.params,
                           "opt_state": self.opt_state, "run_id": self.run_id,
                           "seen": np.array(sorted(self.seen), np.int64), "handouts": handouts})
        old, self.log_path = self.log_path, self.dir / f"shard_{self.shard}.{self.k}.log"
        if self._log is not None:
            self._log.close()
        self._log = open(self.log_path, "wb", buffering=0)
        if old is not None and old != self.log_path:
            old.unlink(missing_ok=True)

    def state(self) -> tuple[dict, dict, int, int]:
        """(params, opt_state, k, the step it was restored at)."""
        return self.params, self.opt_state, self.k, self.restored_step

    def stats(self) -> dict:
        """{'step': k, 'batches': distinct batch ids taken, 'next_batch': the cursor (shard 0),
        'restarted': whether this incarnation is a restart, 'resumed_at': its step after the
        reload, 'replayed': log records it replayed then}."""
        return {"step": self.k, "batches": len(self.seen), "next_batch": self.next_batch_index,
                "restarted": self.reconstructed, "resumed_at": self.restored_step, "replayed": self.replayed}


class Worker:
    """One non-blocking worker (module docstring). Ray actor; see `ParameterServer`."""

    def __init__(self, config, worker_id: int, shards: list, options: PSOptions, slowdown: float = 1.0):
        from jaxrec.train import straggler_replay
        from jaxrec.train import state as state_lib

        exp = _build(config)
        self.id, self.shards, self.options, self.slowdown = worker_id, shards, options, float(slowdown)
        cols = exp.dataset.columns("train")
        self.data = cols
        n = len(next(iter(cols.values())))
        epochs = -(-options.num_batches * options.local_batch // n) + 1
        self.order = straggler_replay.local_batch_order(n, options.local_batch, options.num_workers, options.seed, epochs)
        grad = state_lib.make_gradient_fn(exp.model, exp.optimizers)
        self._grad = jax.jit(lambda p, batch, rng: grad(p, batch, rng)[::2])
        like = exp.init_state(place=False)
        self.rng, self.batches = like.rng, 0
        first = {k: v[self.order[:options.local_batch]] for k, v in cols.items()}
        jax.block_until_ready(self._grad(like.params, first, self.rng))  # compile now: a slowdown scales compute only

    @staticmethod
    def _params(pulled: list[dict]) -> dict:
        """The full parameters from every shard's part (tables re-interleaved)."""
        flat = [traverse_util.flatten_dict(p["sparse"]) for p in pulled]
        tables = {path: interleave([f[path] for f in flat]) for path in flat[0]}
        return {"dense": pulled[0]["dense"], "sparse": traverse_util.unflatten_dict(tables)}

    def run(self) -> int:
        """Processes local batches until shard 0 has no more; returns how many this worker did."""
        ray = require_ray()
        b, s, pending = self.options.local_batch, len(self.shards), []
        while True:
            tic = time.perf_counter()
            if (i := ray.get(self.shards[0].next_batch.remote(self.id, self.batches))) < 0:
                break
            pulled = ray.get([sh.pull.remote() for sh in self.shards])
            params, tokens = self._params([p for p, _ in pulled]), [k for _, k in pulled]
            idx = self.order[i * b:(i + 1) * b]
            loss, (dense, rows) = jax.device_get(self._grad(params, {k: v[idx] for k, v in self.data.items()},
                                                            jax.random.fold_in(self.rng, i)))
            time.sleep((self.slowdown - 1.0) * (time.perf_counter() - tic))  # a straggler: r x the batch's pull + compute
            ray.get(pending)  # at most one push per shard in flight
            local = [{p: t.shape[0] for p, t in traverse_util.flatten_dict(q["sparse"]).items()} for q, _ in pulled]
            pending = [sh.push.remote(dense if j == 0 else {}, split_rows(rows, j, s, local[j]), tokens[j], i)
                       for j, sh in enumerate(self.shards)]
            self.batches += 1
            if self.options.mode == "sync":  # barrier: wait until this step is applied everywhere
                ray.get(pending)
                while any(k <= t for k, t in zip(ray.get([sh.version.remote() for sh in self.shards]), tokens)):
                    time.sleep(0.002)
        ray.get(pending)
        return self.batches


class ParameterServer:
    """Driver-side handle: starts the shards and workers, runs, collects the state.

    Args:
      config: the experiment config (row-wise sparse optimizer); every actor builds its model,
        optimizers and data from it, so they equal `train.py`'s.
      state: the TrainState to start from (fresh, or restored from a `train.py` checkpoint).
      options: `PSOptions`.
      slowdowns: per-worker slowdown factors (default all 1).
      resume: continue the run whose checkpoints are in `options.checkpoint_dir` (same config,
        options but `num_batches` / `checkpoint_every`, and start state: checked against its
        `run.json`). Without it a `checkpoint_dir` holding another run's files is refused.
    """

    def __init__(self, config, state, options: PSOptions, slowdowns: Sequence[float] | None = None,
                 resume: bool = False):
        ray = require_ray()
        self.config, self.options, self.like = config, options, state
        params, opt_state = jax.device_get(state.params), jax.device_get(state.opt_state)
        self._start_dir = Path(tempfile.mkdtemp(prefix="jaxrec-ps-"))
        starts = [self._start_dir / f"start_{s}.msgpack" for s in range(options.num_shards)]
        for s, path in enumerate(starts):
            p, o = shard_state(params, opt_state, s, options.num_shards)
            _write(path, {"k": 0, "next_batch": 0, "params": p, "opt_state": o})
        self.run_id = None
        if options.checkpoint_dir:
            try:
                identity = run_identity(config, options, [p.read_bytes() for p in starts], int(state.step))
                self.run_id = claim_checkpoint_dir(options.checkpoint_dir, identity, resume)
            except BaseException:
                shutil.rmtree(self._start_dir, ignore_errors=True)
                raise
        elif resume:
            raise ConfigError("parameter server: resume=True needs options.checkpoint_dir (the run to resume)")
        init_ray()
        shard_cls = ray.remote(num_cpus=0, max_restarts=MAX_RESTARTS, max_task_retries=-1)(ServerShard)
        self.shards = [shard_cls.remote(config, s, options, str(starts[s]), self.run_id) for s in range(options.num_shards)]
        self._worker_cls = ray.remote(num_cpus=0)(Worker)
        self.workers = {}
        for i, f in enumerate(slowdowns or [1.0] * options.num_workers):
            self.add_worker(f, worker_id=i)

    def add_worker(self, slowdown: float = 1.0, worker_id: int | None = None):
        """Starts a worker (e.g. replacing a dead one); it joins at the next batch."""
        wid = max(self.workers, default=-1) + 1 if worker_id is None else worker_id
        if wid in self.workers:
            raise ConfigError(f"parameter server: worker id {wid} is taken (ids are never reused: its hand-outs are recorded)")
        handle = self._worker_cls.remote(self.config, wid, self.shards, self.options, slowdown)
        self.workers[wid] = (handle, handle.run.remote())
        return handle

    def run(self, replace_dead: bool = False, timeout: float = 3600.0) -> dict:
        """Waits until every batch is processed; a dead worker is dropped (and replaced if
        `replace_dead`).

        Returns {'seconds', 'batches': {worker: n}, 'dead': [worker ids], 'handed_out': batch
        indices shard 0 handed out in all (this run, resumes included), 'shards': [per shard
        `ServerShard.stats()` plus 'lost': handed-out batches it never received (a dead worker's)]}.
        """
        ray = require_ray()
        tic, done, dead = time.perf_counter(), {}, []
        while len(done) + len(dead) < len(self.workers):
            refs = {ref: wid for wid, (_, ref) in self.workers.items() if wid not in done and wid not in dead}
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=timeout)
            if not ready:
                raise TimeoutError(f"parameter server: no worker finished within {timeout} s")
            wid = refs[ready[0]]
            try:
                done[wid] = ray.get(ready[0])
            except ray.exceptions.RayActorError:
                dead.append(wid)
                if replace_dead:
                    self.add_worker()
        seconds = time.perf_counter() - tic
        shards = ray.get([s.stats.remote() for s in self.shards])
        handed = shards[0]["next_batch"]
        shards = [{**st, "lost": handed - st["batches"]} for st in shards]
        return {"seconds": seconds, "batches": done, "dead": dead, "handed_out": handed, "shards": shards}

    def kill_worker(self, worker_id: int) -> None:
        """Kills a worker process mid-run (a fault, for tests and drills)."""
        require_ray().kill(self.workers[worker_id][0], no_restart=True)

    def kill_shard(self, shard: int) -> None:
        """Kills a shard process; Ray restarts it from its last checkpoint and log (module docstring)."""
        require_ray().kill(self.shards[shard], no_restart=False)

    def state(self):
        """The TrainState assembled from the shards (step = shard 0's k), and per-shard
        (k, restored step)."""
        ray = require_ray()
        parts = ray.get([s.state.remote() for s in self.shards])
        params, opt = merge_state([(p, o) for p, o, _, _ in parts], jax.device_get(self.like.params),
                                  jax.device_get(self.like.opt_state))
        steps = [(k, r) for _, _, k, r in parts]
        state = self.like.replace(step=np.int32(self.like.step + steps[0][0]), params=params, opt_state=opt)
        return state, steps

    def close(self) -> None:
        ray = require_ray()
        for handle, _ in self.workers.values():
            ray.kill(handle, no_restart=True)
        for s in self.shards:
            ray.kill(s, no_restart=True)
        shutil.rmtree(self._start_dir, ignore_errors=True)


def save_for_trainer(checkpointer, state, meta: dict | None = None) -> None:
    """Writes a parameter-server state where `train.py` resumes from it (its `checkpoints/`
    manager), carrying the early-stopping bookkeeping `meta` of the run it came from (the
    trainer's own after `checkpointer.restore`); the tuning-free switch back to synchronous
    training. The state's step tells the trainer where in the data stream to go on."""
    from jaxrec.train import loop

    checkpointer.save(int(state.step), state, dict(meta or loop.new_meta()))
