"""Synthetic CTR data with planted field interactions: ground truth for model experiments.

Generative model, for a row with ids `x_1..x_F` (field f has vocabulary `V_f`, id 0 unused):

    rank_f ~ truncated power law on {0..V_f-2}:   P(rank_f = r) ~ (r + 1)^-s  (continuous approx.)
    x_f     = 1 + pi_f(rank_f)                    pi_f: seeded bijection (Feistel), so popularity
                                                  is unrelated to the id value
    w_f(x), u_{t,f,k}(x) ~ N(0, 1)                i.i.d. per (seed, field, term, id, component),
                                                  computed from a hash, never stored

    l  = bias
       + first_order_scale * (1/sqrt(F)) * sum_f w_f(x_f)
       + interaction_scale * (1/sqrt(T)) * sum_{t=1..T} (1/sqrt(K)) * sum_{k=1..K} prod_{f in S_t} u_{t,f,k}(x_f)
    y  ~ Bernoulli(sigmoid(l + noise * eps)),     eps ~ N(0, 1)

`S_1..S_T` (T = num_interactions) are distinct sets of `interaction_order` fields drawn from
the seed (`planted_tuples`), K = latent_dim. Over random ids each of the two sums has unit
variance, so `first_order_scale` and `interaction_scale` are the standard deviations of the
first-order and interaction parts of the logit. With `interaction_order=1` every term is a
per-id effect, i.e. the data are purely first-order.

`true_prob` is the Bayes-optimal P(y=1 | ids) = E_eps[sigmoid(l + noise * eps)], computed with
the probit approximation sigmoid(l / sqrt(1 + pi * noise^2 / 8)); its AUC is the oracle AUC.

Every random draw is a counter-based hash (splitmix64) of (seed, stream, field, term, id or
row, component), so vocabularies up to 10^7 cost no memory, generation is chunked, and the
same spec gives identical arrays whatever `chunk_rows` is.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import numpy as np

from jaxrec.data.dataset import LABELS, Dataset, random_split, take
from jaxrec.data.encoding import splitmix64
from jaxrec.data.features import Categorical
from jaxrec.errors import ConfigError

TRUE_PROB = "true_prob"

# Hash stream tags, so that draws for different purposes are independent.
_SAMPLE, _PERM, _FIRST, _INTER, _NOISE, _LABEL, _TUPLES = range(1, 8)
_MASK64 = (1 << 64) - 1
_FEISTEL_ROUNDS = 4
_ENUMERATE_LIMIT = 100_000  # enumerate all field tuples when there are at most this many


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the generator (see the module docstring for the model).

    Attributes:
      rows: number of rows.
      num_fields: F, number of categorical fields `f0..f{F-1}`.
      vocab_sizes: ids per field including the unused id 0; an int for all fields or a
        tuple of F ints (each in [2, 2**31 - 1]).
      zipf_exponent: s >= 0; id popularity ~ rank^-s (0 = uniform).
      interaction_order: fields per planted term (1 = first-order only, 2 = pairs, 3 = triples).
      num_interactions: T, number of planted terms (distinct field tuples).
      latent_dim: K, rank of each planted term.
      first_order_scale: std of the first-order part of the logit.
      interaction_scale: std of the interaction part of the logit.
      noise: std of the Gaussian noise added to the logit before sampling the label.
      bias: logit intercept (controls the positive rate).
      seed: everything random derives from it.
    """

    rows: int = 100_000
    num_fields: int = 10
    vocab_sizes: int | tuple[int, ...] = 1000
    zipf_exponent: float = 1.1
    interaction_order: int = 2
    num_interactions: int = 10
    latent_dim: int = 4
    first_order_scale: float = 0.5
    interaction_scale: float = 1.0
    noise: float = 0.5
    bias: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.vocab_sizes, list):
            object.__setattr__(self, "vocab_sizes", tuple(self.vocab_sizes))
        _check_int("rows", self.rows, 1)
        _check_int("num_fields", self.num_fields, 1)
        if isinstance(self.vocab_sizes, tuple):
            if len(self.vocab_sizes) != self.num_fields:
                raise ConfigError(f"vocab_sizes has {len(self.vocab_sizes)} entries but num_fields={self.num_fields}")
            for i, v in enumerate(self.vocab_sizes):
                _check_int(f"vocab_sizes[{i}]", v, 2, 2**31 - 1)
        else:
            _check_int("vocab_sizes", self.vocab_sizes, 2, 2**31 - 1)
        _check_int("interaction_order", self.interaction_order, 1)
        if self.interaction_order > self.num_fields:
            raise ConfigError(f"interaction_order={self.interaction_order} must be <= num_fields={self.num_fields}")
        _check_int("num_interactions", self.num_interactions, 0)
        combos = math.comb(self.num_fields, self.interaction_order)
        if self.num_interactions > combos:
            raise ConfigError(
                f"num_interactions={self.num_interactions} exceeds the {combos} distinct tuples of "
                f"interaction_order={self.interaction_order} fields out of num_fields={self.num_fields}"
            )
        _check_int("latent_dim", self.latent_dim, 1)
        _check_int("seed", self.seed, 0)
        for name in ("zipf_exponent", "first_order_scale", "interaction_scale", "noise"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.number)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (isinstance(self.bias, (int, float, np.number)) and math.isfinite(self.bias)):
            raise ConfigError(f"bias must be a finite number, got {self.bias!r}")

    @property
    def field_vocab_sizes(self) -> tuple[int, ...]:
        """Vocabulary size of each field, `[F]`."""
        v = self.vocab_sizes
        return tuple(int(x) for x in v) if isinstance(v, tuple) else (int(v),) * self.num_fields


def _check_int(name: str, value, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name} must be {bound}, got {value}")


# ----------------------------------------------------------------------------- hashing


def _key(*parts: int) -> np.uint64:
    """Folds integers into one uint64 stream key."""
    h = np.uint64(0)
    for p in parts:
        h = splitmix64(h ^ np.uint64(int(p) & _MASK64))
    return np.uint64(h)


def _bits(hx: np.ndarray, key: np.uint64) -> np.ndarray:
    """Hash of pre-mixed counters `hx` (uint64 `[N]`) in stream `key` -> uint64 `[N]`."""
    return splitmix64(hx ^ key)


def _uniform(h: np.ndarray) -> np.ndarray:
    """uint64 `[N]` -> float64 uniform in (0, 1) `[N]` (53 bits)."""
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def _normal(h: np.ndarray) -> np.ndarray:
    """uint64 `[N]` -> float64 standard normal `[N]` (Box-Muller on the two 32-bit halves)."""
    u1 = ((h >> np.uint64(32)).astype(np.float64) + 0.5) * 2.0**-32
    u2 = (h & np.uint64(0xFFFFFFFF)).astype(np.float64) * 2.0**-32
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


# ----------------------------------------------------------------------------- ids


def _zipf_ranks(u: np.ndarray, n: int, s: float) -> np.ndarray:
    """Uniforms `[N]` -> popularity ranks int64 `[N]` in [0, n), rank 0 most popular.

    Inverse CDF of the continuous density ~ x^-s on [1, n + 1), floored: P(rank = r) is
    approximately proportional to (r + 1)^-s. No n-sized arrays.
    """
    log_top = math.log(n + 1.0)
    a = 1.0 - s
    if abs(a) < 1e-9:
        x = np.exp(u * log_top)
    else:
        x = np.exp(np.log1p(u * math.expm1(a * log_top)) / a)
    return np.clip(np.floor(x).astype(np.int64) - 1, 0, n - 1)


def _permute(r: np.ndarray, n: int, key: np.uint64) -> np.ndarray:
    """Seeded bijection of [0, n): int `[N]` -> int64 `[N]`.

    A 4-round Feistel network on the smallest even number of bits covering n, with cycle
    walking (re-apply until the value lands below n; at most 4x the domain, so few rounds).
    """
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask, shift = np.uint64((1 << half) - 1), np.uint64(half)
    keys = [_key(key, i) for i in range(_FEISTEL_ROUNDS)]

    def once(x: np.ndarray) -> np.ndarray:
        left, right = x >> shift, x & mask
        for k in keys:
            left, right = right, left ^ (splitmix64(right ^ k) & mask)
        return (left << shift) | right

    x = once(np.asarray(r).astype(np.uint64))
    todo = np.flatnonzero(x >= np.uint64(n))
    while todo.size:
        x[todo] = once(x[todo])
        todo = todo[x[todo] >= np.uint64(n)]
    return x.astype(np.int64)


def _sample_ids(spec: SyntheticSpec, field: int, hrow: np.ndarray) -> np.ndarray:
    """Ids int32 `[N]` in [1, vocab) of `field` for rows with pre-mixed counters `hrow`."""
    n = spec.field_vocab_sizes[field] - 1
    u = _uniform(_bits(hrow, _key(spec.seed, _SAMPLE, field)))
    rank = _zipf_ranks(u, n, float(spec.zipf_exponent))
    return (1 + _permute(rank, n, _key(spec.seed, _PERM, field))).astype(np.int32)


# ----------------------------------------------------------------------------- logit


@functools.lru_cache(maxsize=64)
def _tuples(num_fields: int, order: int, count: int, seed: int) -> tuple[tuple[int, ...], ...]:
    if count == 0:
        return ()
    if math.comb(num_fields, order) <= _ENUMERATE_LIMIT:
        combos = list(itertools.combinations(range(num_fields), order))
        scores = splitmix64(np.arange(len(combos), dtype=np.uint64) ^ _key(seed, _TUPLES))
        picked = [combos[i] for i in np.argsort(scores, kind="stable")[:count]]
    else:  # rejection sampling: count <= C(F, k), and C(F, k) is large here
        chosen: dict[tuple[int, ...], None] = {}
        fields = np.arange(num_fields, dtype=np.uint64)
        for attempt in itertools.count():
            scores = splitmix64(fields ^ _key(seed, _TUPLES, attempt + 1))
            chosen.setdefault(tuple(sorted(np.argsort(scores, kind="stable")[:order].tolist())))
            if len(chosen) == count:
                break
        picked = list(chosen)
    return tuple(sorted(picked))


def planted_tuples(spec: SyntheticSpec) -> tuple[tuple[int, ...], ...]:
    """The field tuples S_1..S_T that carry a planted interaction term.

    Returns:
      `num_interactions` distinct tuples, in sorted order, each of `interaction_order`
      increasing field indices (field i is feature `f'f{i}'`); depends only on
      (num_fields, interaction_order, num_interactions, seed).
    """
    return _tuples(spec.num_fields, spec.interaction_order, spec.num_interactions, spec.seed)


class _IdNormals:
    """N(0, 1) draws of one field's ids `[N]` in several hash streams: `self[j]` -> float64 `[N]`.

    A stream is drawn on access, once per id when that saves work (over all ids when
    `vocab <= N`, else over the distinct ids present if they are at most half the rows) and
    gathered per row. Memory is O(N), never O(vocab).
    """

    def __init__(self, ids: np.ndarray, keys: list[np.uint64], vocab: int):
        ids = np.asarray(ids).astype(np.int64)
        uniq, self.index = ids, None
        if vocab <= len(ids):
            uniq, self.index = np.arange(vocab, dtype=np.int64), ids
        elif len(ids) > 1:
            u, inverse = np.unique(ids, return_inverse=True)
            if 2 * len(u) <= len(ids):
                uniq, self.index = u, inverse.reshape(-1)
        self.hashed, self.keys = splitmix64(uniq), keys

    def __getitem__(self, j: int) -> np.ndarray:
        draws = _normal(_bits(self.hashed, self.keys[j]))
        return draws if self.index is None else draws[self.index]


def true_logit(spec: SyntheticSpec, ids: dict[str, np.ndarray]) -> np.ndarray:
    """Noise-free logit l of any ids under the spec's planted model.

    Args:
      spec: the generator parameters (only the model ones matter, not `rows`).
      ids: `{f'f{i}': int [N]}` for every field, values in [0, vocab_sizes[i]).
    Returns:
      float64 `[N]`: bias + first-order part + interaction part (module docstring).
    """
    seed, num_fields, k_dim = spec.seed, spec.num_fields, spec.latent_dim
    tuples = planted_tuples(spec) if spec.interaction_scale else ()
    # Field f's streams: 0 is w_f, then u_{t,f,k} for every term t that contains f, k < K.
    keys = [[_key(seed, _FIRST, f)] for f in range(num_fields)]
    stream: dict[tuple[int, int, int], int] = {}
    for t, fields in enumerate(tuples):
        for f in fields:
            for k in range(k_dim):
                stream[t, f, k] = len(keys[f])
                keys[f].append(_key(seed, _INTER, t, f, k))
    vocabs = spec.field_vocab_sizes
    for f, v in enumerate(vocabs):
        x = np.asarray(ids[f"f{f}"])
        if x.size and (x.min() < 0 or x.max() >= v):
            raise ConfigError(f"ids['f{f}'] has values outside [0, {v}) (vocab_sizes[{f}] = {v})")
    draws = [_IdNormals(ids[f"f{f}"], keys[f], vocabs[f]) for f in range(num_fields)]
    logit = spec.bias + spec.first_order_scale / math.sqrt(num_fields) * sum(d[0] for d in draws)
    if tuples:
        inter = 0.0
        for t, fields in enumerate(tuples):
            for k in range(k_dim):
                inter = inter + math.prod(draws[f][stream[t, f, k]] for f in fields)
        logit = logit + spec.interaction_scale / math.sqrt(len(tuples) * k_dim) * inter
    return logit


def bayes_prob(logit: np.ndarray, noise: float) -> np.ndarray:
    """P(y=1 | ids) = E_eps[sigmoid(logit + noise * eps)], probit approximation; `[N]` -> `[N]`."""
    return _sigmoid(np.asarray(logit) / math.sqrt(1.0 + math.pi * noise**2 / 8.0))


# ----------------------------------------------------------------------------- public


def generate(spec: SyntheticSpec, chunk_rows: int = 1_000_000) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Draws the rows of `spec`, `chunk_rows` at a time (output does not depend on it).

    Returns:
      ids: `{f'f{i}': int32 [rows]}` with values in [1, vocab_sizes[i]).
      labels: float32 `[rows]` in {0, 1}.
      true_prob: float32 `[rows]`, the Bayes-optimal P(y=1 | ids) (`bayes_prob`).
    """
    _check_int("chunk_rows", chunk_rows, 1)
    ids = {f"f{f}": np.empty(spec.rows, np.int32) for f in range(spec.num_fields)}
    labels = np.empty(spec.rows, np.float32)
    probs = np.empty(spec.rows, np.float32)
    for start in range(0, spec.rows, chunk_rows):
        rows = slice(start, min(start + chunk_rows, spec.rows))
        hrow = splitmix64(np.arange(rows.start, rows.stop, dtype=np.uint64))
        chunk = {name: _sample_ids(spec, f, hrow) for f, name in enumerate(ids)}
        logit = true_logit(spec, chunk)
        eps = _normal(_bits(hrow, _key(spec.seed, _NOISE)))
        u = _uniform(_bits(hrow, _key(spec.seed, _LABEL)))
        for name, v in chunk.items():
            ids[name][rows] = v
        labels[rows] = u < _sigmoid(logit + spec.noise * eps)
        probs[rows] = bayes_prob(logit, spec.noise)
    return ids, labels, probs


def load_synthetic(
    *,
    rows: int = 100_000,
    num_fields: int = 10,
    vocab_sizes: int | tuple[int, ...] = 1000,
    zipf_exponent: float = 1.1,
    interaction_order: int = 2,
    num_interactions: int = 10,
    latent_dim: int = 4,
    first_order_scale: float = 0.5,
    interaction_scale: float = 1.0,
    noise: float = 0.5,
    bias: float = 0.0,
    seed: int = 0,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    split_seed: int = 2024,
) -> Dataset:
    """A `Dataset` named 'synthetic' of `generate(SyntheticSpec(...))` (arguments as there).

    Features are `Categorical(f'f{i}', encoding='identity', vocab_size=vocab_sizes[i])`; each
    split's columns hold int32 ids `[N]` per field, float32 labels `[N]` under `LABELS`, and
    float32 `[N]` Bayes-optimal probabilities under 'true_prob' (for the oracle AUC). Rows are
    split by `random_split(rows, split, split_seed)`; no GAUC group key.
    """
    spec = SyntheticSpec(
        rows=rows, num_fields=num_fields, vocab_sizes=vocab_sizes, zipf_exponent=zipf_exponent,
        interaction_order=interaction_order, num_interactions=num_interactions, latent_dim=latent_dim,
        first_order_scale=first_order_scale, interaction_scale=interaction_scale, noise=noise,
        bias=bias, seed=seed,
    )  # fmt: skip
    index = random_split(rows, tuple(split), split_seed)
    ids, labels, probs = generate(spec)
    columns = {**ids, LABELS: labels, TRUE_PROB: probs}
    features = tuple(
        Categorical(f"f{i}", encoding="identity", vocab_size=v) for i, v in enumerate(spec.field_vocab_sizes)
    )
    return Dataset("synthetic", features, {name: take(columns, idx) for name, idx in index.items()}, group_key=None)
