"""Distributed execution on a device mesh (the mesh itself and its axes: `jaxrec.mesh`).

`runtime.py` joins a multi-process run and `launch.py` starts one; `sharded_embeddings.py`
places row-sharded tables and their optimizer state on the mesh (the sharded lookup lives
with the tables, in `jaxrec.embedding.sharded`). GBA (`jaxrec.optim.gba`) on a mesh is
`gba_collective.py`; `straggler.py` schedules when each worker's gradient arrives. The
training runtimes built on these (the straggler replay, the Ray parameter server) are in
`jaxrec.train` (`straggler_replay.py`, `ray_ps.py`).
"""
