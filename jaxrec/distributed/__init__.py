"""Distributed execution: device meshes (axes `data` and `model`) and the shardings built on them.

See `mesh.py`. Sharded embedding lookup lives with the tables, in `jaxrec.embedding.sharded`.
GBA (`jaxrec.optim.gba`) on a mesh is `gba_collective.py`; the straggler simulator is
`straggler.py` (when gradients arrive) and `simulate.py` (replaying them with the real math).
"""

from jaxrec.distributed.mesh import AXES, DATA, MODEL, batch_sharding, make_mesh, replicated

__all__ = ["AXES", "DATA", "MODEL", "batch_sharding", "make_mesh", "replicated"]
