"""Optax optimizers and learning-rate schedules built from a config section.

A section looks like `{'name': 'adam', 'lr': 1e-3, 'schedule': 'constant', ...}`; see
`OPTIMIZER_DEFAULTS` for every key.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import optax
from flax import traverse_util

from jaxrec.errors import ConfigError
from jaxrec.nn import lora

OPTIMIZER_DEFAULTS = dict(
    name="adam",          # adam | adamw | adagrad | sgd | rmsprop | ftrl-like 'lamb'
    lr=1e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    momentum=0.0,         # sgd
    weight_decay=0.0,     # adamw / lamb: decoupled; others: L2 added to the gradient
    grad_clip_norm=0.0,   # > 0: clip by global norm first
    schedule="constant",  # constant | cosine | warmup_cosine | exponential | linear
    warmup_steps=0,
    decay_rate=0.5,       # exponential: lr * decay_rate ** (step / decay_steps)
    decay_steps=1000,
    end_lr_fraction=0.0,  # cosine / linear: final lr = lr * end_lr_fraction
    trainable="all",      # all | adapters: LoRA fine-tuning, only lora_a / lora_b train (jaxrec.nn.lora)
)


# Extra keys of the `sparse_optimizer` section (embedding tables).
SPARSE_DEFAULTS = dict(
    OPTIMIZER_DEFAULTS,
    rowwise=False,              # True: row-wise sparse update of the touched rows only (jaxrec.embedding.sparse_optim)
    dedup="auto",               # rowwise: merge duplicate ids by 'sort' (cost ~ ids) or 'auto' (bincount when V <= ids)
    bias_correction="row",      # rowwise adam: per-row step counts ('row') or the global step ('global')
    initial_accumulator=None,   # rowwise adagrad / rowwise_adagrad / ftrl (None: the optimizer's default)
    l1=0.0, l2=0.0, beta=1.0, lr_power=-0.5,  # rowwise ftrl (McMahan et al. 2013)
)


def make_sparse_optimizer(cfg: Mapping, total_steps: int, where: str = "sparse_optimizer"):
    """The embedding tables' optimizer: optax over whole tables, or row-wise sparse (`rowwise=True`).

    Row-wise names: sgd, adagrad, rowwise_adagrad, adam (lazy per-row moments), ftrl.
    """
    from jaxrec.embedding import sparse_optim

    unknown = sorted(set(cfg) - set(SPARSE_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {[f'{where}.{k}' for k in unknown]}; valid: {sorted(SPARSE_DEFAULTS)}")
    cfg = {**SPARSE_DEFAULTS, **cfg}
    if cfg["trainable"] != "all":
        raise ConfigError(f"{where}.trainable={cfg['trainable']!r}: the embedding tables have no adapters; "
                          f"LoRA fine-tuning is optimizer.trainable='adapters'")
    if not cfg["rowwise"]:
        return make_optimizer({k: cfg[k] for k in OPTIMIZER_DEFAULTS}, total_steps, where)
    name = cfg["name"]
    if name not in sparse_optim.OPTIMIZERS:
        raise ConfigError(f"{where}.name={name!r} with rowwise=True: expected one of {sorted(sparse_optim.OPTIMIZERS)}")
    params = inspect.signature(sparse_optim.OPTIMIZERS[name]).parameters
    if cfg["dedup"] not in ("auto", "sort"):
        raise ConfigError(f"{where}.dedup={cfg['dedup']!r}: expected 'auto' or 'sort'")
    kwargs = {k: v for k, v in cfg.items() if k in params and k != "lr" and v is not None}
    return sparse_optim.from_config({"name": name, "lr": schedule(cfg, total_steps), **kwargs}, where)


def schedule(cfg: Mapping, total_steps: int) -> optax.Schedule:
    """Learning-rate schedule `step -> lr` from a config section."""
    lr, kind = float(cfg["lr"]), cfg["schedule"]
    end = lr * float(cfg["end_lr_fraction"])
    warm = int(cfg["warmup_steps"])
    if kind == "constant":
        base = optax.constant_schedule(lr)
    elif kind == "cosine":
        base = optax.cosine_decay_schedule(lr, max(total_steps - warm, 1), alpha=float(cfg["end_lr_fraction"]))
    elif kind == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, max(warm, 1), max(total_steps, warm + 1), end)
    elif kind == "exponential":
        base = optax.exponential_decay(lr, int(cfg["decay_steps"]), float(cfg["decay_rate"]))
    elif kind == "linear":
        base = optax.linear_schedule(lr, end, max(total_steps - warm, 1))
    else:
        raise ConfigError(f"optimizer.schedule={kind!r}: expected constant, cosine, warmup_cosine, exponential or linear")
    if warm > 0:
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warm), base], [warm])
    return base


def make_optimizer(cfg: Mapping, total_steps: int, where: str = "optimizer") -> optax.GradientTransformation:
    """Optax transformation for a config section (`where` names it in errors)."""
    unknown = sorted(set(cfg) - set(OPTIMIZER_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {[f'{where}.{k}' for k in unknown]}; valid: {sorted(OPTIMIZER_DEFAULTS)}")
    cfg = {**OPTIMIZER_DEFAULTS, **cfg}
    lr = schedule(cfg, total_steps)
    name, wd = cfg["name"], float(cfg["weight_decay"])
    if name == "adam":
        tx = optax.adam(lr, b1=cfg["b1"], b2=cfg["b2"], eps=cfg["eps"])
    elif name == "adamw":
        tx = optax.adamw(lr, b1=cfg["b1"], b2=cfg["b2"], eps=cfg["eps"], weight_decay=wd)
    elif name == "lamb":
        tx = optax.lamb(lr, b1=cfg["b1"], b2=cfg["b2"], eps=cfg["eps"], weight_decay=wd)
    elif name == "adagrad":
        tx = optax.adagrad(lr, eps=cfg["eps"])
    elif name == "rmsprop":
        tx = optax.rmsprop(lr, eps=cfg["eps"], momentum=cfg["momentum"] or None)
    elif name == "sgd":
        tx = optax.sgd(lr, momentum=cfg["momentum"] or None)
    else:
        raise ConfigError(f"{where}.name={name!r}: expected adam, adamw, lamb, adagrad, rmsprop or sgd")
    parts = []
    if float(cfg["grad_clip_norm"]) > 0:
        parts.append(optax.clip_by_global_norm(float(cfg["grad_clip_norm"])))
    if wd > 0 and name not in ("adamw", "lamb"):
        parts.append(optax.add_decayed_weights(wd))
    tx = optax.chain(*parts, tx) if parts else tx
    if cfg["trainable"] == "adapters":
        return lora.lora_optimizer(tx)
    if cfg["trainable"] != "all":
        raise ConfigError(f"{where}.trainable={cfg['trainable']!r}: expected 'all' or 'adapters' (LoRA fine-tuning)")
    return tx


def make_table_optimizers(cfg: Mapping, layouts: Mapping, total_steps: int) -> tuple[Any, tuple]:
    """The embedding tables' optimizers: `(sparse, stacks)` for `jaxrec.train.state.Optimizers`.

    `cfg` is the `sparse_optimizer` section; a stacked table whose tables have their own
    optimizer (`StackLayout.optimizer`, from config `tables.<name>.optimizer`) gets `cfg`
    updated with those keys. Row-wise, `stacks` lists `(stack path, transformation)` for
    them; with optax, `sparse` is one `optax.multi_transform` labelled by stack and `stacks`
    is empty.
    """
    default = make_sparse_optimizer(cfg, total_steps)
    own = {path: make_sparse_optimizer({**cfg, **dict(layout.optimizer)}, total_steps,
                                       f"tables.{layout.names[0]}.optimizer (over sparse_optimizer)")
           for path, layout in layouts.items() if layout.optimizer is not None}
    if not own or cfg.get("rowwise", SPARSE_DEFAULTS["rowwise"]):
        return default, tuple(own.items())
    label = lambda path: "/".join(path) if path in own else "default"

    def labels(tables):
        return traverse_util.unflatten_dict({p: label(p) for p in traverse_util.flatten_dict(tables)})

    return optax.multi_transform({"default": default, **{label(p): tx for p, tx in own.items()}}, labels), ()
