"""The one embedding layer every model uses: feature specs in, `[B, F, D]` field embeddings out.

Tables live in their own Flax variable collection, `EMBEDDING` ("sparse" side of the
TrainState), apart from the dense `params`, so the trainer can update them with a different
(row-wise, sparse) optimizer and later shard them by row. A table is created per feature,
or per `group` when several features share one (e.g. a history and the target item).

Row 0 of each table is the "unknown / padding" id. Sequence (multi-hot) features are pooled
over their first `length` tokens with the feature's combiner; numeric float features are
embedded as `value * v_field` (one learned vector per field), so every field becomes one
`D`-vector token.
"""

from __future__ import annotations

from typing import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.data.features import Feature, Numeric, Sequence, is_embedded, lengths_key

EMBEDDING = "embedding"  # Flax collection holding the tables


def table_name(feature: Feature) -> str:
    return getattr(feature, "group", None) or feature.name


def pool(emb: jnp.ndarray, lengths: jnp.ndarray, combiner: str) -> jnp.ndarray:
    """Pools token embeddings `[B, L, D]` over the first `lengths[b]` tokens -> `[B, D]`.

    'sum' adds them, 'mean' divides by max(length, 1) (an empty list pools to zeros).
    """
    mask = (jnp.arange(emb.shape[1])[None, :] < lengths[:, None]).astype(emb.dtype)
    total = jnp.einsum("bld,bl->bd", emb, mask)
    if combiner == "sum":
        return total
    if combiner == "mean":
        return total / jnp.maximum(lengths, 1).astype(emb.dtype)[:, None]
    raise ValueError(f"unknown combiner {combiner!r}; expected 'mean' or 'sum'")


class EmbeddingLayer(nn.Module):
    """Looks up every field of a batch.

    Attributes:
      features: resolved feature specs (`vocab_size` set), in field order.
      dim: embedding width D.
      init_std: std of the normal initializer of the tables.
    """

    features: tuple[Feature, ...]
    dim: int
    init_std: float = 1e-4
    dtype: jnp.dtype = jnp.float32

    def tables(self) -> dict[str, jnp.ndarray]:
        """Creates (at init) or fetches the tables `{name: [vocab_size, D]}`."""
        sizes: dict[str, int] = {}
        for f in self.features:
            if is_embedded(f):
                name = table_name(f)
                sizes[name] = max(sizes.get(name, 0), int(f.vocab_size))
        init: Callable = nn.initializers.normal(self.init_std)
        return {
            name: self.variable(EMBEDDING, name, lambda n=n: init(self.make_rng("params"), (n, self.dim), jnp.float32)).value
            for name, n in sizes.items()
        }

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
        """batch: ids `[B]` / `[B, L]` (+ lengths `[B]`), floats `[B]` -> `[B, F, D]`."""
        tables = self.tables()
        fields = []
        for f in self.features:
            if not is_embedded(f):
                v = self.param(f"numeric_{f.name}", nn.initializers.normal(self.init_std), (self.dim,))
                fields.append(batch[f.name].astype(self.dtype)[:, None] * v.astype(self.dtype))
                continue
            emb = jnp.take(tables[table_name(f)], batch[f.name], axis=0).astype(self.dtype)
            if isinstance(f, Sequence):
                if f.combiner is None:
                    raise ValueError(f"feature {f.name!r} has combiner=None (a sequence for attention); "
                                     "EmbeddingLayer pools fields: give it a combiner or look it up with sequence()")
                emb = pool(emb, batch[lengths_key(f.name)], f.combiner)
            fields.append(emb)
        return jnp.stack(fields, axis=1)

    @property
    def num_fields(self) -> int:
        return len(self.features)
