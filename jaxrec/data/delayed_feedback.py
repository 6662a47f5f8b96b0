"""The delayed-feedback stream: sample types, observed samples, and the hourly protocol.

A click at t0 has an attribution window w_a (a conversion later than t0 + w_a does not
count) and a short observation window w_o. Per click, its true type is

    IP  immediate positive   converts within w_o
    FN  fake negative        converts after w_o, within w_a
    RN  real negative        does not convert within w_a

and the stream a learner sees (`build_stream`) depends on the method's scheme:

    'vanilla'    each click once, at t0 + w_o, label 1 iff IP (FNs stay negatives)
    'oracle'     each click once, at t0, with its true label (an upper bound)
    'duplicate'  as 'vanilla', plus a copy of every FN with label 1 at its conversion time:
                 the delayed positive DP (ES-DFM, DEFUSE, Bi-DEFUSE; FNW and FNC with w_o = 0)
    'defer'      as 'vanilla', plus a copy of every click: at its conversion time with label
                 1 if it converts within w_a (IPs too), else at t0 + w_a with label 0 (DN)
    'dfm'        each click once, at the end of the period of its click, labelled by what
                 was seen by then, with the elapsed time and (for positives) the delay

Periods are half-open on the left, `(start, end]`: a period is trained at its end, on
everything ingested by then.

`observed_at='click'` ingests the original samples at t0 instead of t0 + w_o, as the
released DEFUSE / ES-DFM code does [V code]; the default waits for the window, as the
paper's setting implies (the label is not known before).

The protocol (DEFUSE section 4, [V code]): pre-train on the clicks of the first
`pretrain_days`, then for each period (an hour) h until `end_day`: train on the samples
whose sample time falls in h, then test on the clicks of h + 1 against their true labels.
Pre-training labels are in hindsight (each click's true type), as in the released code;
`pretrain_targets(..., censor_at=...)` gives the labels seen by the cut instead.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from jaxrec.data.conversion_logs import DAY, HOUR, ConversionLog
from jaxrec.errors import ConfigError

IP, FN, RN, DP, DN = range(5)
KIND_NAMES = ("IP", "FN", "RN", "DP", "DN")
SCHEMES = ("vanilla", "oracle", "duplicate", "defer", "dfm")


@dataclasses.dataclass(frozen=True)
class Windows:
    """Observation window w_o (hours; 0 = every click starts negative, as FNW assumes) and
    attribution window w_a (days)."""

    observation_hours: float = 0.25
    attribution_days: float = 30.0

    def __post_init__(self):
        if not (0 <= self.observation_hours < self.attribution_days * 24):
            raise ConfigError(f"windows: need 0 <= observation_hours ({self.observation_hours}) "
                              f"< attribution_days * 24 ({self.attribution_days * 24})")

    @property
    def observation(self) -> float:
        return self.observation_hours * HOUR

    @property
    def attribution(self) -> float:
        return self.attribution_days * DAY


def true_labels(log: ConversionLog, windows: Windows) -> np.ndarray:
    """float32 `[N]`: 1 iff the click converts within the attribution window."""
    with np.errstate(invalid="ignore"):
        return (log.delay <= windows.attribution).astype(np.float32)


def click_types(log: ConversionLog, windows: Windows) -> np.ndarray:
    """int8 `[N]`: IP, FN or RN per click."""
    y = true_labels(log, windows) > 0
    with np.errstate(invalid="ignore"):
        immediate = y & (log.delay <= windows.observation)
    return np.where(immediate, IP, np.where(y, FN, RN)).astype(np.int8)


def true_auxiliary(log: ConversionLog, windows: Windows) -> dict[str, np.ndarray]:
    """The true values of what DEFUSE's auxiliary network estimates, for a log that knows its
    CVR and delay distribution (`synthetic_conversions`), float32 `[N]` each:
    'p_dp' = P(convert after w_o, within w_a) and 'p_rn' = P(real negative | negative at w_o).
    With them, DEFUSE's weights are exact (the loss is unbiased; `tests/losses`)."""
    if log.cvr is None or log.delay_scale is None or log.delay_spec is None:
        raise ConfigError(f"{log.name}: true_auxiliary needs the log's true cvr and delay distribution (synthetic logs)")
    s_o = log.delay_spec.survival(windows.observation, log.delay_scale)
    s_a = log.delay_spec.survival(windows.attribution, log.delay_scale)
    p = log.cvr.astype(np.float64)
    p_ip, p_dp = p * (1 - s_o), p * (s_o - s_a)
    p_rn = 1 - p * (1 - s_a)
    return {"p_dp": p_dp.astype(np.float32), "p_rn": (p_rn / np.maximum(1 - p_ip, 1e-12)).astype(np.float32)}


@dataclasses.dataclass(frozen=True)
class Stream:
    """Samples in ingestion order, each `[M]`.

    Attributes:
      rows: int64 index of the sample's click in the log.
      sample_ts: float64 seconds when the sample is ingested (sorted).
      label: float32 label the learner sees.
      kind: int8 true type (IP / FN / RN of an original; DP or DN of a copy); for tests and
        reports, never for training.
      duplicate: float32 1 for a copy (DP, DN), 0 for an original.
      elapsed: float32 hours from click to ingestion (DFM's e).
      delay: float32 hours from click to conversion, 0 if none (DFM's d).
    """

    rows: np.ndarray
    sample_ts: np.ndarray
    label: np.ndarray
    kind: np.ndarray
    duplicate: np.ndarray
    elapsed: np.ndarray
    delay: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, idx) -> "Stream":
        return Stream(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})

    def between(self, start: float, end: float) -> "Stream":
        """The samples ingested in `(start, end]` seconds (a period is trained at its end)."""
        lo, hi = np.searchsorted(self.sample_ts, [start, end], side="right")
        return self.take(slice(lo, hi))


def build_stream(log: ConversionLog, windows: Windows, scheme: str, observed_at: str = "window_end",
                 period_hours: float = 1.0) -> Stream:
    """The samples a learner of `scheme` sees (module docstring), sorted by ingestion time
    (stable: originals before copies at equal times).

    Args:
      log: the clicks.
      windows: w_o and w_a.
      scheme: one of `SCHEMES`.
      observed_at: 'window_end' (originals at t0 + w_o) or 'click' (at t0, the released code).
      period_hours: the protocol's period; 'dfm' ingests each click at the end of its period.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"scheme={scheme!r}: expected one of {SCHEMES}")
    if observed_at not in ("window_end", "click"):
        raise ConfigError(f"observed_at={observed_at!r}: expected 'window_end' or 'click'")
    n = len(log)
    rows = np.arange(n)
    kinds = click_types(log, windows)
    pay = log.pay_ts
    ingest = log.click_ts + (windows.observation if observed_at == "window_end" else 0.0)
    parts = []  # (rows, sample_ts, label, kind, duplicate)
    if scheme == "oracle":
        parts.append((rows, log.click_ts, (kinds != RN).astype(np.float32), kinds, 0))
    elif scheme == "dfm":
        period = period_hours * HOUR
        cut = np.ceil(log.click_ts / period) * period  # the end of the click's period (start, end]
        seen = np.nan_to_num(pay, nan=np.inf) < np.minimum(cut, log.click_ts + windows.attribution)
        parts.append((rows, cut, seen.astype(np.float32), kinds, 0))
    else:
        parts.append((rows, ingest, (kinds == IP).astype(np.float32), kinds, 0))
        if scheme == "duplicate":
            late = np.flatnonzero(kinds == FN)
            parts.append((late, pay[late], np.ones(len(late), np.float32), np.full(len(late), DP, np.int8), 1))
        elif scheme == "defer":
            conv = np.flatnonzero(kinds != RN)
            never = np.flatnonzero(kinds == RN)
            parts.append((conv, pay[conv], np.ones(len(conv), np.float32), np.full(len(conv), DP, np.int8), 1))
            parts.append((never, log.click_ts[never] + windows.attribution, np.zeros(len(never), np.float32),
                          np.full(len(never), DN, np.int8), 1))
    r = np.concatenate([p[0] for p in parts])
    ts = np.concatenate([np.asarray(p[1], np.float64) for p in parts])
    order = np.argsort(ts, kind="stable")
    r, ts = r[order], ts[order]
    delay = np.nan_to_num(log.delay[r], nan=0.0)
    return Stream(
        rows=r, sample_ts=ts,
        label=np.concatenate([p[2] for p in parts])[order],
        kind=np.concatenate([p[3] for p in parts])[order].astype(np.int8),
        duplicate=np.concatenate([np.full(len(p[0]), p[4], np.float32) for p in parts])[order],
        elapsed=((ts - log.click_ts[r]) / HOUR).astype(np.float32),
        delay=(delay / HOUR).astype(np.float32),
    )  # fmt: skip


def pretrain_targets(log: ConversionLog, windows: Windows, rows: np.ndarray, censor_at: float | None = None) -> dict[str, np.ndarray]:
    """Pre-training targets of the clicks `rows`, each float32 `[R]`: 'label' (converts within
    w_a), 'delayed' (converts after w_o, within w_a), 'elapsed' and 'delay' (hours, for DFM:
    elapsed = time to `censor_at` or to w_a). With `censor_at` (seconds), only conversions
    before it count; by default the click's true outcome is used (hindsight, the released code)."""
    delay = log.delay[rows]
    limit = np.full(len(rows), windows.attribution)
    if censor_at is not None:
        limit = np.minimum(limit, censor_at - log.click_ts[rows])
    with np.errstate(invalid="ignore"):
        label = delay <= limit
        delayed = label & (delay > windows.observation)
    return {"label": label.astype(np.float32), "delayed": delayed.astype(np.float32),
            "elapsed": (limit / HOUR).astype(np.float32), "delay": (np.nan_to_num(delay, nan=0.0) / HOUR).astype(np.float32)}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Pre-train on clicks before `pretrain_days`; stream periods of `period_hours` from there
    to `end_day`, each tested on the clicks of the next period."""

    pretrain_days: float = 30.0
    end_day: float = 60.0
    period_hours: float = 1.0

    def __post_init__(self):
        if not (0 < self.pretrain_days < self.end_day) or self.period_hours <= 0:
            raise ConfigError(f"protocol: need 0 < pretrain_days ({self.pretrain_days}) < end_day ({self.end_day}) "
                              f"and period_hours ({self.period_hours}) > 0")

    @property
    def num_periods(self) -> int:
        """Train periods; the last one's test period ends at `end_day`."""
        return int(round((self.end_day - self.pretrain_days) * 24 / self.period_hours)) - 1

    def pretrain_rows(self, log: ConversionLog) -> np.ndarray:
        """int64 `[R]`: the clicks up to `pretrain_days`."""
        return np.arange(np.searchsorted(log.click_ts, self.pretrain_days * DAY, side="right"))

    def periods(self) -> Iterator[tuple[float, float, float]]:
        """(start, end, test end) in seconds per train period `(start, end]`; its test period is
        `(end, test end]`."""
        p = self.period_hours * HOUR
        t0 = self.pretrain_days * DAY
        for h in range(self.num_periods):
            yield t0 + h * p, t0 + (h + 1) * p, t0 + (h + 2) * p

    def test_rows(self, log: ConversionLog, start: float, end: float) -> np.ndarray:
        """int64 `[T]`: the clicks in `(start, end]`."""
        lo, hi = np.searchsorted(log.click_ts, [start, end], side="right")
        return np.arange(lo, hi)
