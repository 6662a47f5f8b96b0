"""The experiment config: defaults, validation, and building the dataset and model from it.

An experiment file in `configs/` defines `get_config()` returning `default_config()` with
its changes. Every key a user can set is listed here (or, for `model.*` and `dataset.*`,
is an option of the named model / dataset loader); anything else is an error that names
the key and suggests the closest valid one.
"""

from __future__ import annotations

import difflib
import inspect

import ml_collections

from jaxrec.errors import ConfigError
from jaxrec.train import tasks
from jaxrec.train.optimizers import OPTIMIZER_DEFAULTS, SPARSE_DEFAULTS


def default_config() -> ml_collections.ConfigDict:
    """All trainer keys with their defaults (the reference MovieLens setup)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.dataset = ml_collections.ConfigDict({"name": "movielens100k"})
    c.model = ml_collections.ConfigDict({"name": "deepfm"})
    # Dense optimizer; with task.name='multitask' also the per-task gradient combiner:
    # multitask = linear | pcgrad | mgda | cagrad | gradops, alpha = GradOPS's exponent (None: 0).
    c.optimizer = ml_collections.ConfigDict({**OPTIMIZER_DEFAULTS, **MULTITASK_DEFAULTS})
    # Embedding tables: their own optimizer (the "sparse" side of the TrainState); with
    # rowwise=True only the rows a batch touched are updated (lazy Adam, Adagrad, FTRL ...).
    c.sparse_optimizer = ml_collections.ConfigDict(SPARSE_DEFAULTS)
    # What is learned (jaxrec.train.tasks.TASK_OPTIONS lists each task's keys): 'binary' CTR;
    # 'multitask' over labels [N, T] (names: default the dataset's label names; kinds: binary |
    # regression, default inferred); 'delayed_feedback', the streaming CVR protocol over a
    # conversion log (method, windows, periods: configs/defuse_movielens.py).
    c.task = ml_collections.ConfigDict(dict(name="binary"))
    c.train = ml_collections.ConfigDict(dict(
        batch_size=1024,
        num_epochs=10,
        steps_per_call=0,            # steps per compiled call; 0 = a whole epoch
        eval_batch_size=8192,
        eval_steps_per_call=16,
        checkpoint_every_steps=0,    # 0 = at every epoch end only; else also mid-epoch (steps_per_call=0: calls of this many steps)
        keep_checkpoints=2,          # latest checkpoints kept (>= 1); a damaged one falls back to the one before
        divergence_factor=100.0,     # stop when a step's loss exceeds this x the running median loss (0 = only NaN/inf)
        allow_config_change=False,   # resume a workdir with more epochs / another patience (jaxrec.train.workdir.ALLOWED)
        progress_bar=True,
        init_from="",                # warm start: a workdir whose best parameters start this run (matching ones)
    ))
    c.early_stopping = ml_collections.ConfigDict(dict(
        metric="auc",                # any key of the valid metrics: auc, gauc, logloss
        mode="max",                  # max | min
        patience=2,                  # epochs without improvement before stopping (0 = off)
        min_delta=0.0,
    ))
    # Per-table overrides, by logical table name (a feature's name or its `group`):
    #   c.tables = {'user_id': {'optimizer': {'name': 'ftrl', 'lr': 0.05}, 'sharding': 'contiguous'}}
    # optimizer: `sparse_optimizer` keys this table changes; sharding: mod | contiguous (on a mesh);
    # initializer: normal | uniform | zeros; init_scale; compression: {'kind': 'binary_code', ...}
    # (jaxrec.embedding.compressed); amtl: {'size_penalty': 0.01} (jaxrec.embedding.amtl). Tables with their own optimizer or
    # sharding are stacked apart (jaxrec.embedding.specs.TableOptions).
    c.tables = ml_collections.ConfigDict()
    c.mesh = ml_collections.ConfigDict(dict(
        shape=(),                    # () = one device; (data, model) = a mesh, e.g. (8, 1) or (4, 2)
        table_sharding="mod",        # rows of every embedding table over all devices: mod | contiguous
    ))
    c.eval_splits = ("valid", "test")
    c.fields = ()                    # () = every feature of the dataset; else the names the model reads (e.g. a selection)
    # Pre-trained cross features (jaxrec.pretrain.cross_features.CrossOptions), empty = off, e.g.
    #   c.cross_features = {'method': 'pcf_gnn', 'pairs': (('user_id', 'genre_first'),)}
    c.cross_features = ml_collections.ConfigDict()
    return c


# The `optimizer` keys that choose the multi-task gradient combiner (jaxrec.train.tasks.combiner).
MULTITASK_DEFAULTS = {"multitask": "linear", "alpha": None}


def _number(section, key: str, where: str) -> float:
    try:
        return float(section[key])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{key}={section[key]!r}: expected a number") from None


def _suggest(key: str, valid) -> str:
    hint = difflib.get_close_matches(key.split(".")[-1], [v.split(".")[-1] for v in valid], n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _check_section(section, defaults, prefix: str) -> None:
    for key in section.keys():
        if key not in defaults:
            raise ConfigError(f"unknown config key '{prefix}{key}'{_suggest(key, list(defaults.keys()))}; "
                              f"valid keys here: {sorted(defaults.keys())}")
        if isinstance(defaults[key], ml_collections.ConfigDict) and key not in ("dataset", "model", "tables", "cross_features", "task"):
            _check_section(section[key], defaults[key], f"{prefix}{key}.")


def dataset_options(name: str) -> set[str]:
    """Keyword arguments the loader of dataset `name` accepts."""
    from jaxrec.data import DATASETS

    return {p.name for p in inspect.signature(DATASETS[name]).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)} - {"fitted"}  # fitted: from the workdir, not the config


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first unknown or invalid key."""
    from jaxrec.data import DATASETS
    from jaxrec.models import MODELS, model_options

    _check_section(config, default_config(), "")
    task = config.task.get("name")
    if task not in tasks.TASK_OPTIONS:
        raise ConfigError(f"task.name={task!r}{_suggest(str(task), list(tasks.TASK_OPTIONS))}; expected one of {list(tasks.TASK_OPTIONS)}")
    for k in config.task.keys():
        if k != "name" and k not in tasks.TASK_OPTIONS[task]:
            raise ConfigError(f"unknown config key 'task.{k}' for task {task!r}{_suggest(k, list(tasks.TASK_OPTIONS[task]))}; "
                              f"valid: {sorted(tasks.TASK_OPTIONS[task])}")
    sections = (("dataset", DATASETS, dataset_options), ("model", MODELS, model_options))
    for sec, registry, options in sections if task != "delayed_feedback" else ():  # a stream checks its own (stream_run)
        name = config[sec].get("name")
        if name not in registry:
            raise ConfigError(f"{sec}.name={name!r} is not known{_suggest(str(name), list(registry))}; known: {sorted(registry)}")
        unknown = sorted(set(config[sec].keys()) - {"name"} - options(name))
        if unknown:
            k = unknown[0]
            raise ConfigError(f"unknown config key '{sec}.{k}' for {sec} {name!r}{_suggest(k, sorted(options(name)))}; "
                              f"valid: {sorted(options(name))}")
    t, es = config.train, config.early_stopping
    for key in ("batch_size", "num_epochs", "eval_batch_size", "eval_steps_per_call", "keep_checkpoints"):
        if _number(t, key, "train") < 1:
            raise ConfigError(f"train.{key}={t[key]} must be >= 1" + (
                " (a checkpoint must be kept to resume from)" if key == "keep_checkpoints" else ""))
    for key in ("steps_per_call", "checkpoint_every_steps", "divergence_factor"):
        if _number(t, key, "train") < 0:
            raise ConfigError(f"train.{key}={t[key]} must be >= 0 (0 = off / default)")
    if es.mode not in ("max", "min"):
        raise ConfigError(f"early_stopping.mode={es.mode!r}: expected 'max' or 'min'")
    if config.task.name == "binary":  # a multi-task metric names a task: checked with the data (tasks.make_task)
        tasks.check_metric(tasks.BinaryTask(), str(es.metric), str(es.mode))
    if _number(es, "patience", "early_stopping") < 0 or _number(es, "min_delta", "early_stopping") < 0:
        raise ConfigError(f"early_stopping.patience={es.patience} and min_delta={es.min_delta} must be >= 0")
    sections = [("optimizer", config.optimizer), ("sparse_optimizer", config.sparse_optimizer)]
    sections += [(f"tables.{n}.optimizer", o["optimizer"]) for n, o in config.get("tables", {}).items()
                 if isinstance(o, (dict, ml_collections.ConfigDict)) and o.get("optimizer") and "lr" in o["optimizer"]]
    for where, section in sections:
        lr = _number(section, "lr", where)
        if not (lr > 0 and lr < float("inf")):
            raise ConfigError(f"{where}.lr={section['lr']}: the learning rate must be a finite number > 0")
    for key, value in config.model.items():
        if (key == "embed_dim" or key.endswith("_dim")) and isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ConfigError(f"model.{key}={value} must be >= 1")
        if key.endswith("hidden") and isinstance(value, (tuple, list)) and not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
            raise ConfigError(f"model.{key}={tuple(value)}: layer sizes must be integers >= 1")
    _check_mesh(config.mesh)
    for split in config.eval_splits:
        if split not in ("train", "valid", "test"):
            raise ConfigError(f"eval_splits contains {split!r}: expected train, valid or test")


def _check_mesh(mesh: ml_collections.ConfigDict) -> None:
    from jaxrec.embedding.specs import SHARDINGS

    shape = mesh.shape
    if not isinstance(shape, (tuple, list)) or len(shape) not in (0, 2) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape):
        raise ConfigError(f"mesh.shape={shape!r}: expected () for one device or (data, model), two integers >= 1, e.g. (8, 1)")
    if mesh.table_sharding not in SHARDINGS:
        raise ConfigError(f"mesh.table_sharding={mesh.table_sharding!r}: expected one of {SHARDINGS}")


def build_dataset(config: ml_collections.ConfigDict, fitted=None):
    """Loads the dataset named by `config.dataset`; `fitted` (a `jaxrec.data.fitted.Fitted`, e.g.
    the one saved in a workdir) replaces fitting on the train split, for loaders that fit."""
    from jaxrec.data import DATASETS

    loader = DATASETS[config.dataset.name]
    kwargs = {k: v for k, v in config.dataset.to_dict().items() if k != "name"}
    if fitted is not None and "fitted" in inspect.signature(loader).parameters:
        kwargs["fitted"] = fitted
    return loader(**kwargs)


TABLE_KEYS = ("optimizer", "sharding", "initializer", "init_scale", "compression", "amtl")


def table_options(config: ml_collections.ConfigDict, features: tuple) -> tuple:
    """`config.tables` -> `((table name, TableOptions), ...)`, checked against the tables the
    features read (ConfigError naming the bad key)."""
    from jaxrec.embedding.specs import SHARDINGS, TableOptions, table_name
    from jaxrec.train.optimizers import SPARSE_DEFAULTS

    known = sorted({table_name(f) for f in features})
    out = []
    for name, opts in config.get("tables", {}).items():
        where = f"tables.{name}"
        if name not in known:
            raise ConfigError(f"{where}: no feature reads a table {name!r}{_suggest(name, known)}; tables: {known}")
        opts = dict(opts)
        for key in opts:
            if key not in TABLE_KEYS:
                raise ConfigError(f"unknown config key '{where}.{key}'{_suggest(key, TABLE_KEYS)}; valid: {list(TABLE_KEYS)}")
        optimizer = dict(opts.get("optimizer") or {})
        for key in optimizer:
            if key not in SPARSE_DEFAULTS or key == "rowwise":
                raise ConfigError(f"unknown config key '{where}.optimizer.{key}'{_suggest(key, list(SPARSE_DEFAULTS))}; valid: "
                                  f"{sorted(set(SPARSE_DEFAULTS) - {'rowwise'})} (rowwise is set for all tables by sparse_optimizer.rowwise)")
        if opts.get("sharding") not in (None, *SHARDINGS):
            raise ConfigError(f"{where}.sharding={opts['sharding']!r}: expected one of {SHARDINGS}")
        try:
            compression = dict(opts.get("compression") or {}) or None
            amtl = None if opts.get("amtl") is None else dict(opts["amtl"])
            out.append((name, TableOptions(optimizer=optimizer or None, sharding=opts.get("sharding"), compression=compression,
                                           initializer=opts.get("initializer"), init_scale=opts.get("init_scale"), amtl=amtl)))
        except (ValueError, ConfigError) as e:
            raise ConfigError(f"{where}: {e}") from None
    return tuple(out)


def build_model(config: ml_collections.ConfigDict, dataset):
    """Instantiates `config.model` over the dataset's resolved features and `config.tables` (and,
    for models that read the data themselves, e.g. GIN's item graph, the dataset)."""
    from jaxrec.models import build_model as _build

    kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
    tables = table_options(config, dataset.features)
    return _build(config.model.name, dataset.features, dataset=dataset, **kwargs, **({"tables": tables} if tables else {}))
