"""TrainState and the pure train / predict steps.

The state splits parameters as the architecture prescribes: `params = {'dense': ...,
'sparse': ...}` where 'sparse' holds the embedding tables (Flax collection `EMBEDDING`)
and 'dense' everything else; each side has its own optimizer state. A model with
dynamic-vocabulary features also has `params['vocab']`: the id -> row hash tables
(`jaxrec.embedding.dynamic_features`), updated by each train step's lookups (not by
gradients) and needed by every prediction.

The sparse side is updated one of two ways, chosen by the type of `Optimizers.sparse`:
  * an optax `GradientTransformation`: the whole table is a dense parameter (its gradient
    is a `[V, D]` scatter of the row gradients; the update touches every row);
  * a row-wise `SparseGradientTransformation`: the step differentiates w.r.t. the gathered
    rows and updates only the touched rows (`jaxrec.embedding.rowwise`, guided by the model's
    `EmbeddingPlan`); the step's cost does not grow with V.

`train_step` is a pure `(state, batch) -> (state, metrics)`: the gradient half
(`make_gradient_fn`) then the update half (`make_apply_fn`), which GBA also uses apart
(`jaxrec.train.straggler_replay`). `train_steps` scans it over a
chunk of K stacked batches `[K, B, ...]`, so one compiled call runs many steps and the
Python loop is never the bottleneck.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from jaxrec.data.dataset import LABELS
from jaxrec.embedding import AUX_LOSSES, COUNTERS, EMBEDDING, dynamic_features, rowwise
from jaxrec.embedding.plan import embedding_plan
from jaxrec.embedding.sparse_optim import SparseGradientTransformation
from jaxrec.losses import bce_loss
from jaxrec.optim import multitask

Batch = Mapping[str, jnp.ndarray]


@flax.struct.dataclass
class TrainState:
    """step: int32 scalar; params/opt_state: {'dense': pytree, 'sparse': pytree}; rng: PRNG key."""

    step: jnp.ndarray
    params: dict[str, Any]
    opt_state: dict[str, Any]
    rng: jnp.ndarray


@flax.struct.dataclass
class Optimizers:
    """The optimizers of a TrainState (static, not part of the state): optax for the dense
    side; optax or a row-wise `SparseGradientTransformation` for the embedding tables.

    Row-wise, `stacks` holds `(stack path, transformation)` pairs for the stacked tables
    whose tables have their own optimizer (`TableSpec.optimizer`); with optax, per-table
    optimizers are one `optax.multi_transform` in `sparse` instead
    (`jaxrec.train.optimizers.make_table_optimizers`).
    """

    dense: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    sparse: Any = flax.struct.field(pytree_node=False)
    stacks: tuple = flax.struct.field(pytree_node=False, default=())

    @property
    def rowwise(self) -> bool:
        return isinstance(self.sparse, SparseGradientTransformation)

    def for_stack(self, path: tuple[str, ...]) -> SparseGradientTransformation:
        """The row-wise optimizer of the stacked table at `path` (e.g. `('embedding', 'stacked')`)."""
        return dict(self.stacks).get(tuple(path), self.sparse)

    def init_sparse(self, tables):
        """The tables' optimizer state: one row-wise state per stacked table, or optax's."""
        if not self.rowwise:
            return self.sparse.init(tables)
        flat = traverse_util.flatten_dict(tables)
        return traverse_util.unflatten_dict({p: self.for_stack(p).init(t) for p, t in flat.items()})


def variables(params: Mapping[str, Any]) -> dict[str, Any]:
    """TrainState params -> Flax variables for `model.apply`."""
    return {"params": params["dense"], EMBEDDING: params["sparse"]}


def _features(model: nn.Module) -> tuple:
    return tuple(getattr(model, "features", ()))


def init_state(model: nn.Module, optimizers: Optimizers, example_batch: Batch, seed: int) -> TrainState:
    """Initialises parameters (from `seed`) and both optimizer states; with dynamic-vocabulary
    features (`encoding='dynamic'`), also their empty vocabularies under `params['vocab']`."""
    init_rng, rng = jax.random.split(jax.random.PRNGKey(seed))
    init = jax.jit(lambda key, batch: nn.unbox(model.init(key, batch, train=False)))  # compiled: much faster than eager
    v = init(init_rng, dynamic_features.placeholder_rows(_features(model), example_batch))
    params = {"dense": v.get("params", {}), "sparse": v.get(EMBEDDING, {})}
    vocabs = dynamic_features.init_vocabs(dynamic_features.vocab_tables(_features(model)))
    if vocabs:
        params["vocab"] = vocabs
    opt_state = {"dense": optimizers.dense.init(params["dense"]), "sparse": optimizers.init_sparse(params["sparse"])}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, rng=rng)


def logical_names(model: nn.Module, example_batch: Batch) -> dict[tuple[str, ...], tuple]:
    """`{dense parameter path: logical axis names}` of the parameters that name their axes
    (`flax.linen.with_logical_partitioning`; the transformer blocks do), for tensor parallelism."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), dynamic_features.placeholder_rows(
        _features(model), example_batch), train=False))
    specs = traverse_util.flatten_dict(nn.get_partition_spec(shapes).get("params", {}))
    return {tuple(str(k) for k in path): tuple(spec) for path, spec in specs.items() if len(spec)}


def _context(sharding):
    return sharding.lookups() if sharding is not None else contextlib.nullcontext()


def make_gradient_fn(model: nn.Module, optimizers: Optimizers, loss_fn: Callable = bce_loss,
                     combine: Callable | None = None) -> Callable:
    """The gradient half of a train step: `(params, batch, rng) -> (loss, counters, grads)`.

    `loss` is `loss_fn` plus any terms the model sows into `AUX_LOSSES` (then also in
    `counters['aux_loss']`).

    Multi-task (`combine`, a `jaxrec.optim.multitask.Combiner`): `loss_fn` returns per-task
    losses `[T]` (the aux terms are spread evenly over them); their per-task gradients of the
    shared parameters, dense and tables together (`jaxrec.optim.multitask.is_shared`), are
    combined by `combine` (its randomness from the step's rng), the towers keep their own
    task's; the reported loss is the sum over tasks. Needs an optax sparse optimizer.

    `grads = (dense, rows)`: `dense` is `{'dense': gradient of the dense params}` plus, with an
    optax sparse optimizer, `'sparse'`: the tables' `[V, D]` gradients; `rows` is, with a
    row-wise optimizer, `{stack path: (ids [C], grads [C, D])}` (`stack_row_grads`), else `{}`.
    Both are batch means, so averaging the grads of M batches gives the gradient of their
    union (what GBA's aggregation relies on). Call it inside the sharding's lookup context.
    """
    plan = embedding_plan(model) if optimizers.rowwise else None

    def with_aux(data_loss, sown):
        """Objective = data loss + the terms layers sow into AUX_LOSSES (reported as 'aux_loss')."""
        terms = jax.tree.leaves(sown.get(AUX_LOSSES, {}))
        if not terms:
            return data_loss, sown.get(COUNTERS, {})
        aux = sum(jnp.sum(t) for t in terms)
        return data_loss + aux / data_loss.size, {**sown.get(COUNTERS, {}), "aux_loss": (aux,)}

    def dense_grads(params, batch: Batch, rng):
        def objective(trained):
            logits, sown = model.apply(variables(trained), batch, train=True, rngs={"dropout": rng}, mutable=[COUNTERS, AUX_LOSSES])
            return with_aux(loss_fn(logits, batch[LABELS]), sown)

        trained = {"dense": params["dense"], "sparse": params["sparse"]}  # not 'vocab'
        if combine is not None:
            losses, per_task, counters = multitask.per_task_grads(objective, trained)
            grads = multitask.combine_tree(per_task, combine, multitask.is_shared, jax.random.fold_in(rng, 1))
            return jnp.sum(losses), counters, (grads, {})
        (loss, counters), grads = jax.value_and_grad(objective, has_aux=True)(trained)
        return loss, counters, (grads, {})

    def row_grads(params, batch: Batch, rng):
        def apply(v, mutable):
            return model.apply(v, batch, train=True, rngs={"dropout": rng}, mutable=mutable)

        loss, counters, g_dense, rows = rowwise.value_and_row_grads(
            apply, lambda logits, sown: with_aux(loss_fn(logits, batch[LABELS]), sown), plan,
            params["dense"], params["sparse"], mutable=[COUNTERS, AUX_LOSSES])
        return loss, counters, ({"dense": g_dense}, rows)

    if combine is not None and optimizers.rowwise:
        raise ValueError("multi-task gradient combination needs an optax sparse optimizer (sparse_optimizer.rowwise=False)")
    return row_grads if optimizers.rowwise else dense_grads


def make_apply_fn(optimizers: Optimizers, sharding=None, layouts=None, dedup_mode: str = "auto") -> Callable:
    """The update half of a train step: `(params, opt_state, grads) -> (params, opt_state)`,
    `grads` as `make_gradient_fn` returns them (or a mean of several, as GBA aggregates).
    Synchronous training and GBA share it, so both apply the same optimizers."""

    def apply(params, opt_state, grads):
        dense, rows = grads
        new_params, new_opt = dict(params), dict(opt_state)
        for side, g in dense.items():
            tx = optimizers.dense if side == "dense" else optimizers.sparse
            updates, new_opt[side] = tx.update(g, opt_state[side], params[side])
            new_params[side] = optax.apply_updates(params[side], updates)
        if optimizers.rowwise:
            new_params["sparse"], new_opt["sparse"] = rowwise.sparse_rowwise_update(
                optimizers.for_stack, params["sparse"], opt_state["sparse"], rows, sharding, layouts, dedup_mode)
        return new_params, new_opt

    return apply


def make_train_step(model: nn.Module, optimizers: Optimizers, loss_fn: Callable = bce_loss,
                    sharding=None, layouts=None, dedup_mode: str = "auto", combine: Callable | None = None) -> Callable:
    """Returns the pure `train_step(state, batch) -> (state, metrics)`: {'loss': scalar} plus the
    counters embedding layers sow (e.g. 'overflow_ids/<feature>': ids dropped by a batch capacity).
    It is `make_gradient_fn` followed by `make_apply_fn` (`combine`: multi-task, see there).

    With `sharding` (a `jaxrec.distributed.ShardedEmbeddings`) the same step runs on its mesh
    with row-sharded tables: lookups go through shard_map. `layouts` (`{stack path:
    StackLayout}`) defaults to the model's `embedding_plan(model).layouts`.

    Dynamic-vocabulary features (`encoding='dynamic'`) are mapped from keys to rows first
    (`jaxrec.embedding.dynamic_features.prepare_batch`), and their counts join the metrics as
    `vocab/<table>/<stat>`.
    """
    vocabs_of = dynamic_features.vocab_tables(_features(model))
    if layouts is None and (vocabs_of or sharding is not None):
        layouts = embedding_plan(model).layouts
    gradient = make_gradient_fn(model, optimizers, loss_fn, combine)
    apply = make_apply_fn(optimizers, sharding, layouts, dedup_mode)

    def train_step(state: TrainState, batch: Batch):
        dropout_rng = jax.random.fold_in(state.rng, state.step)
        vocab_metrics = {}
        if vocabs_of:
            dropout_rng, reset_rng = jax.random.split(dropout_rng)
            params, opt_state, batch, vocab_metrics = dynamic_features.prepare_batch(
                vocabs_of, state.params, state.opt_state, batch, state.step, optimizers.init_sparse, layouts, reset_rng, sharding)
            state = state.replace(params=params, opt_state=opt_state)
        with _context(sharding):
            loss, counters, grads = gradient(state.params, batch, dropout_rng)
            params, opt_state = apply(state.params, state.opt_state, grads)
        # Counter name -> value; layers sharing a feature (embedding and linear) sow the same count.
        metrics = {"loss": loss, **{path[-1]: sum(v) for path, v in traverse_util.flatten_dict(counters).items()},
                   **vocab_metrics}
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return train_step


def make_train_steps(train_step: Callable) -> Callable:
    """`(state, chunk [K, B, ...]) -> (state, {'loss': [K]})`: K steps in one call (lax.scan)."""

    def train_steps(state: TrainState, chunk: Batch):
        return jax.lax.scan(train_step, state, chunk)

    return train_steps


def make_predict(model: nn.Module, sharding=None, outputs: Callable | None = None,
                 forward: Callable | None = None) -> Callable:
    """`(params, chunk [K, B, ...]) -> logits [K, B]`, the eval forward pass over a chunk; with
    `outputs(logits, batch)` (a task's `eval_outputs`, e.g. the LM's log p(target) `[B, T]` of
    logits `[B, T, V]`) what it returns per batch instead; with `forward(model, variables, batch)`
    (a task's `eval_forward`, e.g. the generative task's decoding) that in place of the forward."""

    vocabs_of = dynamic_features.vocab_tables(_features(model))

    def rows(params, b: Batch) -> Batch:  # dynamic-vocabulary keys -> rows, read-only
        return dynamic_features.map_batch(vocabs_of, params["vocab"], b, 0, train=False)[0] if vocabs_of else b

    def predict(params, chunk: Batch):
        with _context(sharding):
            def one(b):
                mapped = rows(params, b)
                y = (model.apply(variables(params), mapped, train=False) if forward is None
                     else forward(model, variables(params), mapped))
                return y if outputs is None else outputs(y, b)

            return jax.lax.map(one, chunk)

    return predict
