"""Semantic IDs: residual quantisation of item vectors into L levels of K codes (+ a unique level).

A pre-training stage whose output, each item's code tuple, becomes the data of a generative
recommender (TIGER; NEZHA, spec generative-llm-vision.md section 1: L = 3 levels of 512 codes).

Residual quantisation. With r_0 = x (or the encoder's latent z for RQ-VAE), level l = 1..L picks

    c_l = argmin_k ||r_{l-1} - C_l[k]||^2,      r_l = r_{l-1} - C_l[c_l],

so x is approximated by x_hat = sum_l C_l[c_l] and the error ||r_L||^2 can only fall with L.

- `rq_kmeans`: C_l from k-means on the residuals r_{l-1} of all items (k-means++ init, seeded;
  jitted Lloyd iterations). `balanced=True` caps every code at ceil(N/K) items: the assignment
  step is a capacitated greedy matching run as proposal rounds (`balanced_assign`): every unplaced
  item proposes its nearest code that still has room, each code accepts its closest proposers up
  to its remaining room, repeat. Chosen over Sinkhorn because it meets the cap exactly (Sinkhorn's
  soft plan needs a rounding step that can break it), is deterministic, has no temperature to
  tune, and at catalogue sizes (N K distances) is a few jitted rounds.
- `rq_vae`: encoder MLP x -> z, L residual codebooks with the straight-through estimator, decoder
  MLP z_q -> x_hat (TIGER's RQ-VAE). Loss, with sg = stop-gradient and e_l = C_l[c_l]:

      ||x - dec(z + sg(z_q - z))||^2 + sum_l ||sg(r_{l-1}) - e_l||^2 + beta ||r_{l-1} - sg(e_l)||^2

  (reconstruction, codebook and commitment terms); codebooks start from RQ-k-means of the first
  batch's latents, as in TIGER; optax Adam, seeded.
- `add_unique_level`: items sharing all L codes get a last code 0, 1, 2, ... in catalogue order
  (TIGER), so codes are unique; its size K_u is the largest group.

`semantic_ids(x, ...)` runs one of them and returns `SemanticIDs` (codes, codebook sizes, stats:
codebook usage and perplexity per level, collision rate before the unique level, reconstruction
error). `SemanticIDs.as_int()` is NEZHA's hash code c_1 + K_1 c_2 + K_1 K_2 c_3 + ...;
`prefix_sets()`, `hash_constraint()` and `token_sequences()` feed `jaxrec.generate`'s
`HashSetConstraint` / `TrieConstraint`.

Item vectors (`item_vectors`): MiniLM sentence embeddings of "title + genres + year" of the
MovieLens items (`movielens_item_texts`), a collaborative table (e.g. SASRec's item embeddings),
or both, each block L2-normalised per row, concatenated.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec.errors import ConfigError, DataError
from jaxrec.generate.constraints import HashSetConstraint, TrieConstraint
from jaxrec.nn import MLP

log = logging.getLogger(__name__)

# ---- input checks -------------------------------------------------------------------------------


def _first(rows: np.ndarray, n: int = 5) -> str:
    return ", ".join(map(str, rows[:n].tolist())) + (", ..." if len(rows) > n else "")


def check_item_vectors(x: Any, name: str = "item vectors") -> np.ndarray:
    """`x [N, d]` as float32; DataError naming the first item row with NaN/inf or with no
    features (an all-zero row), or a wrong shape."""
    x = np.asarray(x, np.float32) if not isinstance(x, np.ndarray) or x.dtype != np.float32 else x
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{name}: expected a non-empty [N, d] array, got shape {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(f"{name}: item row {int(rows[0])} has NaN/inf values ({len(rows)} such row(s): "
                        f"{_first(rows)})")
    empty = ~(x != 0).any(axis=1)
    if empty.any():
        rows = np.flatnonzero(empty)
        raise DataError(f"{name}: item row {int(rows[0])} is all zeros: an item with no features ({len(rows)} such "
                        f"row(s): {_first(rows)})")
    return x


def _check_sizes(n: int, num_levels: int, codebook_size: int, unique: bool) -> None:
    if not isinstance(num_levels, (int, np.integer)) or num_levels < 1:
        raise ConfigError(f"num_levels={num_levels!r}: need an integer L >= 1")
    if not isinstance(codebook_size, (int, np.integer)) or codebook_size < 2:
        raise ConfigError(f"codebook_size={codebook_size!r}: need an integer K >= 2")
    if codebook_size > n:
        raise ConfigError(f"codebook_size K={codebook_size} > {n} items: k-means cannot fill more codes than items "
                          "at a level; lower K")
    if not unique and codebook_size ** num_levels < n:
        raise ConfigError(f"K^L = {codebook_size}^{num_levels} = {codebook_size ** num_levels} < {n} items: codes "
                          "cannot be unique without the unique level (unique=True) or a larger K / L")


# ---- k-means -------------------------------------------------------------------------------------


def _sq_dists(x: jax.Array, c: jax.Array) -> jax.Array:
    """||x_i - c_k||^2, `[N, K]`."""
    return jnp.maximum(jnp.sum(x * x, 1)[:, None] - 2.0 * x @ c.T + jnp.sum(c * c, 1)[None, :], 0.0)


def kmeans_pp_init(seed: int, x: np.ndarray, k: int) -> np.ndarray:
    """k-means++ seeding: the first centre uniform, each next one drawn with probability
    proportional to D(x)^2, the squared distance to the nearest centre so far. `[N, d] -> [k, d]`.
    Host side (numpy, `default_rng(seed)`): k passes of O(N d), and no threefry kernels to compile
    (XLA's CPU compile of jax.random dominates a small run)."""
    x = np.asarray(x, np.float32)
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    idx = [int(rng.integers(n))]
    d2 = np.sum((x - x[idx[0]]) ** 2, 1, dtype=np.float64)
    for _ in range(1, k):
        total = d2.sum()
        j = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        idx.append(j)
        d2 = np.minimum(d2, np.sum((x - x[j]) ** 2, 1, dtype=np.float64))
    return x[idx].copy()


@functools.partial(jax.jit, static_argnums=(1,))
def balanced_assign(dists: jax.Array, capacity: int) -> jax.Array:
    """Assignment `[N]` of N items to K codes with at most `capacity` items per code
    (K * capacity >= N), greedy by distance: in each round every unplaced item proposes its
    nearest code with room left; each code accepts its closest proposers up to its room. Each
    round places >= 1 item, so it ends; items rarely need more than a few rounds.

    Guarantees: every item placed, no code over `capacity`, and no item farther from its code
    than from a code left with room. It is close to, not the same as, the global greedy (scan
    all N K pairs by distance, place when the item is free and the code has room; that needs a
    sequential scan): they agreed on 197 of 200 random 13 x 4 cases."""
    n, k = dists.shape
    big = jnp.finfo(dists.dtype).max

    def cond(state):
        assign, _ = state
        return jnp.any(assign < 0)

    def body(state):
        assign, room = state
        free = assign < 0
        d = jnp.where(room[None, :] > 0, dists, big)
        prop = jnp.argmin(d, 1)
        dprop = jnp.take_along_axis(d, prop[:, None], 1)[:, 0]
        group = jnp.where(free, prop, k)                     # placed items last, in group k
        order = jnp.lexsort((dprop, group))                  # by code, then by distance
        g_sorted = group[order]
        rank = jnp.arange(n) - jnp.searchsorted(g_sorted, g_sorted, side="left")
        accept_sorted = (g_sorted < k) & (rank < room[jnp.minimum(g_sorted, k - 1)])
        accept = jnp.zeros((n,), bool).at[order].set(accept_sorted)
        assign = jnp.where(accept, prop, assign)
        room = room - jnp.zeros((k,), jnp.int32).at[prop].add(accept.astype(jnp.int32))
        return assign, room

    init = (jnp.full((n,), -1, jnp.int32), jnp.full((k,), capacity, jnp.int32))
    assign, _ = jax.lax.while_loop(cond, body, init)
    return assign


def _assign(x: jax.Array, c: jax.Array, capacity: int | None) -> jax.Array:
    d = _sq_dists(x, c)
    return jnp.argmin(d, 1).astype(jnp.int32) if capacity is None else balanced_assign(d, capacity)


@functools.partial(jax.jit, static_argnums=(2, 3))
def lloyd(x: jax.Array, centres: jax.Array, iters: int, capacity: int | None = None) -> tuple[jax.Array, jax.Array]:
    """`iters` Lloyd iterations from `centres [K, d]`: assign (nearest centre, or
    `balanced_assign` under `capacity`), then each centre = the mean of its items (an empty
    code keeps its centre). Returns (centres `[K, d]`, assignment `[N]` to the final centres)."""
    k = centres.shape[0]

    def step(c, _):
        a = _assign(x, c, capacity)
        one = jax.nn.one_hot(a, k, dtype=x.dtype)            # [N, K]
        count = one.sum(0)
        mean = (one.T @ x) / jnp.maximum(count, 1.0)[:, None]
        return jnp.where(count[:, None] > 0, mean, c), None

    centres, _ = jax.lax.scan(step, centres, None, length=iters)
    return centres, _assign(x, centres, capacity)


def kmeans(x: np.ndarray | jax.Array, k: int, *, iters: int = 25, balanced: bool = False,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means of `x [N, d]` into `k` codes (k-means++ init from `seed`, `iters` Lloyd
    iterations; `balanced`: at most ceil(N/k) items per code). Returns (centres `[k, d]`,
    codes `[N]` int32)."""
    x = jnp.asarray(x, jnp.float32)
    n = x.shape[0]
    if k < 2:
        raise ConfigError(f"k-means: K={k} codes; need K >= 2")
    if k > n:
        raise ConfigError(f"k-means: K={k} codes > {n} items; lower K")
    c0 = jnp.asarray(kmeans_pp_init(seed, np.asarray(x), k))
    centres, codes = lloyd(x, c0, iters, math.ceil(n / k) if balanced else None)
    return np.asarray(centres), np.asarray(codes, np.int32)


def residual_quantise(x: np.ndarray, codebooks: Sequence[np.ndarray], codes: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Codes `[N, L]` (nearest centre of each level's residual, unless `codes` are given) and the
    reconstruction sum_l C_l[c_l] `[N, d]`."""
    r = np.asarray(x, np.float32).copy()
    out = np.zeros((r.shape[0], len(codebooks)), np.int32)
    for l, c in enumerate(codebooks):
        out[:, l] = (np.asarray(_assign(jnp.asarray(r), jnp.asarray(c), None)) if codes is None else codes[:, l])
        r -= c[out[:, l]]
    return out, np.asarray(x, np.float32) - r


def rq_kmeans(x: np.ndarray, num_levels: int, codebook_size: int, *, iters: int = 25, balanced: bool = False,
              seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    """RQ-KMeans: k-means on the residual at each level. Returns (codes `[N, L]` int32,
    codebooks `L x [K, d]`, relative reconstruction error after each level)."""
    x = np.asarray(x, np.float32)
    r = x.copy()
    codes, books, errors = [], [], []
    denom = float(np.sum(x * x))
    for l in range(num_levels):
        centres, c = kmeans(r, codebook_size, iters=iters, balanced=balanced, seed=seed + 1000 * l)
        r = r - centres[c]
        codes.append(c)
        books.append(centres)
        errors.append(float(np.sum(r * r)) / denom)
    return np.stack(codes, 1).astype(np.int32), books, errors


# ---- RQ-VAE --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RQVAEOptions:
    """TIGER-style RQ-VAE (sizes small: MovieLens has 1,682 items)."""

    latent_dim: int = 32
    hidden: tuple[int, ...] = (256, 128)
    beta: float = 0.25        # commitment weight
    steps: int = 1000
    batch: int = 512
    lr: float = 1e-3
    kmeans_iters: int = 10    # k-means init of the codebooks from the first batch


class RQVAE(nn.Module):
    """Encoder MLP -> L residual codebooks `[K, latent]` -> decoder MLP."""

    dim: int
    num_levels: int
    codebook_size: int
    latent_dim: int = 32
    hidden: tuple[int, ...] = (256, 128)

    def setup(self):
        self.encoder = MLP(self.hidden, out_dim=self.latent_dim)
        self.decoder = MLP(tuple(reversed(self.hidden)), out_dim=self.dim)
        self.codebooks = self.param("codebooks", nn.initializers.normal(1.0),
                                    (self.num_levels, self.codebook_size, self.latent_dim))

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def __call__(self, x):
        return self.decode(self.encode(x))


def _quantise(z: jax.Array, books: jax.Array):
    """Residual quantisation of latents `z [B, e]` with `books [L, K, e]`: codes `[B, L]`,
    quantised `z_q [B, e]`, codebook + commitment terms per row (before beta) as (cb, commit)."""

    r, codes, zq, cb, commit = z, [], 0.0, 0.0, 0.0
    for l in range(books.shape[0]):                 # L is small: unrolled
        c = jnp.argmin(_sq_dists(r, books[l]), 1)
        e = books[l][c]
        cb = cb + jnp.sum((jax.lax.stop_gradient(r) - e) ** 2, 1)
        commit = commit + jnp.sum((r - jax.lax.stop_gradient(e)) ** 2, 1)
        r, zq = r - e, zq + e
        codes.append(c)
    return jnp.stack(codes, 1).astype(jnp.int32), zq, cb, commit


def rq_vae(x: np.ndarray, num_levels: int, codebook_size: int, *, options: RQVAEOptions = RQVAEOptions(),
           seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Trains an `RQVAE` on `x [N, d]`. Returns (codes `[N, L]` int32, reconstruction `[N, d]`
    (decoder of the quantised latents), training loss every step)."""
    x = jnp.asarray(x, jnp.float32)
    n, d = x.shape
    model = RQVAE(d, num_levels, codebook_size, options.latent_dim, tuple(options.hidden))
    params = _init_params(model, seed)
    batch = min(options.batch, n)
    if codebook_size > batch:
        raise ConfigError(f"rq_vae: codebook_size K={codebook_size} > first batch ({batch} items) used for k-means init")
    rng = np.random.default_rng(seed)
    batches = (np.stack([rng.choice(n, batch, replace=False) for _ in range(max(options.steps, 1))]) if batch < n
               else np.broadcast_to(np.arange(n), (max(options.steps, 1), n)))
    z0 = np.asarray(_encode(model, params, x[batches[0]]))               # the first batch's latents
    _, books, _ = rq_kmeans(z0, num_levels, codebook_size, iters=options.kmeans_iters, seed=seed)
    params = {**params, "codebooks": jnp.asarray(np.stack(books))}
    batches = batches[:options.steps]

    opt_state = optax.adam(options.lr).init(params)
    params, losses = _train_rq_vae(model, float(options.lr), float(options.beta), params, opt_state, x,
                                   jnp.asarray(batches, jnp.int32))
    codes, xh = _infer_rq_vae(model, params, x)
    return np.asarray(codes, np.int32), np.asarray(xh), np.asarray(losses).tolist()


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _train_rq_vae(model: RQVAE, lr: float, beta: float, params, opt_state, x: jax.Array, batches: jax.Array):
    """Adam steps over `batches [steps, B]` (row ids of x) in one `lax.scan`; (params, losses)."""
    tx = optax.adam(lr)

    def loss_fn(p, xb):
        z = model.apply({"params": p}, xb, method=RQVAE.encode)
        _, zq, cb, commit = _quantise(z, p["codebooks"])
        z_st = z + jax.lax.stop_gradient(zq - z)                    # straight-through
        xh = model.apply({"params": p}, z_st, method=RQVAE.decode)
        return jnp.mean(jnp.sum((xb - xh) ** 2, 1) + cb + beta * commit)

    def step(carry, idx):
        p, s = carry
        loss, g = jax.value_and_grad(loss_fn)(p, x[idx])
        upd, s = tx.update(g, s, p)
        return (optax.apply_updates(p, upd), s), loss

    (params, _), losses = jax.lax.scan(step, (params, opt_state), batches)
    return params, losses


def _init_params(model: RQVAE, seed: int) -> dict:
    """Parameters of `model` drawn on the host (numpy `default_rng(seed)`): kernels LeCun-normal
    N(0, 1/fan_in), biases 0, codebooks N(0, 1) (replaced by the k-means init). `model.init`
    would compile threefry kernels, which takes XLA seconds on CPU."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, model.dim), jnp.float32))["params"]
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "bias" in name:
            return jnp.zeros(leaf.shape, leaf.dtype)
        scale = 1.0 if "codebooks" in name else 1.0 / np.sqrt(leaf.shape[0])
        return jnp.asarray(rng.normal(size=leaf.shape) * scale, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.partial(jax.jit, static_argnums=(0,))
def _encode(model: RQVAE, params, x: jax.Array) -> jax.Array:
    return model.apply({"params": params}, x, method=RQVAE.encode)


@functools.partial(jax.jit, static_argnums=(0,))
def _infer_rq_vae(model: RQVAE, params, x: jax.Array):
    """Codes `[N, L]` and the decoder of the quantised latents `[N, d]`."""
    z = model.apply({"params": params}, x, method=RQVAE.encode)
    codes, zq, _, _ = _quantise(z, params["codebooks"])
    return codes, model.apply({"params": params}, zq, method=RQVAE.decode)


# ---- unique level, stats, the result -------------------------------------------------------------


def add_unique_level(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Appends TIGER's last level: items sharing all L codes get 0, 1, 2, ... in catalogue
    order. Returns (codes `[N, L+1]` int32, K_u = the largest group, >= 1)."""
    codes = np.asarray(codes, np.int32)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    g = inverse[order]
    starts = np.searchsorted(g, g, side="left")
    suffix = np.empty(len(codes), np.int32)
    suffix[order] = np.arange(len(codes)) - starts
    return np.concatenate([codes, suffix[:, None]], 1), int(suffix.max()) + 1


def collision_rate(codes: np.ndarray) -> float:
    """Fraction of items whose code tuple `[N, L]` is shared with another item."""
    _, inverse, counts = np.unique(np.asarray(codes), axis=0, return_inverse=True, return_counts=True)
    return float(np.mean(counts[inverse.reshape(-1)] > 1))


def code_usage(codes: np.ndarray, codebook_size: int) -> tuple[float, float]:
    """(fraction of the K codes used, perplexity exp(H) of the code frequencies) for one level `[N]`."""
    counts = np.bincount(np.asarray(codes), minlength=codebook_size)
    p = counts[counts > 0] / counts.sum()
    return float((counts > 0).mean()), float(np.exp(-(p * np.log(p)).sum()))


@dataclasses.dataclass(frozen=True)
class SemanticIDs:
    """Item codes `codes [N, L(+1)]` int32, `codes[:, i]` in [0, codebook_sizes[i]); `stats`
    from `semantic_ids`."""

    codes: np.ndarray
    codebook_sizes: tuple[int, ...]
    stats: dict = dataclasses.field(default_factory=dict)

    @property
    def num_levels(self) -> int:
        return self.codes.shape[1]

    def _radix(self) -> np.ndarray:
        return np.cumprod((1,) + tuple(self.codebook_sizes[:-1])).astype(np.int64)

    def as_int(self) -> np.ndarray:
        """NEZHA's hash `c_1 + K_1 c_2 + K_1 K_2 c_3 + ...`, int64 `[N]`."""
        return self.codes.astype(np.int64) @ self._radix()

    @staticmethod
    def from_int(values: np.ndarray, codebook_sizes: Sequence[int]) -> np.ndarray:
        """Inverse of `as_int`: codes `[N, L]` int32."""
        v = np.asarray(values, np.int64)
        out = []
        for k in codebook_sizes:
            out.append(v % k)
            v = v // k
        return np.stack(out, 1).astype(np.int32)

    def prefix_sets(self) -> list[np.ndarray]:
        """NEZHA's P_i = {as_int mod (K_1 ... K_i)}, i = 1..L, each sorted int64."""
        code = self.as_int()
        mods = np.cumprod(self.codebook_sizes).astype(np.int64)
        return [np.unique(code % m) for m in mods]

    def hash_constraint(self, offsets: Sequence[int] | None = None) -> HashSetConstraint:
        """`HashSetConstraint` over these codes. It uses one radix K for all levels, here
        max(codebook_sizes) (token of code c at level i = `offsets[i] + c`, default `i * K`);
        its partial codes equal `as_int` when all levels have the same size. ConfigError when
        max(K)^levels does not fit int32 (e.g. K = 256 with 3 levels + the unique level): use
        `trie_constraint`, or the L levels without the unique level."""
        k, levels = max(self.codebook_sizes), self.num_levels
        if k ** levels >= np.iinfo(np.int32).max:
            raise ConfigError(f"hash_constraint: HashSetConstraint hashes with one radix, max(codebook_sizes)^levels = "
                              f"{k}^{levels} = {k ** levels} >= 2^31 (int32); as_int's mixed radix needs "
                              f"{int(np.prod(self.codebook_sizes, dtype=np.int64))}. Use trie_constraint(), or fewer levels")
        return HashSetConstraint.build(self.codes, k, offsets)

    def token_offsets(self) -> np.ndarray:
        """Token id of code 0 at each level when levels get their own tokens back to back."""
        return np.concatenate([[0], np.cumsum(self.codebook_sizes)[:-1]]).astype(np.int64)

    def token_sequences(self) -> list[list[int]]:
        """Each item's codes as level-specific token ids `offsets[i] + c_i` (vocabulary
        `sum(codebook_sizes)`), the input of `TrieConstraint.build(sequences, vocab_size)`."""
        return (self.codes + self.token_offsets()[None, :]).tolist()

    def trie_constraint(self, vocab_size: int | None = None, eos_id: int | None = None) -> TrieConstraint:
        """`TrieConstraint` over `token_sequences()`; vocab defaults to `sum(codebook_sizes)`."""
        return TrieConstraint.build(self.token_sequences(), vocab_size or int(sum(self.codebook_sizes)), eos_id)


def semantic_ids(x: Any, num_levels: int = 3, codebook_size: int = 32, *, method: str = "rq_kmeans",
                 balanced: bool = False, unique: bool = True, seed: int = 0, iters: int = 25,
                 vae: RQVAEOptions = RQVAEOptions()) -> SemanticIDs:
    """Semantic IDs of items `x [N, d]`: L levels of K codes by `method` ('rq_kmeans',
    `balanced` or not, or 'rq_vae'), plus the unique level when `unique`.

    stats: `usage` / `perplexity` per level (fraction of the K codes used; exp of the code
    entropy), `collision_rate` before the unique level, `unique_level_size` (K_u, 0 without
    it), `recon_rel_mse` = ||x - x_hat||^2 / ||x||^2 (x_hat: the sum of centroids, or the
    RQ-VAE decoder of the quantised latent), `recon_by_level` (RQ-KMeans: the same after each
    level), `seconds`, and for RQ-VAE `loss_first` / `loss_last` (mean of the first / last 50 steps).
    """
    import time

    x = check_item_vectors(x)
    n = x.shape[0]
    _check_sizes(n, num_levels, codebook_size, unique)
    t0 = time.perf_counter()
    stats: dict = {"method": method, "balanced": bool(balanced), "num_items": n, "num_levels": num_levels,
                   "codebook_size": codebook_size, "seed": seed}
    if method == "rq_kmeans":
        codes, books, errors = rq_kmeans(x, num_levels, codebook_size, iters=iters, balanced=balanced, seed=seed)
        stats["recon_by_level"] = errors
        recon = errors[-1]
    elif method == "rq_vae":
        if balanced:
            raise ConfigError("balanced=True applies to method='rq_kmeans' only")
        codes, xh, losses = rq_vae(x, num_levels, codebook_size, options=vae, seed=seed)
        recon = float(np.sum((x - xh) ** 2) / np.sum(x * x))
        w = min(50, len(losses))
        stats["loss_first"], stats["loss_last"] = float(np.mean(losses[:w])), float(np.mean(losses[-w:]))
    else:
        raise ConfigError(f"method={method!r}: expected 'rq_kmeans' or 'rq_vae'")
    usage = [code_usage(codes[:, l], codebook_size) for l in range(num_levels)]
    stats["usage"] = [u for u, _ in usage]
    stats["perplexity"] = [p for _, p in usage]
    stats["collision_rate"] = collision_rate(codes)
    stats["recon_rel_mse"] = recon
    sizes = (codebook_size,) * num_levels
    if unique:
        codes, ku = add_unique_level(codes)
        sizes += (ku,)
        stats["unique_level_size"] = ku
    else:
        stats["unique_level_size"] = 0
    stats["seconds"] = time.perf_counter() - t0
    return SemanticIDs(codes.astype(np.int32), sizes, stats)


# ---- item vectors --------------------------------------------------------------------------------


def movielens_item_texts(data_dir: str | None = None) -> list[str]:
    """One text per MovieLens-100K item, in item-id order (row i = item id i + 1):
    "<title>. Genres: <g1>, <g2>. Year: <yyyy>." from `u.item` / `u.genre` (read with
    `jaxrec.data.movielens`'s reader; the title without its trailing "(yyyy)")."""
    from jaxrec.data import movielens as ml

    d = ml.find_data_dir(data_dir)
    genre_names = [r[0] for r in ml._read_rows(d / "u.genre", "|", 2)]
    rows = ml._read_rows(d / "u.item", "|", 5 + len(genre_names), encoding_="latin-1")
    texts: dict[int, str] = {}
    for r in rows:
        item = ml._int(d / "u.item", r, 0, "item_id")
        m = re.search(r"\((\d{4})\)\s*$", r[1])
        year = m.group(1) if m else (r[2][-4:] if re.fullmatch(r".*\d{4}", r[2]) else "")
        title = re.sub(r"\s*\(\d{4}\)\s*$", "", r[1]).strip()
        genres = [g for g, f in zip(genre_names, r[5:-1]) if f == "1" and g != "unknown"]
        parts = [title] if title else []
        if genres:
            parts.append("Genres: " + ", ".join(genres))
        if year:
            parts.append("Year: " + year)
        texts[item] = ". ".join(parts) + ("." if parts else "")
    ids = sorted(texts)
    if ids != list(range(1, len(ids) + 1)):
        raise DataError(f"{d / 'u.item'}: item ids are not 1..{len(ids)}")
    return [texts[i] for i in ids]


def _l2_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def item_vectors(kind: str, *, texts: Sequence[str] | None = None, table: Any = None, encoder=None,
                 data_dir: str | None = None) -> np.ndarray:
    """Item vectors `[N, d]` float32.

    kind 'text': sentence embeddings of `texts` (default `movielens_item_texts(data_dir)`) by
    `encoder` (default `jaxrec.models.text.hf.SentenceEncoder()`, all-MiniLM-L6-v2, d = 384);
    'collab': the given embedding table `[N, d]` (e.g. SASRec's item table, rows = items);
    'both': [text / ||text||, table / ||table||] per row (d = 384 + d_table).
    DataError names an empty text, a NaN/inf or all-zero row, or mismatched item counts."""
    if kind not in ("text", "collab", "both"):
        raise ConfigError(f"item_vectors: kind={kind!r}; expected 'text', 'collab' or 'both'")
    blocks = []
    if kind in ("text", "both"):
        texts = movielens_item_texts(data_dir) if texts is None else list(texts)
        empty = [i for i, t in enumerate(texts) if not str(t).strip()]
        if empty:
            raise DataError(f"item_vectors: item row {empty[0]} has an empty text: an item with no features "
                            f"({len(empty)} such row(s))")
        if encoder is None:
            from jaxrec.models.text.hf import SentenceEncoder
            encoder = SentenceEncoder()
        blocks.append(check_item_vectors(encoder.encode(texts), "text vectors"))
    if kind in ("collab", "both"):
        if table is None:
            raise ConfigError(f"item_vectors: kind={kind!r} needs `table` (a collaborative embedding table [N, d])")
        blocks.append(check_item_vectors(table, "collaborative table"))
    if len(blocks) == 2:
        if blocks[0].shape[0] != blocks[1].shape[0]:
            raise DataError(f"item_vectors: {blocks[0].shape[0]} texts but the table has {blocks[1].shape[0]} rows")
        return np.concatenate([_l2_rows(b) for b in blocks], 1).astype(np.float32)
    return blocks[0]


# ---- the pre-training stage of the generative recommenders ('tiger', 'nezha') --------------------


def sid_constants(dataset, options: Mapping) -> dict:
    """The registry models' constants `{'item_codes': Frozen [N + 1, L], 'codebook_sizes': (K_1..K_L)}`
    for the items of a next-item dataset (`jaxrec.data.sequential`; row i = item id i, row 0 the
    padding id, all zeros, never generated), from the model's `sid_*` keys (`options`, defaults of
    `jaxrec.models.generative.SIDRecommender`):

      sid_source 'text'  MiniLM vectors of each item's "title. Genres: .. Year: .." (MovieLens-100K's
                         u.item, read from the dataset's data_dir) -> `semantic_ids(sid_levels,
                         sid_codebook_size, sid_method, sid_balanced, unique level, sid_seed)`
                 'collab' the same over a learned item table, `sid_table` (.npy `[N, d]`, row i = item
                         id i + 1; `eval.py --workdir <sasrec run> --export_item_table t.npy`)
                 'both'   both blocks, each row L2-normalised, concatenated (`item_vectors('both')`)
      sid_source 'file'  `sid_path`: a .npy of int codes `[N, L]`, row i = item id i + 1 (the
                         dataset's item order, `Dataset.fitted.extra['items']`), each item's codes unique

    Deterministic for a given config (seeded k-means, the frozen encoder), so a resumed run
    rebuilds the same codes. Errors name the key and the file."""
    import dataclasses as dc

    if "item_codes" in options:  # given (e.g. by a test or a notebook): nothing to pre-train
        return {}
    from jaxrec.models.frozen import Frozen
    from jaxrec.models.generative import SIDRecommender

    o = {f.name: f.default for f in dc.fields(SIDRecommender) if f.name.startswith("sid_")}
    o.update({k: v for k, v in options.items() if k.startswith("sid_")})
    extra = dataset.fitted.extra if dataset.fitted is not None else {}
    if "items" not in extra:
        raise ConfigError(f"models 'tiger' / 'nezha' read a next-item dataset (dataset.name='sequential'); "
                          f"{dataset.name!r} has no item list")
    raw, source = list(extra["items"]), o["sid_source"]
    if source in ("text", "collab", "both"):
        texts = table = None
        if source in ("text", "both"):
            if "data_dir" not in extra:
                raise ConfigError(f"model.sid_source={source!r} embeds MovieLens item texts (dataset.source='movielens'); "
                                  f"for {extra.get('source')} use model.sid_source='collab' (model.sid_table) or 'file' "
                                  f"(model.sid_path)")
            texts = dataset_item_texts(dataset)
            log.info("semantic IDs: encoding %d item texts (all-MiniLM-L6-v2)", len(texts))
        if source in ("collab", "both"):
            table = _npy(str(o["sid_table"]), "model.sid_table", "a learned item table [num_items, d] "
                         "(eval.py --export_item_table)", len(raw), np.floating)
        sids = semantic_ids(item_vectors(source, texts=texts, table=table), int(o["sid_levels"]),
                            int(o["sid_codebook_size"]), method=str(o["sid_method"]), balanced=bool(o["sid_balanced"]),
                            unique=True, seed=int(o["sid_seed"]))
        stats = {k: v for k, v in sids.stats.items() if k in ("collision_rate", "recon_rel_mse", "unique_level_size", "usage")}
        log.info("semantic IDs: codebook sizes %s, %s", sids.codebook_sizes, stats)
        codes, sizes = sids.codes, sids.codebook_sizes
    elif source == "file":
        codes, sizes = _codes_file(str(o["sid_path"]), len(raw))
    else:
        raise ConfigError(f"model.sid_source={source!r}: expected 'text', 'collab', 'both' or 'file'")
    table = np.concatenate([np.zeros((1, codes.shape[1]), np.int32), codes.astype(np.int32)])
    return {"item_codes": Frozen(table), "codebook_sizes": tuple(int(k) for k in sizes)}


def dataset_item_texts(dataset) -> list[str]:
    """`movielens_item_texts` in the item order of a MovieLens next-item dataset (row i = item id
    i + 1, `Dataset.fitted.extra['items']` the raw ids), read from its `data_dir`."""
    extra = dataset.fitted.extra
    texts = movielens_item_texts(extra["data_dir"])
    try:
        return [texts[int(r) - 1] for r in extra["items"]]
    except (ValueError, IndexError):
        raise DataError(f"{extra['data_dir']}/u.item: the dataset's item ids are not MovieLens item ids "
                        f"1..{len(texts)}") from None


def _npy(path: str, key: str, what: str, num_items: int, kind) -> np.ndarray:
    """A .npy array `[num_items, ...]` of dtype `kind` (np.integer / np.floating) at `path` (config `key`)."""
    if not path:
        raise ConfigError(f"{key} is empty: give the path of {what}")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{key}={path}: cannot read a .npy array ({e})") from None
    if x.ndim != 2 or x.shape[0] != num_items or not np.issubdtype(x.dtype, kind):
        raise DataError(f"{key}={path}: expected {kind.__name__} [{num_items} items, ...] ({what}), got {x.dtype} {x.shape}")
    return x


def _codes_file(path: str, num_items: int) -> tuple[np.ndarray, tuple]:
    """Codes `[N, L]` of a .npy file (model.sid_path), checked: N rows, non-negative ints, unique rows."""
    codes = _npy(path, "model.sid_path", "item codes [num_items, L]", num_items, np.integer)
    if codes.size and codes.min() < 0:
        raise DataError(f"model.sid_path={path}: row {int(np.argwhere(codes < 0)[0, 0])} has a negative code")
    _, first, counts = np.unique(codes, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        rows = np.flatnonzero((codes == codes[first[np.argmax(counts > 1)]]).all(1))
        raise DataError(f"model.sid_path={path}: rows {rows[:5].tolist()} share the code {codes[rows[0]].tolist()}: "
                        f"a semantic ID must name one item (add a unique level, `add_unique_level`)")
    return codes, tuple(int(k) + 1 for k in codes.max(0))


__all__ = ["SemanticIDs", "RQVAE", "RQVAEOptions", "semantic_ids", "rq_kmeans", "rq_vae", "kmeans", "kmeans_pp_init",
           "lloyd", "balanced_assign", "residual_quantise", "add_unique_level", "collision_rate", "code_usage",
           "check_item_vectors", "movielens_item_texts", "dataset_item_texts", "item_vectors", "sid_constants"]
