"""Row-wise sparse training of the stacked tables: row gradients in, touched rows updated.

The three pieces a trainer needs, behind the plan (`jaxrec.embedding.plan.EmbeddingPlan`):

* `value_and_row_grads`: the loss, the dense gradients and, per stacked table, the ids the
  batch gathered and the gradients w.r.t. those rows (`{stack path: (ids [C], grads [C, D])}`).
  The layers' gathers are Flax perturbations (zeros passed in, differentiated) and sown ids
  (`jaxrec.embedding.layer`); the plan says which gather reads which stack.
* `sparse_rowwise_update`: sums repeated ids and lets each stack's row-wise optimizer
  (`jaxrec.embedding.sparse_optim`) update only the touched rows and their slots.

No `[V, D]` gradient is ever formed; a step's cost does not grow with V.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
from flax import traverse_util

from jaxrec.embedding.layer import EMBEDDING, LOOKUP_IDS
from jaxrec.embedding.plan import EmbeddingPlan, StackLayout, StackPath
from jaxrec.embedding.sparse_optim import SparseGradientTransformation, dedup

PERTURBATIONS = "perturbations"  # Flax's collection of `Module.perturb`
RowGrads = Mapping[StackPath, tuple[jax.Array, jax.Array]]  # {stack path: (ids [C], grads [C, D])}


def stack_row_grads(plan: EmbeddingPlan, tables, lookup_ids, row_grads) -> dict:
    """Gathers one batch's row gradients per stacked table.

    Args:
      plan: the model's embedding plan (which gather reads which stack).
      tables: the EMBEDDING collection, `{layer...: {stack: [V, D]}}`.
      lookup_ids: sown ids `{layer...: {gather name: (ids [B, ...],)}}`.
      row_grads: gradients w.r.t. the gathered rows `{layer...: {gather name: [B, ..., D]}}`.
    Returns:
      `{stack path: (ids [C], grads [C, D])}`, one pair per stacked table (C: the rows the
      batch gathered from it, repeats included; gathers in name order).
    """
    flat_ids, flat_g = traverse_util.flatten_dict(lookup_ids), traverse_util.flatten_dict(row_grads)
    out = {}
    for stack, table in traverse_util.flatten_dict(tables).items():
        layer = stack[:-1]
        names = [n for n in plan.gathers(stack) if layer + (n,) in flat_g]  # a gather the batch did not run: none
        ids = jnp.concatenate([flat_ids[layer + (n,)][0].reshape(-1) for n in names]) if names else jnp.zeros((0,), jnp.int32)
        grads = jnp.concatenate([flat_g[layer + (n,)].reshape(-1, table.shape[1]) for n in names]) if names else jnp.zeros((0, table.shape[1]))
        out[stack] = (ids, grads)
    return out


def value_and_row_grads(apply: Callable, objective: Callable, plan: EmbeddingPlan, dense, tables, mutable=()):
    """Loss and gradients of a row-wise step.

    Args:
      apply: `(variables, mutable) -> (output, sown collections)`: the model's `apply` over one
        batch (rngs and flags bound).
      objective: `(output, sown) -> (loss, aux)`.
      plan: the model's embedding plan.
      dense: the dense parameters (Flax 'params'); tables: the EMBEDDING collection.
      mutable: further collections to sow (counters, aux losses).
    Returns:
      `(loss, aux, dense gradients, {stack path: (ids [C], grads [C, D])})`.
    """

    def f(dense, perturbations):
        out, sown = apply({"params": dense, EMBEDDING: tables, PERTURBATIONS: perturbations}, [LOOKUP_IDS, *mutable])
        loss, aux = objective(out, sown)
        return loss, (sown[LOOKUP_IDS], aux)

    shapes = jax.eval_shape(lambda: apply({"params": dense, EMBEDDING: tables}, [PERTURBATIONS])[1])
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes[PERTURBATIONS])
    (loss, (ids, aux)), (g_dense, g_rows) = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(dense, zeros)
    return loss, aux, g_dense, stack_row_grads(plan, tables, ids, g_rows)


def sparse_rowwise_update(optimizer_of: Callable[[StackPath], SparseGradientTransformation], tables, opt_states,
                          rows: RowGrads, sharding=None, layouts: Mapping[StackPath, StackLayout] | None = None,
                          dedup_mode: str = "auto"):
    """Row-wise update of every stacked table from its row gradients.

    Args:
      optimizer_of: a stack path's row-wise optimizer (`Optimizers.for_stack`).
      tables: the EMBEDDING collection, `{layer...: {stack: [V, D]}}`.
      opt_states: each stack's optimizer state, same tree shape as `tables`.
      rows: `{stack path: (ids [C], grads [C, D])}` (`stack_row_grads`); repeated ids are
        summed, id V (padding) is dropped.
      sharding, layouts: for row-sharded tables (`ShardedEmbeddings`), which store rows in
        physical order: the logical ids are mapped to physical rows before the update.
      dedup_mode: 'sort' always merges duplicates by sorting the ids; 'auto' uses a bincount
        over the rows when the table has no more rows than the batch has ids (`dedup`).
    Returns:
      (new tables, new optimizer states); only the touched rows change.
    """
    flat_t = traverse_util.flatten_dict(tables)
    flat_s = traverse_util.flatten_dict(opt_states, is_leaf=lambda p, x: tuple(p) in flat_t)
    new_t, new_s = dict(flat_t), dict(flat_s)
    for stack, table in flat_t.items():
        ids, grads = rows[stack]
        vocab = table.shape[0] if sharding is None else layouts[stack].total_rows
        uids, ugrads = dedup(ids, grads, vocab, capacity=ids.shape[0] if dedup_mode == "sort" else None)
        if sharding is not None:
            uids = sharding.physical_ids(uids, layouts[stack])
        new_t[stack], new_s[stack] = optimizer_of(stack).update(uids, ugrads, table, flat_s[stack])
    return traverse_util.unflatten_dict(new_t), traverse_util.unflatten_dict(new_s)


__all__ = ["PERTURBATIONS", "RowGrads", "sparse_rowwise_update", "stack_row_grads", "value_and_row_grads"]
