"""Generative recommenders as registry models: 'tiger' and 'nezha' read the next-item batch of
`jaxrec.data.sequential` and generate the next item's semantic ID.

    batch     history [B, H] item ids (right-padded), history_length [B], target [B]
    codes     item_codes [V, L]: the semantic ID of every item id (row 0, padding, unused),
              from the pre-training stage `jaxrec.pretrain.semantic_ids.sid_constants`
    prompt    sid_prompts(tokens(item_codes), history, history_length)  [B, 1 + H L]
              = [pad .., bos, tokens(h_1) .. tokens(h_n)]               (SIDVocab layout)
    TIGER     logits [B, L, V_tok] of the target's tokens, teacher-forced (`TIGER`)
    NEZHA     logits [B, L, K_max] of the target's codes, one backbone pass (`NEZHA`)

Training output: `{'logits', 'targets' [B, L]}` (TIGER: the target tokens offset_i + c_i over the
whole token vocabulary, as TIGER trains; NEZHA: the codes c_i over level i's codebook), read by
the 'generative' task's loss: sum over levels of the cross-entropy, mean over the batch.
Evaluation decodes (`jaxrec.generate.nezha.recommend`): constrained beam search over the KV
cache (TIGER) or NEZHA's head beam search with the hash-set verifier.

The backbone is a `jaxrec.models.text.GPT` built from this model's backbone keys (width, depth,
num_heads, ...), sized for the vocabulary of `codebook_sizes` and prompts of H items
(max_len = 1 + (H + 1) L). The `sid_*` keys configure the pre-training stage that makes the codes.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.data.features import lengths_key
from jaxrec.errors import ConfigError
from jaxrec.models.frozen import Frozen
from jaxrec.models.generative.nezha import make_nezha
from jaxrec.models.generative.sid import SIDVocab, sid_prompts
from jaxrec.models.generative.tiger import make_tiger

BACKBONE_KEYS = ("width", "depth", "num_heads", "num_kv_heads", "mlp_width", "position", "activation", "norm",
                 "dropout", "dtype")


class SIDRecommender(nn.Module):
    """Shared part of 'tiger' / 'nezha' (module docstring). Config keys are the attributes below.

    Attributes:
      item_codes: `Frozen [V, L] int` item codes (row = item id; filled by the pre-training stage).
      codebook_sizes: (K_1 .. K_L) (filled with the codes).
      width .. dtype: the GPT backbone's (`jaxrec.models.text.GPT`).
      sid_source: 'text' (MiniLM vectors of the items' title + genres + year, MovieLens), 'collab'
        (`sid_table`, a learned item table .npy `[N, d]`, e.g. SASRec's via `eval.py
        --export_item_table`), 'both' (the two concatenated), or 'file' (`sid_path`, a .npy of codes
        `[N, L]`, row i = item id i + 1).
      sid_levels, sid_codebook_size, sid_method ('rq_kmeans' | 'rq_vae'), sid_balanced, sid_seed:
        the quantiser's (`jaxrec.pretrain.semantic_ids.semantic_ids`; a unique level is always added).
      history_field: the batch key of the history.
    """

    features: tuple = ()
    item_codes: Frozen | None = None
    codebook_sizes: tuple = ()
    width: int = 64
    depth: int = 2
    num_heads: int = 2
    num_kv_heads: int = 0
    mlp_width: int = 256
    position: str = "rope"
    activation: str = "gelu"
    norm: str = "layernorm"
    dropout: float = 0.1
    dtype: str = "float32"
    sid_source: str = "text"
    sid_path: str = ""
    sid_table: str = ""
    sid_levels: int = 3
    sid_codebook_size: int = 32
    sid_method: str = "rq_kmeans"
    sid_balanced: bool = True
    sid_seed: int = 0
    history_field: str = "history"

    EMBEDDING_LAYERS = None  # the token table is the backbone's dense parameter
    DATA_FIELDS = ("item_codes", "codebook_sizes")
    MAKE_NET = None  # (SIDVocab, H, **backbone options) -> the wrapped module
    GENERATES_SIDS = True  # trains and evaluates with task.name='generative' (jaxrec.train.tasks)

    @property
    def vocab(self) -> SIDVocab:
        return SIDVocab(tuple(self.codebook_sizes))

    @property
    def max_history(self) -> int:
        """H: the history feature's max_len."""
        spec = next((f for f in self.features if f.name == self.history_field), None)
        if spec is None or not spec.max_len:
            raise ConfigError(f"model {type(self).__name__} reads the item history {self.history_field!r} "
                              f"(dataset.name='sequential'); features: {[f.name for f in self.features]}")
        return int(spec.max_len)

    def backbone_options(self) -> dict:
        return {k: getattr(self, k) for k in BACKBONE_KEYS}

    def prompts(self, batch) -> jax.Array:
        """`[B, 1 + H L]` SID prompts of the batch's histories (`sid_prompts`)."""
        tokens = jnp.asarray(self.vocab.encode(self.item_codes.value))
        history = batch[self.history_field]
        return sid_prompts(tokens, history, batch[lengths_key(self.history_field)])

    def target_codes(self, batch) -> jax.Array:
        """`[B, L]` int32 codes of `batch['target']`."""
        return jnp.asarray(self.item_codes.value, jnp.int32)[batch["target"].astype(jnp.int32)]

    def setup(self):
        codes = self.item_codes.value if self.item_codes is not None else None
        if codes is None or codes.ndim != 2 or codes.shape[1] != len(self.codebook_sizes):
            raise ConfigError(f"model {type(self).__name__}: item_codes {None if codes is None else codes.shape} do not "
                              f"have one column per level of codebook_sizes={tuple(self.codebook_sizes)}")
        spec = next((f for f in self.features if f.name == self.history_field), None)
        if spec is not None and spec.vocab_size and codes.shape[0] != spec.vocab_size:
            raise ConfigError(f"model {type(self).__name__}: item_codes has {codes.shape[0]} rows, the history "
                              f"{self.history_field!r} has {spec.vocab_size} item ids (with padding 0)")
        self.net = wrapped_net(self)


class TIGERRecommender(SIDRecommender):
    """'tiger': the decoder-only TIGER (`jaxrec.models.generative.tiger`) over the batch's history."""

    MAKE_NET = staticmethod(make_tiger)

    def __call__(self, batch, train: bool = False) -> dict:
        """`{'logits' [B, L, V_tok], 'targets' [B, L]}` (the target item's tokens)."""
        codes = self.target_codes(batch)
        logits = self.net({"tokens": self.prompts(batch), "codes": codes}, train=train)
        return {"logits": logits, "targets": codes + jnp.asarray(self.vocab.offsets, jnp.int32)}


class NEZHARecommender(SIDRecommender):
    """'nezha': NEZHA (`jaxrec.models.generative.nezha`) over the batch's history."""

    MAKE_NET = staticmethod(make_nezha)

    def __call__(self, batch, train: bool = False) -> dict:
        """`{'logits' [B, L, K_max], 'targets' [B, L]}` (the target item's codes)."""
        codes = self.target_codes(batch)
        return {"logits": self.net({"tokens": self.prompts(batch), "codes": codes}, train=train), "targets": codes}


def wrapped_net(model: SIDRecommender) -> nn.Module:
    """The TIGER / NEZHA a registry model wraps (its `MAKE_NET`; parameters `params['net']`).
    A function, not a method: outside `setup` it builds an unbound module (a Flax method would
    make it a child of `model`), which `jaxrec.generate.nezha.recommend` applies to `params['net']`."""
    return type(model).MAKE_NET(model.vocab, model.max_history, **model.backbone_options())
