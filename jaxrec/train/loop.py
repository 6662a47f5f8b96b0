"""The training loop: train, evaluate, early-stop, checkpoint and resume.

`train_and_evaluate(config, workdir)` runs an experiment end to end and writes
`<workdir>/metrics.json`; rerun on the same workdir it resumes from the latest checkpoint
(mid-epoch included) and finishes with the same result as an uninterrupted run, because
batches are a pure function of (seed, epoch, step) and checkpoints fall on chunk edges.

Layout of a workdir: `config.json`, `checkpoints/`, `best/`, `tb/` (TensorBoard scalars),
`metrics.json`, `profile/` (with `profile=True`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from jaxrec.data import batching
from jaxrec.data.dataset import LABELS, Dataset
from jaxrec.embedding import embedding_layouts
from jaxrec.embedding.amtl import add_frequency_columns, learned_dims
from jaxrec.embedding.dynamic_features import placeholder_rows
from jaxrec.distributed import runtime
from jaxrec.mesh import make_mesh
from jaxrec.distributed.sharded_embeddings import ShardedEmbeddings
from jaxrec.errors import ConfigError, DataError, TrainingDiverged
from jaxrec.models.ctr.pcf_gnn import CrossOptions, add_cross_features
from jaxrec.train import config as config_lib
from jaxrec.train import metrics as metrics_lib
from jaxrec.train import state as state_lib
from jaxrec.train.checkpointing import Checkpointer
from jaxrec.train.optimizers import make_optimizer, make_table_optimizers
from jaxrec.train.prefetch import device_prefetch
from jaxrec.train import workdir as workdir_lib

log = logging.getLogger("jaxrec")


@dataclasses.dataclass
class Experiment:
    """Everything built from a config: data, model, optimizers, compiled functions."""

    config: ml_collections.ConfigDict
    dataset: Dataset
    model: Any
    optimizers: state_lib.Optimizers
    steps_per_epoch: int
    steps_per_call: int
    train_steps: Any  # jitted (state, chunk) -> (state, {'loss': [K]})
    predict: Any      # jitted (params, chunk) -> logits [K, B]
    layouts: dict     # {embedding layer path: StackLayout}, for logical checkpoints
    sharding: ShardedEmbeddings | None = None  # row-sharded tables on a mesh (config.mesh)
    amtl: dict = dataclasses.field(default_factory=dict)  # {table: AMTLOptions} of AMTL-masked tables

    def init_state(self, place: bool = True) -> state_lib.TrainState:
        """The initial state (from config.seed), placed on the mesh unless `place=False`."""
        example = {k: v[:2] for k, v in self.dataset.columns("train").items()}
        state = state_lib.init_state(self.model, self.optimizers, example, int(self.config.seed))
        return self.place(state) if place else state

    def place(self, tree):
        """A logical (unsharded) state or params tree -> placed on the mesh (no-op without one)."""
        return tree if self.sharding is None else self.sharding.shard_state(tree, self.layouts)

    @property
    def batch_sharding(self):
        return None if self.sharding is None else self.sharding.batch_sharding()

    def checkpointer(self, directory, keep: int = 2) -> Checkpointer:
        return Checkpointer(directory, keep=keep, layouts=self.layouts, rows_for=self.sharding.rows_for if self.sharding else None)


def build(config: ml_collections.ConfigDict, dataset: Dataset | None = None) -> Experiment:
    """Validates `config` and builds the experiment (loads the dataset unless given)."""
    config_lib.validate(config)
    dataset = dataset or config_lib.build_dataset(config)
    if config.get("fields"):
        try:
            dataset = dataset.select(tuple(config.fields))
        except KeyError as e:
            raise ConfigError(f"fields: {e.args[0]}") from None
    if config.get("cross_features"):  # PCF-GNN (or explicit) cross features as numeric fields
        dataset, report = add_cross_features(dataset, CrossOptions.from_config(config.cross_features))
        log.info("cross features: %s", report)
    model = config_lib.build_model(config, dataset)
    amtl_tables = {name: o.amtl for name, o in getattr(model, "tables", ()) if o.amtl is not None}
    if amtl_tables:  # AMTL reads each value's train frequency from the batch
        dataset = add_frequency_columns(dataset, list(amtl_tables))
    t = config.train
    n_train = dataset.num_rows("train")
    spe = batching.steps_per_epoch(n_train, int(t.batch_size))
    if spe == 0:
        raise DataError(f"train split has {n_train} rows, fewer than train.batch_size={t.batch_size}")
    total = spe * int(t.num_epochs)
    layouts = embedding_layouts(model, placeholder_rows(dataset.features, {k: v[:2] for k, v in dataset.columns("train").items()}))
    sparse, stacks = make_table_optimizers(config.sparse_optimizer.to_dict(), layouts, total)
    optimizers = state_lib.Optimizers(dense=make_optimizer(config.optimizer.to_dict(), total, "optimizer"), sparse=sparse,
                                      stacks=stacks)
    sharding = None
    shape = tuple(int(x) for x in config.mesh.shape)
    if jax.process_count() > 1 and not shape:  # several processes: one data-parallel mesh over all their devices
        shape = (jax.device_count(), 1)
    if shape:
        if jax.process_count() > 1 and math.prod(shape) != jax.device_count():
            raise ConfigError(f"mesh.shape={shape}: a run of {jax.process_count()} processes needs a mesh over all "
                              f"{jax.device_count()} devices")
        if len(shape) != 2 or math.prod(shape) > jax.device_count():
            raise ConfigError(f"mesh.shape={shape}: expected (data, model) with at most {jax.device_count()} devices "
                              f"(on CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N; eval.py --mesh_shape none "
                              f"evaluates a mesh-trained workdir on one device)")
        mesh = make_mesh(shape, devices=jax.devices()[:math.prod(shape)])
        sharding = ShardedEmbeddings(mesh, config.mesh.table_sharding)
        for key in ("batch_size", "eval_batch_size"):
            if int(t[key]) % mesh.shape["data"]:
                raise ConfigError(f"train.{key}={t[key]} is not divisible by the mesh's data axis ({mesh.shape['data']})")
    step = state_lib.make_train_step(model, optimizers, sharding=sharding, layouts=layouts,
                                     dedup_mode=config.sparse_optimizer.get("dedup", "auto"))
    return Experiment(
        config=config, dataset=dataset, model=model, optimizers=optimizers, steps_per_epoch=spe,
        steps_per_call=steps_per_call(t, spe),
        train_steps=jax.jit(state_lib.make_train_steps(step), donate_argnums=0),
        predict=jax.jit(state_lib.make_predict(model, sharding)),
        layouts=layouts, sharding=sharding, amtl=amtl_tables,
    )


def steps_per_call(train: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """Steps per compiled call: `train.steps_per_call`, or else a whole epoch, or, with mid-epoch
    checkpoints (`train.checkpoint_every_steps`), that many steps (checkpoints fall on call edges)."""
    k, every = int(train.steps_per_call), int(train.checkpoint_every_steps)
    return min(k or every or steps_per_epoch, steps_per_epoch)


def check_validation_split(dataset: Dataset, metric: str) -> None:
    """Early stopping reads a ranking metric on the valid split: it needs both classes there."""
    labels = np.asarray(dataset.splits["valid"][LABELS]).reshape(-1) if "valid" in dataset.splits else None
    if labels is None or not len(labels):
        raise DataError(f"dataset {dataset.name!r} has no valid rows: early stopping and model selection need a valid split")
    if metric == "gauc" and not dataset.group_key:
        raise ConfigError(f"early_stopping.metric='gauc' needs a group key, which dataset {dataset.name!r} has none of "
                          f"(dataset.group_key); use 'auc' or 'logloss'")
    if metric in ("auc", "gauc") and (labels.min() == labels.max()):
        raise DataError(f"the valid split of {dataset.name!r} has only label {labels[0]:g} ({len(labels):,} rows): "
                        f"early_stopping.metric={metric!r} is undefined on it; change the split or the data")


def predict_split(exp: Experiment, params, split: str) -> np.ndarray:
    """Logits `[N]` for every row of `split`, in order."""
    cols = {k: v for k, v in exp.dataset.columns(split).items() if k != LABELS}
    out = []
    for chunk, n in batching.eval_chunks(cols, int(exp.config.train.eval_batch_size), int(exp.config.train.eval_steps_per_call)):
        if exp.sharding is not None:
            chunk = jax.tree.map(lambda x: runtime.put(x, exp.batch_sharding), chunk)
        out.append(runtime.to_host(exp.predict(params, chunk)).reshape(-1)[:n])
    return np.concatenate(out)


def evaluate(exp: Experiment, params, split: str) -> dict[str, float]:
    """Exact metrics (AUC, GAUC by the dataset's group key, logloss, ...) over a whole split."""
    data = exp.dataset.splits[split]
    groups = data[exp.dataset.group_key] if exp.dataset.group_key else None
    if groups is not None and groups.ndim == 2:  # dynamic-vocabulary keys [N, 2] -> one group id per key
        groups = np.unique(groups, axis=0, return_inverse=True)[1].reshape(-1)
    return metrics_lib.binary_metrics(data[LABELS], predict_split(exp, params, split), groups)


def _better(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None or math.isnan(best):  # the first epoch is the best so far, whatever its value
        return best is None or not math.isnan(value)
    return value > best + min_delta if mode == "max" else value < best - min_delta


class _Summaries:
    """TensorBoard scalars (tensorboardX) of finite numeric values."""

    def __init__(self, logdir: Path):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(logdir)) if runtime.is_main() else None  # one writer per run

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _add_counts(counts: dict, out: dict) -> None:
    """Folds a train call's per-step metrics `{name: [K]}` (all but the loss) into `counts`:
    counts are summed, gauges (`.../occupancy`, `aux_loss`) keep their last value."""
    for key, v in out.items():
        if key == "loss":
            continue
        if key.endswith("occupancy") or key == "aux_loss":
            counts[key] = float(np.asarray(v).reshape(-1)[-1])
        else:
            counts[key] = counts.get(key, 0) + int(np.sum(v))


def _log_counts(epoch: int, counts: dict) -> None:
    for key, v in counts.items():
        if key.startswith("overflow_ids/") and v:
            log.warning("epoch %d: %s = %d (ids beyond the feature's batch_capacity were dropped)", epoch, key, v)
    tables = sorted({k.split("/")[1] for k in counts if k.startswith("vocab/")})
    for t in tables:
        c = {k.rsplit("/", 1)[1]: v for k, v in counts.items() if k.startswith(f"vocab/{t}/")}
        log.info("epoch %d: vocab %s: occupancy %.3f, admitted %d, evicted %d, rejected %d, dropped %d, unknown %d",
                 epoch, t, c.get("occupancy", 0.0), *(c.get(k, 0) for k in ("admitted", "evicted", "rejected", "dropped", "unknown")))


def divergence(losses: np.ndarray, recent: np.ndarray, factor: float) -> tuple[int, str] | None:
    """`(index, why)` of the first step loss `[K]` that is not finite, or (with `factor` > 0) above
    `factor` x the median of the losses before it (`recent`, the last steps of the run, and the
    chunk's own, the last 1,000; from the second step on, so that a run that blows up in its first
    steps is caught too); None if none is."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if len(bad):
        return int(bad[0]), "is not finite"
    if factor <= 0:
        return None
    history = np.concatenate([recent, losses])
    for i in range(len(losses)):
        seen = history[:len(recent) + i][-1000:]
        if len(seen):
            ref = float(np.median(seen))
            if ref > 0 and losses[i] > factor * ref:
                return i, f"is over {factor:g} x the running median loss {ref:.4g} (train.divergence_factor)"
    return None


def _diverged(losses: np.ndarray, found: tuple[int, str], first: int, epoch: int, latest: Checkpointer) -> TrainingDiverged:
    bad, why = found
    saved = latest.latest_step()
    where = (f"The last good checkpoint is kept: step {saved} in {latest.directory}; rerun to resume from it "
             f"(e.g. with a lower optimizer.lr and --config.train.allow_config_change=true)" if saved is not None else
             "No checkpoint had been written yet; lower optimizer.lr or check the data")
    return TrainingDiverged(f"loss {losses[bad]:.6g} at step {first + bad} (epoch {epoch}) {why}; training stopped. {where}")


def new_meta() -> dict:
    """The loop's bookkeeping at the start of a run (saved beside each checkpoint)."""
    return {"history": [], "best_value": None, "best_epoch": None, "bad_epochs": 0, "stopped": False, "counters": {}}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path, profile: bool = False,
                       dataset: Dataset | None = None) -> dict:
    """Trains with early stopping, then evaluates the best epoch; returns the metrics dict.

    Resumes automatically from `<workdir>/checkpoints`. Writes `<workdir>/metrics.json`:
    {'valid': {...}, 'test': {...}, 'best_epoch', 'epochs_run', 'stopped_early',
    'train_examples_per_sec' (median over epochs after the first, compile excluded), 'history',
    'num_params': {'dense': n, 'sparse': n (embedding rows as stored)}}.
    """
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir}: exists and is not a directory")
    workdir.mkdir(parents=True, exist_ok=True)
    with workdir_lib.lock(workdir) if runtime.is_main() else contextlib.nullcontext():
        return _train_and_evaluate(config, workdir, profile, dataset)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: Path, profile: bool, dataset: Dataset | None) -> dict:
    exp = build(config, dataset)
    t, es = config.train, config.early_stopping
    check_validation_split(exp.dataset, es.metric)
    if t.get("init_from") and not (workdir / "checkpoints").is_dir():
        _init_from_dir(t.init_from)  # a bad warm start is refused before the workdir is claimed
    identity = workdir_lib.data_identity(exp.dataset)
    if workdir_lib.check_run(workdir, config, identity, config_lib.default_config().to_dict()):
        log.info("%s holds this run (same config and data): resuming", workdir)
    if runtime.is_main():
        workdir_lib.record_run(workdir, config, identity, exp.dataset.fitted)
    bs, spe, k = int(t.batch_size), exp.steps_per_epoch, exp.steps_per_call
    log.info("%s", exp.dataset.summary())

    latest = exp.checkpointer(workdir / "checkpoints", keep=int(t.keep_checkpoints))
    best = exp.checkpointer(workdir / "best", keep=1)
    state = exp.init_state(place=False)
    num_params = {side: sum(int(x.size) for x in jax.tree.leaves(state.params[side])) for side in ("dense", "sparse")}
    log.info("parameters: %s dense, %s in embedding tables", f"{num_params['dense']:,}", f"{num_params['sparse']:,}")
    meta = new_meta()
    if latest.latest_step() is not None:
        state, meta = latest.restore(state, fallback=True)
        log.info("resumed from %s at step %d", latest.directory, int(state.step))
    elif t.get("init_from"):
        state = state.replace(params=warm_start(exp, state.params, t.init_from))
    logical_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state.params)  # best/'s restore target
    state = exp.place(state)
    summaries = _Summaries(workdir / "tb")
    train_cols = exp.dataset.columns("train")
    step = int(state.step)
    last_saved = step
    total_steps = spe * int(t.num_epochs)
    bar = tqdm(total=total_steps, initial=step, unit="step", disable=not (t.progress_bar and runtime.is_main()),
               dynamic_ncols=True)
    profiling = False
    stream = device_prefetch(batching.train_stream(train_cols, bs, k, int(config.seed), step, total_steps),
                             sharding=exp.batch_sharding)
    epoch_tic, epoch_first, epoch_counts = time.perf_counter(), step, dict(meta.get("epoch_counts", {}))
    recent = np.zeros(0, np.float32)  # the last step losses, for divergence detection
    with logging_redirect_tqdm():  # log lines print above the progress bar
        try:
            for first, chunk in ([] if meta["stopped"] else stream):
                epoch = first // spe
                if profile and not profiling and (first > 0 or total_steps <= k):
                    jax.profiler.start_trace(str(workdir / "profile"))
                    profiling = True
                new_state, out = exp.train_steps(state, chunk)
                losses = np.asarray(out["loss"])  # waits for the chunk: one sync per call
                _add_counts(epoch_counts, out)  # e.g. overflow_ids/<feature>, vocab/<table>/admitted
                if profiling and profile:
                    jax.profiler.stop_trace()
                    profile = False  # one traced call is enough
                found = divergence(losses, recent, float(t.divergence_factor))
                if found is not None:
                    raise _diverged(losses, found, first, epoch, latest)
                recent = np.concatenate([recent, losses])[-1000:]
                state, step = new_state, first + len(losses)
                bar.update(len(losses))
                bar.set_postfix(epoch=epoch, loss=f"{losses.mean():.4f}")
                summaries.scalars("train", {"loss": float(losses.mean())}, step)
                if step % spe:  # mid-epoch
                    if int(t.checkpoint_every_steps) and step - last_saved >= int(t.checkpoint_every_steps):
                        meta["epoch_counts"] = epoch_counts  # so a resumed epoch keeps its counts
                        latest.save(step, state, meta)
                        last_saved = step
                    continue
                # Epoch end: time it, validate, early-stopping bookkeeping, checkpoint.
                seconds = time.perf_counter() - epoch_tic
                ex_s = spe * bs / seconds if epoch_first == epoch * spe else None  # a resumed partial epoch is not timed
                bar.set_postfix(epoch=epoch, loss=f"{losses.mean():.4f}", ex_per_s=f"{ex_s:,.0f}" if ex_s else "-")
                valid = evaluate(exp, state.params, "valid")
                value = valid[es.metric]
                if _better(value, meta["best_value"], es.mode, float(es.min_delta)):
                    meta.update(best_value=value, best_epoch=epoch, bad_epochs=0)
                    best.save(epoch, state.params, {"epoch": epoch, "valid": valid})
                else:
                    meta["bad_epochs"] += 1
                meta["history"].append({"epoch": epoch, "valid": valid, "train_examples_per_sec": ex_s, "counters": epoch_counts})
                meta["epoch_counts"] = {}
                _add_counts(meta["counters"], {k: [v] for k, v in epoch_counts.items()})
                _log_counts(epoch, epoch_counts)
                summaries.scalars("train", epoch_counts, step)
                summaries.scalars("valid", valid, step)
                if ex_s:
                    summaries.scalars("train", {"examples_per_sec": ex_s}, step)
                meta["stopped"] = bool(int(es.patience) and meta["bad_epochs"] >= int(es.patience))
                latest.save(step, state, meta)
                last_saved = step
                log.info("epoch %d: valid %s=%.5f (best %.5f at epoch %s)%s", epoch, es.metric, value,
                         meta["best_value"], meta["best_epoch"], "; early stop" if meta["stopped"] else "")
                if meta["stopped"]:
                    break
                epoch_tic, epoch_first, epoch_counts = time.perf_counter(), step, {}
        finally:
            stream.close()
            bar.close()
            summaries.close()
            if profiling and profile:
                jax.profiler.stop_trace()

    best_params, best_meta = best.restore(logical_params)
    best_params = exp.place(best_params)
    result = {split: evaluate(exp, best_params, split) for split in config.eval_splits}
    speeds = [h["train_examples_per_sec"] for h in meta["history"][1:] if h["train_examples_per_sec"]]
    result.update(
        best_epoch=best_meta["epoch"],
        epochs_run=len(meta["history"]),
        stopped_early=bool(meta["stopped"]),
        train_examples_per_sec=float(np.median(speeds)) if speeds else None,
        steps=step,
        num_params=num_params,
        train_counters=meta.get("counters", {}),
        history=meta["history"],
        model=config.model.name,
        dataset=exp.dataset.name,
        seed=int(config.seed),
    )
    if exp.amtl:
        result["amtl"] = export_amtl_dims(exp, best_params, workdir)
    if hasattr(exp.model, "report"):  # a model's own summary of what it learned (e.g. FSCD's field selection)
        result["model_report"] = exp.model.report(runtime.to_host(best_params["dense"]))
        log.info("model report: %s", result["model_report"])
    if runtime.is_main():
        (workdir / "metrics.json").write_text(json.dumps(result, indent=2))
    summaries = _Summaries(workdir / "tb")
    for split in config.eval_splits:
        summaries.scalars(f"final_{split}", result[split], step)
    summaries.close()
    latest.close()
    best.close()
    return result


def _init_from_dir(workdir: str | Path) -> Path:
    directory = Path(workdir) / "best"
    if not directory.is_dir():
        raise ConfigError(f"train.init_from={str(workdir)!r}: {directory} does not exist (a workdir written by train.py?)")
    return directory


def warm_start(exp: Experiment, params, workdir: str | Path):
    """`params` with every array that `<workdir>/best` holds at the same logical path and shape
    (e.g. a trained model's tables and MLPs under a new AMTL mask); the rest keep their init."""
    directory = _init_from_dir(workdir)
    ckpt = exp.checkpointer(directory, keep=1)
    params, restored, kept = ckpt.restore_matching(params)
    ckpt.close()
    if not restored:
        raise ConfigError(f"train.init_from={str(workdir)!r}: no parameter matches this model's (another architecture?)")
    log.info("warm start from %s: %d arrays restored, %d new (%s)", directory, len(restored), len(kept),
             ", ".join(kept[:6]) + (" ..." if len(kept) > 6 else ""))
    return params


def export_amtl_dims(exp: Experiment, params, workdir: Path) -> dict:
    """AMTL's learned per-value sizes: `<workdir>/amtl_dims.npz` (`{layer/table: sizes [V]}`) and
    a summary `{layer/table: {values, dim, mean_dim, bytes, full_bytes}}` (float32 bytes)."""
    dims = learned_dims(runtime.to_host(params["dense"]), exp.amtl, exp.dataset)
    summary = {}
    for (*layer, table), d in dims.items():
        width = next(t.dim for p, l in exp.layouts.items() if list(p[:-1]) == layer for t in l.specs if t.name == table)
        summary["/".join([*layer, table])] = {"values": int(d.size), "dim": width, "mean_dim": float(d.mean()),
                                              "bytes": int(d.sum()) * 4, "full_bytes": int(d.size) * width * 4}
    if runtime.is_main():
        np.savez(workdir / "amtl_dims.npz", **{"/".join(k): v for k, v in dims.items()})
    for key, v in summary.items():
        log.info("AMTL %s: mean size %.2f of %d, %s of %s bytes (%.0f%% saved)", key, v["mean_dim"], v["dim"],
                 f"{v['bytes']:,}", f"{v['full_bytes']:,}", 100 * (1 - v["bytes"] / v["full_bytes"]))
    return summary


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The config a workdir was trained with (`<workdir>/config.json`)."""
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise DataError(f"{path} not found: is {workdir} a jaxrec workdir (made by train.py)?")
    try:
        return ml_collections.ConfigDict(json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: not a readable config ({type(e).__name__}: {e})") from None


def evaluate_checkpoint(workdir: str | Path, split: str = "test", which: str = "best",
                        config: ml_collections.ConfigDict | None = None, dataset: Dataset | None = None) -> dict:
    """Evaluates the 'best' or 'latest' checkpoint of a workdir on `split`; returns metrics."""
    if which not in ("best", "latest"):
        raise ConfigError(f"which={which!r}: expected 'best' or 'latest'")
    workdir = Path(workdir)
    config = config or load_config(workdir)
    if dataset is None:
        fitted = workdir_lib.saved_fitted(workdir)
        if fitted is None:
            log.info("%s has no fitted.json (older workdir, or a loader that fits nothing): encoding as the loader does", workdir)
        dataset = config_lib.build_dataset(config, fitted=fitted)
    exp = build(config, dataset)
    if split not in exp.dataset.splits:
        raise DataError(f"split {split!r} not in dataset; splits: {sorted(exp.dataset.splits)}")
    state = exp.init_state(place=False)
    directory = workdir / ("best" if which == "best" else "checkpoints")
    if not directory.is_dir() or not any(p.name.isdigit() for p in directory.iterdir()):
        raise DataError(f"{directory}: no checkpoint (the run ended before its first {'epoch' if which == 'best' else 'checkpoint'}, "
                        f"or the folder was removed)" + (": try --checkpoint latest" if which == "best" else ""))
    if which == "best":
        params, meta = exp.checkpointer(workdir / "best", keep=1).restore(state.params)
        step_info = {"epoch": meta["epoch"]}
    else:
        state, _ = exp.checkpointer(workdir / "checkpoints").restore(state)
        params, step_info = state.params, {"step": int(state.step)}
    return {"split": split, "checkpoint": which, **step_info, **evaluate(exp, exp.place(params), split)}

