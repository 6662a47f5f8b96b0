"""The device prefetcher yields every item in order, on the device, and forwards errors."""

import jax
import numpy as np
import pytest

from jaxrec.train.prefetch import device_prefetch


def test_order_and_device_arrays():
    items = [(i, {"x": np.full((2, 3), i)}) for i in range(7)]
    out = list(device_prefetch(iter(items), size=2))
    assert [s for s, _ in out] == list(range(7)) and all(isinstance(s, int) for s, _ in out)
    assert all(isinstance(c["x"], jax.Array) and int(c["x"][0, 0]) == s for s, c in out)


def test_producer_error_reaches_consumer_and_early_close_is_clean():
    def bad():
        yield {"x": np.zeros(1)}
        raise ValueError("malformed row")

    with pytest.raises(ValueError, match="malformed row"):
        list(device_prefetch(bad()))
    gen = device_prefetch(({"x": np.zeros(1)} for _ in range(100)), size=1)
    next(gen)
    gen.close()  # must not hang on the producer blocked on a full queue
