"""Click logs with conversion times: the input of delayed-feedback (streaming CVR) training.

A `ConversionLog` holds, per click in time order, the encoded features, the click time and
the conversion time (NaN: never converted). Three sources:

* `read_criteo_conversions`: the Criteo conversion logs (Chapelle, KDD 2014; the data of
  DEFUSE, ES-DFM, DEFER). A headerless TSV, one click per line, 19 fields:

      click_ts <TAB> pay_ts <TAB> n1 ... n8 <TAB> c1 ... c9

  click_ts / pay_ts: integer seconds from the start of the log (pay_ts empty = no
  conversion); n1..n8 numeric (empty = missing); c1..c9 categorical strings (empty =
  missing). As the DEFUSE code does [V code], numeric values are min-max scaled over the
  file and bucketized into `NUMERIC_BINS` bins, categorical values hashed into
  `HASH_BUCKETS` buckets. Inferred [I]: a missing value gets its own id 0 (the code fills
  -1 before scaling, which puts it in the lowest bucket).
  The file is not downloaded: Criteo distributes it from its AI Lab page
  (`CRITEO_CONVERSIONS_URL`, a tar.gz holding `data.txt`) behind a licence click-through,
  and publishes no checksum; point `path` at your copy.
* `movielens_conversions`: a semi-synthetic stream from real MovieLens-100K: every rating
  is a click, in time order; it converts iff rating >= 4; the delay is drawn per item from
  `DelaySpec` (each item has its own delay scale, so delay depends on the features as in
  real ads). MovieLens's own timestamps are bursty (whole profiles rated in one sitting),
  so the clock is the event's rank, spread evenly over `days` days.
* `synthetic_conversions`: fully synthetic: ids and true CVR from the planted-interaction
  generator (`jaxrec.data.synthetic`), uniform click times, delays per `DelaySpec` with a
  scale set by the values of `delay_fields`; the true CVR of every click is kept.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Mapping

import numpy as np
import pyarrow as pa

from jaxrec.data import criteo, encoding, movielens
from jaxrec.data.features import Categorical, Feature
from jaxrec.data.synthetic import SyntheticSpec, generate
from jaxrec.errors import ConfigError, DataError

HOUR = 3600.0
DAY = 86400.0
CRITEO_CONVERSIONS_URL = "https://ailab.criteo.com/criteo-conversion-logs-dataset/"
NUMERIC_COLUMNS = tuple(f"n{i}" for i in range(1, 9))
CATEGORICAL_COLUMNS = tuple(f"c{i}" for i in range(1, 10))
NUMERIC_BINS = (64, 16, 128, 64, 128, 64, 512, 512)  # [V code]
HASH_BUCKETS = (512, 128, 256, 256, 64, 256, 256, 16, 256)  # [V code]
MOVIELENS_FIELDS = ("user_id", "item_id", "age_bucket", "gender", "occupation", "zip_prefix", "release_year", "genre_first")


@dataclasses.dataclass(frozen=True)
class ConversionLog:
    """Clicks in time order with their conversion times.

    Attributes:
      name: for logs and result files.
      features: resolved specs of the feature columns (ids in `[0, vocab_size)`).
      columns: feature name -> int32 ids `[N]`.
      click_ts: float64 `[N]` seconds, non-decreasing.
      pay_ts: float64 `[N]` seconds, >= click_ts; NaN = no conversion.
      cvr: float32 `[N]` true P(convert) of each click where known (synthetic), else None.
      delay_scale: float64 `[N]` seconds, each click's scale under `delay_spec` where known
        (synthetic), else None; with `cvr` it gives the true delay-model quantities
        (`jaxrec.data.delayed_feedback.true_auxiliary`).
      delay_spec: the `DelaySpec` the delays were drawn from (synthetic), else None.
    """

    name: str
    features: tuple[Feature, ...]
    columns: Mapping[str, np.ndarray]
    click_ts: np.ndarray
    pay_ts: np.ndarray
    cvr: np.ndarray | None = None
    delay_scale: np.ndarray | None = None
    delay_spec: DelaySpec | None = None

    def __post_init__(self):
        n = len(self.click_ts)
        extra = {k: v for k, v in (("cvr", self.cvr), ("delay_scale", self.delay_scale)) if v is not None}
        for k, v in {**self.columns, "pay_ts": self.pay_ts, **extra}.items():
            if len(v) != n:
                raise DataError(f"{self.name}: column {k!r} has {len(v)} rows, click_ts has {n}")
        if n and np.any(np.diff(self.click_ts) < 0):
            raise DataError(f"{self.name}: click_ts must be sorted")

    def __len__(self) -> int:
        return len(self.click_ts)

    @property
    def delay(self) -> np.ndarray:
        """float64 `[N]` conversion delay in seconds (NaN: none)."""
        return self.pay_ts - self.click_ts


@dataclasses.dataclass(frozen=True)
class DelaySpec:
    """How conversion delays are drawn for the semi- and fully synthetic logs.

    Each group (a MovieLens item; a synthetic click's delay-field values) has a scale
    `scale_hours * exp(spread * g)`, g ~ N(0, 1); a converting click's delay is then
    'exponential' with that mean, or 'lognormal' with that median and log-std `sigma`.
    """

    distribution: str = "exponential"
    scale_hours: float = 6.0
    spread: float = 1.5
    sigma: float = 1.0

    def __post_init__(self):
        if self.distribution not in ("exponential", "lognormal"):
            raise ConfigError(f"delay.distribution={self.distribution!r}: expected 'exponential' or 'lognormal'")
        for k in ("scale_hours", "spread", "sigma"):
            v = getattr(self, k)
            if not (math.isfinite(v) and v >= 0) or (k == "scale_hours" and v == 0):
                raise ConfigError(f"delay.{k}={v!r}: expected a finite number > 0 (spread, sigma >= 0)")

    def scales(self, groups: int, rng: np.random.Generator) -> np.ndarray:
        """float64 `[groups]` delay scales in seconds."""
        return self.scale_hours * HOUR * np.exp(self.spread * rng.standard_normal(groups))

    def survival(self, t: float, scale: np.ndarray) -> np.ndarray:
        """P(delay > t) `[N]` for per-click scales `[N]` (t in seconds)."""
        if self.distribution == "exponential":
            return np.exp(-t / scale)
        if self.sigma == 0:
            return (scale > t).astype(np.float64)
        z = np.log(t / scale) / (self.sigma * math.sqrt(2)) if t > 0 else np.full(len(scale), -np.inf)
        return 0.5 * np.vectorize(math.erfc)(z)

    def draw(self, scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Delays in seconds `[N]` for per-click scales `[N]`."""
        if self.distribution == "exponential":
            return scale * rng.standard_exponential(len(scale))
        return scale * np.exp(self.sigma * rng.standard_normal(len(scale)))


# ------------------------------------------------------------------------ Criteo reader


def read_criteo_conversions(path: str, chunk_rows: int = 1_000_000, max_rows: int | None = None) -> ConversionLog:
    """Reads a Criteo conversion-logs TSV file (module docstring) into a `ConversionLog`.

    Args:
      path: the file (plain or compressed as pyarrow detects, e.g. `.gz`).
      chunk_rows: about how many lines are parsed at a time.
      max_rows: read only the first lines (quick experiments).
    Returns:
      features n1..n8 (`NUMERIC_BINS[i] + 1` ids) and c1..c9 (`HASH_BUCKETS[i]` ids), rows
      sorted by click time (stable).
    Raises:
      DataError: missing, empty or malformed file (`path:LINE`), or a conversion before its click.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file. The Criteo conversion logs are not downloaded automatically: "
                        f"get them from {CRITEO_CONVERSIONS_URL} (data.txt in the archive) and pass its path")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty")
    types = {"click_ts": pa.float64(), "pay_ts": pa.float64(), **{c: pa.float64() for c in NUMERIC_COLUMNS},
             **{c: pa.string() for c in CATEGORICAL_COLUMNS}}
    cats = tuple(Categorical(c, encoding="hash", hash_buckets=b) for c, b in zip(CATEGORICAL_COLUMNS, HASH_BUCKETS))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in types}
    for _, batch in criteo._batches(path, types, _line_error, chunk_rows, max_rows):
        for c in ("click_ts", "pay_ts", *NUMERIC_COLUMNS):
            parts[c].append(batch.column(c).to_numpy(zero_copy_only=False).astype(np.float64))
        for f in cats:
            parts[f.name].append(criteo._encode_categorical(f, batch.column(f.name), {}))
    if not parts["click_ts"]:
        raise DataError(f"{path}: no rows (only blank lines)")
    cols = {k: np.concatenate(v) for k, v in parts.items()}
    click, pay = cols.pop("click_ts"), cols.pop("pay_ts")
    if np.isnan(click).any():
        raise DataError(f"{criteo._locate(path, int(np.flatnonzero(np.isnan(click))[0]))}: click_ts is empty")
    early = np.flatnonzero(pay < click)
    if len(early):
        i = int(early[0])
        raise DataError(f"{criteo._locate(path, i)}: pay_ts {pay[i]:.0f} is before click_ts {click[i]:.0f}")
    for c, bins in zip(NUMERIC_COLUMNS, NUMERIC_BINS):
        cols[c] = minmax_buckets(cols[c], bins)
    order = np.argsort(click, kind="stable")
    features = tuple(Categorical(c, encoding="identity", vocab_size=b + 1) for c, b in zip(NUMERIC_COLUMNS, NUMERIC_BINS))
    features += tuple(dataclasses.replace(f, vocab_size=f.hash_buckets) for f in cats)
    return ConversionLog("criteo_conversions", features, {k: v[order] for k, v in cols.items()}, click[order], pay[order])


def minmax_buckets(x: np.ndarray, bins: int) -> np.ndarray:
    """float `[N]` (NaN = missing) -> int32 ids `[N]`: 0 missing, else 1 + floor(bins * (x - min)
    / (max - min)) clipped to `[1, bins]`."""
    ok = np.isfinite(x)
    if not ok.any():
        return np.zeros(len(x), np.int32)
    lo, hi = x[ok].min(), x[ok].max()
    scaled = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    ids = 1 + np.clip(np.floor(np.nan_to_num(scaled) * bins), 0, bins - 1)
    return np.where(ok, ids, 0).astype(np.int32)


def _line_error(fields: list[str]) -> str | None:
    n = 2 + len(NUMERIC_COLUMNS) + len(CATEGORICAL_COLUMNS)
    if len(fields) != n:
        return f"expected {n} tab-separated fields (click_ts, pay_ts, 8 numeric, 9 categorical), got {len(fields)}"
    for name, value in zip(("click_ts", "pay_ts") + NUMERIC_COLUMNS, fields):
        try:
            if value or name == "click_ts":
                float(value)
        except ValueError:
            return f"column {name} expects a number{'' if name == 'click_ts' else ' or nothing'}, got {value!r}"
    return None


# ------------------------------------------------------------------- synthetic streams


def movielens_conversions(data_dir: str | None = None, delay: DelaySpec = DelaySpec(), days: float = 60.0,
                          seed: int = 0) -> ConversionLog:
    """MovieLens-100K as a delayed-conversion log (module docstring).

    Args:
      data_dir: the GroupLens `ml-100k` folder (None: `$JAXREC_DATA_DIR/ml-100k` or the cache).
      delay: per-item delay distribution.
      days: the 100,000 ratings, in timestamp order, are spread evenly over this many days.
      seed: seeds the item scales and the delays.
    Returns:
      a log of 100,000 clicks with features `MOVIELENS_FIELDS` (vocabularies over the whole
      log); about 55% convert (rating >= 4).
    """
    raw = movielens.read_raw(data_dir)
    order = np.argsort(raw["timestamp"], kind="stable")
    raw = {k: v[order] for k, v in raw.items() if k in MOVIELENS_FIELDS + ("rating",)}
    specs, vocabs = encoding.fit(tuple(Categorical(n) for n in MOVIELENS_FIELDS), raw)
    cols = encoding.encode(specs, vocabs, raw)
    n = len(order)
    click = np.arange(n) * (days * DAY / n)
    rng = np.random.default_rng(seed)
    scale = delay.scales(specs[1].vocab_size, rng)[cols["item_id"]]
    pay = np.where(raw["rating"] >= 4, click + delay.draw(scale, rng), np.nan)
    return ConversionLog("movielens_conversions", specs, cols, click, pay)


def synthetic_conversions(num_clicks: int = 100_000, days: float = 60.0, delay: DelaySpec = DelaySpec(),
                          spec: SyntheticSpec | None = None, delay_fields: tuple[int, ...] = (0, 1),
                          seed: int = 0) -> ConversionLog:
    """A fully synthetic conversion log (module docstring).

    Args:
      num_clicks: N.
      days: click times are uniform over [0, days).
      delay: the delay distribution; a click's scale multiplies the per-value factors
        exp(spread * g / sqrt(len(delay_fields))) of its `delay_fields`.
      spec: the id / CVR generator (default: 6 fields of 200 ids, pairwise interactions,
        bias -0.5, about 40% conversions); its `rows` is replaced by `num_clicks`.
      delay_fields: indices of the fields whose values set the delay scale.
      seed: seeds the generator, the click times and the delays.
    Returns:
      a log with `cvr` = the Bayes-optimal P(convert | ids) of each click.
    """
    spec = spec or SyntheticSpec(num_fields=6, vocab_sizes=200, num_interactions=4, bias=-0.5, noise=0.0)
    spec = dataclasses.replace(spec, rows=num_clicks, seed=seed)
    if not delay_fields or not all(0 <= f < spec.num_fields for f in delay_fields):
        raise ConfigError(f"delay_fields={delay_fields!r}: expected field indices in [0, {spec.num_fields})")
    ids, converted, cvr = generate(spec)
    rng = np.random.default_rng([seed, 1])
    click = np.sort(rng.uniform(0, days * DAY, num_clicks))
    log_scale = sum(rng.standard_normal(spec.field_vocab_sizes[f])[ids[f"f{f}"]] for f in delay_fields)
    scale = delay.scale_hours * HOUR * np.exp(delay.spread * log_scale / math.sqrt(len(delay_fields)))
    pay = np.where(converted > 0, click + delay.draw(scale, rng), np.nan)
    features = tuple(Categorical(f"f{i}", encoding="identity", vocab_size=v) for i, v in enumerate(spec.field_vocab_sizes))
    return ConversionLog("synthetic_conversions", features, ids, click, pay, cvr=cvr, delay_scale=scale, delay_spec=delay)


# ------------------------------------------------------------------------ by config

CONVERSION_LOGS = {"movielens_conversions": movielens_conversions, "synthetic_conversions": synthetic_conversions,
                   "criteo_conversions": read_criteo_conversions}


def conversion_log_options(name: str) -> set[str]:
    """The `dataset.*` keys of conversion log `name` (its loader's arguments; `delay` a dict of `DelaySpec` fields)."""
    import inspect

    return {p for p in inspect.signature(CONVERSION_LOGS[name]).parameters if p != "spec"}


def load_conversion_log(name: str, **options) -> ConversionLog:
    """The conversion log `name` (`CONVERSION_LOGS`) from config options, e.g.
    `load_conversion_log('movielens_conversions', data_dir=..., delay={'scale_hours': 6})`;
    ConfigError names an unknown log or key."""
    if name not in CONVERSION_LOGS:
        raise ConfigError(f"dataset.name={name!r}: task.name='delayed_feedback' reads a conversion log, one of {sorted(CONVERSION_LOGS)}")
    unknown = sorted(set(options) - conversion_log_options(name))
    if unknown:
        raise ConfigError(f"unknown config key(s) {['dataset.' + k for k in unknown]} for {name!r}; valid: {sorted(conversion_log_options(name))}")
    if "delay" in options:
        delay = dict(options["delay"] or {})
        bad = sorted(set(delay) - {f.name for f in dataclasses.fields(DelaySpec)})
        if bad:
            raise ConfigError(f"unknown config key(s) {['dataset.delay.' + k for k in bad]}; valid: "
                              f"{[f.name for f in dataclasses.fields(DelaySpec)]}")
        options["delay"] = DelaySpec(**delay)
    if "delay_fields" in options:
        options["delay_fields"] = tuple(options["delay_fields"])
    return CONVERSION_LOGS[name](**options)
