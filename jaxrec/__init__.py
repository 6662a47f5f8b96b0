"""jaxrec: industrial recommendation and search-advertising methods in JAX/Flax.

Subpackages: `data` (specs, readers, batching), `embedding` (tables, lookup), `nn`
(layers), `models` (complete models, by name), `train` (state, steps, loop, metrics,
checkpoints). See README.md and docs/.
"""

from jaxrec import _xla_flags

_xla_flags.apply()

__version__ = "0.1.0"
