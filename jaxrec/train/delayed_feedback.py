"""Streaming CVR training under delayed feedback: pre-train, then train and test period by period.

The protocol of DEFUSE (Chen et al., WWW 2022; `jaxrec.data.delayed_feedback`): every
method starts from a network pre-trained on the first days (one per network `FAMILIES`,
shared by the methods that use it), then, for each period, trains one pass over the samples
its stream scheme ingested in that period (in ingestion order, batches of `batch_size`)
and predicts the clicks of the next period, scored against their true labels. One Adam
optimiser is created at the start of streaming and kept across periods, as in the released
code. ES-DFM, DEFER and DEFUSE read p_dp and p_rn from an auxiliary [tn, dp] network
pre-trained on the same days and frozen (`tn_dp_loss`).

Metrics (`stream_metrics`) pool the predictions of all test periods: AUC, PR-AUC (average
precision) and NLL; the released code instead averages per-hour values weighted by hour
size, reported here too as `*_hourly`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping

import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxrec.data.conversion_logs import ConversionLog
from jaxrec.data.dataset import LABELS
from jaxrec.data.delayed_feedback import Protocol, Stream, Windows, build_stream, pretrain_targets, true_labels
from jaxrec.errors import ConfigError
from jaxrec.losses import delayed_feedback as dfl
from jaxrec.models import MultiHeadDNN
from jaxrec.train import metrics as metrics_lib
from jaxrec.train.state import Optimizers, TrainState, init_state, make_train_step, variables


@dataclasses.dataclass(frozen=True)
class Family:
    """A network and its pre-training: heads, layers, and the loss on `pretrain_targets`."""

    heads: tuple[str, ...]
    pretrain_loss: Callable
    hidden: tuple[int, ...] = (256, 256, 128)
    tower: tuple[int, ...] = ()


FAMILIES = {
    "cvr": Family(("cvr",), dfl.cross_entropy_loss),
    "dfm": Family(("cvr", "delay"), dfl.dfm_loss),
    "bidefuse": Family(("in", "out"), dfl.in_out_window_loss, hidden=(256, 256), tower=(128,)),
    "aux": Family(("tn", "dp"), dfl.tn_dp_loss),
}


@dataclasses.dataclass(frozen=True)
class Method:
    """A delayed-feedback method: its streaming loss (None: no streaming, the pre-trained
    network as is), stream scheme, network family, whether it reads the frozen auxiliary
    network, and an observation window of its own (FNW / FNC assume w_o = 0)."""

    loss: Callable | None
    scheme: str = "duplicate"
    family: str = "cvr"
    needs_aux: bool = False
    observation_hours: float | None = None


METHODS = {
    "pretrain": Method(None),
    "vanilla": Method(dfl.cross_entropy_loss, "vanilla"),
    "oracle": Method(dfl.cross_entropy_loss, "oracle"),
    "fnw": Method(dfl.fnw_loss, observation_hours=0.0),
    "fnc": Method(dfl.cross_entropy_loss, observation_hours=0.0),
    "es_dfm": Method(dfl.es_dfm_loss, needs_aux=True),
    "defer": Method(dfl.defer_loss, "defer", needs_aux=True),
    "dfm": Method(dfl.dfm_loss, "dfm", family="dfm"),
    "defuse": Method(dfl.defuse_loss, needs_aux=True),
    "defuse_code": Method(functools.partial(dfl.defuse_loss, code_compat=True), needs_aux=True),
    "bidefuse": Method(dfl.bidefuse_loss, family="bidefuse"),
}


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings ([V code] defaults: Adam 1e-3, batch 1024, 5 pre-training epochs;
    the released scripts use 5e-4 for some methods, one rate for all here)."""

    lr: float = 1e-3
    batch_size: int = 1024
    pretrain_epochs: int = 5
    embed_dim: int = 8
    progress: bool = False  # a progress bar over the streamed periods

    def __post_init__(self):
        if not (self.lr > 0 and self.batch_size >= 1 and self.pretrain_epochs >= 0 and self.embed_dim >= 1):
            raise ConfigError(f"TrainOptions: need lr > 0, batch_size >= 1, pretrain_epochs >= 0, embed_dim >= 1; got {self}")


def make_model(log: ConversionLog, family: str, options: TrainOptions) -> MultiHeadDNN:
    """The network of `family` over the log's features."""
    f = FAMILIES[family]
    return MultiHeadDNN(log.features, heads=f.heads, embed_dim=options.embed_dim, hidden=f.hidden, tower=f.tower)


def _batches(log: ConversionLog, rows: np.ndarray, targets: Mapping[str, np.ndarray], size: int):
    """Yields batches of `size` rows (the last padded with weight 0): features + LABELS=targets."""
    for lo in range(0, len(rows), size):
        r = rows[lo:lo + size]
        pad = size - len(r)
        idx = np.pad(r, (0, pad))
        t = {k: np.pad(np.asarray(v[lo:lo + size], np.float32), (0, pad)) for k, v in targets.items()}
        t["weight"] = np.pad(np.ones(len(r), np.float32), (0, pad))
        yield {**{k: v[idx] for k, v in log.columns.items()}, LABELS: t}


def _optimizers(lr: float) -> Optimizers:
    return Optimizers(dense=optax.adam(lr), sparse=optax.adam(lr))


def _fresh_state(model, params, optimizers: Optimizers, example, seed: int) -> TrainState:
    """A new TrainState from `seed` (its parameters replaced by `params` unless None)."""
    state = init_state(model, optimizers, example, seed)
    if params is None:
        return state
    return state.replace(params=params, opt_state={"dense": optimizers.dense.init(params["dense"]),
                                                   "sparse": optimizers.sparse.init(params["sparse"])})


def _train_pass(step, state: TrainState | None, batches, start) -> TrainState | None:
    """One pass of `step` over `batches`; a None state is made from the first batch by
    `start(batch)` (so it is made only once there is data)."""
    for batch in batches:
        state, _ = step(state if state is not None else start(batch), batch)
    return state


def pretrain(log: ConversionLog, family: str, windows: Windows, protocol: Protocol, options: TrainOptions,
             seed: int) -> dict:
    """Trains the `family` network on the pre-training clicks (`pretrain_epochs` passes,
    shuffled once by `seed`, hindsight labels) and returns its TrainState params."""
    model = make_model(log, family, options)
    rows = protocol.pretrain_rows(log)
    if len(rows) == 0:
        raise ConfigError(f"protocol.pretrain_days={protocol.pretrain_days}: no clicks to pre-train on")
    rows = rows[np.random.default_rng([seed, 7]).permutation(len(rows))]
    targets = pretrain_targets(log, windows, rows)
    optimizers = _optimizers(options.lr)
    step = jax.jit(make_train_step(model, optimizers, FAMILIES[family].pretrain_loss))
    state = None
    for _ in range(options.pretrain_epochs):
        state = _train_pass(step, state, _batches(log, rows, targets, options.batch_size),
                            lambda b: _fresh_state(model, None, optimizers, b, seed))
    if state is None:  # pretrain_epochs=0: the initialisation itself
        state = _fresh_state(model, None, optimizers, next(_batches(log, rows, targets, options.batch_size)), seed)
    return state.params


def auxiliary_predictions(log: ConversionLog, params: dict, options: TrainOptions) -> dict[str, np.ndarray]:
    """The frozen auxiliary network on every click: {'p_dp', 'p_rn'} float32 `[N]`."""
    model = make_model(log, "aux", options)
    return predict(model, params, log, np.arange(len(log)), lambda o: {"p_dp": jax.nn.sigmoid(o["dp"]), "p_rn": jax.nn.sigmoid(o["tn"])})


def predict(model, params, log: ConversionLog, rows: np.ndarray, transform: Callable, size: int = 4096) -> dict | np.ndarray:
    """`transform(model outputs)` on the clicks `rows`, batched; numpy, `[len(rows)]` per entry."""
    fn = _predict_fn(model, transform)
    parts = []
    for lo in range(0, len(rows), size):
        r = rows[lo:lo + size]
        n = len(r)
        width = max(64, 1 << (n - 1).bit_length())  # a few padded shapes, a few compilations
        idx = np.pad(r, (0, width - n))
        parts.append(jax.tree.map(lambda a: np.asarray(a)[:n], fn(params, {k: v[idx] for k, v in log.columns.items()})))
    return jax.tree.map(lambda *a: np.concatenate(a), *parts)


@functools.lru_cache(maxsize=64)  # one compilation per (model, transform), e.g. per streamed method
def _predict_fn(model, transform):
    return jax.jit(lambda params, batch: transform(model.apply(variables(params), batch, train=False)))


def stream_targets(stream: Stream, aux: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The loss targets of a stream's samples, each `[M]` (`jaxrec.losses.delayed_feedback`)."""
    t = {"label": stream.label, "duplicate": stream.duplicate, "elapsed": stream.elapsed, "delay": stream.delay}
    if aux is not None:
        t.update({k: v[stream.rows] for k, v in aux.items()})
    return t


def run_stream(log: ConversionLog, method: str, params: dict, windows: Windows, protocol: Protocol,
               options: TrainOptions, seed: int, aux: Mapping[str, np.ndarray] | None = None,
               observed_at: str = "window_end") -> dict[str, np.ndarray]:
    """Streams `method` from the pre-trained `params` (module docstring).

    Returns:
      {'prob': predicted CVR `[T]`, 'label': true label `[T]`, 'period': test period index `[T]`}
      over the test clicks of every period (T clicks in all).
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r}: expected one of {sorted(METHODS)}")
    m = METHODS[method]
    if m.needs_aux and aux is None:
        raise ConfigError(f"method {method!r} needs the auxiliary network's predictions (aux=...)")
    heads = {f"head_{h}" for h in FAMILIES[m.family].heads}
    if not heads <= set(params.get("dense", {})):
        raise ConfigError(f"method {method!r} streams a {m.family!r} network (heads {FAMILIES[m.family].heads}); "
                          f"pass the params of pretrain(log, {m.family!r}, ...)")
    model = make_model(log, m.family, options)
    prob = functools.partial(dfl.probability, method=method)
    labels = true_labels(log, windows)
    out = {"prob": [], "label": [], "period": []}
    if m.loss is not None:
        w = windows if m.observation_hours is None else dataclasses.replace(windows, observation_hours=m.observation_hours)
        stream = build_stream(log, w, m.scheme, observed_at, protocol.period_hours)
        optimizers = _optimizers(options.lr)
        step = jax.jit(make_train_step(model, optimizers, m.loss))
        state = None
    for h, (start, end, test_end) in enumerate(tqdm(list(protocol.periods()), desc=method, disable=not options.progress)):
        if m.loss is not None:
            part = stream.between(start, end)
            state = _train_pass(step, state, _batches(log, part.rows, stream_targets(part, aux), options.batch_size),
                                lambda b: _fresh_state(model, params, optimizers, b, seed))
            params = state.params if state is not None else params
        rows = protocol.test_rows(log, end, test_end)
        if len(rows):
            out["prob"].append(predict(model, params, log, rows, prob))
            out["label"].append(labels[rows])
            out["period"].append(np.full(len(rows), h))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def stream_metrics(result: Mapping[str, np.ndarray]) -> dict[str, float]:
    """AUC, PR-AUC (average precision) and NLL of `run_stream`'s predictions, pooled over all
    test periods, and the same averaged per period weighted by its size (`*_hourly`; periods
    with one class only are left out of the AUCs)."""
    p, y, period = (np.asarray(result[k]) for k in ("prob", "label", "period"))
    logits = np.log(p) - np.log1p(-p)
    out = {"auc": metrics_lib.auc(y, p), "pr_auc": metrics_lib.average_precision(y, p),
           "nll": metrics_lib.logloss(y, logits), "count": int(len(y)), "positive_rate": float(np.mean(y)),
           "mean_prediction": float(np.mean(p))}
    hourly = {"auc_hourly": [], "pr_auc_hourly": [], "nll_hourly": []}
    sizes = {k: [] for k in hourly}
    for h in np.unique(period):
        s = period == h
        ys, ps = y[s], p[s]
        hourly["nll_hourly"].append(metrics_lib.logloss(ys, logits[s]))
        sizes["nll_hourly"].append(s.sum())
        if 0 < ys.sum() < len(ys):
            hourly["auc_hourly"].append(metrics_lib.auc(ys, ps))
            hourly["pr_auc_hourly"].append(metrics_lib.average_precision(ys, ps))
            sizes["auc_hourly"].append(s.sum())
            sizes["pr_auc_hourly"].append(s.sum())
    for k, v in hourly.items():
        out[k] = float(np.average(v, weights=sizes[k])) if v else float("nan")
    return out


def relative_improvement(m: float, m_pretrain: float, m_oracle: float) -> float:
    """RI = (m - m_pretrain) / (m_oracle - m_pretrain): 0 = no better than not streaming,
    1 = as good as knowing the labels at once (same formula for NLL, where lower is better)."""
    return float((m - m_pretrain) / (m_oracle - m_pretrain))
