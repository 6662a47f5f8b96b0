"""MIM / CiUBM: content-interest-aware user behaviour modelling (Multi-modal Content Interest
Modeling, arXiv 2502.00321; notes shared/specs/recsys-methods.md §11).

MIM's three stages, as built here (the foundation model is replaced by a content encoder
trained here over each item's title words, genres and year [I]):

 1. pre-training (modal alignment): the title view and the genre + year view of an item are
    pulled together by InfoNCE over in-batch items;
 2. C-SFT, content-interest-aware supervised fine-tuning: behaviour pairs (an item and the
    same user's next item in the training split) are pulled together by a multi-level
    InfoNCE, item level (the next item) and category level (any item of the next item's
    first genre), with in-batch negatives plus "space-time" negatives (items drawn from
    other users' events, i.e. other times and places) [I: the pairing and negatives];
 3. CiUBM: the encoder's vectors c_i are frozen (the "representation center") and read by a
    content-interest branch beside the ID branch:

    content interest  softmax_j(<W_q c_target, W_k c_j> / sqrt(d)) applied to W_v c_j
    ID interest       DIN target attention over the behaviours' ID embeddings
    y = MLP([e_1, ..., e_F, ID interest, content interest, c_target])

The InfoNCE temperature, encoder widths and steps are `ContentOptions` [I].
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec.data.features import Feature
from jaxrec.embedding import embedding_layer
from jaxrec.embedding.layer import pool
from jaxrec.models.ctr.din import target_and_history
from jaxrec.models.frozen import Frozen
from jaxrec.nn import MLP
from jaxrec.nn.behaviour import TargetAttention, length_mask, masked_softmax

SIDE_KEYS = ("item_title", "item_title_length", "item_genres", "item_genres_length", "item_year")


@dataclasses.dataclass(frozen=True)
class ContentOptions:
    """Content encoder and its two training stages."""

    dim: int = 32
    token_dim: int = 32
    temperature: float = 0.1
    align_steps: int = 200
    sft_steps: int = 400
    batch: int = 512
    space_time_negatives: int = 512
    category_weight: float = 0.5
    lr: float = 3e-3
    seed: int = 0


class ContentEncoder(nn.Module):
    """Item content -> unit vectors `[N, dim]`; `views` gives the title and the genre + year
    views apart (stage 1), `__call__` the fused vector."""

    vocab: tuple[int, int, int]   # title words, genres, years (incl. id 0)
    dim: int = 32
    token_dim: int = 32

    def setup(self):
        self.words = nn.Embed(self.vocab[0], self.token_dim)
        self.genres = nn.Embed(self.vocab[1], self.token_dim)
        self.years = nn.Embed(self.vocab[2], self.token_dim)
        self.title_head = MLP((self.token_dim,), out_dim=self.dim)
        self.meta_head = MLP((self.token_dim,), out_dim=self.dim)
        self.fuse = MLP((self.dim,), out_dim=self.dim)

    def views(self, content: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """(title view, genre + year view), each `[N, dim]`, of content columns `[N, ...]`."""
        title = pool(self.words(content["item_title"]), content["item_title_length"], "mean")
        meta = pool(self.genres(content["item_genres"]), content["item_genres_length"], "mean") + self.years(content["item_year"])
        return self.title_head(title), self.meta_head(meta)

    def __call__(self, content: Mapping[str, jax.Array]) -> jax.Array:
        t, m = self.views(content)
        return normalize(self.fuse(jnp.concatenate([t, m], -1)))


def normalize(x: jax.Array) -> jax.Array:
    """Rows `[..., d]` scaled to unit length (zero rows stay ~zero)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def info_nce(q: jax.Array, k: jax.Array, positive: jax.Array, temperature: float) -> jax.Array:
    """Mean InfoNCE of queries `[B, d]` against candidates `[C, d]`; `positive [B, C]` marks the
    positives of each query (several allowed: their probabilities are summed)."""
    logits = normalize(q) @ normalize(k).T / temperature
    return -jnp.mean(jax.nn.logsumexp(jnp.where(positive, logits, -1e9), -1) - jax.nn.logsumexp(logits, -1))


def behaviour_pairs(users: np.ndarray, timestamps: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(item, the same user's next item) pairs `[P, 2]` of events in time order (unknown item 0 left out)."""
    order = np.lexsort((timestamps, users))
    u, it = users[order], items[order]
    keep = (u[1:] == u[:-1]) & (it[1:] > 0) & (it[:-1] > 0) & (it[1:] != it[:-1])
    return np.stack([it[:-1][keep], it[1:][keep]], 1)


def train_content_encoder(side: Mapping[str, np.ndarray], pairs: np.ndarray, popularity: np.ndarray,
                          opts: ContentOptions) -> tuple[np.ndarray, dict]:
    """Stages 1 and 2 (module docstring): returns frozen content vectors `[V, dim]` (row 0 = zeros)
    and a report of the stage losses."""
    content = {k: jnp.asarray(side[k]) for k in SIDE_KEYS}
    vocab = tuple(int(side[k].max()) + 1 for k in ("item_title", "item_genres", "item_year"))
    enc = ContentEncoder(vocab, opts.dim, opts.token_dim)
    num_items = side["item_title"].shape[0]
    params = enc.init(jax.random.PRNGKey(opts.seed), content)
    tx = optax.adam(opts.lr)
    state = tx.init(params)
    genre = jnp.asarray(side["item_genres"][:, 0])
    rng = np.random.default_rng(opts.seed)

    def take(idx):
        return {k: v[idx] for k, v in content.items()}

    def align_loss(p, idx):
        t, m = enc.apply(p, take(idx), method=ContentEncoder.views)
        return info_nce(t, m, jnp.eye(len(idx), dtype=bool), opts.temperature)

    def sft_loss(p, anchor, nxt, negatives):
        cand = jnp.concatenate([nxt, negatives])
        q, c = enc.apply(p, take(anchor)), enc.apply(p, take(cand))
        item_pos = jnp.eye(len(anchor), len(cand), dtype=bool) | (nxt[:, None] == cand[None, :])
        cat_pos = genre[nxt][:, None] == genre[cand][None, :]
        return info_nce(q, c, item_pos, opts.temperature) + opts.category_weight * info_nce(q, c, cat_pos, opts.temperature)

    def stepper(loss_fn):
        @jax.jit
        def step(p, s, *args):
            loss, g = jax.value_and_grad(loss_fn)(p, *args)
            updates, s = tx.update(g, s, p)
            return optax.apply_updates(p, updates), s, loss
        return step

    align, sft = stepper(align_loss), stepper(sft_loss)
    items = np.arange(1, num_items)
    report = {}
    for _ in range(opts.align_steps):
        params, state, loss = align(params, state, jnp.asarray(rng.choice(items, min(opts.batch, len(items)), replace=False)))
    report["align_loss"] = float(loss)
    weights = popularity[1:] / popularity[1:].sum()
    for _ in range(opts.sft_steps):
        batch = pairs[rng.integers(0, len(pairs), opts.batch)]
        negatives = rng.choice(items, opts.space_time_negatives, p=weights)  # items of other users' events
        params, state, loss = sft(params, state, jnp.asarray(batch[:, 0]), jnp.asarray(batch[:, 1]), jnp.asarray(negatives))
    if opts.sft_steps:
        report["sft_loss"] = float(loss)
    vectors = np.array(enc.apply(params, content))
    vectors[0] = 0.0
    return vectors, report


class CiUBM(nn.Module):
    """`batch -> logits [B]` (module docstring)."""

    DATA_FIELDS: ClassVar[tuple[str, ...]] = ("content",)

    features: tuple[Feature, ...]
    embed_dim: int = 16
    hidden: Sequence[int] = (256, 128)
    attention_hidden: Sequence[int] = (80, 40)
    activation: str = "prelu"
    normalize: str = "softmax"
    content_dim: int = 32
    content_steps: tuple[int, int] = (200, 400)  # (alignment, C-SFT) steps; (200, 0): the ablation without C-SFT
    use_content: bool = True   # False: the ID branch alone
    target: str = "item_id"
    history: str = "hist_item"
    embed_init_std: float = 1e-4
    tables: tuple = ()
    EMBEDDING_LAYERS = {"embedding": "embed_dim"}  # {layer name: width or its field} (jaxrec.embedding.plan)
    content: Frozen | None = None  # [V_item, content_dim] frozen content vectors (from_dataset)

    @classmethod
    def from_dataset(cls, dataset, options: Mapping) -> dict:
        """Trains the content encoder on the dataset's item side tables and train behaviours."""
        missing = [k for k in SIDE_KEYS if k not in dataset.side]
        if missing:
            raise ValueError(f"CiUBM needs the item content side tables {missing} (MovieLens: dataset.variant='history')")
        train = dataset.splits["train"]
        target = options.get("target", "item_id")
        pairs = behaviour_pairs(train["user_id"], train["timestamp"], train[target])
        popularity = np.bincount(train[target], minlength=dataset.side["item_title"].shape[0]).astype(float) + 1.0
        align, sft = options.get("content_steps", cls.content_steps)
        opts = ContentOptions(dim=options.get("content_dim", 32), align_steps=int(align), sft_steps=int(sft))
        vectors, _ = train_content_encoder(dataset.side, pairs, popularity, opts)
        return {"content": Frozen(vectors.astype(np.float32))}

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        fields, sequences = embedding_layer(self, "embedding", return_sequences=True)(batch)
        target, history, lengths = target_and_history(self, batch, fields, sequences)
        id_interest = TargetAttention(self.attention_hidden, self.activation, self.normalize)(target, history, lengths)
        parts = [fields.reshape(fields.shape[0], -1), id_interest]
        if self.use_content:
            table = jnp.asarray(self.content.value)  # frozen: a constant, never a parameter
            c_target, c_hist = table[batch[self.target]], table[batch[self.history]]
            q = nn.Dense(self.content_dim, name="content_q")(c_target)
            k, v = nn.Dense(self.content_dim, name="content_k")(c_hist), nn.Dense(self.content_dim, name="content_v")(c_hist)
            scores = jnp.einsum("bd,bld->bl", q, k) / jnp.sqrt(self.content_dim)
            w = masked_softmax(scores, length_mask(lengths, c_hist.shape[1]))
            parts += [jnp.einsum("bl,bld->bd", w, v), c_target]
        return MLP(self.hidden, activation=self.activation, out_dim=1)(jnp.concatenate(parts, -1), train)[:, 0]
