"""AMTL: Adaptively-Masked Twins-based Layer, a per-value embedding size learned from frequency.

Paper: "Learning Effective and Efficient Embedding via an Adaptively-Masked Twins-based Layer"
(CIKM 2021; notes shared/specs/recsys-methods.md §6). After the embedding lookup, a mask over
the D dimensions is generated per feature value from its frequency, by two twin branches, one
for frequent and one for rare values [V]; the specifics below are [I]:

    u_v = log(1 + count_v) / log(1 + max count)           frequency feature in [0, 1]
    l   = u_v MLP_h(u_v) + (1 - u_v) MLP_l(u_v)            twin logits over sizes 1..D (a_v = u_v)
    p   = softmax(l),  k_v = argmax p                      the value's size is k_v + 1
    m_j = 1[j <= k_v]  (forward),   straight-through:  m~ = m + P - sg(P),  P_j = sum_{i >= j} p_i
    e'  = e * m~

`P_j` is the probability that the size exceeds j, so gradients reach the size distribution.
`per_value_dims` exports the learned sizes (storage keeps the first k_v + 1 dims of each value:
`jaxrec.embedding.packed` builds, saves and serves that compacted table).

Also [I], and configurable (`tables.<name>.amtl = {...}`, `AMTLOptions`):
  * counts are the value's occurrences in the train split (`add_frequency_columns` puts u_v
    beside each id in every split; values unseen in train get u = 0, the rare twin);
  * a size penalty  lambda * mean_batch(E[size] / D),  E[size] = sum_j P_j, is added to the
    loss (`AUX_LOSSES`). Nothing else pulls sizes down: at a trained optimum the loss'
    gradient w.r.t. a kept dimension's mask is ~0, so without it the sizes only drift;
  * `start='full'`: the twins' output layers start at zero and a learned per-size bias at +1 on
    size D, so the layer starts as the identity (every value keeps all D dims) and a
    warm-started model (`train.init_from`) starts exactly where it was; `start='uniform'`:
    random twins, zero bias (sizes start wherever the random logits put them).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.data.dataset import Dataset
from jaxrec.data.features import Sequence as SequenceFeature, lengths_key
from jaxrec.embedding.specs import STARTS, AMTLOptions, table_name  # noqa: F401 (AMTLOptions, STARTS: re-exported)
from jaxrec.errors import ConfigError
from jaxrec.nn import MLP

def frequency_key(feature: str) -> str:
    """Batch key of a feature's frequency feature u (`[B]`, or `[B, L]` for a sequence)."""
    return f"{feature}_freq"


def table_counts(dataset: Dataset, table: str) -> np.ndarray:
    """Occurrences `[V]` of every row id of `table` in the train split, over all the features that
    read it (a sequence's tokens within its length)."""
    feats = [f for f in dataset.features if table_name(f) == table]
    if not feats:
        raise ConfigError(f"amtl: no feature reads a table {table!r}")
    counts = np.zeros(max(int(f.vocab_size) for f in feats), np.int64)
    train = dataset.splits["train"]
    for f in feats:
        ids = np.asarray(train[f.name])
        if isinstance(f, SequenceFeature):
            ids = ids[np.arange(ids.shape[1])[None, :] < np.asarray(train[lengths_key(f.name)])[:, None]]
        counts += np.bincount(ids.reshape(-1), minlength=len(counts))[:len(counts)]
    return counts


def add_frequency_columns(dataset: Dataset, tables: Sequence[str]) -> Dataset:
    """The dataset with `frequency_key(f)` columns (u of each id, from train counts) for every
    feature reading one of `tables`, added to every split and to `Dataset.inputs`."""
    splits = {s: dict(cols) for s, cols in dataset.splits.items()}
    keys = []
    for t in tables:
        u = frequency_feature(table_counts(dataset, t))
        for f in dataset.features:
            if table_name(f) == t:
                keys.append(frequency_key(f.name))
                for cols in splits.values():
                    cols[keys[-1]] = u[np.clip(np.asarray(cols[f.name]), 0, len(u) - 1)]
    return dataclasses.replace(dataset, splits=splits, inputs=dataset.inputs + tuple(k for k in keys if k not in dataset.inputs))


def frequency_feature(counts: np.ndarray) -> np.ndarray:
    """u_v = log(1 + count) / log(1 + max count), `[V]` float32 in [0, 1]."""
    counts = np.asarray(counts, np.float64)
    return (np.log1p(counts) / max(np.log1p(counts.max()), 1e-12)).astype(np.float32)


def straight_through_mask(logits: jax.Array) -> jax.Array:
    """Prefix mask `[..., D]` of size argmax + 1 in the forward pass; gradients through the
    tail sums of softmax(logits) (module docstring)."""
    p = jax.nn.softmax(logits, axis=-1)
    tail = jnp.flip(jnp.cumsum(jnp.flip(p, -1), -1), -1)          # P_j = sum_{i >= j} p_i
    size = jnp.argmax(logits, axis=-1)[..., None]
    hard = (jnp.arange(logits.shape[-1]) <= size).astype(logits.dtype)
    return hard + (tail - jax.lax.stop_gradient(tail))  # exactly `hard` forward (the bracket is 0)


class AMTLMask(nn.Module):
    """frequency feature u `[...]` -> mask `[..., dim]` (module docstring)."""

    dim: int
    hidden: Sequence[int] = (32,)
    start: str = "full"

    def setup(self):
        # 'full': zero output layers and +1 on size D, so at init every value keeps all D dims exactly
        # and a unit of learning moves it (a large margin would take many steps to overcome)
        out = dict(kernel_init=nn.initializers.zeros) if self.start == "full" else {}
        self.high = nn.Sequential([MLP(self.hidden), nn.Dense(self.dim, **out)])  # the twin for frequent values
        self.low = nn.Sequential([MLP(self.hidden), nn.Dense(self.dim, **out)])   # ... and for rare ones
        margin = 1.0 if self.start == "full" else 0.0
        self.size_bias = self.param("size_bias", lambda _, n: jnp.zeros(n).at[-1].set(margin), (self.dim,))

    def logits(self, u: jax.Array) -> jax.Array:
        """Size logits `[..., dim]`: the twins mixed by frequency, plus the per-size bias."""
        x = u[..., None]
        return x * self.high(x) + (1.0 - x) * self.low(x) + self.size_bias

    def mask_and_size(self, u: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(mask `[..., dim]`, E[size] = sum_j P_j `[...]` in 1..dim, what the penalty weighs), from
        one evaluation of the twins."""
        logits = self.logits(u)
        size = jnp.sum(jax.nn.softmax(logits, -1) * jnp.arange(1, self.dim + 1), -1)
        return straight_through_mask(logits), size

    def __call__(self, u: jax.Array) -> jax.Array:
        return straight_through_mask(self.logits(u))


def per_value_dims(module: AMTLMask, variables, u: np.ndarray) -> np.ndarray:
    """The learned size of every value, `[V]` ints in 1..dim (what storage keeps)."""
    logits = module.apply(variables, jnp.asarray(u), method=AMTLMask.logits)
    return np.asarray(jnp.argmax(logits, -1)) + 1


def mask_name(table: str) -> str:
    """Name of a table's `AMTLMask` inside an `EmbeddingLayer`."""
    return f"amtl_{table}"


def learned_dims(dense_params, options: Mapping[str, AMTLOptions], dataset: Dataset) -> dict[tuple[str, ...], np.ndarray]:
    """Every AMTL table's per-value sizes in a trained model.

    Args:
      dense_params: the model's dense parameters (TrainState `params['dense']`).
      options: `{table: AMTLOptions}` of the AMTL tables.
      dataset: the training data (for the train counts that made u).
    Returns:
      `{embedding layer path + (table,): sizes [V] in 1..D}`.
    """
    from flax import traverse_util

    flat = traverse_util.flatten_dict(dense_params)
    out = {}
    for table, opts in options.items():
        u = frequency_feature(table_counts(dataset, table))
        for path in sorted({p[:p.index(mask_name(table)) + 1] for p in flat if mask_name(table) in p}):
            sub = traverse_util.unflatten_dict({p[len(path):]: v for p, v in flat.items() if p[:len(path)] == path})
            module = AMTLMask(int(sub["size_bias"].shape[0]), opts.hidden, opts.start)
            out[path[:-1] + (table,)] = per_value_dims(module, {"params": sub}, u)
    return out


def masked_bytes(dims: np.ndarray, bytes_per_value: int = 4) -> int:
    """Embedding memory when each value stores only its first `dims[v]` dimensions."""
    return int(np.sum(dims)) * bytes_per_value
