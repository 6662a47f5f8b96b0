"""`Frozen`: a read-only numpy array that can be a Flax module attribute (hashable by content),
for constants a model derives from its training data (an item graph, content vectors)."""

from __future__ import annotations

import hashlib

import numpy as np


class Frozen:
    """Wraps an array `[...]`; `.value` is a read-only copy. Equal (and equal-hashing) iff the
    arrays are, so modules holding it compare and jit-cache by content."""

    def __init__(self, value):
        self.value = np.array(value)
        self.value.flags.writeable = False
        self._digest = hashlib.sha1(self.value.tobytes() + str((self.value.shape, self.value.dtype)).encode()).hexdigest()

    def __hash__(self) -> int:
        return hash(self._digest)

    def __eq__(self, other) -> bool:
        return isinstance(other, Frozen) and other._digest == self._digest

    def __repr__(self) -> str:
        return f"Frozen(shape={self.value.shape}, dtype={self.value.dtype}, sha1={self._digest[:10]})"
