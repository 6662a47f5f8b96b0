"""Feature specs: small frozen dataclasses that describe how a raw column becomes model input.

Three kinds, one per input shape:

* `Categorical`  -> int32 ids `[B]`.
* `Sequence`     -> int32 ids `[B, max_len]` (0-padded) plus lengths `[B]` under
                    `lengths_key(name)`; multi-hot fields (genres) and behaviour sequences.
* `Numeric`      -> float32 `[B]`, or, with `boundaries`, bucket ids `[B]` (then it is
                    embedded like a categorical field).

Ids: row 0 of every table means "unknown": a value not seen in train (vocab encoding),
a missing value (hash encoding), or padding (sequences). `vocab_size` is the number of
embedding rows including row 0; it is filled in when the encoders are fitted on the train
split (`jaxrec.data.encoding.fit`), or given up front for `encoding='identity'` (columns that
already hold integer ids in `[0, vocab_size)`) and `encoding='dynamic'`.

`encoding='dynamic'` (categorical only) fits no vocabulary: the column becomes 64-bit keys
(a stable hash of the raw int64 or string value) carried as uint32 `[B, 2]` (hi, lo; (0, 0)
= missing), and the trainer maps them to rows in every step through a fixed-capacity hash
table (`jaxrec.embedding.dynamic_vocab`) of `vocab_size` rows that admits ids seen
`min_count` times and evicts ids unseen for `steps_to_live` steps.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Union

Encoding = Literal["vocab", "hash", "identity", "dynamic"]


@dataclasses.dataclass(frozen=True)
class Categorical:
    """One categorical token per row.

    Attributes:
      name: feature name, the key in the batch dict.
      column: raw column it is read from (default: `name`).
      encoding: 'vocab' (vocabulary from the train split, OOV -> 0), 'hash' (stable hash
        into `hash_buckets` ids, 0 = missing), 'identity' (ints already in range) or
        'dynamic' (raw keys mapped to rows while training; see the module docstring).
      hash_buckets: number of ids for 'hash'.
      min_count: 'vocab' keeps values seen at least this often in train; 'dynamic' admits a
        value into the table once seen this often while training.
      vocab_size: embedding rows incl. row 0; required for 'identity' and 'dynamic' (the
        table's capacity), else resolved by fit.
      group: name of a shared embedding table (features with the same group share rows,
        and, for 'dynamic', one vocabulary).
      admission: 'dynamic' only: how counts are kept until admission, 'min_count' (exact,
        DeepRec CounterFilter) or 'bloom' (counting Bloom filter, DeepRec CBFFilter).
      steps_to_live: 'dynamic' only: evict a value unseen for this many steps (0 = never).
      bloom_size: 'dynamic' only: pending-count slots ('min_count') or Bloom counters.
    """

    name: str
    column: str | None = None
    encoding: Encoding = "vocab"
    hash_buckets: int | None = None
    min_count: int = 1
    vocab_size: int | None = None
    group: str | None = None
    admission: Literal["min_count", "bloom"] = "min_count"
    steps_to_live: int = 0
    bloom_size: int = 1 << 20

    @property
    def source(self) -> str:
        return self.column or self.name


@dataclasses.dataclass(frozen=True)
class Sequence:
    """A variable-length list of tokens per row (multi-hot field or behaviour sequence).

    Raw values are strings joined by `separator` (or lists). Longer lists keep their
    first `max_len` tokens (`truncate='head'`) or their last (`'tail'`, for histories).
    `combiner` is how the embedding layer pools the tokens: 'mean', 'sum', or None to
    keep the `[B, L, D]` sequence for attention models.

    Overflow is never silent: rows longer than `max_len` are truncated at encoding time
    with a logged count; with `batch_capacity` set, a batch keeps at most that many ids of
    this feature (static capacity, in row order), and the ids dropped beyond it are counted
    in the training metrics (`overflow_ids/<name>`).
    """

    name: str
    max_len: int
    column: str | None = None
    separator: str = "|"
    encoding: Encoding = "vocab"
    hash_buckets: int | None = None
    min_count: int = 1
    vocab_size: int | None = None
    group: str | None = None
    combiner: Literal["mean", "sum"] | None = "mean"
    truncate: Literal["head", "tail"] = "head"
    batch_capacity: int | None = None

    @property
    def source(self) -> str:
        return self.column or self.name


@dataclasses.dataclass(frozen=True)
class Numeric:
    """A real-valued column.

    `transform` is applied first: 'log1p' = log(1 + max(x, 0)); 'log_square' = floor(log(x)^2)
    for x > 2, the usual Criteo integer transform; 'standardize' = (x - mean) / std, with `mean`
    and `std` (population std, ddof 0; 1 if it is 0) fitted on the finite train values unless
    given. Missing values (empty, NaN, +-inf) become `fill_value`.

    With `boundaries` b_1 < ... < b_K the (transformed) value is bucketized into id
    1 + #{k : b_k <= x}, in 1..K+1 (0 = missing), and embedded like a categorical field; without,
    it is fed as a float. `quantiles=q` (config: `buckets={'quantiles': q}`) fits the boundaries
    on the train split: the distinct values of the empirical k/q quantiles, k = 1..q-1 (numpy's
    default, linear interpolation), of the finite transformed train values.
    """

    name: str
    column: str | None = None
    transform: Literal["none", "log1p", "log_square", "standardize"] = "none"
    fill_value: float = 0.0
    boundaries: tuple[float, ...] | None = None
    quantiles: int | None = None
    mean: float | None = None
    std: float | None = None

    @property
    def source(self) -> str:
        return self.column or self.name

    @property
    def vocab_size(self) -> int | None:
        return None if self.boundaries is None else len(self.boundaries) + 2

    @property
    def is_sparse(self) -> bool:
        return self.boundaries is not None or self.quantiles is not None

    def __repr__(self) -> str:
        # quantiles / mean / std only where set, so a spec without them reads (and, in a workdir's
        # data identity, hashes) as before they existed.
        shown = [f for f in dataclasses.fields(self) if f.name not in _LATER or getattr(self, f.name) is not None]
        return f"Numeric({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"

    @property
    def needs_fit(self) -> bool:
        """True while a value fitted on the train split (quantile boundaries, mean / std) is unset."""
        return (self.quantiles is not None and self.boundaries is None) or (self.transform == "standardize" and self.mean is None)


_LATER = ("quantiles", "mean", "std")  # Numeric fields added in issue 19
Feature = Union[Categorical, Sequence, Numeric]
KINDS = {"categorical": Categorical, "sequence": Sequence, "numeric": Numeric}


def lengths_key(name: str) -> str:
    """Batch key of the lengths array `[B]` of a `Sequence` feature."""
    return f"{name}_length"


def is_embedded(feature: Feature) -> bool:
    """True for features that look up an embedding table (ids), False for float inputs."""
    return not isinstance(feature, Numeric) or feature.is_sparse


def from_dict(d: dict, where: str = "dataset.features") -> Feature:
    """Builds a feature spec from a config dict `{'type': 'categorical', 'name': ..., ...}`.

    Raises ConfigError naming `where` and the bad key, so a user's config typo is caught.
    """
    from jaxrec.errors import ConfigError

    d = dict(d)
    kind = d.pop("type", "categorical")
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown feature type {kind!r}; expected one of {sorted(KINDS)}")
    cls = KINDS[kind]
    fields = {f.name for f in dataclasses.fields(cls)} | ({"buckets"} if kind == "numeric" else set())
    unknown = sorted(set(d) - fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for a {kind} feature; valid: {sorted(fields)}")
    if "name" not in d:
        raise ConfigError(f"{where}: every feature needs a 'name'")
    if kind == "numeric":
        _numeric_options(d, where)
    if "boundaries" in d and d["boundaries"] is not None:
        try:
            d["boundaries"] = tuple(float(b) for b in d["boundaries"])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: boundaries={d['boundaries']!r} must be a list of numbers") from None
        column = f" (column {d.get('column') or d['name']!r})"
        if not all(math.isfinite(b) for b in d["boundaries"]):
            raise ConfigError(f"{where}{column}: boundaries={list(d['boundaries'])} must be finite numbers")
        bad = next((i for i, (a, b) in enumerate(zip(d["boundaries"], d["boundaries"][1:])) if a >= b), None)
        if bad is not None:
            raise ConfigError(f"{where}{column}: boundaries={list(d['boundaries'])} must be strictly increasing "
                              f"(entry {bad + 1} = {d['boundaries'][bad + 1]:g} is not above entry {bad} = {d['boundaries'][bad]:g})")
    if kind == "sequence" and "max_len" in d and not (isinstance(d["max_len"], int) and not isinstance(d["max_len"], bool)
                                                      and d["max_len"] >= 1):
        raise ConfigError(f"{where}: max_len={d['max_len']!r} must be an integer >= 1")
    try:
        return cls(**d)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _numeric_options(d: dict, where: str) -> None:
    """Checks a numeric feature dict's transform / buckets / mean / std in place; `buckets=
    {'quantiles': q}` becomes the spec field `quantiles`."""
    from jaxrec.errors import ConfigError

    transforms = ("none", "log1p", "log_square", "standardize")
    if d.get("transform", "none") not in transforms:
        raise ConfigError(f"{where}: transform={d['transform']!r}; expected one of {list(transforms)}")
    if "buckets" in d:
        buckets = d.pop("buckets")
        if not hasattr(buckets, "keys") or set(buckets.keys()) != {"quantiles"}:
            raise ConfigError(f"{where}: buckets={buckets!r}; expected {{'quantiles': q}} (for fixed buckets give boundaries=[...])")
        if d.get("quantiles") is not None:
            raise ConfigError(f"{where}: give buckets={{'quantiles': q}} or quantiles, not both")
        d["quantiles"] = buckets["quantiles"]
    q = d.get("quantiles")
    if q is not None:
        if isinstance(q, bool) or not isinstance(q, int) or q < 2:
            raise ConfigError(f"{where}: buckets={{'quantiles': {q!r}}}: the number of quantile buckets must be an integer >= 2")
        if d.get("boundaries") is not None:
            raise ConfigError(f"{where}: give boundaries (fixed buckets) or buckets={{'quantiles': q}} (fitted on train), not both")
    if (d.get("mean") is None) != (d.get("std") is None):
        raise ConfigError(f"{where}: give both mean and std (fixed standardization) or neither (fitted on train)")
    if d.get("mean") is not None:
        if d.get("transform") != "standardize":
            raise ConfigError(f"{where}: mean / std are used by transform='standardize' only (transform={d.get('transform', 'none')!r})")
        try:
            d["mean"], d["std"] = float(d["mean"]), float(d["std"])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: mean={d['mean']!r}, std={d['std']!r} must be numbers") from None
        if not (math.isfinite(d["mean"]) and math.isfinite(d["std"]) and d["std"] > 0):
            raise ConfigError(f"{where}: mean={d['mean']!r}, std={d['std']!r}: need a finite mean and a finite std > 0")
