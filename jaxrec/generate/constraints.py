"""Logits processors: the decoding hook, and the constraints that plug into it.

A processor sees, at every decoding step, the `DecodeState` (the tokens generated so far, the
step index, and its own carry, a pytree with one leading row per hypothesis) and the step's
scores `[N, V]` -- the model's log-probabilities `log_softmax(logits)` -- and returns new scores
`[N, V]`; `-inf` forbids a token. After the decoder picks tokens `[N]` it calls `advance(state,
tokens)`. Beam search reorders every carry leaf with the cache (rows gathered by parent beam),
so a carry must keep hypotheses on its leading axis.

Returned scores need not be normalised: greedy takes their argmax, sampling their softmax, beam
search adds them to the hypothesis' score as they are. So a pure mask keeps the model's exact
log-probability of every allowed sequence (what beam search ranks), and a re-weighting is
"p'(t) proportional to ..." with the constant dropped.

Processors are pytrees (`flax.struct.dataclass`): their arrays are arguments of the jitted
decoder, so a new values array (`WeightedTrie.with_values`) decodes without recompiling.

Constraints (all static shapes, jit-able):

- `TrieConstraint`: a prefix trie over allowed token sequences (`build_trie`, host side) as dense
  arrays: `children [num_nodes, V]` (next node, or -1), `terminal [num_nodes]`; the carry is each
  hypothesis' node, a step moves it to `children[node, token]`. Allowed tokens at node n:
  `{t : children[n, t] >= 0}`, plus `eos_id` where n ends a sequence.
- `HashSetConstraint` (NEZHA): fixed-length codes (c_1..c_L), c_i in [0, K), encoded
  `code = c_1 + K c_2 + ... + K^(L-1) c_L`; per-level prefix sets `P_i = {code mod K^i}`, sorted;
  at step i token t (code `c = t - offsets[i]`) is allowed iff `partial + K^(i-1) c` is in `P_i`
  (`searchsorted`), the carry being the partial code.
- `WeightedTrieConstraint` (VALUE, spec section 3): a trie with per-node values v(n), the
  `aggregate` ('max', the default; 'mean' or 'sum') of the item values in the subtree; over the
  allowed children A of the current node

      p'(t) proportional to p(t)^(1/tau) * (v(child_t) / max_{t' in A} v(child_t'))^alpha

  i.e. scores `log p(t) / tau + alpha * log(v(child_t) / max_A v)` (EOS at a terminal node counts
  with the value of the item ending there). alpha = 0, tau = 1 is exactly `TrieConstraint`. With
  alpha > 0 a child worth 0 beside a child worth more is forbidden (p' = 0); where every allowed
  child is worth 0 the ratio is taken as 1 (0/0: no preference), so decoding never dead-ends.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np

NEG_INF = -jnp.inf


class DecodeState(NamedTuple):
    """What a processor sees: `tokens [N, max_new_tokens]` generated so far (pad beyond `step`),
    `step` an int32 scalar (the index of the token being chosen), `carry` the processor's pytree."""

    tokens: jax.Array
    step: jax.Array
    carry: Any


@struct.dataclass
class LogitsProcessor:
    """The identity processor; subclasses (also `@struct.dataclass`) override the three methods."""

    def init(self, rows: int) -> Any:
        """The carry for `rows` hypotheses (a pytree with leading axis `rows`)."""
        return ()

    def __call__(self, state: DecodeState, scores: jax.Array) -> jax.Array:
        """`scores [N, V]` (log-probabilities) -> new scores `[N, V]` (-inf = forbidden)."""
        return scores

    def advance(self, state: DecodeState, tokens: jax.Array) -> Any:
        """The carry after the hypotheses in `state` took `tokens [N]` at `state.step`."""
        return state.carry


@struct.dataclass
class FunctionProcessor(LogitsProcessor):
    """A plain function `(state, scores) -> scores` as a stateless processor (hashed by identity)."""

    fn: Callable = struct.field(pytree_node=False)

    def __call__(self, state, scores):
        return self.fn(state, scores)


@struct.dataclass
class Chain(LogitsProcessor):
    """Processors applied in turn; the carry is the tuple of theirs."""

    processors: tuple = ()

    def init(self, rows):
        return tuple(p.init(rows) for p in self.processors)

    def __call__(self, state, scores):
        for p, c in zip(self.processors, state.carry):
            scores = p(state._replace(carry=c), scores)
        return scores

    def advance(self, state, tokens):
        return tuple(p.advance(state._replace(carry=c), tokens) for p, c in zip(self.processors, state.carry))


def as_processor(processor: LogitsProcessor | Callable | Sequence | None) -> LogitsProcessor:
    """None -> identity; a function -> `FunctionProcessor`; a list/tuple -> `Chain`."""
    if processor is None:
        return LogitsProcessor()
    if isinstance(processor, LogitsProcessor):
        return processor
    if isinstance(processor, (list, tuple)):
        return Chain(tuple(as_processor(p) for p in processor))
    if callable(processor):
        return FunctionProcessor(processor)
    raise TypeError(f"logits_processor: expected a LogitsProcessor, a function (state, scores) -> scores, "
                    f"a list of them or None; got {type(processor).__name__}")


# ---- prefix trie --------------------------------------------------------------------------------

class Trie(NamedTuple):
    """Host-side (numpy) trie over token sequences. Node 0 is the root, the last node a sink
    (no children: where a forbidden token leads).

    children: `[num_nodes, V]` int32, next node or -1.   terminal: `[num_nodes]` bool, a sequence ends here.
    paths: `[num_sequences, L_max]` int32, the nodes each sequence passes (root excluded), -1 padded.
    """

    children: np.ndarray
    terminal: np.ndarray
    paths: np.ndarray

    @property
    def num_nodes(self) -> int:
        return self.children.shape[0]


def build_trie(sequences: Sequence[Sequence[int]], vocab_size: int, num_nodes: int | None = None) -> Trie:
    """A `Trie` over `sequences` (lists of token ids in [0, vocab_size)); duplicates share their
    path. Memory: num_nodes x V int32. `num_nodes` pads the tables to a fixed size (unreachable
    nodes), so another allowed set of the same size bound reuses the compiled decoder."""
    seqs = [list(map(int, s)) for s in sequences]
    if not seqs:
        raise ValueError("build_trie: no sequences")
    rows: list[dict] = [{}]
    terminal = [False]
    paths = []
    for i, s in enumerate(seqs):
        if not s:
            raise ValueError(f"build_trie: sequence {i} is empty")
        node, path = 0, []
        for t in s:
            if not 0 <= t < vocab_size:
                raise ValueError(f"build_trie: sequence {i} has token id {t} outside the vocabulary [0, {vocab_size})")
            if t not in rows[node]:
                rows[node][t] = len(rows)
                rows.append({})
                terminal.append(False)
            node = rows[node][t]
            path.append(node)
        terminal[node] = True
        paths.append(path)
    n = len(rows) + 1  # + the sink
    if num_nodes is not None:
        if num_nodes < n:
            raise ValueError(f"build_trie: num_nodes={num_nodes} < {n} nodes needed (the sink included)")
        n = num_nodes
    children = np.full((n, vocab_size), -1, np.int32)
    for node, row in enumerate(rows):
        for t, child in row.items():
            children[node, t] = child
    width = max(map(len, paths))
    path_array = np.full((len(paths), width), -1, np.int32)
    for i, p in enumerate(paths):
        path_array[i, :len(p)] = p
    return Trie(children, np.asarray(terminal + [False] * (n - len(terminal))), path_array)


def _trie_allowed(children: jax.Array, terminal: jax.Array, node: jax.Array, eos_id: int | None):
    """(allowed `[N, V]`, child `[N, V]`) at nodes `[N]`."""
    child = children[node]
    allowed = child >= 0
    if eos_id is not None:
        allowed = allowed.at[:, eos_id].set(terminal[node])
    return allowed, child


def _trie_advance(children: jax.Array, node: jax.Array, tokens: jax.Array) -> jax.Array:
    nxt = jnp.take_along_axis(children[node], tokens[:, None].astype(jnp.int32), axis=1)[:, 0]
    return jnp.where(nxt >= 0, nxt, children.shape[0] - 1).astype(jnp.int32)  # off the trie: the sink


@struct.dataclass
class TrieConstraint(LogitsProcessor):
    """Only continuations along the trie; with `eos_id`, EOS exactly where a sequence ends.
    Without it (fixed-length mode) decode exactly the sequences' length."""

    children: jax.Array
    terminal: jax.Array
    eos_id: int | None = struct.field(pytree_node=False, default=None)

    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]], vocab_size: int, eos_id: int | None = None,
              num_nodes: int | None = None) -> "TrieConstraint":
        """From a list of allowed token sequences (not containing `eos_id`); `num_nodes` as `build_trie`."""
        trie = build_trie(sequences, vocab_size, num_nodes)
        _check_eos_outside(trie, eos_id)
        return cls(jnp.asarray(trie.children), jnp.asarray(trie.terminal), eos_id)

    def init(self, rows):
        return jnp.zeros((rows,), jnp.int32)

    def __call__(self, state, scores):
        allowed, _ = _trie_allowed(self.children, self.terminal, state.carry, self.eos_id)
        return jnp.where(allowed, scores, NEG_INF)

    def advance(self, state, tokens):
        return _trie_advance(self.children, state.carry, tokens)


def _check_eos_outside(trie: Trie, eos_id: int | None) -> None:
    if eos_id is not None:
        if not 0 <= eos_id < trie.children.shape[1]:
            raise ValueError(f"eos_id={eos_id} outside the vocabulary [0, {trie.children.shape[1]})")
        if (trie.children[:, eos_id] >= 0).any():
            raise ValueError(f"eos_id={eos_id} occurs inside an allowed sequence; sequences must not contain EOS")


# ---- weighted trie (VALUE) ---------------------------------------------------------------------

@struct.dataclass
class WeightedTrieConstraint(LogitsProcessor):
    """VALUE's weighted trie (module docstring). `node_values [num_nodes]` = the `aggregate` of the
    item values in the subtree, `end_values [num_nodes]` = the value of the item ending at the node;
    `alpha`, `tau` are arrays too, so new values or weights decode without recompiling.

    Which aggregate VALUE uses is not stated in what we could read of the paper [I]: 'max' (a
    prefix is worth its best completion, the default) matches "steer to high-value bidwords";
    'mean' favours prefixes whose completions are all valuable; 'sum' favours crowded prefixes."""

    children: jax.Array
    terminal: jax.Array
    paths: jax.Array
    node_values: jax.Array
    end_values: jax.Array
    alpha: jax.Array
    tau: jax.Array
    eos_id: int | None = struct.field(pytree_node=False, default=None)
    aggregate: str = struct.field(pytree_node=False, default="max")

    AGGREGATES = ("max", "mean", "sum")

    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]], values: Sequence[float], vocab_size: int, alpha: float = 1.0,
              tau: float = 1.0, eos_id: int | None = None, num_nodes: int | None = None,
              aggregate: str = "max") -> "WeightedTrieConstraint":
        """From allowed sequences and one non-negative value per sequence; `num_nodes` as `build_trie`;
        `aggregate` 'max' | 'mean' | 'sum' (class docstring)."""
        if aggregate not in cls.AGGREGATES:
            raise ValueError(f"aggregate={aggregate!r}: expected one of {cls.AGGREGATES}")
        trie = build_trie(sequences, vocab_size, num_nodes)
        _check_eos_outside(trie, eos_id)
        z = jnp.zeros((trie.num_nodes,), jnp.float32)
        out = cls(jnp.asarray(trie.children), jnp.asarray(trie.terminal), jnp.asarray(trie.paths), z, z,
                  jnp.float32(alpha), jnp.float32(tau), eos_id, aggregate)
        return out.with_values(values)

    def with_values(self, values: Sequence[float] | np.ndarray) -> "WeightedTrieConstraint":
        """The same trie with new item values `[num_sequences]` (>= 0; host side, outside jit): only the value arrays change."""
        paths = np.asarray(self.paths)
        values = np.asarray(values, np.float32)
        if values.shape != (paths.shape[0],):
            raise ValueError(f"values: expected one per sequence, shape ({paths.shape[0]},); got {values.shape}")
        if (values < 0).any() or not np.isfinite(values).all():
            raise ValueError("values must be finite and >= 0")
        node = np.zeros(self.children.shape[0], np.float32)
        end = np.zeros_like(node)
        mask = paths >= 0
        item_values = np.broadcast_to(values[:, None], paths.shape)[mask]
        if self.aggregate == "max":
            np.maximum.at(node, paths[mask], item_values)
        else:
            np.add.at(node, paths[mask], item_values)
            if self.aggregate == "mean":
                count = np.bincount(paths[mask], minlength=len(node)).astype(np.float32)
                node = node / np.maximum(count, 1)
        last = paths[np.arange(len(paths)), mask.sum(1) - 1]
        np.maximum.at(end, last, values)
        return self.replace(node_values=jnp.asarray(node), end_values=jnp.asarray(end))

    def init(self, rows):
        return jnp.zeros((rows,), jnp.int32)

    def __call__(self, state, scores):
        node = state.carry
        allowed, child = _trie_allowed(self.children, self.terminal, node, self.eos_id)
        v = self.node_values[jnp.maximum(child, 0)]
        if self.eos_id is not None:
            v = v.at[:, self.eos_id].set(self.end_values[node])
        v = jnp.where(allowed, v, 0.0)
        vmax = jnp.max(v, axis=-1, keepdims=True)
        ratio = jnp.where(vmax > 0, v / jnp.where(vmax > 0, vmax, 1.0), 1.0)  # all children worth 0: no preference
        log_ratio = jnp.where(ratio > 0, jnp.log(jnp.where(ratio > 0, ratio, 1.0)), NEG_INF)
        bonus = jnp.where(self.alpha == 0, 0.0, self.alpha * log_ratio)
        return jnp.where(allowed, scores / self.tau + bonus, NEG_INF)

    def advance(self, state, tokens):
        return _trie_advance(self.children, state.carry, tokens)


# ---- hash set (NEZHA) --------------------------------------------------------------------------

_SENTINEL = np.iinfo(np.int32).max


@struct.dataclass
class HashSetConstraint(LogitsProcessor):
    """NEZHA's prefix-set verifier for fixed-length codes (module docstring). Decode exactly L
    steps (`max_new_tokens = L`, no EOS); at steps >= L every token is forbidden.

    prefix_sets: `[L, M]` int32, row i the sorted distinct `code mod K^(i+1)`, padded with int32 max.
    powers: `[L]` K^i.  offsets: `[L]` token id of code 0 at each level.
    """

    prefix_sets: jax.Array
    powers: jax.Array
    offsets: jax.Array
    codebook_size: int = struct.field(pytree_node=False, default=0)

    @classmethod
    def build(cls, codes: np.ndarray | Sequence[Sequence[int]], codebook_size: int,
              offsets: Sequence[int] | None = None) -> "HashSetConstraint":
        """`codes [M, L]` with entries in [0, K); token of code c at level i = `offsets[i] + c`
        (default `i * K`: level-specific tokens)."""
        codes = np.asarray(codes, np.int64)
        k = int(codebook_size)
        if codes.ndim != 2 or codes.size == 0:
            raise ValueError(f"codes: expected a non-empty [M, L] array, got shape {codes.shape}")
        if codes.min() < 0 or codes.max() >= k:
            raise ValueError(f"codes must lie in [0, codebook_size={k}); got [{codes.min()}, {codes.max()}]")
        L = codes.shape[1]
        if k ** L >= _SENTINEL:
            raise ValueError(f"codebook_size^L = {k}^{L} does not fit int32 codes")
        offsets = np.arange(L) * k if offsets is None else np.asarray(offsets, np.int64)
        if offsets.shape != (L,):
            raise ValueError(f"offsets: expected {L} (one per level), got shape {offsets.shape}")
        powers = k ** np.arange(L, dtype=np.int64)
        code = codes @ powers
        sets = [np.unique(code % (k * p)) for p in powers]
        table = np.full((L, max(map(len, sets))), _SENTINEL, np.int64)
        for i, s in enumerate(sets):
            table[i, :len(s)] = s
        return cls(jnp.asarray(table, jnp.int32), jnp.asarray(powers, jnp.int32), jnp.asarray(offsets, jnp.int32), k)

    def init(self, rows):
        return jnp.zeros((rows,), jnp.int32)

    def _level(self, step):
        return jnp.minimum(step, self.powers.shape[0] - 1)

    def __call__(self, state, scores):
        level = self._level(state.step)
        c = jnp.arange(scores.shape[-1], dtype=jnp.int32) - self.offsets[level]               # [V] codes
        in_range = (c >= 0) & (c < self.codebook_size) & (state.step < self.powers.shape[0])
        cand = state.carry[:, None] + self.powers[level] * jnp.where(in_range, c, 0)[None, :]  # [N, V] partial codes
        row = self.prefix_sets[level]
        idx = jnp.clip(jnp.searchsorted(row, cand), 0, row.shape[0] - 1)
        allowed = in_range[None, :] & (row[idx] == cand)
        return jnp.where(allowed, scores, NEG_INF)

    def advance(self, state, tokens):
        level = self._level(state.step)
        c = jnp.clip(tokens.astype(jnp.int32) - self.offsets[level], 0, self.codebook_size - 1)
        return state.carry + self.powers[level] * c
