"""TrainState and the pure train / predict steps.

The state splits parameters as the architecture prescribes: `params = {'dense': ...,
'sparse': ...}` where 'sparse' holds the embedding tables (Flax collection `EMBEDDING`)
and 'dense' everything else; each side has its own optax optimizer state.

`train_step` is a pure `(state, batch) -> (state, metrics)`; `train_steps` scans it over a
chunk of K stacked batches `[K, B, ...]`, so one compiled call runs many steps and the
Python loop is never the bottleneck.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxrec.data.dataset import LABELS
from jaxrec.embedding import EMBEDDING

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
    """The two optax transformations of a TrainState (static, not part of the state)."""

    dense: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    sparse: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def variables(params: Mapping[str, Any]) -> dict[str, Any]:
    """TrainState params -> Flax variables for `model.apply`."""
    return {"params": params["dense"], EMBEDDING: params["sparse"]}


def init_state(model: nn.Module, optimizers: Optimizers, example_batch: Batch, seed: int) -> TrainState:
    """Initialises parameters (from `seed`) and both optimizer states."""
    init_rng, rng = jax.random.split(jax.random.PRNGKey(seed))
    v = model.init(init_rng, example_batch, train=False)
    params = {"dense": v.get("params", {}), "sparse": v.get(EMBEDDING, {})}
    opt_state = {"dense": optimizers.dense.init(params["dense"]), "sparse": optimizers.sparse.init(params["sparse"])}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, rng=rng)


def bce_loss(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Mean sigmoid cross-entropy of logits `[B]` against labels `[B]`."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))


def make_train_step(model: nn.Module, optimizers: Optimizers, loss_fn: Callable = bce_loss) -> Callable:
    """Returns the pure `train_step(state, batch) -> (state, {'loss': scalar})`."""

    def train_step(state: TrainState, batch: Batch):
        dropout_rng = jax.random.fold_in(state.rng, state.step)

        def objective(params):
            logits = model.apply(variables(params), batch, train=True, rngs={"dropout": dropout_rng})
            return loss_fn(logits, batch[LABELS])

        loss, grads = jax.value_and_grad(objective)(state.params)
        new_params, new_opt = {}, {}
        for side, tx in (("dense", optimizers.dense), ("sparse", optimizers.sparse)):
            updates, new_opt[side] = tx.update(grads[side], state.opt_state[side], state.params[side])
            new_params[side] = optax.apply_updates(state.params[side], updates)
        return state.replace(step=state.step + 1, params=new_params, opt_state=new_opt), {"loss": loss}

    return train_step


def make_train_steps(train_step: Callable) -> Callable:
    """`(state, chunk [K, B, ...]) -> (state, {'loss': [K]})`: K steps in one call (lax.scan)."""

    def train_steps(state: TrainState, chunk: Batch):
        return jax.lax.scan(train_step, state, chunk)

    return train_steps


def make_predict(model: nn.Module) -> Callable:
    """`(params, chunk [K, B, ...]) -> logits [K, B]`, the eval forward pass over a chunk."""

    def predict(params, chunk: Batch):
        return jax.lax.map(lambda b: model.apply(variables(params), b, train=False), chunk)

    return predict
