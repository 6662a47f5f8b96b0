"""Multi-task training: per-task losses, one jitted step through a gradient combiner, per-task metrics.

One step: the T task losses of a batch, their per-task gradients in one `jacrev` pass
(`jaxrec.optim.multitask.per_task_grads`), a combiner over the shared parameters
(`multitask_transform`; towers keep their own gradients), then an optax optimizer (Adam).
Task kinds: 'binary' (sigmoid cross-entropy on a logit; metric AUC) and 'regression' (squared
error; metric MSE). `train` runs whole epochs per compiled call (`lax.scan`).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec.data import batching
from jaxrec.data.dataset import LABELS, Dataset
from jaxrec.errors import ConfigError
from jaxrec.losses import bce
from jaxrec.models import is_shared as default_is_shared
from jaxrec.optim import multitask as mt
from jaxrec.train.metrics import auc, logloss

KINDS = ("binary", "regression")


def task_losses(outputs: jax.Array, labels: jax.Array, kinds: Sequence[str]) -> jax.Array:
    """Per-task mean losses `[T]` of outputs / labels `[B, T]`: BCE for 'binary', squared error for 'regression'."""
    binary = bce(outputs, labels).mean(axis=0)
    mse = jnp.square(outputs - labels).mean(axis=0)
    return jnp.where(jnp.asarray([k == "binary" for k in kinds]), binary, mse)


def _check(kinds: Sequence[str]) -> None:
    for k in kinds:
        if k not in KINDS:
            raise ConfigError(f"task kind {k!r}: expected one of {KINDS}")


def make_train_epoch(model, tx: optax.GradientTransformation, kinds: Sequence[str]) -> Callable:
    """`(variables, opt_state, chunk [K, B, ...]) -> (variables, opt_state, losses [K, T])`."""
    _check(kinds)

    def step(carry, batch):
        variables, opt_state = carry

        def losses(v):
            return task_losses(model.apply(v, batch, train=True), batch[LABELS], kinds), None

        loss, jac, _ = mt.per_task_grads(losses, variables)
        updates, opt_state = tx.update(jac, opt_state, variables)
        return (optax.apply_updates(variables, updates), opt_state), loss

    def epoch(variables, opt_state, chunk):
        (variables, opt_state), losses = jax.lax.scan(step, (variables, opt_state), chunk)
        return variables, opt_state, losses

    return epoch


def select_tasks(columns: dict, tasks: Sequence[int]) -> dict:
    """The columns with labels `[N, T]` cut to `tasks` (in that order)."""
    return {**columns, LABELS: columns[LABELS][:, list(tasks)]}


@functools.lru_cache(maxsize=64)
def _predict(model) -> Callable:
    return jax.jit(lambda v, b: model.apply(v, b, train=False))


def evaluate(model, variables, dataset: Dataset, split: str, kinds: Sequence[str], tasks: Sequence[int],
             batch_size: int = 8192) -> list[dict]:
    """Per task: {'auc', 'logloss'} (binary) or {'mse'} (regression) over the whole split."""
    cols = select_tasks(dataset.columns(split), tasks)
    predict = _predict(model)
    n = len(cols[LABELS])
    out = np.concatenate([np.asarray(predict(variables, {k: v[i:i + batch_size] for k, v in cols.items()}))
                          for i in range(0, n, batch_size)])
    labels = cols[LABELS]
    result = []
    for t, kind in enumerate(kinds):
        if kind == "binary":
            result.append({"auc": auc(labels[:, t], out[:, t]), "logloss": logloss(labels[:, t], out[:, t])})
        else:
            result.append({"mse": float(np.mean((out[:, t] - labels[:, t]) ** 2))})
    return result


@functools.lru_cache(maxsize=64)
def _compiled(model, combiner, kinds: tuple, lr: float, is_shared) -> tuple:
    """(optimizer, jitted epoch) per configuration, reused across seeds (compiling dominates short runs)."""
    tx = optax.chain(mt.multitask_transform(combiner, is_shared), optax.adam(lr))
    return tx, jax.jit(make_train_epoch(model, tx, kinds))


def train(model, dataset: Dataset, kinds: Sequence[str], combiner: mt.Combiner, *, tasks: Sequence[int] | None = None,
          lr: float = 1e-3, batch_size: int = 256, epochs: int = 5, seed: int = 0,
          is_shared: Callable[[tuple], bool] = default_is_shared) -> tuple[dict, list[dict]]:
    """Trains `model` (outputs `[B, len(tasks)]`) on `tasks` (label columns; default all) with the
    combiner over the shared parameters and Adam(lr). Returns (variables, per-epoch history:
    mean train losses and valid metrics per task)."""
    tasks = list(range(dataset.splits["train"][LABELS].shape[1])) if tasks is None else list(tasks)
    if len(kinds) != len(tasks):
        raise ConfigError(f"{len(kinds)} task kinds for {len(tasks)} tasks")
    cols = select_tasks(dataset.columns("train"), tasks)
    variables = model.init(jax.random.PRNGKey(seed), {k: v[:2] for k, v in cols.items()})
    tx, epoch_fn = _compiled(model, combiner, tuple(kinds), float(lr), is_shared)
    opt_state = tx.init(variables)
    opt_state = (opt_state[0]._replace(rng=jax.random.PRNGKey(seed)),) + tuple(opt_state[1:])  # PCGrad's order: per seed
    spe = batching.steps_per_epoch(len(cols[LABELS]), batch_size)
    history = []
    for e in range(epochs):
        _, chunk = next(batching.train_chunks(cols, batch_size, spe, seed, e))
        variables, opt_state, losses = epoch_fn(variables, opt_state, chunk)
        history.append({"epoch": e, "train_loss": np.asarray(losses).mean(axis=0).tolist(),
                        "valid": evaluate(model, variables, dataset, "valid", kinds, tasks)})
    return variables, history
