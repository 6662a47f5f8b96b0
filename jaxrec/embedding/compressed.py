"""Compressed embedding tables: id -> K row indices of one small table -> K vectors fused.

Every scheme is an `IndexScheme`: a pure, deterministic map from integer ids `[...]` to row
indices `[..., K]` of a table with `num_rows` rows (no vocabulary: any id, seen or not, gets
rows), plus a fusion of the K looked-up vectors. `EmbeddingLayer` reads a table through one
(config `tables.<name>.compression`; `jaxrec.embedding.specs.compression_scheme`).
Memory is `num_rows * dim * 4` bytes (float32), counted exactly by `table_bytes`.

  full          row = id                                              (V rows, the reference)
  hash          row = mix(id) mod N                                   (hashing trick, N rows)
  double_hash   rows = (mix(id) mod N, mix'(id) mod N), summed        (double hashing, N rows)
  qr            rows = (id mod m, m + id div m), summed               (quotient-remainder,
                Shi et al., KDD 2020; m + ceil(V/m) rows; (q, r) is unique per id; the paper
                also multiplies: fusion='prod', which needs rows started near 1, not near 0
                as the layer's initializers start them: keep the default sum)
  binary_code   Binary Code based Hash Embedding (Yan et al., CIKM 2021, arXiv 2109.02471; notes
                shared/specs/recsys-methods.md §5): code = mix(id) as L bits; the bits are cut
                into blocks, 'succession' (runs of t = `block_bits` consecutive bits, the last
                run shorter when t does not divide L: ceil(L/t) blocks, the paper's knob t; or
                `num_blocks` runs of ceil(L/n_b) bits) or 'skip' (`num_blocks` blocks, block r
                takes bits r, r + n_b, r + 2 n_b, ... [T]); block r's l_r bits read as an integer
                j_r, row = offset_r + j_r with offset_r = sum_{s<r} 2^l_s; the vectors fused by
                sum, mean or concat. sum_r 2^l_r rows, counted exactly (the notes' ceil(L/t) 2^t
                pads the last block). Here code = `mix_bits(id, L)`, a bijection on L-bit
                integers, and the blocks partition the L bits: distinct ids below 2^L give
                distinct index tuples at any blocking (tested); the hash of a raw value is
                whatever made the id (`jaxrec.data.encoding`).

`mix` is the murmur3 32-bit finaliser (`jaxrec.embedding.hashing.fmix32`, bijective); `mix'`
the same on a salted id.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxrec.embedding.hashing import fmix32
from jaxrec.errors import ConfigError

KINDS = ("full", "hash", "double_hash", "qr", "binary_code")
FUSIONS = ("sum", "mean", "concat", "prod")


def mix_bits(x: jax.Array, bits: int) -> jax.Array:
    """A bijection on [0, 2^bits) (odd multipliers mod 2^bits, xor-shifts), applied to x mod 2^bits:
    distinct ids below 2^bits keep distinct codes, and their bits are spread over all blocks."""
    mask, shift = jnp.uint32(2 ** bits - 1 if bits < 32 else 0xFFFFFFFF), jnp.uint32(max(1, bits // 2))
    x = jnp.asarray(x).astype(jnp.uint32) & mask
    for mult in (0x9E3779B1, 0x85EBCA6B):
        x = (x * jnp.uint32(mult)) & mask
        x = x ^ (x >> shift)
    return x


@dataclasses.dataclass(frozen=True)
class IndexScheme:
    """One compression scheme (module docstring).

    Attributes:
      kind: one of `KINDS`.
      vocab_size: V, the id range the scheme is sized for (ids beyond it still get rows).
      buckets: N for 'hash' / 'double_hash'; m (the remainder range) for 'qr'.
      num_bits: L for 'binary_code' (default: enough for V ids).
      num_blocks: n_b for 'binary_code' (ignored when `block_bits` is set).
      block_bits: t for 'binary_code' 'succession': blocks of t bits (the last shorter).
      strategy: 'succession' | 'skip' for 'binary_code'.
      fusion: how the K vectors combine: 'sum' | 'mean' | 'concat' | 'prod' (default per kind).
    """

    kind: str
    vocab_size: int
    buckets: int | None = None
    num_bits: int | None = None
    num_blocks: int = 1
    block_bits: int | None = None
    strategy: str = "succession"
    fusion: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"embedding compression kind {self.kind!r}: expected one of {KINDS}")
        if self.vocab_size < 1:
            raise ConfigError(f"embedding compression: vocab_size must be >= 1, got {self.vocab_size}")
        if self.kind in ("hash", "double_hash", "qr") and not (self.buckets and self.buckets >= 1):
            raise ConfigError(f"embedding compression {self.kind!r} needs buckets >= 1")
        if self.kind == "binary_code":
            if not 1 <= self.bits <= 32 or not 1 <= self.num_blocks <= self.bits:
                raise ConfigError(f"binary_code: need 1 <= num_bits <= 32 and 1 <= num_blocks <= num_bits, got "
                                  f"{self.bits}, {self.num_blocks}")
            if self.strategy not in ("succession", "skip"):
                raise ConfigError(f"binary_code strategy {self.strategy!r}: expected 'succession' or 'skip'")
            if self.block_bits is not None and (self.strategy != "succession" or not 1 <= self.block_bits <= self.bits):
                raise ConfigError(f"binary_code block_bits={self.block_bits}: needs strategy 'succession' and "
                                  f"1 <= block_bits <= num_bits ({self.bits})")
        if self.fusion is not None and self.fusion not in FUSIONS:
            raise ConfigError(f"embedding fusion {self.fusion!r}: expected one of {FUSIONS}")

    @property
    def bits(self) -> int:
        return self.num_bits or max(1, math.ceil(math.log2(self.vocab_size)))

    @property
    def blocks(self) -> tuple[tuple[int, ...], ...]:
        """'binary_code': the code's bit positions read by each block (they partition 0..L-1)."""
        L = self.bits
        if self.strategy == "skip":
            return tuple(tuple(range(r, L, self.num_blocks)) for r in range(self.num_blocks))
        t = self.block_bits or math.ceil(L / self.num_blocks)
        return tuple(tuple(range(a, min(a + t, L))) for a in range(0, L, t))

    @property
    def block_offsets(self) -> tuple[int, ...]:
        """'binary_code': first row of each block's slice of the table."""
        sizes = [2 ** len(b) for b in self.blocks]
        return tuple(sum(sizes[:r]) for r in range(len(sizes)))

    @property
    def num_lookups(self) -> int:
        return {"full": 1, "hash": 1, "double_hash": 2, "qr": 2, "binary_code": len(self.blocks)}[self.kind]

    @property
    def num_rows(self) -> int:
        if self.kind == "full":
            return self.vocab_size
        if self.kind in ("hash", "double_hash"):
            return self.buckets
        if self.kind == "qr":
            return self.buckets + math.ceil(self.vocab_size / self.buckets)
        return sum(2 ** len(b) for b in self.blocks)

    @property
    def combine(self) -> str:
        return self.fusion or "sum"

    def indices(self, ids: jax.Array) -> jax.Array:
        """Row indices `[..., K]` (int32) of ids `[...]`."""
        ids = jnp.asarray(ids)
        if self.kind == "full":
            return jnp.clip(ids, 0, self.vocab_size - 1).astype(jnp.int32)[..., None]  # the full table has no spare rows
        if self.kind == "hash":
            return (fmix32(ids) % jnp.uint32(self.buckets)).astype(jnp.int32)[..., None]
        if self.kind == "double_hash":
            n = jnp.uint32(self.buckets)
            return jnp.stack([fmix32(ids) % n, fmix32(fmix32(ids) ^ jnp.uint32(0x9E3779B9)) % n], -1).astype(jnp.int32)
        if self.kind == "qr":
            m, x = self.buckets, ids.astype(jnp.int32)
            quotient = jnp.minimum(x // m, math.ceil(self.vocab_size / m) - 1)  # ids beyond V share the last quotient row
            return jnp.stack([x % m, m + quotient], -1)
        return self._binary_code(ids)

    def _binary_code(self, ids: jax.Array) -> jax.Array:
        bit = (mix_bits(ids, self.bits)[..., None] >> jnp.arange(self.bits, dtype=jnp.uint32)) & 1  # [..., L], bit i = 2^i
        out = []
        for positions, offset in zip(self.blocks, self.block_offsets):
            weights = jnp.asarray([2 ** k for k in range(len(positions))], jnp.uint32)
            out.append(jnp.sum(bit[..., jnp.asarray(positions)] * weights, axis=-1).astype(jnp.int32) + offset)
        return jnp.stack(out, -1)


def table_bytes(scheme: IndexScheme, dim: int, bytes_per_value: int = 4) -> int:
    """Exact parameter memory of the scheme's table."""
    return scheme.num_rows * dim * bytes_per_value


def fuse(vectors: jax.Array, how: str) -> jax.Array:
    """`[..., K, D]` -> `[..., D]` (sum / mean / prod) or `[..., K * D]` (concat)."""
    if how == "sum":
        return vectors.sum(-2)
    if how == "mean":
        return vectors.mean(-2)
    if how == "prod":
        return jnp.prod(vectors, axis=-2)
    return vectors.reshape(vectors.shape[:-2] + (-1,))
