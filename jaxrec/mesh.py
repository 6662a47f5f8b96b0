"""Device meshes with the two jaxrec axes, `data` and `model`, and the basic shardings on them.

`data` splits the batch (data parallelism); `model` splits parameters that are too large to
replicate. Sharded embedding tables are split over *both* axes (all devices), see
`jaxrec.embedding.sharded`. The meshes use `AxisType.Auto` (shardings propagate through
`jit` as in classic GSPMD) unless asked otherwise.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA = "data"
MODEL = "model"
AXES = (DATA, MODEL)


def make_mesh(shape: Sequence[int] | None = None, devices: Sequence[jax.Device] | None = None,
              axis_types: tuple[AxisType, AxisType] = (AxisType.Auto, AxisType.Auto)) -> Mesh:
    """A `(data, model)` mesh over `devices` (default: all of `jax.devices()`).

    Args:
      shape: `(data, model)` axis sizes; one of them may be -1 (inferred from the device
        count). Default `(num_devices, 1)`: pure data parallelism.
      devices: the devices to lay out, in order (default `jax.devices()`).
      axis_types: JAX axis types of the two axes (default `Auto`, i.e. GSPMD propagation).

    Raises:
      ValueError: if the shape is not two positive sizes or does not multiply to the number
        of devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if n == 0:
        raise ValueError("make_mesh: no devices given")
    shape = (n, 1) if shape is None else tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise ValueError(f"make_mesh: shape must be (data, model), got {shape}")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"make_mesh: shape {shape} must be positive sizes (at most one -1 to infer)")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if n % known:
            raise ValueError(f"make_mesh: cannot infer -1 in shape {shape}: {n} devices are not divisible by {known}")
        shape = tuple(n // known if s == -1 else s for s in shape)
    if math.prod(shape) != n:
        raise ValueError(f"make_mesh: shape (data={shape[0]}, model={shape[1]}) needs {math.prod(shape)} devices, "
                         f"but {n} are available ({devices[0].platform}); on CPU, more can be forced with "
                         f"XLA_FLAGS=--xla_force_host_platform_device_count=N set before JAX starts")
    return jax.make_mesh(shape, AXES, axis_types=tuple(axis_types), devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over `data`, everything else replicated."""
    return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, P())


# Logical axis names -> mesh axes: the one rules table (MaxText style). A parameter names each of its
# dimensions (`flax.linen.with_logical_partitioning`); these rules place it on the (data, model) mesh:
# tensor parallelism splits heads and the FFN's hidden width (and the vocabulary) over `model`, the
# batch goes over `data`, everything else is replicated. A name not listed is replicated.
LOGICAL_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", DATA),
    ("vocab", MODEL),
    ("heads", MODEL),
    ("kv_heads", MODEL),
    ("mlp", MODEL),
    ("embed", None),
    ("head_dim", None),
    ("length", None),
    ("position", None),
    ("expert", None),
    ("lora", None),
)


def logical_spec(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                 rules: Sequence[tuple[str, str | None]] = LOGICAL_RULES) -> P:
    """The `PartitionSpec` of an array of `shape` whose dimensions are named `names`.

    Each name maps to a mesh axis by `rules` (first match; unknown names and None replicate). A
    dimension that the mesh axis does not divide evenly (e.g. 2 kv heads over 8 devices, or a
    30,522-word vocabulary) is replicated instead, and a mesh axis is used at most once.
    """
    table, used, spec = dict(rules), set(), []
    for name, size in zip(names, shape):
        axis = table.get(name) if name is not None else None
        if axis is None or axis in used or size % mesh.shape[axis]:
            spec.append(None)
        else:
            spec.append(axis)
            used.add(axis)
    return P(*spec)


def logical_shardings(names_tree, shapes_tree, mesh: Mesh, rules: Sequence[tuple[str, str | None]] = LOGICAL_RULES):
    """`NamedSharding`s for a tree of arrays: `names_tree` holds each leaf's logical names (a
    `PartitionSpec` or tuple, as `flax.linen.get_partition_spec` returns; None = replicated),
    `shapes_tree` the arrays (or `jax.ShapeDtypeStruct`s) with the same structure."""
    def one(names, x):
        return NamedSharding(mesh, logical_spec(tuple(names or ()) + (None,) * (x.ndim - len(names or ())), x.shape, mesh, rules))

    return jax.tree.map(one, names_tree, shapes_tree, is_leaf=lambda n: n is None or isinstance(n, (P, tuple)))
