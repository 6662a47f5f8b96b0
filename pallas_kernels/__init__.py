"""Pallas kernels, one file per op: a plain-jnp reference, the kernel(s), and a dispatching op
with a custom VJP (see ../shared/ARCHITECTURE.md, "Reference before kernel").

Kernels: `embedding_bag` (gather + sum/mean pooling over ragged bags, with a row-gradient backward).
"""
