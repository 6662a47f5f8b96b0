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
