"""Integer mixing on the device: the one home of jaxrec's 32-bit hash finaliser.

`fmix32` is MurmurHash3's 32-bit finaliser (Austin Appleby, smhasher `MurmurHash3.cpp`,
`fmix32`): two xor-shift / multiply rounds and a last xor-shift, all mod 2^32. It is a
bijection on uint32 that spreads the bits of nearby integers over the whole word. Users:
the hashed schemes of `jaxrec.embedding.compressed` (id -> bucket) and the probe windows and
Bloom counters of `jaxrec.embedding.dynamic_vocab` (64-bit key -> 32-bit slot hash).
Host-side hashing of raw values (SplitMix64, BLAKE2b) is `jaxrec.data.encoding.stable_hash`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def fmix32(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser on `x` read as uint32 (wrapping multiplies); uint32 out."""
    x = jnp.asarray(x).astype(jnp.uint32)
    x = (x ^ (x >> 16)) * jnp.uint32(0x85EBCA6B)
    x = (x ^ (x >> 13)) * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)
