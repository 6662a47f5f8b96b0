"""jaxrec: industrial recommendation and search-advertising methods in JAX/Flax.

Subpackages: `data` (specs, readers, batching), `embedding` (tables, lookup), `nn`
(layers), `losses`, `optim`, `models` (complete models, by name), `distributed`
(multi-process runs, sharded placement), `train` (state, steps, loop, metrics,
checkpoints, CLI); `mesh` is the device mesh. Importing jaxrec has no side effects (the
environment, JAX's flags and logging are left alone; the `train.py` / `eval.py` CLI sets up
its own). See README.md and docs/.
"""

__version__ = "0.1.0"
