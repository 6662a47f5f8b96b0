"""GBA as a mesh collective: one SPMD step that aggregates stale local gradients with `psum`.

Each device of the mesh's `data` axis plays one worker of GBA (`jaxrec.optim.gba`): it holds
its own, possibly stale, parameter version (the one its token was issued with), computes its
local gradient on its slice of the batch, weights it by the decay of its staleness
tau_i = k - t_i, and the weighted gradients are reduced across devices:

    G_dense  = psum_i(d(tau_i) g_i) / M                           (replicated)
    G_sparse = all_gather_i(ids_i), all_gather_i(d(tau_i) rows_i) / M   (device order)

with M = the size of the `data` axis. This equals the pure aggregation of M arrivals in
device order (`gba.accumulate` then `gba.global_gradient`), which the 8-device tests check.
The result is applied with the synchronous optimizers, as in synchronous training.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxrec.mesh import DATA
from jaxrec.errors import ConfigError
from jaxrec.optim import gba

# grad_fn(params, local_batch) -> (dense grads pytree, {stack: (ids [C], row_grads [C, D])})
GradFn = Callable[[Any, Any], tuple[Any, dict]]


def gba_global_gradient(grad_fn: GradFn, versions: Any, batch: Any, tokens: jax.Array, step: jax.Array,
                        config: gba.GBAConfig, mesh: Mesh) -> tuple[Any, dict]:
    """The GBA global-batch gradient of one SPMD step.

    Args:
      grad_fn: a worker's local gradient (see `GradFn`).
      versions: parameter pytree with a leading axis N (= mesh `data` size): device i's version.
      batch: pytree with leading axis N * b, split over `data`.
      tokens: `[N]` int32, the token each device's version was issued with.
      step: the server's global step k (int32 scalar).
      config: GBA options; `num_aggregate` must equal N.
    Returns: `(G_dense, {stack: (ids [N*C], grads [N*C, D])})`, replicated.
    """
    n = mesh.shape[DATA]
    if config.num_aggregate != n:
        raise ConfigError(f"gba.num_aggregate={config.num_aggregate} must equal the mesh's '{DATA}' size {n} "
                          "(one local gradient per device per global step)")

    def body(version, local_batch, token, k):
        dense, sparse = grad_fn(jax.tree.map(lambda a: a[0], version), local_batch)
        w = gba.decay_weight(k - token[0], config)
        dense = jax.tree.map(lambda g: jax.lax.psum(w.astype(g.dtype) * g, DATA) / n, dense)
        sparse = {name: (jax.lax.all_gather(ids, DATA, tiled=True),
                         jax.lax.all_gather(w.astype(rows.dtype) * rows, DATA, tiled=True) / n)
                  for name, (ids, rows) in sparse.items()}
        return dense, sparse

    # check_vma=False: a tiled all_gather is replicated, which the varying-axes check cannot infer
    return jax.shard_map(body, mesh=mesh, in_specs=(P(DATA), P(DATA), P(DATA), P()), out_specs=(P(), P()),
                         check_vma=False)(versions, batch, tokens, step)
