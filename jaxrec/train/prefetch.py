"""The one place host batches become device arrays: a background thread that builds the
next chunks and copies them to the device while the current one trains.

Training runs one compiled call per chunk, so the host has the whole call's duration to
gather rows and transfer the next chunk; with `size >= 1` the step loop never waits on
numpy or on the host-to-device copy (unless the host is slower than the device).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator

import jax
import numpy as np

from jaxrec.distributed import runtime

_DONE = object()


def device_prefetch(items: Iterable[Any], size: int = 2, sharding: Any = None) -> Iterator[Any]:
    """Yields `items` with their numpy arrays already on the device (`runtime.put`: no
    cross-process collective, so this thread never interleaves with the step's).

    Args:
      items: an iterable of pytrees of numpy arrays (e.g. `(step, chunk)` pairs).
      size: how many items to build ahead.
      sharding: passed to `jax.device_put` (None: the default device).
    The producer thread stops when the consumer stops iterating (the generator is closed)
    and re-raises any producer error in the consumer.
    """
    q: queue.Queue = queue.Queue(maxsize=max(size, 1))
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(jax.tree.map(lambda x: runtime.put(x, sharding) if isinstance(x, np.ndarray) else x, item))
        except BaseException as e:  # noqa: BLE001 - forwarded to the consumer
            q.put(e)
            return
        q.put(_DONE)

    thread = threading.Thread(target=produce, daemon=True, name="jaxrec-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.01)
