"""PCF-GNN: Pre-trained Cross-Feature GNN (Li et al., arXiv 2105.07752; notes
shared/specs/recsys-methods.md §10).

Explicit cross features (the CTR of a pair of feature values, e.g. (user, genre)) help CTR
models but need a table entry per observed pair and know nothing of unseen pairs. PCF-GNN
puts feature values as nodes of a heterogeneous graph whose edges are the training split's
co-occurring pairs, pre-trains a GNN to predict each edge's statistic, then feeds its
predictions to the CTR model as features; storage is the node embeddings, not the pairs.

    target      s_ab = (clicks_ab + m p) / (impressions_ab + m)     smoothed pair CTR, prior p
    encoder     h^{l+1}_v = relu(W_self h^l_v + mean_{u in N(v)} W_{field(u)} h^l_u)   (relation-typed
                mean aggregation, `layers` rounds, `jax.ops.segment_sum`) [I: R-GCN / GraphSAGE style]
    predictor   s^_ab = sigmoid(MLP([h_a, h_b, h_a * h_b]))
    loss        sum_ab impressions_ab * BCE(s_ab, s^_ab) / sum impressions    (full graph, Adam)
    feature     logit(s^_ab) - logit(p), a numeric field `cross_<a>_<b>` per chosen pair

Leakage [I]: a train row's own label is in the statistic of its pairs, so train rows get
out-of-fold features: train rows are cut into `folds` parts, and rows of part k are scored by
the model pre-trained without part k; valid and test rows by the model pre-trained on all of
train. `method='explicit'` is the statistical baseline under the same protocol: the smoothed
CTR looked up in the pair table (unseen pairs: the prior).

Config (`config.cross_features`, empty = off): method, pairs, dim, layers, steps, lr,
smoothing (m), folds, seed; `add_cross_features` applies it to a dataset.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec.data.dataset import LABELS, Dataset
from jaxrec.data.features import Numeric
from jaxrec.errors import ConfigError
from jaxrec.nn import MLP

MOVIELENS_PAIRS = (("user_id", "genre_first"), ("user_id", "release_year"), ("item_id", "age_bucket"),
                   ("item_id", "occupation"), ("item_id", "gender"), ("item_id", "zip_prefix"))


@dataclasses.dataclass(frozen=True)
class CrossOptions:
    """`config.cross_features` (module docstring)."""

    method: str = "pcf_gnn"           # 'pcf_gnn' | 'explicit'
    pairs: tuple = MOVIELENS_PAIRS
    dim: int = 16
    layers: int = 2
    steps: int = 300
    lr: float = 0.01
    smoothing: float = 10.0
    folds: int = 2
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))
        if self.method not in ("pcf_gnn", "explicit"):
            raise ConfigError(f"cross_features.method={self.method!r}: expected 'pcf_gnn' or 'explicit'")
        if any(len(p) != 2 for p in self.pairs) or not self.pairs:
            raise ConfigError(f"cross_features.pairs={self.pairs!r}: expected pairs of feature names")
        if self.folds < 2:
            raise ConfigError(f"cross_features.folds={self.folds}: needs >= 2 (out-of-fold train features)")

    @classmethod
    def from_config(cls, cfg) -> "CrossOptions":
        """From `config.cross_features`; unknown keys raise ConfigError naming them."""
        opts = dict(cfg)
        known = {f.name for f in dataclasses.fields(cls)}
        if set(opts) - known:
            raise ConfigError(f"unknown config key(s) {sorted('cross_features.' + k for k in set(opts) - known)}; valid: {sorted(known)}")
        return cls(**opts)


@dataclasses.dataclass(frozen=True)
class PairStats:
    """Observed pairs of every chosen field pair in some rows: node ids `a`, `b` `[E]` (global),
    relation (pair index) `[E]`, impressions and clicks `[E]`."""

    a: np.ndarray
    b: np.ndarray
    pair: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray

    def smoothed(self, prior: float, m: float) -> np.ndarray:
        """(clicks + m prior) / (impressions + m), `[E]`."""
        return (self.clicks + m * prior) / (self.impressions + m)

    def table_bytes(self) -> int:
        """An explicit cross-feature table: an 8-byte key and a 4-byte value per pair [I]."""
        return len(self.a) * 12


def node_offsets(dataset: Dataset, pairs) -> dict[str, int]:
    """First node id of each field in `pairs` (node = offset + the field's id)."""
    fields = list(dict.fromkeys(f for p in pairs for f in p))
    sizes = [int(dataset.feature(f).vocab_size) for f in fields]
    return dict(zip(fields, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist())) | {"__total__": int(sum(sizes))}


def pair_stats(columns, pairs, offsets) -> PairStats:
    """Impressions and clicks of every observed value pair of `columns` (a split's rows)."""
    out = []
    for k, (fa, fb) in enumerate(pairs):
        key = columns[fa].astype(np.int64) * (1 << 32) + columns[fb].astype(np.int64)
        uniq, inv, imps = np.unique(key, return_inverse=True, return_counts=True)
        clicks = np.bincount(inv, weights=columns[LABELS], minlength=len(uniq))
        out.append(((uniq >> 32) + offsets[fa], (uniq & 0xFFFFFFFF) + offsets[fb], np.full(len(uniq), k), imps, clicks))
    a, b, pair, imps, clicks = (np.concatenate(x) for x in zip(*out))
    return PairStats(a.astype(np.int32), b.astype(np.int32), pair.astype(np.int32), imps.astype(np.float32), clicks.astype(np.float32))


class CrossFeatureGNN(nn.Module):
    """Node embeddings + relation-typed mean aggregation + edge predictor (module docstring)."""

    num_nodes: int
    num_relations: int
    dim: int = 16
    layers: int = 2

    def setup(self):
        self.embedding = self.param("embedding", nn.initializers.normal(0.1), (self.num_nodes, self.dim))
        self.self_weights = [nn.Dense(self.dim, name=f"self_{l}") for l in range(self.layers)]
        self.relation_weights = [self.param(f"relation_{l}", nn.initializers.lecun_normal(batch_axis=(0,)),
                                            (self.num_relations, self.dim, self.dim)) for l in range(self.layers)]
        self.predictor = MLP((2 * self.dim,), out_dim=1)

    def encode(self, senders: jax.Array, receivers: jax.Array, relations: jax.Array) -> jax.Array:
        """Node states `[num_nodes, dim]` after `layers` rounds over the edges `[E]`."""
        h = self.embedding
        degree = jnp.maximum(jax.ops.segment_sum(jnp.ones_like(receivers, jnp.float32), receivers, self.num_nodes), 1.0)
        for l in range(self.layers):
            typed = jnp.einsum("nd,rdk->rnk", h, self.relation_weights[l])  # every node under every relation: [R, N, D]
            msg = typed[relations, senders]
            h = nn.relu(self.self_weights[l](h) + jax.ops.segment_sum(msg, receivers, self.num_nodes) / degree[:, None])
        return h

    def predict(self, h: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
        """Logits `[E]` of the pairs (a, b)."""
        return self.predictor(jnp.concatenate([h[a], h[b], h[a] * h[b]], -1))[:, 0]

    def __call__(self, senders, receivers, relations, a, b):
        return self.predict(self.encode(senders, receivers, relations), a, b)


def message_edges(stats: PairStats, offsets: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both directions of every observed pair, typed by the sender's field."""
    fields = [f for f in offsets if f != "__total__"]
    field_of = np.zeros(offsets["__total__"], np.int32)
    for i, f in enumerate(fields):
        end = ([offsets[g] for g in fields[i + 1:]] or [offsets["__total__"]])[0]
        field_of[offsets[f]:end] = i
    senders = np.concatenate([stats.a, stats.b])
    receivers = np.concatenate([stats.b, stats.a])
    return senders, receivers, field_of[senders]


def pretrain(stats: PairStats, offsets: dict, opts: CrossOptions, prior: float):
    """Pre-trains a `CrossFeatureGNN` on the pairs' smoothed CTRs; returns a scorer
    `(a [N], b [N]) -> s^ [N]` (numpy), the final weighted BCE and the parameter count."""
    fields = [f for f in offsets if f != "__total__"]
    model = CrossFeatureGNN(offsets["__total__"], len(fields), opts.dim, opts.layers)
    senders, receivers, relations = (jnp.asarray(x) for x in message_edges(stats, offsets))
    a, b = jnp.asarray(stats.a), jnp.asarray(stats.b)
    target = jnp.asarray(stats.smoothed(prior, opts.smoothing))
    weight = jnp.asarray(stats.impressions / stats.impressions.sum())
    params = model.init(jax.random.PRNGKey(opts.seed), senders, receivers, relations, a[:1], b[:1])
    tx = optax.adam(opts.lr)
    opt_state = tx.init(params)

    def loss_fn(p):
        logits = model.apply(p, senders, receivers, relations, a, b)
        return jnp.sum(weight * optax.sigmoid_binary_cross_entropy(logits, target))

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p)
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    for _ in range(opts.steps):
        params, opt_state, loss = step(params, opt_state)
    h = model.apply(params, senders, receivers, relations, method=CrossFeatureGNN.encode)

    def score(qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
        return np.asarray(jax.nn.sigmoid(model.apply(params, h, jnp.asarray(qa), jnp.asarray(qb), method=CrossFeatureGNN.predict)))

    n_params = sum(int(x.size) for x in jax.tree.leaves(params))
    return score, float(loss), n_params


def explicit_scorer(stats: PairStats, prior: float, m: float):
    """The statistical baseline: `(a, b) -> smoothed CTR of the pair`, the prior if unseen."""
    key = stats.a.astype(np.int64) * (1 << 32) + stats.b
    order = np.argsort(key)
    key, value = key[order], stats.smoothed(prior, m)[order]

    def score(qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
        q = qa.astype(np.int64) * (1 << 32) + qb
        pos = np.clip(np.searchsorted(key, q), 0, max(len(key) - 1, 0))
        return np.where(key[pos] == q, value[pos], prior) if len(key) else np.full(len(q), prior)

    return score


def add_cross_features(dataset: Dataset, opts: CrossOptions) -> tuple[Dataset, dict]:
    """The dataset with a numeric feature `cross_<a>_<b>` per pair (module docstring) and a report
    `{method, bytes, explicit_table_bytes, pretrain_loss, ...}`."""
    names = {f.name for f in dataset.features}
    missing = sorted({f for p in opts.pairs for f in p} - names)
    if missing:
        raise ConfigError(f"cross_features.pairs name {missing}, which are not features; features: {sorted(names)}")
    offsets = node_offsets(dataset, opts.pairs)
    train = dataset.splits["train"]

    def scorer(rows):
        """(a, b) -> logit(s^) - logit(prior), fitted on train rows `rows` only (prior included)."""
        cols = {k: v[rows] for k, v in train.items()}
        stats, prior = pair_stats(cols, opts.pairs, offsets), float(np.mean(cols[LABELS]))
        if opts.method == "explicit":
            score, loss, n_params = explicit_scorer(stats, prior, opts.smoothing), None, 0
        else:
            score, loss, n_params = pretrain(stats, offsets, opts, prior)
        logit = lambda x: np.log(x / (1 - x))  # noqa: E731
        return (lambda qa, qb: logit(np.clip(score(qa, qb), 1e-6, 1 - 1e-6)) - logit(prior)), stats, loss, n_params

    fold = np.random.default_rng(opts.seed).permutation(len(train[LABELS])) % opts.folds
    full_score, full_stats, loss, n_params = scorer(np.arange(len(train[LABELS])))
    fold_scores = [scorer(np.flatnonzero(fold != k))[0] for k in range(opts.folds)]
    splits = {s: dict(cols) for s, cols in dataset.splits.items()}
    new = []
    for fa, fb in opts.pairs:
        name = f"cross_{fa}_{fb}"
        new.append(Numeric(name))
        for s, cols in splits.items():
            qa, qb = cols[fa].astype(np.int64) + offsets[fa], cols[fb].astype(np.int64) + offsets[fb]
            if s == "train":  # out of fold: a row's own label never reaches its feature
                x = np.empty(len(qa))
                for k in range(opts.folds):
                    x[fold == k] = fold_scores[k](qa[fold == k], qb[fold == k])
            else:
                x = full_score(qa, qb)
            cols[name] = x.astype(np.float32)
    report = {"method": opts.method, "pairs": [list(p) for p in opts.pairs], "observed_pairs": int(len(full_stats.a)),
              "explicit_table_bytes": full_stats.table_bytes(),
              "bytes": full_stats.table_bytes() if opts.method == "explicit" else n_params * 4, "pretrain_loss": loss}
    return dataclasses.replace(dataset, features=dataset.features + tuple(new), splits=splits), report
