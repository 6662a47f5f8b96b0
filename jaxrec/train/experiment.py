"""An experiment built from a config, in one direction, and what reads a trained one.

    data -> data transforms (field selection, pre-trained cross features, AMTL frequency
    columns) -> task -> embedding plan -> model (with its pre-trained constants) -> optimizers
    -> mesh -> compiled train / predict functions

`build(config)` returns the `Experiment`; `jaxrec.train.loop` trains it. `evaluate` computes a
split's exact metrics (the task's), `warm_start` reads a trained workdir's matching parameters,
`evaluate_checkpoint` scores a workdir's best or latest checkpoint (what eval.py runs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxrec import pretrain
from jaxrec.data import batching
from jaxrec.data.dataset import LABELS, Dataset
from jaxrec.distributed import runtime
from jaxrec.distributed.sharded_embeddings import ShardedEmbeddings
from jaxrec.embedding import EmbeddingPlan, embedding_plan
from jaxrec.embedding.amtl import add_frequency_columns, learned_dims
from jaxrec.embedding.plan import make_plan
from jaxrec.errors import ConfigError, DataError
from jaxrec.mesh import make_mesh
from jaxrec.pretrain.cross_features import CrossOptions, add_cross_features
from jaxrec.train import config as config_lib
from jaxrec.train import state as state_lib
from jaxrec.train import tasks as tasks_lib
from jaxrec.train import workdir as workdir_lib
from jaxrec.train.checkpointing import Checkpointer
from jaxrec.train.optimizers import OPTIMIZER_DEFAULTS, make_optimizer, make_table_optimizers

log = logging.getLogger("jaxrec")


@dataclasses.dataclass
class Experiment:
    """Everything built from a config: data, task, model, optimizers, compiled functions."""

    config: ml_collections.ConfigDict
    dataset: Dataset
    task: tasks_lib.Task
    model: Any
    optimizers: state_lib.Optimizers
    steps_per_epoch: int
    steps_per_call: int
    train_steps: Any  # jitted (state, chunk) -> (state, {'loss': [K]})
    predict: Any      # jitted (params, chunk) -> outputs [K, B] (or [K, B, T]; the task's eval_outputs if it has one)
    layouts: dict     # {stack path: StackLayout} (plan.layouts), for logical checkpoints
    sharding: ShardedEmbeddings | None = None  # row-sharded tables on a mesh (config.mesh)
    amtl: dict = dataclasses.field(default_factory=dict)  # {table: AMTLOptions} of AMTL-masked tables
    plan: EmbeddingPlan | None = None  # the model's embedding plan (jaxrec.embedding.plan)

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
    dataset, amtl = prepare_data(config, dataset or config_lib.build_dataset(config))
    task = tasks_lib.make_task(config, dataset)
    plan = plan_embeddings(config, dataset)  # the sparse side, as data: stacks, offsets, per-table optimizers, sharding
    model = build_model(config, dataset, task)
    if embedding_plan(model) != plan:  # the model's layers read the same plan (a model that builds its own differs)
        raise ConfigError(f"model {config.model.name!r}: its embedding layers do not match the plan of its declared "
                          f"EMBEDDING_LAYERS (jaxrec.embedding.plan)")
    t = config.train
    n_train = dataset.num_rows("train")
    spe = batching.steps_per_epoch(n_train, int(t.batch_size))
    if spe == 0:
        raise DataError(f"train split has {n_train} rows, fewer than train.batch_size={t.batch_size}")
    total = spe * int(t.num_epochs)
    layouts = plan.layouts
    sparse, stacks = make_table_optimizers(config.sparse_optimizer.to_dict(), layouts, total)
    if task.combine is not None and config.sparse_optimizer.rowwise:
        raise ConfigError("task.name='multitask' combines the per-task gradients of the tables too: it needs "
                          "sparse_optimizer.rowwise=False")
    if config.optimizer.get("trainable", "all") == "adapters" and not int(config.model.get("lora_rank", 0)):
        raise ConfigError("optimizer.trainable='adapters' trains LoRA adapters only: set model.lora_rank > 0 "
                          f"(model {config.model.name!r} has none), and train.init_from=<the base model's workdir>")
    dense = make_optimizer({k: v for k, v in config.optimizer.items() if k in OPTIMIZER_DEFAULTS}, total, "optimizer")
    optimizers = state_lib.Optimizers(dense=dense, sparse=sparse, stacks=stacks)
    sharding = mesh_sharding(config)
    if sharding is not None:  # transformer weights name their axes: tensor parallelism by jaxrec.mesh.LOGICAL_RULES
        example = {k: v[:2] for k, v in dataset.columns("train").items()}
        sharding = dataclasses.replace(sharding, logical=state_lib.logical_names(model, example))
    step = state_lib.make_train_step(model, optimizers, task.loss, sharding=sharding, layouts=layouts,
                                     dedup_mode=config.sparse_optimizer.get("dedup", "auto"), combine=task.combine)
    return Experiment(
        config=config, dataset=dataset, task=task, model=model, optimizers=optimizers, steps_per_epoch=spe,
        steps_per_call=steps_per_call(t, spe),
        train_steps=jax.jit(state_lib.make_train_steps(step), donate_argnums=0),
        predict=jax.jit(state_lib.make_predict(model, sharding, getattr(task, "eval_outputs", None),
                                               getattr(task, "eval_forward", None))),
        layouts=layouts, sharding=sharding, amtl=amtl, plan=plan,
    )


def prepare_data(config: ml_collections.ConfigDict, dataset: Dataset) -> tuple[Dataset, dict]:
    """The data transforms a config asks for, before any model exists: field selection
    (`fields`), pre-trained cross features (`cross_features`, `jaxrec.pretrain`) and AMTL's
    train-frequency columns. Returns (dataset, {table: AMTLOptions} of the AMTL tables)."""
    if config.get("fields"):
        try:
            dataset = dataset.select(tuple(config.fields))
        except KeyError as e:
            raise ConfigError(f"fields: {e.args[0]}") from None
    if config.get("cross_features"):  # PCF-GNN (or explicit) cross features as numeric fields
        dataset, report = add_cross_features(dataset, CrossOptions.from_config(config.cross_features))
        log.info("cross features: %s", report)
    amtl = {name: o.amtl for name, o in config_lib.table_options(config, dataset.features) if o.amtl is not None}
    if amtl:  # AMTL reads each value's train frequency from the batch
        dataset = add_frequency_columns(dataset, list(amtl))
    return dataset, amtl


def plan_embeddings(config: ml_collections.ConfigDict, dataset: Dataset) -> EmbeddingPlan:
    """The embedding plan of `config.model` over the dataset's features, before the model exists:
    the model class's declared `EMBEDDING_LAYERS` (widths from `config.model` or the class's
    defaults) and `config.tables` (`jaxrec.embedding.plan.make_plan`)."""
    from jaxrec.models import MODELS

    cls = MODELS[config.model.name]
    options = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    options.update({k: v for k, v in config.model.items() if k != "name"})
    declared = getattr(cls, "EMBEDDING_LAYERS", None)
    if declared is None:
        return EmbeddingPlan(())
    widths = {n: int(options[d]) if isinstance(d, str) else int(d) for n, d in declared.items()}
    return make_plan(dataset.features, widths, config_lib.table_options(config, dataset.features),
                     options.get("embed_init_std", 1e-4))


def build_model(config: ml_collections.ConfigDict, dataset: Dataset, task: tasks_lib.Task):
    """`config.model` over the dataset's features and `config.tables`, with the constants a
    pre-training stage gives it (`jaxrec.pretrain.model_constants`) and, for a multi-task model,
    `num_tasks` from the task."""
    from jaxrec.models import MODELS
    from jaxrec.models import build_model as registry_build

    name = config.model.name
    kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
    kwargs.update(pretrain.model_constants(name, dataset, kwargs))
    fields = {f.name for f in dataclasses.fields(MODELS[name])}
    if isinstance(task, tasks_lib.MultiTask):
        if "num_tasks" not in fields:
            raise ConfigError(f"task.name='multitask' needs a multi-task model (outputs [B, T]): model.name={name!r} is not one")
        if kwargs.get("num_tasks", len(task.names)) != len(task.names):
            raise ConfigError(f"model.num_tasks={kwargs['num_tasks']} but the task has {len(task.names)} tasks {task.names}")
        kwargs["num_tasks"] = len(task.names)
    elif "num_tasks" in fields:
        raise ConfigError(f"model.name={name!r} is a multi-task model: set task.name='multitask' (and labels [N, T])")
    generates = bool(getattr(MODELS[name], "GENERATES_SIDS", False))
    if generates != isinstance(task, tasks_lib.GenerativeTask):
        raise ConfigError(f"model.name={name!r} {'generates semantic IDs: it needs' if generates else 'scores items: it cannot use'} "
                          f"task.name='generative' (task.name={task.name!r}; the generative models: "
                          f"{sorted(n for n, m in MODELS.items() if getattr(m, 'GENERATES_SIDS', False))})")
    tables = config_lib.table_options(config, dataset.features)
    return registry_build(name, dataset.features, dataset=dataset, **kwargs, **({"tables": tables} if tables else {}))


def mesh_sharding(config: ml_collections.ConfigDict) -> ShardedEmbeddings | None:
    """Row-sharded tables on the mesh of `config.mesh.shape` (several processes: one data-parallel
    mesh over all their devices); None on one device."""
    t, shape = config.train, tuple(int(x) for x in config.mesh.shape)
    if jax.process_count() > 1 and not shape:
        shape = (jax.device_count(), 1)
    if not shape:
        return None
    if jax.process_count() > 1 and math.prod(shape) != jax.device_count():
        raise ConfigError(f"mesh.shape={shape}: a run of {jax.process_count()} processes needs a mesh over all "
                          f"{jax.device_count()} devices")
    if len(shape) != 2 or math.prod(shape) > jax.device_count():
        raise ConfigError(f"mesh.shape={shape}: expected (data, model) with at most {jax.device_count()} devices "
                          f"(on CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N; eval.py --mesh_shape none "
                          f"evaluates a mesh-trained workdir on one device)")
    mesh = make_mesh(shape, devices=jax.devices()[:math.prod(shape)])
    for key in ("batch_size", "eval_batch_size"):
        if int(t[key]) % mesh.shape["data"]:
            raise ConfigError(f"train.{key}={t[key]} is not divisible by the mesh's data axis ({mesh.shape['data']})")
    return ShardedEmbeddings(mesh, config.mesh.table_sharding)


def steps_per_call(train: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """Steps per compiled call: `train.steps_per_call`, or else a whole epoch, or, with mid-epoch
    checkpoints (`train.checkpoint_every_steps`), that many steps (checkpoints fall on call edges)."""
    k, every = int(train.steps_per_call), int(train.checkpoint_every_steps)
    return min(k or every or steps_per_epoch, steps_per_epoch)


def predict_split(exp: Experiment, params, split: str) -> np.ndarray:
    """Model outputs for every row of `split`, in order: `[N]` (or `[N, T]` for T tasks)."""
    cols = {k: v for k, v in exp.dataset.columns(split).items() if k != LABELS}
    out = []
    for chunk, n in batching.eval_chunks(cols, int(exp.config.train.eval_batch_size), int(exp.config.train.eval_steps_per_call)):
        if exp.sharding is not None:
            chunk = jax.tree.map(lambda x: runtime.put(x, exp.batch_sharding), chunk)
        y = runtime.to_host(exp.predict(params, chunk))
        out.append(y.reshape(-1, *y.shape[2:])[:n])
    return np.concatenate(out)


def evaluate(exp: Experiment, params, split: str) -> dict[str, float]:
    """The task's exact metrics (AUC, GAUC by the dataset's group key, logloss, per-task ...) over a whole split."""
    data = exp.dataset.splits[split]
    groups = data[exp.dataset.group_key] if exp.dataset.group_key else None
    if groups is not None and groups.ndim == 2:  # dynamic-vocabulary keys [N, 2] -> one group id per key
        groups = np.unique(groups, axis=0, return_inverse=True)[1].reshape(-1)
    return exp.task.metrics(np.asarray(data[LABELS]), predict_split(exp, params, split), groups)


def init_from_dir(workdir: str | Path) -> Path:
    """`<workdir>/best`, the parameters a warm start (`train.init_from`) reads; ConfigError if absent."""
    directory = Path(workdir) / "best"
    if not directory.is_dir():
        raise ConfigError(f"train.init_from={str(workdir)!r}: {directory} does not exist (a workdir written by train.py?)")
    return directory


def warm_start(exp: Experiment, params, workdir: str | Path):
    """`params` with every array that `<workdir>/best` holds at the same logical path and shape
    (e.g. a trained model's tables and MLPs under a new AMTL mask); the rest keep their init."""
    directory = init_from_dir(workdir)
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
    """The config a workdir was trained with (`<workdir>/config.json`), completed with the keys
    added to `default_config()` since (at their defaults)."""
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise DataError(f"{path} not found: is {workdir} a jaxrec workdir (made by train.py)?")
    try:
        saved = json.loads(path.read_text())
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: not a readable config ({type(e).__name__}: {e})") from None
    config = config_lib.default_config()
    for key, value in saved.items():
        if isinstance(value, dict) and key in config and isinstance(config[key], ml_collections.ConfigDict) \
                and key not in ("dataset", "model", "tables", "cross_features"):
            config[key] = ml_collections.ConfigDict({**config[key].to_dict(), **value})
        else:
            config[key] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
    return config


def evaluate_checkpoint(workdir: str | Path, split: str = "test", which: str = "best",
                        config: ml_collections.ConfigDict | None = None, dataset: Dataset | None = None) -> dict:
    """Evaluates the 'best' or 'latest' checkpoint of a workdir on `split`; returns metrics."""
    if which not in ("best", "latest"):
        raise ConfigError(f"which={which!r}: expected 'best' or 'latest'")
    workdir = Path(workdir)
    config = config or load_config(workdir)
    if config.task.name == "delayed_feedback":
        return evaluate_stream(workdir, config, split)
    if dataset is None:
        fitted = workdir_lib.saved_fitted(workdir)
        if fitted is None:
            log.info("%s has no fitted.json (older workdir, or a loader that fits nothing): encoding as the loader does", workdir)
        dataset = config_lib.build_dataset(config, fitted=fitted)
    exp = build(config, dataset)
    if split not in exp.dataset.splits:
        raise DataError(f"split {split!r} not in dataset; splits: {sorted(exp.dataset.splits)}")
    if which == "best":
        params, meta = restore_best(exp, workdir)
        step_info = {"epoch": meta["epoch"]}
    else:
        _check_checkpoints(workdir / "checkpoints", which)
        state, _ = exp.checkpointer(workdir / "checkpoints").restore(exp.init_state(place=False))
        params, step_info = state.params, {"step": int(state.step)}
    return {"split": split, "checkpoint": which, **step_info, **evaluate(exp, exp.place(params), split)}


def _check_checkpoints(directory: Path, which: str) -> None:
    if not directory.is_dir() or not any(p.name.isdigit() for p in directory.iterdir()):
        raise DataError(f"{directory}: no checkpoint (the run ended before its first {'epoch' if which == 'best' else 'checkpoint'}, "
                        f"or the folder was removed)" + (": try --checkpoint latest" if which == "best" else ""))


def restore_best(exp: Experiment, workdir: str | Path) -> tuple[dict, dict]:
    """(params, meta) of `<workdir>/best`, the best valid epoch's parameters (unplaced), read into
    the structure of `exp`'s state; DataError when the run saved none."""
    _check_checkpoints(Path(workdir) / "best", "best")
    return exp.checkpointer(Path(workdir) / "best", keep=1).restore(exp.init_state(place=False).params)


def export_item_table(workdir: str | Path, out: str | Path, param: str = "item_embed") -> Path:
    """A next-item model's learned item table -> `out` (.npy, `[N, d]` float32, row i = item id i + 1,
    the padding row 0 dropped), from `<workdir>/best`: SASRec's `item_embed` (tied input / output
    table). The collaborative item vectors of semantic IDs (`model.sid_source='collab'` or 'both',
    `model.sid_table=out`)."""
    workdir, out = Path(workdir), Path(out)
    config = load_config(workdir)
    exp = build(config, config_lib.build_dataset(config, fitted=workdir_lib.saved_fitted(workdir)))
    params, _ = restore_best(exp, workdir)
    dense = runtime.to_host(params["dense"])
    if param not in dense or "embedding" not in dense[param]:
        raise ConfigError(f"{workdir}: model {config.model.name!r} has no item table {param!r} (its parameters: "
                          f"{sorted(dense)}); --export_item_table reads a next-item model's, e.g. 'sasrec'")
    table = np.asarray(dense[param]["embedding"], np.float32)[1:]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, table)
    log.info("wrote the %s item table %s of %s to %s", param, table.shape, workdir, out)
    return out


def evaluate_stream(workdir: Path, config: ml_collections.ConfigDict, split: str = "test") -> dict:
    """A delayed-feedback workdir's pooled test metrics, from the predictions its last checkpoint
    holds and the true labels of the log read again (the run's checkpoints hold every period's
    predictions; the periods' parameters are not kept)."""
    from jaxrec.train import delayed_feedback as tdf

    if split != "test":
        raise ConfigError(f"--split {split}: a delayed-feedback run is scored on its streamed test periods only ('test')")
    run = tdf.stream_run(config)
    saved = workdir / workdir_lib.RUN_FILE
    if saved.is_file() and json.loads(saved.read_text()).get("sha256") != workdir_lib.data_identity(run.log)["sha256"]:
        raise DataError(f"{config.dataset.name}: the conversion log read now is not the one {workdir} was trained on ({saved})")
    stepper = tdf.StreamStepper(run)
    directory = workdir / "checkpoints"
    ckpt = Checkpointer(directory, keep=int(config.train.keep_checkpoints))
    if ckpt.latest_step() is None:
        raise DataError(f"{directory}: no checkpoint (the run ended before its first pre-training epoch)")
    state, meta = ckpt.restore(stepper.init())
    ckpt.close()
    units = len(run.units())
    if int(meta["units"]) < units:
        raise DataError(f"{directory}: the run stopped after unit {meta['units']} of {units}; rerun train.py to finish it")
    return {"split": split, "checkpoint": "latest", "method": run.method, **tdf.stream_metrics(stepper.result(state))}


def export_merged(workdir: str | Path, out: str | Path) -> Path:
    """A LoRA fine-tuned workdir -> a serving workdir `out` whose model has no adapters.

    Reads `<workdir>/best` (the base weights and the adapters, one orbax checkpoint), folds each
    adapter into its kernel (`jaxrec.nn.lora.merge`: W + (alpha / r) A B), and writes `out` with the
    same config at `model.lora_rank=0` (`config.json`, `run.json`, `fitted.json`, `best/`), so
    `eval.py --workdir out` (or any user of the plain model) serves it. Returns `out`.
    """
    from jaxrec.nn import lora

    workdir, out = Path(workdir), Path(out)
    config = load_config(workdir)
    rank = int(config.model.get("lora_rank", 0))
    if not rank:
        raise ConfigError(f"{workdir}: model.lora_rank is 0 (no adapters): nothing to merge")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--export_merged {out}: the folder exists and is not empty")
    fitted = workdir_lib.saved_fitted(workdir)
    dataset = config_lib.build_dataset(config, fitted=fitted)
    exp = build(config, dataset)
    params, meta = restore_best(exp, workdir)
    serving = ml_collections.ConfigDict(config.to_dict())
    serving.model.lora_rank = 0
    serving.optimizer.trainable = "all"
    served = build(serving, dataset)
    merged = {**params, "dense": lora.merge(runtime.to_host(params["dense"]), float(config.model.get("lora_alpha", 16.0)) / rank)}
    out.mkdir(parents=True, exist_ok=True)
    with workdir_lib.lock(out):
        workdir_lib.record_run(out, serving, workdir_lib.data_identity(served.dataset), fitted)
        ckpt = served.checkpointer(out / "best", keep=1)
        ckpt.save(int(meta["epoch"]), merged, meta)
        ckpt.close()
    log.info("merged the LoRA adapters of %s into %s (model.lora_rank=0)", workdir, out)
    return out
