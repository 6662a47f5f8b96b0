"""Pallas kernels, one file per op: a plain-jnp reference, the kernel(s), and a dispatching op
with a custom VJP (see ../shared/ARCHITECTURE.md, "Reference before kernel").

No kernel has landed yet; the first is the field-aware attention of FAT.
"""
