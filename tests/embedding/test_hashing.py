"""`jaxrec.embedding.hashing.fmix32` is MurmurHash3's 32-bit finaliser, pinned to known values."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.embedding.hashing import fmix32


def murmur3_fmix32(h: int) -> int:
    """The reference finaliser in plain Python integers (smhasher MurmurHash3.cpp)."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def test_fmix32_murmur3_test_vectors():
    # MurmurHash3_x86_32 of the empty input is fmix32(seed): the published vectors
    # ("", seed 0) = 0, ("", seed 1) = 0x514E28B7, ("", seed 0xFFFFFFFF) = 0x81F16F39.
    got = np.asarray(fmix32(jnp.asarray([0, 1, 0xFFFFFFFF], jnp.uint32)))
    assert got.dtype == np.uint32
    assert [int(v) for v in got] == [0, 0x514E28B7, 0x81F16F39]


def test_fmix32_by_hand_for_one_and_matches_reference():
    # fmix32(1) step by step: 1 ^ 0 = 1; * 0x85EBCA6B = 0x85EBCA6B; ^ (>> 13) = 0x85EBCA6B ^ 0x42F5E;
    # * 0xC2B2AE35 mod 2^32; ^ (>> 16).
    h = 0x85EBCA6B ^ (0x85EBCA6B >> 13)
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    assert int(fmix32(jnp.uint32(1))) == h ^ (h >> 16) == 0x514E28B7
    xs = np.random.default_rng(0).integers(0, 2**32, size=1000, dtype=np.uint64).astype(np.uint32)
    assert [int(v) for v in np.asarray(jax.jit(fmix32)(xs))] == [murmur3_fmix32(int(x)) for x in xs]


def test_fmix32_reads_signed_ids_as_uint32_and_is_injective():
    assert int(fmix32(jnp.int32(-1))) == 0x81F16F39
    out = np.asarray(fmix32(jnp.arange(1 << 16, dtype=jnp.int32)))
    assert len(np.unique(out)) == 1 << 16
