"""The token layout of semantic IDs (SIDs): an item is L codes (c_1..c_L), c_i in [0, K_i).

    token ids:  0 pad | 1 bos | 2 eos | 3 .. 3+L-1 placeholders <sp_1..sp_L> | level codes
    level i code c  ->  token  offset_i + c,   offset_1 = 3 + L,  offset_{i+1} = offset_i + K_i
    vocab_size = offset_L + K_L

Level-specific code tokens (NEZHA's `<a_c><b_c><c_c>`, spec section 1): the same code at two
levels is two tokens. A history of items is `[bos] + tokens(item_1) + ... + tokens(item_n)`
(the last `max_history` items, left-padded with `pad` to a fixed width `1 + max_history * L`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.errors import DataError

PAD, BOS, EOS = 0, 1, 2
NUM_SPECIAL = 3


@dataclasses.dataclass(frozen=True)
class SIDVocab:
    """Token layout (module docstring) for codebooks of sizes `codebook_sizes = (K_1, ..., K_L)`."""

    codebook_sizes: tuple

    def __post_init__(self):
        sizes = tuple(int(k) for k in self.codebook_sizes)
        if not sizes or min(sizes) <= 0:
            raise ValueError(f"SIDVocab.codebook_sizes={self.codebook_sizes}: expected L >= 1 positive sizes")
        object.__setattr__(self, "codebook_sizes", sizes)

    pad_id = PAD
    bos_id = BOS
    eos_id = EOS

    @property
    def num_levels(self) -> int:
        """L."""
        return len(self.codebook_sizes)

    @property
    def placeholder_ids(self) -> tuple:
        """The L placeholder tokens `<sp_1..sp_L>`."""
        return tuple(range(NUM_SPECIAL, NUM_SPECIAL + self.num_levels))

    @property
    def offsets(self) -> tuple:
        """Token id of code 0 at each level, `[L]`."""
        return tuple(int(o) for o in NUM_SPECIAL + self.num_levels + np.concatenate([[0], np.cumsum(self.codebook_sizes)[:-1]]))

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL + self.num_levels + sum(self.codebook_sizes)

    @property
    def max_codebook_size(self) -> int:
        return max(self.codebook_sizes)

    def check_codes(self, codes: np.ndarray | Sequence[Sequence[int]], name: str = "codes") -> np.ndarray:
        """`codes [..., L]` as int64, each level within its codebook (DataError naming `name` otherwise)."""
        codes = np.asarray(codes)
        if codes.ndim == 0 or codes.shape[-1] != self.num_levels:
            raise DataError(f"{name}: expected [..., L={self.num_levels}] codes, got shape {codes.shape}")
        if codes.size and not np.issubdtype(codes.dtype, np.integer):
            raise DataError(f"{name}: codes must be integers, got dtype {codes.dtype}")
        codes = codes.astype(np.int64)
        bad = (codes < 0) | (codes >= np.asarray(self.codebook_sizes))
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            raise DataError(f"{name}{list(at)} = {codes[at]} outside level {at[-1]}'s codebook "
                            f"[0, {self.codebook_sizes[at[-1]]})")
        return codes

    def encode(self, codes: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Item codes `[..., L]` -> tokens `[..., L]` (`offset_i + c_i`)."""
        return (self.check_codes(codes) + np.asarray(self.offsets)).astype(np.int32)

    def decode(self, tokens: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Tokens `[..., L]` -> codes `[..., L]`; a token that is not a code of its level is a DataError."""
        tokens = np.asarray(tokens, np.int64)
        if tokens.ndim == 0 or tokens.shape[-1] != self.num_levels:
            raise DataError(f"tokens: expected [..., L={self.num_levels}], got shape {tokens.shape}")
        return self.check_codes(tokens - np.asarray(self.offsets), "tokens - offsets").astype(np.int32)

    def history(self, item_codes: np.ndarray, histories: Sequence[Sequence[int]], max_history: int) -> np.ndarray:
        """Prompts of item histories, `[B, 1 + max_history * L]` int32, left-padded with pad.

        Args:
          item_codes: `[num_items, L]` codes of every item (row = item id).
          histories: B lists of item ids, oldest first; only the last `max_history` are kept.
          max_history: the fixed number of history items a prompt holds.
        """
        table = self.encode(np.asarray(item_codes))
        if table.ndim != 2:
            raise DataError(f"item_codes: expected [num_items, L], got shape {table.shape}")
        width = 1 + int(max_history) * self.num_levels
        out = np.full((len(histories), width), PAD, np.int32)
        for b, items in enumerate(histories):
            items = np.asarray(items, np.int64).reshape(-1)
            if items.size and (items.min() < 0 or items.max() >= len(table)):
                raise DataError(f"history row {b}: item id outside [0, {len(table)})")
            seq = np.concatenate([[BOS], table[items[len(items) - min(len(items), max_history):]].reshape(-1)])
            out[b, width - len(seq):] = seq
        return out


def sid_prompts(item_tokens: jax.Array, history: jax.Array, lengths: jax.Array) -> jax.Array:
    """`SIDVocab.history` on the device, for right-padded histories (`jaxrec.data.sequential`).

    Args:
      item_tokens: `[V, L]` int32 token ids of every item id (`SIDVocab.encode(item_codes)`).
      history: `[B, H]` item ids, oldest first, right-padded (row b's items at 0 .. lengths[b] - 1).
      lengths: `[B]` real items per row, 0 .. H.
    Returns:
      `[B, 1 + H L]` int32: `[pad ..., bos, tokens(h_1), ..., tokens(h_n)]`, left-padded with pad 0,
      so every row's last item ends at the last column (as `jaxrec.generate` expects).
    """
    b, h = history.shape
    levels = item_tokens.shape[1]
    flat = item_tokens[history.astype(jnp.int32)].reshape(b, h * levels)
    seq = jnp.concatenate([jnp.full((b, 1), BOS, jnp.int32), flat.astype(jnp.int32)], axis=1)   # [B, 1 + H L]
    width = seq.shape[1]
    shift = (h - jnp.clip(lengths.astype(jnp.int32), 0, h)) * levels                              # [B] pads on the left
    j = jnp.arange(width)[None, :] - shift[:, None]
    return jnp.where(j >= 0, jnp.take_along_axis(seq, jnp.maximum(j, 0), axis=1), PAD).astype(jnp.int32)
