"""Query -> bidword rewriting (VALUE, arXiv 2504.05321, spec section 3): a stand-in task built
from MovieLens-100K, and a reader for a user's own (query, bidword, value[, window]) file.

**This is a stand-in for ad data.** VALUE rewrites a search query into advertisers' bidwords
(keywords that carry a bid) and steers generation to high-value ones. No public ad log pairs
queries, bidwords and their revenue, so the task here is synthetic on real strings:

Bidwords (`movielens_bidwords`), M of them, deterministic:
  * every item title, cleaned (`clean_title`): the year "(1995)" and a trailing alias in
    parentheses "(Se7en)" removed, a trailing article moved to the front ("Usual Suspects,
    The" -> "the usual suspects"), accents folded to ASCII, lower case, words `[a-z0-9]+`
    joined by one space; items with the same cleaned title share one bidword;
  * genre / year phrases (`phrase_bidwords`) that at least `min_items` items support:
    "<genre> movies", "<decade>s <genre> movies" ("90s thriller movies") and "<genre> <year>"
    ("comedy 1995"); genre names lower-cased, "-" -> " ", "'" dropped ("sci fi", "childrens").

Values (`zipf_values`) `[M, T]` over T time windows, seeded:

    base_b   = r_b^(-s) / max_b r_b^(-s)          r = a random permutation of 1..M (Zipf, exponent s)
    v[b, t]  = base_b * exp(trend_b * (t - (T - 1) / 2) + eps[b, t])
    trend_b ~ N(0, trend^2) (a persistent drift),  eps[b, t] ~ N(0, noise^2) (transient)

so a gap between two bidwords can be stable (base and trend) or transient (noise). The benchmark
treats windows 0..T-2 as the past the model is trained on and window T-1 as "now", the value
table the weighted trie holds at serving time.

Queries (`noisy_query`, `make_queries`): from a source bidword's words, each word dropped with
probability `dropout` (at least one kept), the kept words shuffled with probability `permute`,
then put in a paraphrase template without synonyms ("watch {}", "{} movie", "movies like {}" ...,
`TEMPLATES`). Sources are every bidword `per_bidword` times plus, for each user, the titles of
their `recent` latest-rated items (`user_recent_sources`: a popularity-weighted draw of titles).
A query string made twice keeps its first source. The split is by query string
(`split_by_query`): a valid or test query is never a train query (its source bidword may be).

Relevance (`word_overlap`): with W(x) the content words of x (`STOPWORDS` removed),
`overlap(g, s) = |W(g) & W(s)| / max(|W(g)|, |W(s)|)`; a generated bidword g is exactly
relevant to the query made from s iff g == s, partially relevant iff overlap >= 0.5 [I: VALUE's
relevance is a human / LLM judgement; this is its stand-in].

A user's own data (`read_rewrite_file`): a .tsv or .csv file with a header naming the columns
`query`, `bidword`, `value` and optionally `window` (an int >= 0; without it one window). One
line per (query, bidword[, window]) observation; the values of a (bidword, window) pair must
agree wherever it appears; a bidword without a value in a window has value 0 there. Errors are
DataErrors naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxrec.data.dataset import LABELS, SPLITS, Dataset
from jaxrec.data.features import Sequence as SequenceSpec
from jaxrec.data.features import lengths_key
from jaxrec.data.fitted import Fitted, apply_fitted
from jaxrec.data.text import MIN_BPE_VOCAB, TOKEN_BYTES, TOKENS, load_tokenizer, token_bytes, train_tokenizer
from jaxrec.errors import ConfigError, DataError

TEMPLATES = ("{}", "{}", "{} movie", "watch {}", "{} film", "movies like {}", "{} online", "best {}", "{} dvd",
             "{} streaming")
STOPWORDS = frozenset({"the", "a", "an", "of", "and", "movie", "movies", "film", "films"})
ARTICLES = ("The", "A", "An", "Il", "La", "Le", "Les", "L'", "El", "Das", "Der", "Die", "Lo")
SPLIT_NAMES = ("train", "valid", "test")


class RewriteData(NamedTuple):
    """A rewriting task.

    bidwords: M strings.  kinds: `[M]` str, 'title' | 'phrase' | 'file'.
    values: `[M, T]` float32 >= 0, value of each bidword in each of T windows.
    queries: Q query strings (one per record; a query with several bidwords has several records).
    sources: `[Q]` int64, the record's bidword (row of `values`).
    split: `[Q]` int8, 0 train / 1 valid / 2 test, by query string.
    """

    bidwords: list[str]
    kinds: np.ndarray
    values: np.ndarray
    queries: list[str]
    sources: np.ndarray
    split: np.ndarray

    def rows(self, split: str) -> np.ndarray:
        """Record indices `[Q_split]` of split 'train' | 'valid' | 'test'."""
        if split not in SPLIT_NAMES:
            raise ValueError(f"split={split!r}: expected one of {SPLIT_NAMES}")
        return np.flatnonzero(self.split == SPLIT_NAMES.index(split))


# ---- strings -------------------------------------------------------------------------------------

def words(text: str) -> list[str]:
    """Lower-case ASCII words `[a-z0-9]+` of `text` (accents folded: 'Cité' -> 'cite'; apostrophes
    dropped: "Jason's" -> 'jasons')."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().replace("'", "")
    return re.findall(r"[a-z0-9]+", ascii_text.lower())


def clean_title(raw: str) -> str:
    """A MovieLens title as a bidword (module docstring): 'Usual Suspects, The (1995)' ->
    'the usual suspects'; 'Seven (Se7en) (1995)' -> 'seven'; 'Postino, Il (1994)' -> 'il postino'."""
    t = re.sub(r"\s*\(\d{4}\)\s*$", "", raw.strip())
    t = re.sub(r"\s*\([^()]*\)\s*$", "", t) or t
    for article in ARTICLES:
        suffix = ", " + article
        if t.endswith(suffix):
            t = article + ("" if article.endswith("'") else " ") + t[: -len(suffix)]
            break
    return " ".join(words(t))


def content_words(text: str) -> frozenset:
    """W(text): its words less `STOPWORDS`."""
    return frozenset(w for w in text.split() if w not in STOPWORDS)


def word_overlap(generated: str, source: str) -> float:
    """`|W(g) & W(s)| / max(|W(g)|, |W(s)|)` in [0, 1] (0 if both are empty)."""
    g, s = content_words(generated), content_words(source)
    return len(g & s) / max(len(g), len(s), 1)


# ---- bidwords from MovieLens ---------------------------------------------------------------------

def _genre_phrase(name: str) -> str:
    return " ".join(words(name.replace("-", " ").replace("'", "")))


def phrase_bidwords(item_genres: Sequence[Sequence[str]], item_years: Sequence[int | None],
                    min_items: int = 5) -> list[str]:
    """Genre / year phrases supported by >= `min_items` items, sorted (module docstring).

    item_genres: per item its genre names ('unknown' ignored); item_years: per item its year or None."""
    counts: dict[str, int] = {}
    for genres, year in zip(item_genres, item_years):
        for g in genres:
            if g == "unknown":
                continue
            name = _genre_phrase(g)
            phrases = [f"{name} movies"]
            if year is not None:
                phrases += [f"{str(year // 10 * 10)[-2:]}s {name} movies", f"{name} {year}"]
            for p in phrases:
                counts[p] = counts.get(p, 0) + 1
    return sorted(p for p, c in counts.items() if c >= min_items)


def read_items(data_dir: str | None = None) -> dict:
    """The items of ml-100k's u.item: 'title' (raw strings), 'year' (int or None), 'genres' (lists),
    in item-id order (`ids [I]`)."""
    from jaxrec.data import movielens

    d = movielens.find_data_dir(data_dir)
    genre_names = [r[0] for r in movielens._read_rows(d / "u.genre", "|", 2)]
    rows = movielens._read_rows(d / "u.item", "|", 5 + len(genre_names), encoding_="latin-1")
    titles, years, genres, ids = [], [], [], []
    for r in rows:
        m = re.search(r"\((\d{4})\)\s*$", r[1])
        ids.append(movielens._int(d / "u.item", r, 0, "item_id"))
        titles.append(r[1])
        years.append(int(m.group(1)) if m else None)
        genres.append([g for g, f in zip(genre_names, r[5:-1]) if f == "1"])
    return {"ids": np.asarray(ids), "title": titles, "year": years, "genres": genres}


def movielens_bidwords(items: dict, min_items: int = 5) -> tuple[list[str], np.ndarray, dict[int, int]]:
    """(bidwords [M], kinds [M], item id -> its title's bidword index) from `read_items`' output:
    cleaned titles (first-seen order, duplicates merged, empty ones dropped), then the phrases."""
    texts, index, item_to_bidword = [], {}, {}
    for item, raw in zip(items["ids"], items["title"]):
        t = clean_title(raw)
        if not t:
            continue
        if t not in index:
            index[t] = len(texts)
            texts.append(t)
        item_to_bidword[int(item)] = index[t]
    kinds = ["title"] * len(texts)
    for p in phrase_bidwords(items["genres"], items["year"], min_items):
        if p not in index:
            index[p] = len(texts)
            texts.append(p)
            kinds.append("phrase")
    return texts, np.asarray(kinds), item_to_bidword


# ---- values --------------------------------------------------------------------------------------

def zipf_values(num: int, windows: int, seed: int = 0, exponent: float = 1.0, trend: float = 0.15,
                noise: float = 0.4) -> np.ndarray:
    """`[num, windows]` float32 values (module docstring): Zipf base over a random ranking, a
    per-bidword log-linear trend, and per-window log-normal noise. max of the base is 1."""
    if num <= 0 or windows <= 0:
        raise ValueError(f"zipf_values: num={num} and windows={windows} must be positive")
    rng = np.random.default_rng(seed)
    rank = rng.permutation(num) + 1
    base = rank.astype(np.float64) ** -float(exponent)
    drift = rng.normal(0.0, trend, size=(num, 1)) * (np.arange(windows) - (windows - 1) / 2)[None, :]
    eps = rng.normal(0.0, noise, size=(num, windows))
    return (base[:, None] * np.exp(drift + eps)).astype(np.float32)


# ---- queries -------------------------------------------------------------------------------------

def noisy_query(source_words: Sequence[str], rng: np.random.Generator, dropout: float = 0.25, permute: float = 0.3,
                templates: Sequence[str] = TEMPLATES) -> str:
    """One query from a bidword's words: word dropout (>= 1 word kept), permutation, a template."""
    kept = [w for w in source_words if rng.random() >= dropout] if len(source_words) > 1 else list(source_words)
    if not kept:
        kept = [source_words[int(rng.integers(len(source_words)))]]
    if len(kept) > 1 and rng.random() < permute:
        kept = [kept[i] for i in rng.permutation(len(kept))]
    return templates[int(rng.integers(len(templates)))].format(" ".join(kept))


def user_recent_sources(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, item_to_bidword: dict[int, int],
                        recent: int = 3) -> np.ndarray:
    """For every user (ascending id) the title bidwords of their `recent` latest-rated items
    (ties by file order), concatenated: `[<= num_users * recent]` int64. `users, items, timestamps [R]`."""
    order = np.lexsort((np.arange(len(users)), timestamps, users))
    out = []
    u_sorted = users[order]
    ends = np.flatnonzero(np.r_[u_sorted[1:] != u_sorted[:-1], True])
    starts = np.r_[0, ends[:-1] + 1]
    for start, end in zip(starts, ends):
        for i in order[max(start, end - recent + 1): end + 1]:
            if int(items[i]) in item_to_bidword:
                out.append(item_to_bidword[int(items[i])])
    return np.asarray(out, np.int64)


def make_queries(bidwords: Sequence[str], sources: np.ndarray, seed: int = 0, dropout: float = 0.25,
                 permute: float = 0.3) -> tuple[list[str], np.ndarray]:
    """(queries [Q], their sources [Q]) : one `noisy_query` per entry of `sources` (bidword
    indices), in order, from one seeded generator; a repeated query string keeps its first source."""
    rng = np.random.default_rng(seed)
    split_words = [b.split() for b in bidwords]
    seen, queries, kept = set(), [], []
    for s in sources:
        q = noisy_query(split_words[int(s)], rng, dropout, permute)
        if q not in seen:
            seen.add(q)
            queries.append(q)
            kept.append(int(s))
    return queries, np.asarray(kept, np.int64)


def split_by_query(queries: Sequence[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                   seed: int = 0) -> np.ndarray:
    """`[Q]` int8 split ids (0 train, 1 valid, 2 test): the distinct query strings (sorted) are
    permuted by `seed` and cut by `fractions`, so every record of a query lands in one split."""
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions={fractions}: expected three non-negative numbers summing to 1")
    distinct = sorted(set(queries))
    perm = np.random.default_rng(seed).permutation(len(distinct))
    cuts = np.round(np.cumsum(fractions)[:2] * len(distinct)).astype(int)
    split_of = {}
    for rank, i in enumerate(perm):
        split_of[distinct[i]] = int(np.searchsorted(cuts, rank, side="right"))
    return np.asarray([split_of[q] for q in queries], np.int8)


def movielens_rewriting(data_dir: str | None = None, seed: int = 0, windows: int = 6, per_bidword: int = 3,
                        recent: int = 3, min_items: int = 5, exponent: float = 1.0, trend: float = 0.15,
                        noise: float = 0.4, dropout: float = 0.25, permute: float = 0.3,
                        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> RewriteData:
    """The MovieLens stand-in task (module docstring); every step is seeded by `seed`."""
    from jaxrec.data.movielens import read_raw

    items = read_items(data_dir)
    bidwords, kinds, item_to_bidword = movielens_bidwords(items, min_items)
    raw = read_raw(data_dir)
    sources = np.concatenate([np.repeat(np.arange(len(bidwords)), per_bidword),
                              user_recent_sources(raw["user_id"], raw["item_id"], raw["timestamp"], item_to_bidword, recent)])
    sources = sources[np.random.default_rng([seed, 1]).permutation(len(sources))]
    queries, sources = make_queries(bidwords, sources, seed, dropout, permute)
    values = zipf_values(len(bidwords), windows, seed, exponent, trend, noise)
    return RewriteData(bidwords, kinds, values, queries, sources, split_by_query(queries, fractions, seed))


# ---- a user's own file ---------------------------------------------------------------------------

COLUMNS = ("query", "bidword", "value", "window")


def read_rewrite_file(path: str | Path, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                      seed: int = 0) -> RewriteData:
    """A user's (query, bidword, value[, window]) file as a `RewriteData` (module docstring).

    Records: the distinct (query, bidword) pairs in first-seen order; split by query string
    (`split_by_query(fractions, seed)`). Values `[M, T]`, T = 1 + the largest window.
    Raises DataError naming the file and line (and field) of the first bad row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (the query/bidword/value file)")
    suffix = path.suffix.lower()
    if suffix not in (".tsv", ".csv"):
        raise DataError(f"{path}: expected a .tsv or .csv file, got {suffix or 'no extension'!r}")
    with open(path, encoding="utf-8", newline="") as fh:
        try:
            rows = list(csv.reader(fh, delimiter="\t" if suffix == ".tsv" else ","))
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot be parsed as {suffix[1:].upper()} UTF-8 text ({e})") from None
    if not rows:
        raise DataError(f"{path}: empty; expected a header naming the columns query, bidword, value[, window]")
    header = [h.strip().lower() for h in rows[0]]
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in COLUMNS[:3] if c not in header]
    if unknown or missing or len(set(header)) != len(header):
        raise DataError(f"{path}:1: header {rows[0]} must name the columns query, bidword, value and optionally "
                        f"window, once each" + (f"; unknown {unknown}" if unknown else "")
                        + (f"; missing {missing}" if missing else ""))
    col = {h: i for i, h in enumerate(header)}
    bid_index: dict[str, int] = {}
    seen_values: dict[tuple[int, int], tuple[float, int]] = {}
    pairs: dict[tuple[str, int], None] = {}
    for lineno, row in enumerate(rows[1:], 2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{lineno}: expected {len(header)} fields ({', '.join(header)}), got {len(row)}")
        query, bidword = row[col["query"]].strip(), row[col["bidword"]].strip()
        for name, text in (("query", query), ("bidword", bidword)):
            if not text:
                raise DataError(f"{path}:{lineno}: field {name!r} is empty")
        try:
            value = float(row[col["value"]])
        except ValueError:
            raise DataError(f"{path}:{lineno}: field 'value' = {row[col['value']][:40]!r} is not a number") from None
        if not np.isfinite(value) or value < 0:
            raise DataError(f"{path}:{lineno}: field 'value' = {value} must be finite and >= 0")
        window = 0
        if "window" in col:
            text = row[col["window"]].strip()
            if not re.fullmatch(r"\d+", text):
                raise DataError(f"{path}:{lineno}: field 'window' = {text[:40]!r} is not an integer >= 0")
            window = int(text)
        b = bid_index.setdefault(bidword, len(bid_index))
        prev = seen_values.get((b, window))
        if prev is not None and prev[0] != value:
            raise DataError(f"{path}:{lineno}: field 'value' = {value} for bidword {bidword!r} in window {window} "
                            f"disagrees with line {prev[1]} ({prev[0]})")
        seen_values[(b, window)] = (value, lineno)
        pairs[(query, b)] = None
    if not pairs:
        raise DataError(f"{path}: no data rows after the header")
    values = np.zeros((len(bid_index), 1 + max(w for _, w in seen_values)), np.float32)
    for (b, w), (v, _) in seen_values.items():
        values[b, w] = v
    queries = [q for q, _ in pairs]
    return RewriteData(list(bid_index), np.asarray(["file"] * len(bid_index)), values, queries,
                       np.asarray([b for _, b in pairs], np.int64), split_by_query(queries, fractions, seed))


# ---- the task as a Dataset (train.py) ----------------------------------------------------------

IGNORE = -1  # a label the loss and the metrics skip (the prompt's tokens, padding)


def encode_rewriting(tokenizer, queries: Sequence[str], targets: Sequence[str], context: int = 0,
                     where: str = "rewriting") -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forcing rows of (query, bidword) pairs for a causal LM.

        row  = ids(query) + [SEP] + ids(bidword) + [EOS],   SEP = tokenizer size (one id past it), EOS = 0
        tokens [N, T+1] int32 (right-padded with EOS), labels [N, T] int32 = tokens[:, 1:] on the
        continuation (the bidword's ids and EOS), IGNORE on the query, SEP and padding

    so the loss is the SFT cross-entropy of the continuation only, and a model decodes from
    `ids(query) + [SEP]` (what `benchmarks/value_rewriting.py` does). T = `context`, or (0) the
    longest row - 1; DataError naming the first row longer than T + 1.
    """
    sep = tokenizer.get_vocab_size()
    q_ids = [e.ids for e in tokenizer.encode_batch(list(queries))]
    b_ids = [e.ids for e in tokenizer.encode_batch(list(targets))]
    rows = [q + [sep] + b + [0] for q, b in zip(q_ids, b_ids)]
    width = max(map(len, rows)) if not context else int(context) + 1
    tokens = np.zeros((len(rows), width), np.int32)
    labels = np.full((len(rows), width - 1), IGNORE, np.int32)
    for i, (row, q) in enumerate(zip(rows, q_ids)):
        if len(row) > width:
            raise DataError(f"{where} row {i} ({queries[i]!r} -> {targets[i]!r}) has {len(row)} tokens, more than "
                            f"dataset.context + 1 = {width}; raise dataset.context or leave it 0 (the longest row)")
        tokens[i, :len(row)] = row
        labels[i, len(q):len(row) - 1] = row[len(q) + 1:]
    return tokens, labels


def load_rewriting(source: str = "movielens", path: str | None = None, data_dir: str | None = None,
                   data_seed: int = 0, windows: int = 6, per_bidword: int = 3, vocab_size: int = 1024,
                   context: int = 0, split: tuple = (0.8, 0.1, 0.1), split_seed: int = 0, max_queries: int = 0,
                   *, fitted: Fitted | None = None) -> Dataset:
    """Query -> bidword SFT data as a `Dataset` for `train.py` (`dataset.name='rewriting'`, task 'lm').

    Args:
      source: 'movielens' (`movielens_rewriting(data_dir, data_seed, windows, per_bidword)`, the
        stand-in; its own split by query) or 'file' (`read_rewrite_file(path, split, split_seed)`).
      vocab_size: the byte-level BPE's size, fitted on the bidwords and the train queries (the
        model's vocabulary is one more: SEP). context: T (0 = the longest row).
      max_queries: keep the first this many records of each split (0 = all; for quick runs).
      fitted: an earlier load's state: its tokenizer is reused; DataError if the task differs.
    Returns:
      Dataset 'rewriting/<source>': feature `tokens` (vocab = tokenizer + SEP), splits
      `{tokens [N, T+1], tokens_length [N], labels [N, T]}` (`encode_rewriting`), side
      `token_bytes [V+1]` (SEP: 0 bytes), `values [M, W]`, `bidword_tokens [M, N_max]` (each bidword's
      ids + EOS, EOS-padded: the weighted trie's sequences); fitted extra: the tokenizer, `sep_id`.
    """
    if source not in ("movielens", "file"):
        raise ConfigError(f"dataset.source={source!r}: expected 'movielens' (the stand-in) or 'file' (dataset.path)")
    if int(vocab_size) < MIN_BPE_VOCAB:
        raise ConfigError(f"dataset.vocab_size={vocab_size}: a byte-level BPE has at least {MIN_BPE_VOCAB} ids")
    if source == "file":
        if not path:
            raise ConfigError("dataset.source='file' reads dataset.path (a .tsv/.csv of query, bidword, value[, window])")
        data = read_rewrite_file(path, tuple(split), int(split_seed))
    else:
        data = movielens_rewriting(data_dir, int(data_seed), int(windows), int(per_bidword))
    digest = hashlib.sha256("\n".join(list(data.bidwords) + list(data.queries)).encode()).hexdigest()
    rows = {s: data.rows(s)[:int(max_queries)] if max_queries else data.rows(s) for s in SPLITS}
    if fitted is None:
        tokenizer = train_tokenizer(list(data.bidwords) + [data.queries[i] for i in rows["train"]], int(vocab_size))
    else:
        if fitted.extra.get("task_sha256") != digest or "tokenizer" not in fitted.extra:
            raise DataError(f"fitted state of the rewriting loader: fitted on another task (SHA-256 "
                            f"{str(fitted.extra.get('task_sha256'))[:12]}..., this one {digest[:12]}...)")
        tokenizer = load_tokenizer(fitted.extra["tokenizer"])
    size = tokenizer.get_vocab_size() + 1                                   # + SEP
    splits = {}
    for s in SPLITS:
        queries, targets = [data.queries[i] for i in rows[s]], [data.bidwords[b] for b in data.sources[rows[s]]]
        if not queries:
            raise DataError(f"rewriting/{source}: the {s} split is empty")
        tokens, labels = encode_rewriting(tokenizer, queries, targets, context, f"rewriting/{source} {s} split")
        splits[s] = {TOKENS: tokens, lengths_key(TOKENS): np.full(len(tokens), tokens.shape[1], np.int32),
                     LABELS: labels}
    width = max(v[TOKENS].shape[1] for v in splits.values())
    for s, v in splits.items():                                              # one T over the splits
        pad = width - v[TOKENS].shape[1]
        v[TOKENS] = np.pad(v[TOKENS], ((0, 0), (0, pad)))
        v[LABELS] = np.pad(v[LABELS], ((0, 0), (0, pad)), constant_values=IGNORE)
        v[lengths_key(TOKENS)][:] = width
    spec = SequenceSpec(TOKENS, max_len=width, encoding="identity", combiner=None, vocab_size=size)
    if fitted is not None:
        (spec,), _ = apply_fitted(fitted, (spec,), "fitted state of the rewriting loader")
    bid = [e.ids + [0] for e in tokenizer.encode_batch(list(data.bidwords))]
    bid_tokens = np.zeros((len(bid), max(map(len, bid))), np.int32)
    for i, t in enumerate(bid):
        bid_tokens[i, :len(t)] = t
    side = {TOKEN_BYTES: np.append(token_bytes(tokenizer), 0), "values": data.values, "bidword_tokens": bid_tokens}
    extra = {"task": f"rewriting/{source}", "task_sha256": digest, "vocab_size": int(vocab_size),
             "tokenizer": tokenizer.to_str(), "sep_id": size - 1}
    return Dataset(name=f"rewriting/{source}", features=(spec,), splits=splits, side=side, fitted=Fitted((spec,), {}, extra))
