"""Multi-process JAX: joining the processes of one run, and what each process may do.

A multi-process run is N copies of the same program, one per process (per host on a
cluster), that `jax.distributed.initialize` joins into one set of global devices: the mesh
spans them all, and a jitted step runs SPMD with cross-process collectives (gloo on CPU, NCCL
on GPU). `jaxrec.distributed.launch` starts N local processes and tells each its part through
the environment:

    JAXREC_COORDINATOR     host:port of process 0's coordination service
    JAXREC_NUM_PROCESSES   N
    JAXREC_PROCESS_ID      0 .. N-1

On a cluster, set the same three per host (or leave them unset and let `jax.distributed`
detect SLURM / TPU / MPI: `JAXREC_NUM_PROCESSES=auto`). Without them a run is single-process
and nothing here changes it.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxrec.errors import ConfigError

COORDINATOR, NUM_PROCESSES, PROCESS_ID = "JAXREC_COORDINATOR", "JAXREC_NUM_PROCESSES", "JAXREC_PROCESS_ID"


def is_multiprocess() -> bool:
    """Whether the environment makes this process one of several (`JAXREC_NUM_PROCESSES` != 1)."""
    return os.environ.get(NUM_PROCESSES, "1") != "1"


def initialize() -> bool:
    """Joins this process to its run if the environment says it is one of several (module
    docstring); returns whether it did. Call it before JAX computes anything. On CPU the
    processes' collectives need `jax.config.update("jax_cpu_collectives_implementation", "gloo")`
    first (the default has none; GPUs use NCCL regardless): a global setting, so the caller
    makes it (`jaxrec.train.cli` does, when `is_multiprocess()`)."""
    n = os.environ.get(NUM_PROCESSES, "1")
    if n == "1" or jax.distributed.is_initialized():
        return jax.distributed.is_initialized()
    if n == "auto":
        jax.distributed.initialize()
        return True
    try:
        num, pid, coordinator = int(n), int(os.environ[PROCESS_ID]), os.environ[COORDINATOR]
    except (KeyError, ValueError) as e:
        raise ConfigError(f"{NUM_PROCESSES}={n} needs {COORDINATOR}=host:port and {PROCESS_ID} in 0..{n}-1 ({e})") from None
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num, process_id=pid)
    return True


def is_main() -> bool:
    """True in process 0, the one that writes logs, metrics and summaries."""
    return jax.process_index() == 0


def to_host(tree: Any) -> Any:
    """Arrays -> numpy with their global value, in every process: arrays spread over other
    processes' devices are gathered (a collective: every process must call it)."""
    def fetch(x):
        if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(fetch, tree)


def barrier(name: str) -> None:
    """Waits until every process of a multi-process run reaches the barrier `name` (no-op alone)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def put(x: Any, sharding: Any) -> jax.Array:
    """A value that is the same in every process (numpy or a local array) -> a global jax.Array
    placed by `sharding` (None: the default device).

    In a multi-process run each process fills its own devices' shards from its copy
    (`jax.make_array_from_callback`), with no collective: `jax.device_put` of host data there
    checks equality across processes with one, which may not run beside the train step's
    collectives (the prefetch thread) and costs a round trip per array."""
    if sharding is None or jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
